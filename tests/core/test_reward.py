import json

import pytest

from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.reward import (
    RewardConfig,
    answer_verify,
    episode_metrics,
    make_reward_func,
    score_response,
    update_unsolved,
    variant_value,
)


def echo_executor(items):
    """Each tool 'returns' its arguments: a call solves an answer iff it passes it."""
    return [[f"{c['function']['name']} -> {c['function']['arguments']}" for c in calls] for _, calls in items]


def call(name, value):
    return f'<tool_call>{{"name": "{name}", "arguments": {{"q": "{value}"}}}}</tool_call>'


CODES = {"a": "def a(q): return q", "b": "def b(q): return q"}


def score(response, unsolved, variant="solve_f1", solve_rate=0.0, answer="Paris", **pen):
    return score_response(
        response, CODES, unsolved, solve_rate, answer, RewardConfig(variant=variant, **pen), echo_executor
    )


# --- answer_verify: FTRL's exact rule ---------------------------------------------------------
@pytest.mark.parametrize(
    "predict, golden, ok",
    [
        ("The capital is PARIS.", "Paris", True),
        ("1,234,567 people", "1234567", True),  # commas removed on both sides
        ("born 1990 in Lyon", "Lyon, 1990", True),  # each ", " part must occur
        ("born in Lyon", "Lyon, 1990", False),
        ({"city": "Lyon", "year": 1990}, "lyon, 1990", True),  # dict -> json.dumps
        (["x", "Y"], "y", True),
        (12345, "234", True),
        ("Lyon,1990", "Lyon, 1990", True),  # "Lyon1990" contains both parts
        ("", "x", False),
    ],
)
def test_answer_verify(predict, golden, ok):
    assert answer_verify(predict, golden) is ok


def test_update_unsolved_each_answer_once_first_match_own_tool_only():
    unsolved = {"a": ["x1", "x2"], "b": ["y"]}
    calls = [{"function": {"name": n}} for n in ("a", "a", "a", "b", "c")]
    solved = update_unsolved(unsolved, calls, ["x1 x2", "x1", "x2", "x1", "y"])
    assert solved == ["x1", None, "x2", None, None]
    assert unsolved == {"a": [], "b": ["y"]}


# --- every branch of every variant, hand-computed ---------------------------------------------
# Response: 3 calls; a solves "x" (q=1), a repeats "x" (already solved), b misses -> p=3, q=1.
THREE = call("a", "x") + call("a", "x") + call("b", "nope")


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("solve_f1", 2 * 1 / (3 + 1)),  # 0.5
        ("solve_precision", 1 / 3),
        ("solve_rate", 1.0),
        ("solve_pr", 1 * 1 / 3),
    ],
)
def test_call_branch_values(variant, expected):
    r = score(THREE, {"a": ["x"], "b": ["y"]}, variant)
    assert (r.branch, r.p, r.q, r.t) == ("calls", 3, 1, 2)
    assert r.reward == pytest.approx(expected)
    assert [c.solved for c in r.calls] == ["x", None, None]


@pytest.mark.parametrize(
    "variant, expected", [("solve_f1", 2 * 2 / 3), ("solve_precision", 1.0), ("solve_rate", 2.0), ("solve_pr", 2.0)]
)
def test_call_branch_all_solved(variant, expected):
    r = score(call("a", "x") + call("b", "y"), {"a": ["x"], "b": ["y"]}, variant)
    assert (r.p, r.q) == (2, 2) and r.reward == pytest.approx(expected)


@pytest.mark.parametrize("variant", ["solve_f1", "solve_precision", "solve_rate", "solve_pr"])
def test_call_branch_nothing_solved_is_zero(variant):
    assert score(call("a", "no"), {"a": ["x"]}, variant).reward == 0.0


@pytest.mark.parametrize("variant", ["solve_f1", "solve_precision", "solve_rate", "solve_pr"])
@pytest.mark.parametrize(
    "response, unsolved, solve_rate, expected, branch",
    [
        ("", {"a": ["x"]}, 0.0, -0.5, "empty"),
        ("<|im_end|>", {"a": ["x"]}, 0.0, -0.5, "empty"),
        ("<tool_call>{broken</tool_call>", {"a": ["x"]}, 0.0, -0.3, "malformed"),
        ("I think </tool_call>", {"a": ["x"]}, 0.0, -0.3, "malformed"),
        ("<tool_parsed_response>", {"a": ["x"]}, 0.0, -0.3, "malformed"),
        ("It is paris.", {"a": ["x"], "b": ["y", "z"]}, 0.0, 1 / (1 + 3), "answer"),
        ("It is paris.", {}, 1.0, 1.0, "answer"),  # answer beats the solved bonus
        ("Done.", {}, 1.0, 0.5, "solved"),
        ("Done.", {"a": ["x"]}, 0.5, 0.0, "none"),
    ],
)
def test_no_call_branches(variant, response, unsolved, solve_rate, expected, branch):
    r = score(response, unsolved, variant, solve_rate=solve_rate)
    assert r.branch == branch and r.reward == pytest.approx(expected) and r.p == 0


def test_penalties_are_parameters():
    assert score("", {"a": ["x"]}, empty_penalty=-2.0).reward == -2.0
    assert score("<tool_call>x", {"a": ["x"]}, malformed_penalty=-1.0).reward == -1.0
    assert score("paris", {"a": ["x"]}, answer_reward=3.0).reward == pytest.approx(3.0 / 2)
    assert score("ok", {}, solve_rate=1.0, solved_bonus=0.25).reward == 0.25


def test_unsolved_set_not_mutated():
    unsolved = {"a": ["x"]}
    score(call("a", "x"), unsolved)
    assert unsolved == {"a": ["x"]}


def test_variant_value_and_config_errors():
    with pytest.raises(ValueError, match="unknown reward variant"):
        RewardConfig(variant="nope")
    with pytest.raises(ValueError):
        variant_value("solve_f1", 0, 0)


def test_episode_metrics():
    assert episode_metrics(solved=2, calls=4, total=5) == pytest.approx(
        {"solve_precision": 0.5, "solve_rate": 0.4, "solve_f1": 4 / 9}
    )
    assert episode_metrics(0, 0, 3) == {"solve_precision": 1.0, "solve_rate": 0.0, "solve_f1": 0.0}
    with pytest.raises(ValueError):
        episode_metrics(0, 0, 0)


def test_trl_reward_func_batches_and_reads_columns():
    seen = []

    def counting_executor(items):
        seen.append([len(calls) for _, calls in items])
        return echo_executor(items)

    f = make_reward_func("solve_f1", executor=counting_executor)
    completions = [
        [{"role": "assistant", "content": call("a", "x")}],
        [{"role": "assistant", "content": ""}],
        [{"role": "assistant", "content": call("a", "x") + call("b", "y")}],
    ]
    cols = dict(
        codes=[json.dumps(CODES)] * 3,
        unsolved_set=[json.dumps({"a": ["x"], "b": ["y"]})] * 3,
        solve_rate=[0.0] * 3,
        answer=["Paris"] * 3,
        split=["train"] * 3,
    )
    rewards = f(prompts=[None] * 3, completions=completions, **cols)
    assert rewards == pytest.approx([2 * 1 / 2, -0.5, 2 * 2 / 3])
    assert seen == [[3]]  # one sandbox batch, one environment item, for the whole group
    assert f.__name__ == "ftrl_solve_f1"
    with pytest.raises(KeyError, match="codes"):
        f(prompts=[None], completions=["x"], unsolved_set=["{}"])


def test_reward_on_real_ftrl_record_with_inprocess_executor(ftrl_test_records):
    rec = next(r for r in ftrl_test_records if r.scenario == "single_hop")
    r = score_response(
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>',
        rec.codes,
        rec.unsolved_set,
        0.0,
        rec.answer,
        executor=inprocess_executor(),
    )
    assert r.branch == "calls" and r.q == 0 and r.calls[0].output == "an error occured when call nope: 'nope'"
