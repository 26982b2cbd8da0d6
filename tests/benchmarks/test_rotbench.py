"""RoTBench loader and TS/PI/CF checker: gold answers score 100%, corruptions score 0."""

import json

import pytest

from ftrl_lab.benchmarks import rotbench as rb
from ftrl_lab.core.records import RecordError


@pytest.fixture(scope="module")
def items():
    if not rb.default_dir().exists():
        pytest.skip(f"{rb.default_dir()} not found")
    return rb.load()


def _react(action, args, thought="x"):
    return f"Thought: {thought}\nAction: {action}\nAction Input: {json.dumps(args)}"


def _answer(item, k=0):
    return rb.parse_react(item["answers"][k])


def test_load_levels_and_unique_ids(items):
    counts = {lv: sum(it["category"] == lv for it in items) for lv in rb.LEVELS}
    assert counts["clean"] == 105 and counts["union"] == 105
    assert all(n > 0 for n in counts.values())
    assert len({it["id"] for it in items}) == len(items)
    assert all(it["messages"][0]["role"] == "system" and it["messages"][1]["role"] == "user" for it in items)
    assert all(it["tools"][-1] and len(it["tools"]) >= 2 for it in items)


@pytest.mark.parametrize("rules", ["ftrl", "lenient"])
@pytest.mark.parametrize("which", [0, -1])
def test_gold_answers_score_100(items, rules, which):
    outputs = [{"id": it["id"], "output": it["answers"][which]} for it in items]
    df = rb.table(rb.score(items, outputs, rules))
    assert (df[["TS", "PI", "CF"]] == 100.0).all().all()
    assert df.loc["overall", "n"] == len(items)


def _content_items(items):
    """Items whose first answer is an ordinary tool with a value we can corrupt."""
    out = []
    for it in items:
        action, args = _answer(it)
        if action not in it["tools"][-2:] and any(v != "None" for v in args.values()):
            out.append(it)
    return out


def test_corruptions_score_wrong(items):
    cases = _content_items(items)
    assert len(cases) > 300
    for it in cases:
        action, args = _answer(it)
        key = next(k for k, v in args.items() if v != "None")
        others = {rb.parse_react(a)[0] for a in it["answers"]}
        wrong_tool = next(t for t in it["tools"] if t not in others and t != "finish")
        s = rb.score_output(it, _react(wrong_tool, args), "lenient")
        assert (s["TS"], s["PI"], s["CF"]) == (0, 0, 0), it["id"]
        missing = {k: v for k, v in args.items() if k != key}
        s = rb.score_output(it, _react(action, missing), "lenient")
        if not any(rb.parse_react(a)[0] == action and set(rb.parse_react(a)[1]) == set(missing) for a in it["answers"]):
            assert (s["TS"], s["PI"], s["CF"]) == (1, 0, 0), it["id"]
        for bad in ({**args, key: str(args[key]) + " (changed)"}, {**args, key: 12345}):
            s = rb.score_output(it, _react(action, bad), "lenient")
            if len(it["answers"]) == 1:
                assert (s["TS"], s["PI"], s["CF"]) == (1, 1, 0), (it["id"], bad)


def _item(answers, tools=("search", "ask_to_user", "finish")):
    return {"id": "t", "category": "clean", "scenario": "TG", "tools": list(tools), "answers": answers}


def test_none_values_are_free_and_rules_differ():
    it = _item([_react("search", {"q": "cats", "limit": "None"})])
    s = rb.score_output(it, _react("search", {"q": "cats", "limit": "20"}), rules="lenient")
    assert (s["TS"], s["PI"], s["CF"]) == (1, 1, 1)
    s = rb.score_output(it, _react("search", {"q": "cats", "limit": "20"}), rules="ftrl")
    assert (s["TS"], s["PI"], s["CF"]) == (1, 1, 0)
    # FTRL compares the values as a multiset, ignoring which key holds which
    it = _item([_react("search", {"a": "x", "b": "y"})])
    assert rb.score_output(it, _react("search", {"a": "y", "b": "x"}), rules="ftrl")["CF"] == 1
    assert rb.score_output(it, _react("search", {"a": "y", "b": "x"}), rules="lenient")["CF"] == 0


def test_finish_and_ask_to_user_content_not_checked():
    tools = ("search", "ask_to_user", "fnish")  # noise renamed the last tool
    it = _item([_react("fnish", {"answer": "Paris"})], tools)
    for rules in ("official", "lenient"):
        assert rb.score_output(it, _react("fnish", {"answer": "something else"}), rules)["CF"] == 1
        assert rb.score_output(it, _react("finish", {"answer": "x"}), rules)["CF"] == 1  # "finish" names the last tool
        q = _item([_react("ask_to_user", {"question": "Which city?"})], tools)
        assert rb.score_output(q, _react("ask_to_user", {"question": "Where?"}), rules)["CF"] == 1
    assert rb.score_output(it, _react("finish", {"answer": "x"}), rules="ftrl")["TS"] == 0
    assert rb.score_output(it, _react("fnish", {"answer": "something else"}), rules="ftrl")["CF"] == 0


def test_parse_errors_and_empty_input():
    it = _item([_react("search", {})])
    assert rb.score_output(it, _react("search", {}))["CF"] == 1  # FTRL (default) accepts {}
    assert rb.score_output(it, _react("search", {}), "official")["CF"] == 0  # evaluate.py does not
    for text in [
        "no action here",
        'Action: search\nAction Input: {"q": 1} trailing',
        "Action: search\nAction Input: [1, 2]",
        None,
    ]:
        for rules in rb.RULES:
            s = rb.score_output(it, text, rules)
            assert s["error"], (rules, text)
            # evaluate.py's ts_eval passes a non-object input with the right action (pi_eval crashes)
            assert s["TS"] == (rules == "official" and text is not None and "[1, 2]" in text), (rules, text)
    assert rb.score_output(it, {"role": "assistant", "content": _react("search", {})})["CF"] == 1


def test_run_is_resumable(items, tmp_path):
    subset = [it for it in items if it["category"] == "clean"][:5]
    calls = []

    def policy(convs, tools):
        calls.append(len(convs))
        assert all(t is None for t in tools)
        return [next(it for it in subset if it["messages"] == c)["answers"][0] for c in convs]

    out = tmp_path / "rot.jsonl"
    rows = rb.run(policy, subset, out, batch_size=2, show_progress=False)
    assert len(rows) == 5 and sum(calls) == 5
    rows2 = rb.run(policy, subset, out, batch_size=2, show_progress=False)
    assert sum(calls) == 5 and rows2 == rows
    assert (rb.table(rb.score(subset, rows))[["CF"]] == 100).all().all()
    missing = rb.score(subset, rows[:3])
    assert [r["error"] for r in missing[3:]] == ["no output", "no output"]


def test_bad_file_names_file_and_field(tmp_path):
    (tmp_path / "clean.json").write_text(
        json.dumps([{"conversations": [{"from": "user", "value": "x"}], "scenario": "TG"}])
    )
    with pytest.raises(RecordError, match=r"clean\.json row 0: field 'conversations'"):
        rb.load(tmp_path, levels=["clean"])
    with pytest.raises(ValueError, match="unknown RoTBench level"):
        rb.load(tmp_path, levels=["loud"])


def test_rollout_policies_are_accepted(items):
    from ftrl_lab.agent.policies import ScriptedPolicy

    subset = items[:3]
    answers = {it["messages"][1]["content"]: it["answers"][0] for it in subset}
    policy = ScriptedPolicy(lambda ep: answers[ep.messages[1]["content"]])
    rows = rb.run(policy, subset, None, show_progress=False)
    assert [r["CF"] for r in rb.score(subset, rows)] == [1.0, 1.0, 1.0]
    assert policy.released == 3  # one-off questions are released at once
