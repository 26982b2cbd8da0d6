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

Rule sets (``RewardConfig.rules``), see :mod:`ftrl_lab.core.parsing`: ``"official"`` (default) is
the outcome of FTRL's ``compute_solve_*`` on every input: only one trailing ``<|endoftext|>`` and
one ``<|im_end|>`` are removed (a response of only ``</s>`` is content, not empty), and FTRL's
``parse_qwen`` decides what a call is (any truthy ``name``; ``arguments`` only; a JSON-string
``arguments`` of any JSON value is a call, counted in p). Where FTRL's reward raises (a call whose
``name`` is a JSON list or object: ``unsolved_set.get`` of an unhashable key), its training step
dies and records nothing; we give 0 with branch ``"crash"``. ``"lenient"`` is the workbench's
earlier, more forgiving parse (``parameters`` accepted, non-object arguments dropped, every
end-of-turn marker stripped).

Echo guard (``RewardConfig.echo_guard``, off here and in the paper-parity evaluation, on in
training): a gold answer is not solved by a call whose own argument names or values contain it,
nor by an error message (``an error occured when call ...``). Every breakdown counts the calls
where this fires (``echoes``), guard on or off.

Core module: no torch, no transformers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.parsing import ParsedResponse, check_rules, parse_response, strip_reward_suffixes

VARIANTS = ("solve_f1", "solve_precision", "solve_rate", "solve_pr")
MALFORMED_TAGS = ("<tool_call>", "</tool_call>", "<tool_parsed_response>")
ERROR_PREFIX = "an error occured when call "  # FTRL's text for a failed call (sic)


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


def argument_text(arguments: Any) -> str:
    """A call's argument names and values (decoded, nested ones too), one per line."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            return arguments
    parts: list[str] = []
    stack = [arguments]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                parts.append(str(k))
                stack.append(v)
        elif isinstance(value, list):
            stack.extend(value)
        else:
            parts.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(parts)


def is_error_output(content: Any) -> bool:
    """True for an error message: FTRL's ``an error occured when call ...`` text, or a tool's own
    error report (text starting with "error", or a JSON object with a truthy "error" key)."""
    if not isinstance(content, str):
        return False
    if content.startswith(ERROR_PREFIX) or content.lstrip().lower().startswith("error"):
        return True
    if content.lstrip().startswith("{"):
        try:
            value = json.loads(content)
        except (ValueError, RecursionError):
            return False
        return isinstance(value, dict) and any(str(k).lower() == "error" and v for k, v in value.items())
    return False


def is_echo(call: dict, content: Any, answer: str) -> bool:
    """True when ``content`` may only contain ``answer`` by echo: it is an error message
    (:func:`is_error_output`), or the call's own argument names/values contain the answer."""
    if is_error_output(content):
        return True
    return answer_verify(argument_text(call["function"].get("arguments", "")), answer)


def hashable(name: Any) -> bool:
    """False for a tool name FTRL's ``unsolved_set.get`` would crash on (a JSON list or object)."""
    try:
        hash(name)
    except TypeError:
        return False
    return True


def solve_calls(
    unsolved_set: dict[str, list[str]],
    tool_calls: Sequence[dict],
    contents: Sequence[Any],
    echo_guard: bool = False,
) -> tuple[list[str | None], list[bool]]:
    """Remove the gold answers these calls solve (in place): per call, the answer it solved and
    whether the echo check fired (its output contains a still-unsolved answer of its tool that it
    echoes, :func:`is_echo`). With ``echo_guard`` an echoed answer is not solved by that call.

    A call can only solve an answer listed under its own tool name; it solves the first such
    answer (in list order) that its output contains, and each answer is solved once (FTRL's rule).
    A call with an unhashable name solves nothing (FTRL crashes there; see :func:`hashable`).
    """
    solved: list[str | None] = []
    fired: list[bool] = []
    for call, content in zip(tool_calls, contents):
        name = call["function"]["name"]
        answers = unsolved_set.get(name, []) if hashable(name) else []
        matches = [a for a in answers if answer_verify(content, a)]
        echoed = [a for a in matches if is_echo(call, content, a)]
        pool = [a for a in matches if a not in echoed] if echo_guard else matches
        hit = pool[0] if pool else None
        if hit is not None:
            answers.remove(hit)
        solved.append(hit)
        fired.append(bool(echoed))
    return solved, fired


def update_unsolved(
    unsolved_set: dict[str, list[str]], tool_calls: Sequence[dict], contents: Sequence[str], echo_guard: bool = False
) -> list[str | None]:
    """Remove the gold answers these calls solve (in place); per call, the answer it solved
    (:func:`solve_calls` without the echo counts)."""
    return solve_calls(unsolved_set, tool_calls, contents, echo_guard)[0]


def local_feedback(name: Any, codes: dict) -> str | None:
    """FTRL's feedback for a call whose name is not a string (never sent to an executor):
    ``codes[name]`` fails with KeyError (``7``) or TypeError (``[1]``); None for a string name."""
    if isinstance(name, str):
        return None
    try:
        codes[name]
    except Exception as e:  # noqa: BLE001 (FTRL catches every exception here)
        return f"{ERROR_PREFIX}{name}: {e}"
    return None


def execute_calls(executor: ToolExecutor | None, items: Sequence[tuple[dict, list[dict]]]) -> list[list[str]]:
    """``executor(items)``, except that calls with a non-string name get :func:`local_feedback`."""
    local = [[local_feedback(c["function"]["name"], codes) for c in calls] for codes, calls in items]
    remote = [(codes, [c for c, fb in zip(calls, fbs) if fb is None]) for (codes, calls), fbs in zip(items, local)]
    wanted = [k for k, (_, calls) in enumerate(remote) if calls]
    ran = (executor or sandbox_executor())([remote[k] for k in wanted]) if wanted else []
    outputs = dict(zip(wanted, ran))
    result = []
    for k, fbs in enumerate(local):
        it = iter(outputs.get(k, []))
        result.append([fb if fb is not None else next(it) for fb in fbs])
    return result


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
    """Reward variant, penalties, rule set and echo guard; the defaults are the paper's.

    ``rules``: "official" (FTRL's ``compute_solve_*`` outcome) or "lenient" (see the module notes).
    ``echo_guard``: refuse solves by echo (off for paper parity; training turns it on).
    """

    variant: str = "solve_f1"
    empty_penalty: float = -0.5
    malformed_penalty: float = -0.3
    answer_reward: float = 1.0
    solved_bonus: float = 0.5
    fmt: str = "qwen"
    rules: str = "official"
    echo_guard: bool = False

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown reward variant '{self.variant}' (choose from {VARIANTS})")
        check_rules(self.rules)

    @property
    def setting(self) -> str:
        """The scoring setting in words, for report rows: e.g. ``official+echo_guard``."""
        return self.rules + ("+echo_guard" if self.echo_guard else "")


@dataclass
class CallOutcome:
    name: str
    arguments: str
    output: str
    solved: str | None
    echo: bool = False  # the echo check fired on this call


@dataclass
class RewardBreakdown:
    """One response's reward and why: the branch taken, p, q, t and each call's outcome;
    ``echoes`` counts the calls the echo check fired on; ``rules``/``echo_guard`` the setting."""

    reward: float
    branch: str  # "calls" | "empty" | "malformed" | "answer" | "solved" | "none" | "crash"
    p: int
    q: int
    t: int
    calls: list[CallOutcome] = field(default_factory=list)
    content: str = ""
    malformed: bool = False  # the parser found a broken tool-call block
    echoes: int = 0
    rules: str = "official"
    echo_guard: bool = False

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
    parsed = [parse_for_reward(r, config) for r in responses]
    outputs: list[list[str]] = [[] for _ in responses]
    # One executor batch; one item per distinct environment (a GRPO group shares its prompt's codes).
    groups: dict[str, list[int]] = {}
    for i, pr in enumerate(parsed):
        if pr.tool_calls:
            groups.setdefault(json.dumps(codes[i], sort_keys=True), []).append(i)
    items = [(codes[idxs[0]], [call for i in idxs for call in parsed[i].tool_calls]) for idxs in groups.values()]
    feedbacks = execute_calls(executor, items) if items else []
    for idxs, feedback in zip(groups.values(), feedbacks):
        k = 0
        for i in idxs:
            n = len(parsed[i].tool_calls)
            outputs[i] = list(feedback[k : k + n])
            k += n
    results = []
    setting = {"rules": config.rules, "echo_guard": config.echo_guard}
    for i, pr in enumerate(parsed):
        remaining = {name: list(ans) for name, ans in unsolved_sets[i].items()}
        t = sum(len(v) for v in remaining.values())
        if pr.tool_calls:
            solved, fired = solve_calls(remaining, pr.tool_calls, outputs[i], config.echo_guard)
            q, p = sum(s is not None for s in solved), len(pr.tool_calls)
            calls = [
                CallOutcome(c["function"]["name"], c["function"]["arguments"], out, s, e)
                for c, out, s, e in zip(pr.tool_calls, outputs[i], solved, fired)
            ]
            crash = config.rules == "official" and not all(hashable(c["function"]["name"]) for c in pr.tool_calls)
            value, branch = (0.0, "crash") if crash else (variant_value(config.variant, q, p), "calls")
            results.append(
                RewardBreakdown(value, branch, p, q, t, calls, pr.content, pr.malformed, sum(fired), **setting)
            )
        else:
            value, branch = no_call_reward(pr, t, solve_rates[i], answers[i], config)
            results.append(RewardBreakdown(value, branch, 0, 0, t, [], pr.content, pr.malformed, 0, **setting))
    return results


def parse_for_reward(response: Any, config: RewardConfig) -> ParsedResponse:
    """The response as the reward reads it: under "official" rules, Qwen text loses one trailing
    ``<|endoftext|>`` and one ``<|im_end|>`` (FTRL's clean-up) and is parsed by FTRL's rules."""
    if config.rules == "official" and config.fmt == "qwen" and isinstance(response, str):
        return parse_response(strip_reward_suffixes(response), "qwen", "official")
    return parse_response(response, config.fmt)


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def make_reward_func(
    variant: str = "solve_f1",
    executor: ToolExecutor | None = None,
    on_scored: Callable[[list[RewardBreakdown], dict], None] | None = None,
    **penalties: Any,
) -> Callable:
    """A TRL-compatible reward function ``(prompts, completions, **columns) -> list[float]``.

    ``penalties`` are further :class:`RewardConfig` fields (``rules``, ``echo_guard``, penalties).

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
    reward_func.config = config  # the setting (variant, rules, echo_guard) it scores with
    return reward_func


# --- the echo "spray": a response that knows no answer and still solves some ---------------------
def spray_candidates() -> list[str]:
    """Short strings that many gold answers are: 0-2100, yes/no, true/false, a-f, month names."""
    months = ["January", "February", "March", "April", "May", "June", "July", "August", "September"]
    months += ["October", "November", "December"]
    return [str(n) for n in range(2101)] + ["yes", "no", "true", "false", *"abcdef", *months]


def spray_response(record: Any, candidates: Sequence[str] | None = None, declared: bool = False) -> str:
    """A Qwen response that knows no answer: it calls every tool of ``record`` once with one
    unknown argument whose name and value list the candidate strings (Python's TypeError repeats
    the name; tools with ``**kwargs`` may repeat the value). ``declared=True`` adds a second call
    per tool with every declared argument set to the candidates (tools that repeat values)."""
    stuffed = " ".join(candidates if candidates is not None else spray_candidates())
    blocks = []
    for tool in record.tools:
        fn = tool["function"]
        names = list((fn.get("parameters") or {}).get("properties") or {})
        for arguments in ({stuffed: stuffed}, {k: stuffed for k in names})[: 2 if declared else 1]:
            body = json.dumps({"name": fn["name"], "arguments": arguments}, ensure_ascii=False)
            blocks.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(blocks)


def replaying_executor(executor: ToolExecutor | None) -> ToolExecutor:
    """``executor`` that runs each distinct (codes, name, arguments) once and replays it after."""
    seen: dict[str, str] = {}

    def key(codes: dict, call: dict) -> str:
        fn = call["function"]
        return json.dumps([codes, fn["name"], fn["arguments"]], sort_keys=True, default=str)

    def run(items: Sequence[tuple[dict, list[dict]]]) -> list[list[str]]:
        todo = [(codes, [c for c in calls if key(codes, c) not in seen]) for codes, calls in items]
        ran = (executor or sandbox_executor())([t for t in todo if t[1]]) if any(t[1] for t in todo) else []
        outs = iter(ran)
        for codes, calls in todo:
            if calls:
                for c, out in zip(calls, next(outs)):
                    seen[key(codes, c)] = out
        return [[seen[key(codes, c)] for c in calls] for codes, calls in items]

    return run


def spray_scores(
    records: Sequence[Any],
    executor: ToolExecutor | None = None,
    variant: str = "solve_f1",
    declared: bool = False,
    candidates: Sequence[str] | None = None,
):
    """What the spray (:func:`spray_response`) gets on ``records`` under each setting (rules x
    echo_guard): gold answers solved, the episode metrics of a one-turn episode, the reward of
    the response on each record, and how often the echo check fired. A pandas DataFrame."""
    import pandas as pd

    sprays = [spray_response(r, candidates, declared) for r in records]
    replay = replaying_executor(executor)
    rows = []
    for rules in ("official", "lenient"):
        for guard in (False, True):
            config = RewardConfig(variant=variant, rules=rules, echo_guard=guard)
            scored = score_responses(
                sprays,
                [r.codes for r in records],
                [r.unsolved_set for r in records],
                [r.solve_rate for r in records],
                [r.answer for r in records],
                config,
                replay,
            )
            metrics = [episode_metrics(b.q, b.p, b.t) for b in scored if b.t > 0]
            solved, total = sum(b.q for b in scored), sum(b.t for b in scored)
            rows.append(
                {
                    "rules": rules,
                    "echo_guard": guard,
                    "gold solved": solved,
                    "gold total": total,
                    "solved %": round(100.0 * solved / total, 2) if total else 0.0,
                    "mean Solve-F1": round(sum(m["solve_f1"] for m in metrics) / max(1, len(metrics)), 4),
                    f"mean reward ({variant})": round(sum(b.reward for b in scored) / max(1, len(scored)), 4),
                    "envs above 0": sum(b.q > 0 for b in scored),
                    "echo fires": sum(b.echoes for b in scored),
                }
            )
    return pd.DataFrame(rows)
