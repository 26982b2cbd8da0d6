"""FTRL parity: one concrete input per difference class between our lenient rules and FTRL's own
reward (``Code/verl/utils/reward_score/tool.py``) and episode metrics (``evaluation_self.py``).
Expected values are FTRL's outcomes, worked out from its code by hand; ``lenient`` keeps the
workbench's earlier values."""

import json

import pytest

from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.records import EnvRecord
from ftrl_lab.core.reward import RewardConfig, score_response, spray_response, spray_scores

CODES = {"lookup": "def lookup(q):\n    return 'found ' + str(q)\n"}
UNSOLVED = {"lookup": ["Paris"]}


def reward(response, rules, solve_rate=0.0, unsolved=UNSOLVED, echo_guard=False):
    config = RewardConfig(rules=rules, echo_guard=echo_guard)
    return score_response(response, CODES, unsolved, solve_rate, "Lyon", config, inprocess_executor())


def block(obj) -> str:
    return "<tool_call>\n" + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n</tool_call>"


GOLD = block({"name": "lookup", "arguments": {"q": "Paris"}})  # solves "Paris": found Paris

# (response, solve_rate, official reward, lenient reward)
CASES = {
    "only </s>: content, not empty": ("</s>", 0.0, 0.0, -0.5),
    "only </s> when already solved": ("</s>", 1.0, 0.5, -0.5),
    "only <|eot_id|>": ("<|eot_id|>", 0.0, 0.0, -0.5),
    "only <|im_end|> is stripped (once)": ("<|im_end|>", 0.0, -0.5, -0.5),
    "<|endoftext|> after <|im_end|> stays": ("<|endoftext|><|im_end|><|endoftext|>", 0.0, 0.0, -0.5),
    "numeric name is a call": (block({"name": 7, "arguments": {}}), 0.0, 0.0, -0.3),
    "'parameters' key is no call": (block({"name": "lookup", "parameters": {"q": "Paris"}}), 0.0, -0.3, 1.0),
    "arguments '[1]' alone": (block({"name": "lookup", "arguments": "[1]"}), 0.0, 0.0, -0.3),
    "gold + arguments '[1]' counted in p": (GOLD + block({"name": "lookup", "arguments": "[1]"}), 0.0, 2 / 3, 1.0),
    "gold + arguments 'null' counted in p": (GOLD + block({"name": "lookup", "arguments": "null"}), 0.0, 2 / 3, 1.0),
    "arguments null (not a string) dropped": (GOLD + block({"name": "lookup", "arguments": None}), 0.0, 1.0, 1.0),
    "double opening tag is one call": ("<tool_call>" + GOLD, 0.0, 1.0, -0.3),
    "list name: FTRL's reward crashes": (block({"name": [1], "arguments": {}}), 0.0, 0.0, -0.3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reward_official_and_lenient(case):
    response, solve_rate, official, lenient = CASES[case]
    assert reward(response, "official", solve_rate).reward == pytest.approx(official)
    assert reward(response, "lenient", solve_rate).reward == pytest.approx(lenient)


def test_crash_is_recorded_as_such():
    r = reward(block({"name": {"a": 1}, "arguments": {}}), "official")
    assert (r.branch, r.p, r.rules) == ("crash", 1, "official")
    assert r.calls[0].output == "an error occured when call {'a': 1}: unhashable type: 'dict'"


def test_numeric_name_feedback_is_ftrls_key_error():
    r = reward(block({"name": 7, "arguments": {}}), "official")
    assert (r.branch, r.p, r.q) == ("calls", 1, 0) and r.calls[0].output == "an error occured when call 7: 7"


def test_default_rules_are_official():
    assert RewardConfig().rules == "official" and RewardConfig().echo_guard is False
    with pytest.raises(ValueError, match="rule set"):
        RewardConfig(rules="strict")


def record() -> EnvRecord:
    return EnvRecord(
        messages=[{"role": "user", "content": "Question: where?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
        codes=CODES,
        unsolved_set={"lookup": ["Paris", "Rome"]},
        answer="Paris",
    )


# --- echo guard ---------------------------------------------------------------------------------
ECHO_CODES = {"lookup": "def lookup(q):\n    return 'no match for ' + q\n"}


def test_echo_guard_refuses_argument_echoes_and_error_messages():
    echo = block({"name": "lookup", "arguments": {"q": "maybe Paris"}})
    unknown = block({"name": "lookup", "arguments": {"Paris": 1}})  # TypeError repeats the name
    for response in (echo, unknown):
        for rules in ("official", "lenient"):
            off = score_response(
                response, ECHO_CODES, UNSOLVED, 0.0, None, RewardConfig(rules=rules), inprocess_executor()
            )
            on = score_response(
                response,
                ECHO_CODES,
                UNSOLVED,
                0.0,
                None,
                RewardConfig(rules=rules, echo_guard=True),
                inprocess_executor(),
            )
            assert (off.q, off.echoes) == (1, 1)  # FTRL counts the echo as a solve
            assert (on.q, on.echoes, on.reward) == (0, 1, 0.0)


def test_echo_guard_keeps_real_solves():
    r = reward(
        block({"name": "lookup", "arguments": {"q": "France"}}),
        "official",
        unsolved={"lookup": ["found France"]},
        echo_guard=True,
    )
    # the output "found France" contains the gold answer, the arguments ("q", "France") do not
    assert (r.q, r.echoes) == (1, 0)


def test_spray_solves_nothing_under_the_guard():
    rec = record()
    rec.codes = ECHO_CODES
    text = spray_response(rec, candidates=["Paris", "Rome"])
    assert text.count("<tool_call>") == 1 and '"Paris Rome": "Paris Rome"' in text
    table = spray_scores([rec], inprocess_executor(), candidates=["Paris", "Rome"]).set_index(["rules", "echo_guard"])
    assert table.loc[("official", False), "gold solved"] == 1  # one call solves at most one answer
    assert table.loc[("official", True), "gold solved"] == 0
    assert table.loc[("lenient", True), "echo fires"] == 1
