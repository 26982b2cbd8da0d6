"""Rollouts -> FTRL trajectory-prefix records (what FTRL's sampler writes for RL training).

A rollout of one environment yields ``1 + (number of tool-call turns)`` records: the original
record, then after each turn that made tool calls a prefix record holding the conversation so
far (the assistant message and its tool messages included), the same tools, codes,
data_source, split and answer, ``unsolved_set`` = the gold answers still unsolved, and
``solve_rate = 1 - remaining / initial``.

:func:`collect` writes them to JSONL as environments finish and resumes: finished
environments are listed in a sidecar ``<name>.episodes.jsonl`` (one summary line each, written
after the records), so a rerun skips them and drops any records of an environment that was cut
off mid-write.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ftrl_lab.agent.rollout import Episode, Policy, episode_key, rollout
from ftrl_lab.core.executor import ToolExecutor
from ftrl_lab.core.records import JSONL_ERRORS, EnvRecord, append_jsonl

log = logging.getLogger(__name__)


def remaining_after_turns(episode: Episode) -> list[dict[str, list[str]]]:
    """The unsolved set after each turn (replaying which answer each call solved)."""
    unsolved = {name: list(answers) for name, answers in episode.record.unsolved_set.items()}
    out = []
    for turn in episode.turns:
        for call, hit in zip(turn.tool_calls, turn.solved):
            if hit is not None:
                unsolved[call["function"]["name"]].remove(hit)
        out.append({name: list(answers) for name, answers in unsolved.items()})
    return out


def prefix_records(episode: Episode) -> list[EnvRecord]:
    """The original record plus one prefix record after each tool-call turn."""
    rec = episode.record
    initial = sum(len(v) for v in rec.unsolved_set.values())
    out = [rec.copy()]
    for turn, remaining in zip(episode.turns, remaining_after_turns(episode)):
        if not turn.tool_calls:
            continue
        left = sum(len(v) for v in remaining.values())
        out.append(
            EnvRecord(
                messages=json.loads(json.dumps(episode.messages[: turn.messages_end])),
                tools=rec.tools,
                codes=rec.codes,
                unsolved_set=remaining,
                solve_rate=1.0 - left / initial if initial else 1.0,
                data_source=rec.data_source,
                split=rec.split,
                answer=rec.answer,
                extra=dict(rec.extra),
            )
        )
    return out


def sidecar_path(out_path: str | os.PathLike) -> Path:
    """``x.jsonl`` -> ``x.episodes.jsonl``: the finished-environment log beside the records."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".episodes.jsonl")


def read_jsonl_lines(path: Path) -> tuple[list[dict], bool]:
    """Rows of a JSONL file; a cut-off last line (an interrupted write) is dropped.

    Returns ``(rows, dropped)``. A malformed line anywhere else raises ``ValueError``
    naming the file and line.
    """
    if not path.exists():
        return [], False
    lines = path.read_text(encoding="utf-8").splitlines()
    rows, dropped = [], False
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n == len(lines):
                log.warning("%s:%d: dropping a cut-off last line (%s)", path, n, e.msg)
                dropped = True
                continue
            raise ValueError(f"{path}:{n}: malformed JSON line ({e.msg})") from None
    return rows, dropped


def rewrite_jsonl(path: Path, rows: list[dict]) -> None:
    """Replace a JSONL file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", errors=JSONL_ERRORS) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def row_key(row: dict) -> str:
    """:func:`episode_key` of a raw JSONL row."""
    return episode_key(EnvRecord(messages=row.get("messages") or [], tools=[], codes={}, unsolved_set={}))


def finished_keys(out_path: str | os.PathLike) -> set[str]:
    """Keys of the environments already collected in ``out_path``; repairs an interrupted run.

    Records of an environment without a summary line in the sidecar (cut off between the two
    writes, or mid-write) are removed from ``out_path``.
    """
    out_path = Path(out_path)
    summaries, cut = read_jsonl_lines(sidecar_path(out_path))
    if cut:
        rewrite_jsonl(sidecar_path(out_path), summaries)
    done = {s["key"] for s in summaries}
    rows, cut = read_jsonl_lines(out_path)
    kept = [r for r in rows if row_key(r) in done]
    if cut or len(kept) != len(rows):
        log.warning("%s: removing %d record(s) of unfinished environments", out_path, len(rows) - len(kept))
        rewrite_jsonl(out_path, kept)
    return done


@dataclass
class CollectStats:
    """What one :func:`collect` call did."""

    environments: int  # distinct environments asked for
    skipped: int  # already collected before this call
    collected: int  # played in this call
    records_written: int  # prefix records written in this call (originals included)
    out_path: str

    def __str__(self) -> str:
        return (
            f"{self.collected} environment(s) collected ({self.records_written} records), "
            f"{self.skipped} already done, into {self.out_path}"
        )


def collect(
    records: Sequence[EnvRecord],
    policy: Policy,
    out_path: str | os.PathLike,
    *,
    max_turns: int = 20,
    max_active: int = 8,
    executor: ToolExecutor | None = None,
    progress: bool = True,
) -> CollectStats:
    """Roll out ``records`` and append their prefix records to ``out_path`` (JSONL) as they finish.

    Resumable: environments already in the file (by :func:`episode_key`) are skipped, as are
    repeats of one question in ``records`` (FTRL keys on the first user message).
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".jsonl":
        raise ValueError(f"{out_path}: trajectories are written as JSONL (use a .jsonl path)")
    done = finished_keys(out_path)
    todo, seen = [], set(done)
    for i, rec in enumerate(records):
        key = episode_key(rec)
        if key not in seen:
            seen.add(key)
            todo.append((i, rec))
    distinct = len({episode_key(r) for r in records})
    stats = CollectStats(distinct, distinct - len(todo), 0, 0, str(out_path))

    def save(ep: Episode) -> None:
        rows = [r.to_row() for r in prefix_records(ep)]
        append_jsonl(out_path, rows)
        append_jsonl(sidecar_path(out_path), [ep.summary()])
        stats.collected += 1
        stats.records_written += len(rows)

    if todo:
        rollout(
            [r for _, r in todo],
            policy,
            max_turns=max_turns,
            max_active=max_active,
            executor=executor,
            on_episode=save,
            indices=[i for i, _ in todo],
            progress=progress,
            desc="trajectories",
        )
    return stats
