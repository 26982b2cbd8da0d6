"""The validation gate: every generated environment passes; broken ones are rejected with reasons."""

import json
import random

import pytest

from ftrl_lab.core.records import code_errors, validate_record
from ftrl_lab.envgen.backend import ProceduralBackend
from ftrl_lab.envgen.decompose import SCENARIOS
from ftrl_lab.envgen.validate import (
    GateReport,
    GateResult,
    env_meta,
    judge,
    leaks,
    normalise_question,
    prepare,
    validate_batch,
    validate_records,
)

TOP = {"functional": 3, "parameters": 3, "types": 3, "toolset": 3}
BACKEND = ProceduralBackend(0)


@pytest.fixture(scope="module")
def records():
    """240 environments, 60 per scenario, at the top complexity level."""
    return [BACKEND.generate(SCENARIOS[i % 4], TOP, random.Random(f"gate:{i}")) for i in range(240)]


def test_every_generated_environment_passes_the_gate(records):
    results = validate_batch(records)
    failed = [(r.question, res.reasons[:2]) for r, res in zip(records, results) if not res.ok]
    assert not failed, failed[:3]


def _one(scenario="multi_hop", seed=1):
    return BACKEND.generate(scenario, TOP, random.Random(f"tamper:{seed}"))


def _set_meta(rec, meta):
    rec.extra["env_meta"] = json.dumps(meta)


def _reasons(rec):
    return {r for r, _ in validate_batch([rec])[0].reasons}


def test_wrong_gold_answer_is_not_solved():
    rec = _one()
    meta = env_meta(rec)
    sub = meta["sub_questions"][-1]
    tool = next(c["tool"] for c in meta["gold_plan"] if c["sub_id"] == sub["id"])
    i = rec.unsolved_set[tool].index(sub["answer"])
    sub["answer"] = rec.unsolved_set[tool][i] = "Quorvantide Annex"
    _set_meta(rec, meta)
    assert "gold_not_solved" in _reasons(rec)


def test_raising_code_fails_the_probes():
    rec = _one("single_hop")
    name = next(iter(rec.unsolved_set))
    key = rec.tools[[t["function"]["name"] for t in rec.tools].index(name)]["function"]["parameters"]["required"]
    args = ", ".join(key)
    answer = rec.unsolved_set[name][0]
    rec.codes[name] = f"def {name}({args}):\n    return {{'answer': {answer!r}}}\n"
    assert "probe_raised" in _reasons(rec)  # a missing argument raises TypeError instead of an error message


def test_echoing_code_is_caught():
    rec = _one("single_hop", 2)
    name = next(iter(rec.unsolved_set))
    # a tool that repeats what it could not find: the "echo" call (key = the answer) solves the answer
    rec.codes[name] = (
        f"def {name}(*args, **kwargs):\n    values = list(kwargs.values())\n"
        f"    if not values:\n        return 'Error: missing arguments'\n"
        f"    return 'Error: nothing found for ' + ' '.join(map(str, values))\n"
    )
    reasons = _reasons(rec)
    assert "echo_solves_gold" in reasons and "gold_not_solved" in reasons


def test_leaks_are_rejected():
    rec = _one("multi_hop", 3)
    meta = env_meta(rec)
    rec.messages[0]["content"] += f" (Hint: {meta['sub_questions'][0]['answer']})"
    assert _reasons(rec) == {"answer_leak"}
    rec2 = _one("single_hop", 4)
    rec2.tools[0]["function"]["description"] += " For example " + rec2.answer + "."
    assert "answer_leak" in _reasons(rec2)


def test_invalid_record_and_inconsistent_plan():
    rec = _one("single_hop", 5)
    del rec.codes[rec.tools[0]["function"]["name"]]
    assert _reasons(rec) == {"invalid_record"}
    rec2 = _one("multi_hop", 6)
    meta = env_meta(rec2)
    meta["gold_plan"][1]["arguments"] = {k: "Someone Else" for k in meta["gold_plan"][1]["arguments"]}
    _set_meta(rec2, meta)
    assert "plan_inconsistent" in _reasons(rec2)
    rec3 = _one("single_hop", 7)
    rec3.extra.pop("env_meta")
    assert _reasons(rec3) == {"plan_inconsistent"}


def test_decoy_that_holds_the_gold_is_caught():
    rec = _one("single_hop", 8)
    meta = env_meta(rec)
    call = meta["gold_plan"][0]
    subject = meta["sub_questions"][0]["subject"]
    meta["decoys"][call["tool"]] = [subject]  # "decoy" = the gold row itself
    _set_meta(rec, meta)
    assert "decoy_solves_gold" in _reasons(rec)


def test_leaks_function():
    assert leaks("1,871", "It was founded in 1871.")
    assert not leaks("187", "It was founded in 1871.")
    assert leaks("Ryla Shemar", "who is ryla shemar?")
    assert not leaks("Tarvik", "Tarvikton is a city")
    assert leaks("2,432, Ryla Shemar", "Ryla Shemar is here")


def test_report_counts_duplicates_and_round_trips(records):
    dup = records[0].copy()
    report = validate_records([records[0], dup, records[1]])
    assert report.checked == 3 and report.passed == 2
    assert report.rejections["duplicate_question"] == 1
    again = GateReport.from_dict(json.loads(json.dumps(report.to_dict())))
    again.merge(report)
    assert again.checked == 6 and again.rejections["duplicate_question"] == 2
    assert normalise_question("  What  IS\nthis? ") == "what is this?"
    r = GateReport()
    r.add(GateResult(False, [("x", "detail")]))
    assert r.pass_rate == 0.0 and r.examples == {"x": ["detail"]}


def test_executor_mismatch_and_bad_probe_are_errors(records):
    prepared = prepare(records[:2])
    with pytest.raises(RuntimeError, match="different number"):
        judge(records[:2], prepared, [[]])
    with pytest.raises(ValueError, match="unknown probe"):
        prepare(records[:1], probes=("teleport",))


def test_probe_scope_gold_skips_distractors(records):
    few = records[:8]
    all_calls = prepare(few).items
    gold_calls = prepare(few, probe_tools="gold").items
    assert sum(len(c) for _, c in gold_calls) < sum(len(c) for _, c in all_calls)
    for rec, (_, calls) in zip(few, gold_calls):
        assert {c["function"]["name"] for c in calls} <= set(rec.unsolved_set)
    assert all(r.ok for r in validate_batch(few, probe_tools="gold"))
    with pytest.raises(ValueError, match="probe_tools"):
        prepare(few, probe_tools="some")


def _broken(rec, name, how):
    """The code of tool `name`, broken: a syntax error, or `name` never defined (also when a
    ``def name(`` line hides in a string, so only running or parsing it tells)."""
    if how == "syntax":
        return rec.codes[name] + "\ndef oops(:\n    pass\n"
    if how == "renamed":
        return rec.codes[name].replace(f"def {name}(", f"def {name}_v2(", 1)
    return f'NOTE = """\ndef {name}(**kwargs):\n"""\ndef other(**kwargs):\n    return "Error: none"\n'


@pytest.mark.parametrize("how", ["syntax", "renamed", "hidden"])
@pytest.mark.parametrize("role", ["gold", "distractor"])
@pytest.mark.parametrize("probe_tools", ["all", "gold"])
def test_broken_code_is_an_invalid_record_as_validate_record_says(how, role, probe_tools):
    rec = _one("parallel_multi_hop", 10)
    name = next(
        t["function"]["name"] for t in rec.tools if (t["function"]["name"] in rec.unsolved_set) == (role == "gold")
    )
    rec.codes[name] = _broken(rec, name, how)
    expected = [("invalid_record", f"{f}: {m}") for f, m in validate_record(rec)]
    assert expected and expected[0][1].startswith(f"codes[{name}]: ")
    assert validate_batch([rec], probe_tools=probe_tools)[0].reasons == expected


def test_codes_run_in_the_sandbox_are_not_parsed_again(records, monkeypatch):
    import ftrl_lab.envgen.validate as gate

    parsed = []
    monkeypatch.setattr(gate, "code_errors", lambda name, src: parsed.append(name) or code_errors(name, src))
    few = records[:8]
    assert all(r.ok for r in validate_batch(few))
    assert parsed == []  # every code is compiled and run by the sandbox
    assert all(r.ok for r in validate_batch(few, probe_tools="gold"))
    assert sorted(parsed) == sorted(n for r in few for n in r.codes if n not in r.unsolved_set)
