"""The benchmark suite runner: every benchmark/category in the summary with the right n, gold
outputs scoring 100%, subsamples marked, reruns resuming without asking the model again, and
the command line end to end on a tiny random model."""

import json

import pytest

from ftrl_lab.benchmarks import bfcl, rotbench, suite, toolhop

EXPECTED = {
    "toolhop": ["direct", "mandatory", "free", "overall"],
    "rotbench": ["clean", "union", "overall"],
    "bfcl": ["simple", "multiple", "parallel", "parallel_multiple", "non_live_ast"],
}
AVAILABLE = {
    ("toolhop", "direct"): 10,
    ("rotbench", "clean"): 105,
    ("bfcl", "simple"): 400,
    ("bfcl", "parallel_multiple"): 200,
    ("bfcl", "non_live_ast"): 1000,
    ("rotbench", "overall"): 210,
}


@pytest.fixture(scope="module")
def gold_policy():
    """A plain callable answering every suite item with its gold output (ToolHop: the oracle's
    gold calls, then the last tool output); counts the conversations it is asked."""
    try:
        bfcl.data_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    th_items = toolhop.load()[:3]
    oracle = toolhop.OraclePolicy(th_items, {it["id"]: toolhop.derive_gold_calls(it) for it in th_items})
    answers = {}
    for it in rotbench.load(levels=suite.SUITE["rotbench"], limit=3):
        answers[(it["messages"][0]["content"], it["messages"][-1]["content"])] = it["answers"][0]
    for it in bfcl.load(suite.SUITE["bfcl"], limit=3):
        answers[json.dumps(it["messages"])] = bfcl.gold_output(it, "qwen")

    def policy(convs, tools):
        policy.asked += len(convs)
        out = []
        for conv, t in zip(convs, tools):
            key = (conv[0]["content"], conv[-1]["content"]) if conv[0]["role"] == "system" else None
            if key in answers:
                out.append(answers[key])
            elif json.dumps(conv) in answers:
                out.append(answers[json.dumps(conv)])
            else:
                out.extend(oracle([conv], [t]))
        return out

    policy.asked = 0
    return policy


def _check_summary(df, limit):
    got = {b: list(df[df["benchmark"] == b].drop_duplicates("category")["category"]) for b in EXPECTED}
    assert got == EXPECTED
    assert set(df["metric"]) == {"AC", "TS", "PI", "CF", "accuracy"}
    for _, r in df.iterrows():
        n_cats = len(suite.SUITE[r["benchmark"]]) if r["summary_row"] else 1
        assert r["n"] == limit * n_cats, (r["benchmark"], r["category"])
        assert r["subsample"] and r["limit_per_category"] == limit
    first = df.drop_duplicates(["benchmark", "category"]).set_index(["benchmark", "category"])
    for key, n in AVAILABLE.items():
        assert first.loc[key, "available"] == n
    assert first.loc[("bfcl", "simple"), "selection"] == f"first {limit} of 400"
    assert first.loc[("bfcl", "non_live_ast"), "selection"] == f"first {limit} per category: {4 * limit} of 1000"


def test_suite_scores_gold_resumes_and_marks_subsamples(gold_policy, tmp_path):
    out = tmp_path / "gold"
    settings = suite.SuiteSettings(model="gold", limit_per_category=2, max_turns=5)
    df = suite.run_suite(gold_policy, out, settings, show_progress=False)
    _check_summary(df, 2)
    values = df.set_index(["benchmark", "category", "metric"])["value"]
    assert values[("toolhop", "mandatory", "AC")] == values[("toolhop", "free", "AC")] == 100.0
    assert (values["rotbench"] == 100.0).all() and (values["bfcl"] == 100.0).all()
    asked = gold_policy.asked
    assert asked > 0

    state = json.loads((out / "suite.json").read_text())
    first_runs = {r["benchmark"]: r["new_outputs"] for r in state["runs"]}
    assert first_runs == {"toolhop": 6, "rotbench": 4, "bfcl": 8}

    again = suite.run_suite(gold_policy, out, settings, show_progress=False)
    assert gold_policy.asked == asked  # nothing asked again
    assert list(again["value"]) == list(suite.read_summary(out)["value"]) == list(df["value"])
    assert [r["new_outputs"] for r in json.loads((out / "suite.json").read_text())["runs"][3:]] == [0, 0, 0]

    bigger = suite.run_suite(
        gold_policy, out, suite.SuiteSettings(model="gold", limit_per_category=3, max_turns=5), show_progress=False
    )
    _check_summary(bigger, 3)
    runs = json.loads((out / "suite.json").read_text())["runs"][6:]
    assert [r["new_outputs"] for r in runs] == [3, 2, 4]  # only the third item of each category
    assert len((out / "bfcl" / "outputs.jsonl").read_text().splitlines()) == 12

    summary = json.loads((out / "summary.json").read_text())
    assert summary["subsample"] is True and summary["settings"]["limit_per_category"] == 3
    assert summary["machine"]["cpu_count"] and len(summary["rows"]) == len(bigger)
    md = (out / "summary.md").read_text()
    assert "SUBSAMPLE" in md and "first 3 of 105" in md and "## bfcl" in md


def test_rerun_with_other_settings_is_refused(gold_policy, tmp_path):
    settings = suite.SuiteSettings(model="gold", limit_per_category=1, max_turns=5)
    suite.run_suite(gold_policy, tmp_path, settings, benchmarks=["rotbench"], show_progress=False)
    other = suite.SuiteSettings(model="gold", limit_per_category=1, max_turns=5, max_new_tokens=64)
    assert suite.conflict(tmp_path, settings) is None and suite.conflict(tmp_path / "new", other) is None
    assert "max_new_tokens=512, not 64" in suite.conflict(tmp_path, other)
    with pytest.raises(ValueError, match=r"suite\.json.*max_new_tokens=512, not 64"):
        suite.run_suite(gold_policy, tmp_path, other, show_progress=False)
    with pytest.raises(ValueError, match="unknown benchmark"):
        suite.SuiteSettings(data={"taubench": "x"})
    with pytest.raises(FileNotFoundError, match="not a suite folder"):
        suite.summarize(tmp_path / "nothing")


def test_full_sets_are_not_marked_as_subsamples(tmp_path):
    items = toolhop.load()

    def direct_answer(convs, tools):
        return [
            f"<answer>{next(i['answer'] for i in items if i['question'] in c[0]['content'])}</answer>" for c in convs
        ]

    df = suite.run_suite(
        direct_answer, tmp_path, suite.SuiteSettings(model="knows"), benchmarks=["toolhop"], show_progress=False
    )
    direct = df.set_index("category").loc["direct"]
    assert direct["n"] == direct["available"] == 10 and not direct["subsample"] and direct["selection"] == "all 10"
    assert direct["value"] == 100.0
    assert "Full sets" in (tmp_path / "summary.md").read_text()


def test_command_line_on_a_tiny_model(tmp_path, capsys):
    from ftrl_lab.agent.models import tiny_model
    from ftrl_lab.benchmarks.__main__ import main

    try:
        bfcl.data_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model, tok = tiny_model()
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "run"
    argv = [
        "suite",
        "--model",
        str(tmp_path / "tiny"),
        "--out",
        str(out),
        "--limit-per-category",
        "1",
        "--max-new-tokens",
        "4",
        "--max-turns",
        "2",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "SUBSAMPLE" in capsys.readouterr().out
    df = suite.read_summary(out)
    _check_summary(df, 1)
    state = json.loads((out / "suite.json").read_text())
    assert state["model"]["model_path"] == str(tmp_path / "tiny") and state["model"]["backend"] == "local"
    assert (df["max_new_tokens"] == 4).all() and (df["temperature"] == 0.0).all()
    lines = {b: (out / b / "outputs.jsonl").read_text() for b in suite.SUITE}
    assert main(argv) == 0
    assert {b: (out / b / "outputs.jsonl").read_text() for b in suite.SUITE} == lines
    with pytest.raises(SystemExit, match="max_turns=2, not 9"):
        main(argv[:-5] + ["--no-progress"])
