"""Multi-turn tool-use episodes, batched across environments (FTRL's agent loop).

Per environment, as FTRL's evaluation and sampler do::

    messages = record.messages; unsolved = copy(record.unsolved_set)
    for turn in range(max_turns):
        response = policy(messages, tools)            # rendered with the chat template
        parsed = parse(response); messages.append(parsed.to_message())
        if not parsed.tool_calls: break
        feedback = run tools in the sandbox; messages.extend(tool messages)
        solved = update_unsolved(unsolved, calls, feedback); calls += len(calls)
    metrics = episode_metrics(solved, calls, total)

:func:`rollout` runs up to ``max_active`` environments at once, turn by turn: one policy
call per turn for all of them (the local engine decodes them as a batch), one sandbox batch
for all their tool calls, and a finished environment's place goes to the next one.

A policy is anything with the :class:`Policy` protocol; the implementations and the one
factory, :func:`ftrl_lab.agent.policies.make_policy`, live in :mod:`ftrl_lab.agent.policies`.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from tqdm.auto import tqdm

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.parsing import ParsedResponse, check_rules, parse_openai_message, parse_response
from ftrl_lab.core.records import EnvRecord
from ftrl_lab.core.reward import episode_metrics, execute_calls, hashable, solve_calls


# --- episodes --------------------------------------------------------------------------------
@dataclass
class PolicyOutput:
    """What a policy said for one environment this turn, and what it cost."""

    response: Any  # model text, or an OpenAI assistant message (dict)
    prompt_tokens: int = 0
    prefilled_tokens: int = 0  # prompt tokens actually run (the rest came from a KV cache)
    completion_tokens: int = 0
    finish_reason: str = ""
    seconds: float = 0.0  # generation wall time attributed to this environment
    generated: Any = None  # what the model said when a script overrode it (ForcedTurnsPolicy)


@dataclass
class Turn:
    """One assistant turn: raw response, parsed calls, tool outputs and the answers they solved."""

    response: Any
    message: dict  # the assistant message appended to the conversation
    malformed: bool
    tool_outputs: list[str]
    solved: list[str | None]  # per call, the gold answer it solved (None: nothing)
    messages_end: int  # len(messages) after this turn (and its tool messages)
    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    gen_seconds: float = 0.0
    tool_seconds: float = 0.0
    generated: Any = None  # the model's own output on a scripted turn (ForcedTurnsPolicy)
    echoes: list[bool] = field(default_factory=list)  # per call, whether the echo check fired

    @property
    def tool_calls(self) -> list[dict]:
        return self.message.get("tool_calls") or []


@dataclass
class Episode:
    """One environment played to the end: the transcript, per-turn details, metrics, costs."""

    index: int
    record: EnvRecord
    messages: list[dict]
    unsolved: dict[str, list[str]]
    total: int
    turns: list[Turn] = field(default_factory=list)
    seconds: float = 0.0
    done: bool = False
    rules: str = "official"  # the rule set that parsed and scored it
    echo_guard: bool = False

    @property
    def key(self) -> str:
        return episode_key(self.record)

    @property
    def calls(self) -> int:
        return sum(len(t.tool_calls) for t in self.turns)

    @property
    def solved(self) -> int:
        return sum(s is not None for t in self.turns for s in t.solved)

    @property
    def echoes(self) -> int:
        """Calls the echo check fired on (counted whether the guard is on or off)."""
        return sum(sum(t.echoes) for t in self.turns)

    @property
    def official_crash(self) -> bool:
        """True where FTRL's evaluation script would have crashed (a call named by a JSON list
        or object: ``unsolved_set.get`` of an unhashable key) and recorded no row."""
        return self.rules == "official" and any(
            not hashable(c["function"]["name"]) for t in self.turns for c in t.tool_calls
        )

    @property
    def metrics(self) -> dict[str, float]:
        return episode_metrics(self.solved, self.calls, self.total)

    def summary(self) -> dict[str, Any]:
        """Flat per-episode numbers (for tables)."""
        return {
            "key": self.key,
            "index": self.index,
            "scenario": self.record.scenario,
            "turns": len(self.turns),
            "calls": self.calls,
            "solved": self.solved,
            "total": self.total,
            **self.metrics,
            "rules": self.rules,
            "echo_guard": self.echo_guard,
            "echoes": self.echoes,
            "official_crash": self.official_crash,
            "prompt_tokens": sum(t.prompt_tokens for t in self.turns),
            "prefilled_tokens": sum(t.prefilled_tokens for t in self.turns),
            "completion_tokens": sum(t.completion_tokens for t in self.turns),
            "gen_seconds": round(sum(t.gen_seconds for t in self.turns), 4),
            "tool_seconds": round(sum(t.tool_seconds for t in self.turns), 4),
            # this episode's own cost (its share of each batched generation, plus its tool calls);
            # the wall time it spent in flight overlaps the other episodes of its batch
            "seconds": round(sum(t.gen_seconds + t.tool_seconds for t in self.turns), 4),
            "in_flight_seconds": round(self.seconds, 4),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready transcript: summary, question, answer, messages and every turn (``steps``)."""
        return {
            **self.summary(),
            "data_source": self.record.data_source,
            "question": self.record.question,
            "answer": self.record.answer,
            "unsolved_set": self.record.unsolved_set,
            "remaining": self.unsolved,
            "messages": self.messages,
            "steps": [asdict(t) for t in self.turns],
        }


def episode_key(record: EnvRecord) -> str:
    """A stable id of an environment: sha256 of its first user message (FTRL keys on that text)."""
    first = next((m.get("content") or "" for m in record.messages if m.get("role") == "user"), "")
    return hashlib.sha256(str(first).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def new_episode(index: int, record: EnvRecord) -> Episode:
    unsolved = copy.deepcopy(record.unsolved_set)
    return Episode(
        index=index,
        record=record,
        messages=copy.deepcopy(record.messages),
        unsolved=unsolved,
        total=sum(len(v) for v in unsolved.values()),
    )


# --- policies --------------------------------------------------------------------------------
class Policy(Protocol):
    """Answers the current conversation of each given episode (one output per episode)."""

    fmt: str

    def act(self, episodes: Sequence[Episode]) -> list[PolicyOutput]: ...

    def release(self, episode: Episode) -> None: ...


def parse_output(response: Any, fmt: str = "qwen", rules: str = "lenient") -> ParsedResponse:
    """An OpenAI message with ``tool_calls`` is taken as is; otherwise its text is parsed in
    ``fmt`` by ``rules`` ("official": FTRL's ``parse_qwen`` on the decoded text, as its evaluation)."""
    if isinstance(response, dict):
        if response.get("tool_calls"):
            return parse_openai_message(response)
        response = response.get("content") or ""
    return parse_response(response, fmt, rules)


# --- the loop --------------------------------------------------------------------------------
def rollout(
    records: Sequence[EnvRecord],
    policy: Policy,
    *,
    max_turns: int = 20,
    max_active: int = 8,
    executor: ToolExecutor | None = None,
    on_episode: Callable[[Episode], None] | None = None,
    indices: Sequence[int] | None = None,
    progress: bool = True,
    desc: str = "rollout",
    rules: str = "official",
    echo_guard: bool = False,
) -> list[Episode]:
    """Play every record to the end with ``policy``; episodes come back in input order.

    ``rules`` ("official": FTRL's ``evaluation_self.py`` outcome, or "lenient") parses the model
    turns; ``echo_guard`` refuses solves by echo (:func:`ftrl_lab.core.reward.solve_calls`).

    ``max_active`` environments are played at once (one policy call and one tool batch per
    turn); ``on_episode`` is called as each one finishes (e.g. to save it); ``indices`` gives
    the episodes' ids (default 0..n-1). An exception from the policy propagates; episodes
    already passed to ``on_episode`` are kept by the caller.
    """
    if max_turns < 1 or max_active < 1:
        raise ValueError(f"max_turns and max_active must be >= 1, got {max_turns}, {max_active}")
    check_rules(rules)
    executor = executor or sandbox_executor()
    indices = list(indices) if indices is not None else list(range(len(records)))
    if len(indices) != len(records):
        raise ValueError(f"got {len(indices)} indices for {len(records)} records")
    pending = [(i, r) for i, r in zip(indices, records)]
    pending.reverse()  # pop() from the end keeps input order
    active: list[Episode] = []
    finished: dict[int, Episode] = {}
    bar = tqdm(total=len(records), desc=desc, disable=not progress, unit="env")
    try:
        while pending or active:
            while pending and len(active) < max_active:
                i, rec = pending.pop()
                ep = new_episode(i, rec)
                ep.rules, ep.echo_guard = rules, echo_guard
                ep.seconds = -time.perf_counter()
                active.append(ep)
            outputs = policy.act(active)
            if len(outputs) != len(active):
                raise RuntimeError(f"policy returned {len(outputs)} outputs for {len(active)} episodes")
            parsed = [parse_output(o.response, getattr(policy, "fmt", "qwen"), rules) for o in outputs]
            for ep, p in zip(active, parsed):
                ep.messages.append(p.to_message())
            calling = [k for k, p in enumerate(parsed) if p.tool_calls]
            t0 = time.perf_counter()
            items = [(active[k].record.codes, parsed[k].tool_calls) for k in calling]
            feedback = execute_calls(executor, items) if calling else []
            tool_seconds = (time.perf_counter() - t0) / max(1, sum(len(parsed[k].tool_calls) for k in calling))
            contents: dict[int, list[str]] = dict(zip(calling, feedback))
            still = []
            for k, (ep, out, p) in enumerate(zip(active, outputs, parsed)):
                outs = contents.get(k, [])
                if len(outs) != len(p.tool_calls):
                    raise RuntimeError(f"executor returned {len(outs)} results for {len(p.tool_calls)} calls")
                for call, content in zip(p.tool_calls, outs):
                    ep.messages.append({"role": "tool", "content": content, "tool_call_id": call.get("id")})
                solved, fired = solve_calls(ep.unsolved, p.tool_calls, outs, echo_guard) if p.tool_calls else ([], [])
                ep.turns.append(
                    Turn(
                        out.response,
                        ep.messages[-1 - len(outs)],
                        p.malformed,
                        list(outs),
                        solved,
                        len(ep.messages),
                        out.prompt_tokens,
                        out.prefilled_tokens,
                        out.completion_tokens,
                        out.finish_reason,
                        out.seconds,
                        tool_seconds * len(outs),
                        out.generated,
                        fired,
                    )
                )
                if p.tool_calls and len(ep.turns) < max_turns:
                    still.append(ep)
                    continue
                ep.done = True
                ep.seconds += time.perf_counter()
                policy.release(ep)
                finished[ep.index] = ep
                if on_episode is not None:
                    on_episode(ep)
                bar.update(1)
            active = still
    finally:
        bar.close()
    return [finished[i] for i in indices]
