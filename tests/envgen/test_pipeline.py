"""The generation pipeline: determinism, resume, exclusion, duplicates, the report."""

import json
from collections import Counter

import pytest

from ftrl_lab.core.records import RecordError, load_records
from ftrl_lab.envgen.backend import ProceduralBackend
from ftrl_lab.envgen.pipeline import (
    PipelineConfig,
    generate_records,
    generate_split,
    integration_stats,
    question_set,
    report_path,
)
from ftrl_lab.envgen.validate import env_meta


def _run(path, **kw):
    kw.setdefault("chunk_size", 8)
    return generate_split(PipelineConfig(**kw), path, progress=False)


def test_same_seed_gives_byte_identical_files_and_resume_matches(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    _run(a, n=20, seed=0)
    _run(b, n=20, seed=0)
    assert a.read_bytes() == b.read_bytes()
    _run(c, n=9, seed=0)  # interrupted after 9 slots ...
    with open(c, "ab") as f:
        f.write(b'{"messages": [{"role": "us')  # ... in the middle of a write
    report = _run(c, n=20, seed=0)  # the rerun resumes
    assert c.read_bytes() == a.read_bytes()
    assert report["records"] == 20 and len(report["runs"]) == 2 and report["runs"][1]["written"] == 11
    assert report["gate"]["checked"] >= 20 and report["gate"]["pass_rate"] == 1.0
    metas = [env_meta(r) for r in load_records(c)]  # the report covers the whole file, both runs
    assert report["integration"] == integration_stats(metas)
    assert report["per_scenario"] == dict(Counter(m["scenario"] for m in metas))


def test_records_cycle_scenarios_and_carry_metadata(tmp_path):
    out = tmp_path / "t.jsonl"
    report = _run(out, n=12, seed=3, split="test", complexity="fg=3,pe=2,pt=1,te=0")
    recs = load_records(out)
    assert [r.scenario for r in recs[:4]] == ["single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop"]
    assert report["per_scenario"] == {
        s: 3 for s in ("single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop")
    }
    metas = [env_meta(r) for r in recs]
    assert [m["slot"] for m in metas] == list(range(12))
    assert all(m["levels"] == {"functional": 3, "parameters": 2, "types": 1, "toolset": 0} for m in metas)
    assert all(r.split == "test" for r in recs)
    assert report["integration"]["all"]["envs"] == 12 and "n_to_m" in report["integration"]["all"]
    assert json.loads(report_path(out).read_text())["records"] == 12


def test_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "t.jsonl"
    _run(out, n=4, seed=0)
    with pytest.raises(RecordError, match="other settings"):
        _run(out, n=8, seed=1)
    assert _run(out, n=4, seed=1)["records"] == 4  # complete: kept as is (with a warning), not mixed
    with pytest.raises(ValueError, match="JSONL"):
        generate_split(PipelineConfig(n=1), tmp_path / "x.parquet", progress=False)


def test_exclusion_keeps_test_questions_out_of_train(tmp_path):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    _run(train, n=16, seed=0)
    # a test run whose first question is forced to be a train question must replace it
    forced = load_records(train)[0].question

    class Clash(ProceduralBackend):
        def generate(self, scenario, levels, rng, split="train", meta=None):
            rec = super().generate(scenario, levels, rng, split, meta)
            if meta["slot"] == 0 and meta["attempt"] == 0:
                rec.messages[0]["content"] = rec.messages[0]["content"].split("Question: ")[0] + "Question: " + forced
            return rec

    config = PipelineConfig(n=8, seed=1, split="test", exclude=(str(train),), chunk_size=8)
    report = generate_split(config, test, backend=Clash(1), progress=False)
    assert report["gate"]["rejections"] == {"excluded_question": 1}
    assert not question_set([train]) & question_set([test])
    assert env_meta(load_records(test)[0])["attempt"] == 1


def test_in_file_duplicates_are_regenerated_in_slot_order():
    class Dup(ProceduralBackend):
        def generate(self, scenario, levels, rng, split="train", meta=None):
            rec = super().generate(scenario, levels, rng, split, meta)
            if meta["attempt"] == 0 and meta["slot"] in (0, 4):
                rec.messages[0]["content"] = rec.messages[0]["content"].split("Question: ")[0] + "Question: Same?"
            return rec

    records, gate = generate_records(8, seed=0, backend=Dup(0))
    metas = [env_meta(r) for r in records]
    assert [m["slot"] for m in metas] == list(range(8))
    assert metas[0]["attempt"] == 0 and metas[4]["attempt"] == 1
    assert gate.rejections["duplicate_question"] == 1 and gate.passed == 8


def test_bad_config():
    with pytest.raises(ValueError, match="scenario"):
        PipelineConfig(scenarios=("sideways_hop",))
    with pytest.raises(ValueError, match="complexity"):
        PipelineConfig(complexity="7")


def test_a_generator_process_gives_the_same_file(tmp_path):
    a, b = tmp_path / "thread.jsonl", tmp_path / "process.jsonl"
    generate_split(PipelineConfig(n=10, seed=4, chunk_size=4), a, progress=False, processes=0)
    generate_split(PipelineConfig(n=10, seed=4, chunk_size=4), b, progress=False, processes=1)
    assert a.read_bytes() == b.read_bytes()
