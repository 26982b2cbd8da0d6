"""FTRL parity of the episode metrics: evaluation_self.py counts every call its parse_qwen keeps
(one concrete transcript per difference class, FTRL's outcome worked out by hand, both rule sets)."""

import json

import pytest

from ftrl_lab.agent.policies import ScriptedPolicy
from ftrl_lab.agent.rollout import rollout
from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.records import EnvRecord

CODES = {"lookup": "def lookup(q):\n    return 'found ' + str(q)\n"}


def block(obj) -> str:
    return "<tool_call>\n" + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n</tool_call>"


GOLD = block({"name": "lookup", "arguments": {"q": "Paris"}})


# --- episode metrics: evaluation_self.py counts every parsed call ------------------------------
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


@pytest.mark.parametrize(
    "turns, official, lenient",
    [
        # a 'parameters' call is no call for FTRL: the episode ends after turn 1 with nothing solved
        ([block({"name": "lookup", "parameters": {"q": "Paris"}}), GOLD], (1.0, 0.0, 0.0), (0.5, 0.5, 0.5)),
        # a call with arguments "[1]" is counted in the calls
        ([GOLD + block({"name": "lookup", "arguments": "[1]"})], (0.5, 0.5, 0.5), (1.0, 0.5, 2 / 3)),
    ],
)
def test_episode_metrics_official_and_lenient(turns, official, lenient):
    for rules, want in (("official", official), ("lenient", lenient)):
        ep = rollout([record()], ScriptedPolicy(turns), executor=inprocess_executor(), rules=rules, progress=False)[0]
        got = ep.metrics
        assert (got["solve_precision"], got["solve_rate"], got["solve_f1"]) == pytest.approx(want), rules
        assert ep.summary()["rules"] == rules


def test_episode_with_list_name_is_an_official_crash():
    ep = rollout(
        [record()],
        ScriptedPolicy([block({"name": [1], "arguments": {}})]),
        executor=inprocess_executor(),
        progress=False,
    )[0]
    assert ep.official_crash and ep.summary()["official_crash"]
