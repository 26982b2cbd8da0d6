"""Trajectory-prefix records (FTRL's sampler semantics) and resumable collection."""

import json

import pytest
from helpers import call

from ftrl_lab.agent.policies import ScriptedPolicy
from ftrl_lab.agent.rollout import episode_key, rollout
from ftrl_lab.agent.trajectories import collect, finished_keys, prefix_records, sidecar_path
from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.records import FIELDS, EnvRecord, load_records, validate_record


def script(toy):
    return {
        toy[0].question: [call("capital_lookup", country="France"), "Paris."],
        toy[1].question: [
            call("capital_lookup", country="Japan") + call("city_population", city="Paris"),
            call("city_population", city="Tokyo"),
            "14 million",
        ],
        toy[2].question: ["No idea."],
    }


def test_prefix_records_every_field(toy):
    ep = rollout(toy[1:2], ScriptedPolicy(script(toy)), executor=inprocess_executor(), progress=False)[0]
    recs = prefix_records(ep)
    assert len(recs) == 1 + 2  # the original + one per tool-call turn (the last turn made none)
    original = toy[1]
    assert recs[0].to_row() == original.to_row()
    m = ep.messages
    # after turn 1: user, assistant (2 calls), 2 tool messages; Tokyo solved, 14 million left
    assert recs[1].messages == m[:4] and [x["role"] for x in m[:4]] == ["user", "assistant", "tool", "tool"]
    assert recs[1].unsolved_set == {"capital_lookup": [], "city_population": ["14 million"]}
    assert recs[1].solve_rate == 0.5
    # after turn 2: + assistant + tool; all solved
    assert recs[2].messages == m[:6] and m[5]["role"] == "tool" and "14 million" in m[5]["content"]
    assert recs[2].unsolved_set == {"capital_lookup": [], "city_population": []}
    assert recs[2].solve_rate == 1.0
    for r in recs[1:]:
        assert (r.tools, r.codes, r.data_source, r.split, r.answer, r.extra) == (
            original.tools,
            original.codes,
            original.data_source,
            original.split,
            original.answer,
            original.extra,
        )
        assert validate_record(r) == []
        assert set(r.to_row()) == set(FIELDS)
        assert r.messages[-1]["role"] == "tool"
        assert EnvRecord.from_row(json.loads(json.dumps(r.to_row()))).to_row() == r.to_row()
    # prefix records are copies: changing the episode later does not change them
    m[1]["content"] = "changed"
    assert recs[1].messages[1]["content"] == ""


def test_no_call_episode_gives_only_the_original(toy):
    ep = rollout(toy[2:], ScriptedPolicy(script(toy)), executor=inprocess_executor(), progress=False)[0]
    assert [r.to_row() for r in prefix_records(ep)] == [toy[2].to_row()]


def test_collect_writes_and_skips_finished(toy, tmp_path):
    out = tmp_path / "traj.jsonl"
    stats = collect(
        list(toy) + [toy[0]], ScriptedPolicy(script(toy)), out, executor=inprocess_executor(), progress=False
    )
    assert (stats.environments, stats.collected, stats.skipped, stats.records_written) == (3, 3, 0, 2 + 3 + 1)
    rows = load_records(out)
    assert len(rows) == 6 and sum(r.solve_rate == 0 for r in rows) == 3
    summaries = [json.loads(line) for line in sidecar_path(out).read_text().splitlines()]
    assert {s["key"] for s in summaries} == {episode_key(r) for r in toy}

    class Never(ScriptedPolicy):
        def act(self, episodes):
            raise AssertionError("finished environments must not be played again")

    again = collect(toy, Never([]), out, executor=inprocess_executor(), progress=False)
    assert (again.collected, again.skipped) == (0, 3) and len(load_records(out)) == 6
    with pytest.raises(ValueError, match="JSONL"):
        collect(toy, Never([]), tmp_path / "x.parquet")


def test_interrupted_collection_resumes_without_loss_or_duplicates(toy, tmp_path):
    out = tmp_path / "traj.jsonl"
    with pytest.raises(RuntimeError, match="simulated failure"):
        collect(
            toy,
            ScriptedPolicy(script(toy), fail_after=1),
            out,
            max_active=1,
            executor=inprocess_executor(),
            progress=False,
        )
    assert finished_keys(out) == {episode_key(toy[0])} and len(load_records(out)) == 2
    # a crash mid-write: records of an unfinished environment and a cut-off line
    partial = prefix_records(
        rollout(toy[1:2], ScriptedPolicy(script(toy)), executor=inprocess_executor(), progress=False)[0]
    )
    with open(out, "a") as f:
        f.write(json.dumps(partial[0].to_row()) + "\n" + json.dumps(partial[1].to_row())[:50])
    stats = collect(toy, ScriptedPolicy(script(toy)), out, executor=inprocess_executor(), progress=False)
    assert (stats.skipped, stats.collected) == (1, 2)
    rows = load_records(out)
    assert len(rows) == 6
    keys = [episode_key(r) for r in rows]
    assert keys.count(episode_key(toy[0])) == 2 and keys.count(episode_key(toy[1])) == 3
