"""The verifiable reward: where FTRL's rewards and episode metrics are computed.

A tool call *solves* a gold sub-answer when its output contains it (:func:`answer_verify`).
For one model response with p parsed calls, of which q solve a still-unsolved gold answer of
the called tool (each gold answer counts once, each call solves at most one), and t gold
answers still unsolved in the prompt:

=================  ===========  ======================================
variant            reward       note
=================  ===========  ======================================
``solve_f1``       2q / (p+1)   the paper's default
``solve_precision`` q / p
``solve_rate``     q
``solve_pr``       q*q / p
=================  ===========  ======================================

A response with no parsed call gets: ``empty_penalty`` (-0.5) for empty content;
``malformed_penalty`` (-0.3) when tool-call tags are present but nothing parsed;
``answer_reward / (1 + t)`` when the content contains the final gold answer;
``solved_bonus`` (0.5) when the prefix was already fully solved; else 0.

Episode metrics (evaluation): Solve-P = solved/calls (1 with no calls), Solve-R =
solved/total, Solve-F1 = 2*solved/(calls + total).

Core module: no torch, no transformers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.parsing import ParsedResponse, parse_response

VARIANTS = ("solve_f1", "solve_precision", "solve_rate", "solve_pr")
MALFORMED_TAGS = ("<tool_call>", "</tool_call>", "<tool_parsed_response>")


def normalise(text: Any) -> str:
    """FTRL's normal form: dict/list as JSON, lower-case, commas removed, stripped."""
    if isinstance(text, (dict, list)):
        text = json.dumps(text, ensure_ascii=False)
    elif not isinstance(text, str):
        text = str(text)
    return text.lower().replace(",", "").strip()


def answer_verify(predict: Any, golden: str) -> bool:
    """True when every ", "-separated part of `golden` occurs in `predict` (FTRL's rule)."""
    predict = normalise(predict)
    return all(normalise(part) in predict for part in golden.split(", "))


def update_unsolved(
    unsolved_set: dict[str, list[str]], tool_calls: Sequence[dict], contents: Sequence[str]
) -> list[str | None]:
    """Remove the gold answers these calls solve (in place); per call, the answer it solved.

    A call can only solve an answer listed under its own tool name; it solves the first
    such answer (in list order) that its output contains, and each answer is solved once.
    """
    solved: list[str | None] = []
    for call, content in zip(tool_calls, contents):
        answers = unsolved_set.get(call["function"]["name"], [])
        hit = next((a for a in answers if answer_verify(content, a)), None)
        if hit is not None:
            answers.remove(hit)
        solved.append(hit)
    return solved


def episode_metrics(solved: int, calls: int, total: int) -> dict[str, float]:
    """Solve-P, Solve-R and Solve-F1 of one episode (FTRL's evaluation metrics)."""
    if total <= 0:
        raise ValueError(f"an episode needs at least one gold answer, got total={total}")
    return {
        "solve_precision": solved / calls if calls > 0 else 1.0,
        "solve_rate": solved / total,
        "solve_f1": 2 * solved / (calls + total),
    }


def variant_value(variant: str, q: int, p: int) -> float:
    """The reward of a response with p calls of which q solved something."""
    if p <= 0:
        raise ValueError("variant_value needs at least one call (p >= 1)")
    if variant == "solve_f1":
        return 2 * q / (p + 1)
    if variant == "solve_precision":
        return q / p
    if variant == "solve_rate":
        return float(q)
    if variant == "solve_pr":
        return q * q / p
    raise ValueError(f"unknown reward variant '{variant}' (choose from {VARIANTS})")


@dataclass
class RewardConfig:
    """Reward variant and penalties; the defaults are the paper's."""

    variant: str = "solve_f1"
    empty_penalty: float = -0.5
    malformed_penalty: float = -0.3
    answer_reward: float = 1.0
    solved_bonus: float = 0.5
    fmt: str = "qwen"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown reward variant '{self.variant}' (choose from {VARIANTS})")


@dataclass
class CallOutcome:
    name: str
    arguments: str
    output: str
    solved: str | None


@dataclass
class RewardBreakdown:
    """One response's reward and why: the branch taken, p, q, t and each call's outcome."""

    reward: float
    branch: str  # "calls" | "empty" | "malformed" | "answer" | "solved" | "none"
    p: int
    q: int
    t: int
    calls: list[CallOutcome] = field(default_factory=list)
    content: str = ""
    malformed: bool = False  # the parser found a broken tool-call block

    def to_dict(self) -> dict:
        return asdict(self)


def no_call_reward(
    parsed: ParsedResponse, t: int, solve_rate: float, answer: str | None, config: RewardConfig
) -> tuple[float, str]:
    """Reward and branch of a response without parsed tool calls."""
    content = parsed.content or ""
    if content == "":
        return config.empty_penalty, "empty"
    if any(tag in content for tag in MALFORMED_TAGS):
        return config.malformed_penalty, "malformed"
    if answer is not None and normalise(answer) in normalise(content):
        return config.answer_reward / (1 + t), "answer"
    if solve_rate == 1.0:
        return config.solved_bonus, "solved"
    return 0.0, "none"


def score_response(
    response: Any,
    codes: dict[str, str],
    unsolved_set: dict[str, list[str]],
    solve_rate: float = 0.0,
    answer: str | None = None,
    config: RewardConfig | None = None,
    executor: ToolExecutor | None = None,
) -> RewardBreakdown:
    """Score one model response against one prefix record (unsolved_set is not modified)."""
    return score_responses([response], [codes], [unsolved_set], [solve_rate], [answer], config, executor)[0]


def score_responses(
    responses: Sequence[Any],
    codes: Sequence[dict],
    unsolved_sets: Sequence[dict],
    solve_rates: Sequence[float],
    answers: Sequence[str | None],
    config: RewardConfig | None = None,
    executor: ToolExecutor | None = None,
) -> list[RewardBreakdown]:
    """Score many responses; all their tool calls run in one batch per distinct code set."""
    config = config or RewardConfig()
    parsed = [parse_response(r, config.fmt) for r in responses]
    outputs: list[list[str]] = [[] for _ in responses]
    # One executor batch; one item per distinct environment (a GRPO group shares its prompt's codes).
    groups: dict[str, list[int]] = {}
    for i, pr in enumerate(parsed):
        if pr.tool_calls:
            groups.setdefault(json.dumps(codes[i], sort_keys=True), []).append(i)
    items = [(codes[idxs[0]], [call for i in idxs for call in parsed[i].tool_calls]) for idxs in groups.values()]
    feedbacks = (executor or sandbox_executor())(items) if items else []
    for idxs, feedback in zip(groups.values(), feedbacks):
        k = 0
        for i in idxs:
            n = len(parsed[i].tool_calls)
            outputs[i] = list(feedback[k : k + n])
            k += n
    results = []
    for i, pr in enumerate(parsed):
        remaining = {name: list(ans) for name, ans in unsolved_sets[i].items()}
        t = sum(len(v) for v in remaining.values())
        if pr.tool_calls:
            solved = update_unsolved(remaining, pr.tool_calls, outputs[i])
            q, p = sum(s is not None for s in solved), len(pr.tool_calls)
            calls = [
                CallOutcome(c["function"]["name"], c["function"]["arguments"], out, s)
                for c, out, s in zip(pr.tool_calls, outputs[i], solved)
            ]
            value = variant_value(config.variant, q, p)
            results.append(RewardBreakdown(value, "calls", p, q, t, calls, pr.content, pr.malformed))
        else:
            value, branch = no_call_reward(pr, t, solve_rates[i], answers[i], config)
            results.append(RewardBreakdown(value, branch, 0, 0, t, [], pr.content, pr.malformed))
    return results


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def make_reward_func(
    variant: str = "solve_f1",
    executor: ToolExecutor | None = None,
    on_scored: Callable[[list[RewardBreakdown], dict], None] | None = None,
    **penalties: Any,
) -> Callable:
    """A TRL-compatible reward function ``(prompts, completions, **columns) -> list[float]``.

    It reads the record columns ``codes``, ``unsolved_set``, ``solve_rate`` and ``answer``
    (JSON strings or decoded) that TRL passes through from the dataset. Completions may be
    strings or conversational message lists. ``on_scored(breakdowns, call_kwargs)`` sees each
    batch's breakdowns (each completion is parsed once, here), e.g. to log metrics.
    """
    config = RewardConfig(variant=variant, **penalties)

    def reward_func(prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float]:
        n = len(completions)
        missing = [c for c in ("codes", "unsolved_set") if c not in columns]
        if missing:
            raise KeyError(f"reward needs dataset column(s) {missing}; got {sorted(columns)}")
        solve_rates = columns.get("solve_rate") or [0.0] * n
        answers = columns.get("answer") or [None] * n
        scored = score_responses(
            completions,
            [_decode(c) for c in columns["codes"]],
            [_decode(u) for u in columns["unsolved_set"]],
            solve_rates,
            answers,
            config,
            executor,
        )
        if on_scored is not None:
            on_scored(scored, {"prompts": prompts, **columns})
        return [s.reward for s in scored]

    reward_func.__name__ = f"ftrl_{variant}"
    return reward_func
