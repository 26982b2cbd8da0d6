"""Where episodes fail: tool choice, errors, retries and answers, read from evaluation transcripts.

Solve-P/R/F1 say how much was solved; these per-episode measures say how the rest went wrong.
From one evaluation folder's ``transcripts.jsonl`` (``python -m ftrl_lab.evaluate ftrl``'s, or a
training run's ``eval/<stage>/``), for every episode:

- ``calls``: tool calls made;
- ``gold_tool_share``: share of calls that name a tool of the gold plan (the keys of the record's
  ``unsolved_set``), the rest being distractors or invented names;
- ``first_call_gold``: 1 when the first call names a gold tool;
- ``error_share``: share of tool outputs that report an error (an ``Error...`` text, a JSON
  ``{"error": ...}`` object, or FTRL's ``an error occured when call ...`` wrapper);
- ``repeat_share``: share of calls identical (tool and arguments) to an earlier call of the episode;
- ``malformed_share``: share of turns whose response did not parse;
- ``answered``: 1 when the last turn is a parsed reply without tool calls (the model stopped by
  answering rather than by the turn limit or a malformed turn);
- ``solve_f1``: the episode's score, for reference.

Shares are NaN for an episode without calls (``first_call_gold`` too), and means skip NaN.
:func:`compare` pairs two evaluations of the same environments (by episode key) with percentile
bootstrap 95% CIs of the mean difference, as :func:`ftrl_lab.train.report.compare` does for the
scores.

    python -m ftrl_lab.analysis failure-modes runs/.../eval/start_heldout runs/.../eval/final_heldout
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ftrl_lab.agent.evaluate import TRANSCRIPTS
from ftrl_lab.agent.trajectories import read_jsonl_lines
from ftrl_lab.core.records import SCENARIOS
from ftrl_lab.train.report import bootstrap_ci, frame_markdown

MODES = (
    "calls",
    "gold_tool_share",
    "first_call_gold",
    "error_share",
    "repeat_share",
    "malformed_share",
    "answered",
    "solve_f1",
)
_ERROR = re.compile(r"^\s*(error\b|\{\s*\"error\"|an error occured)", re.IGNORECASE)


def is_error_output(text: object) -> bool:
    """Whether a tool output reports an error (see the module docstring for the three forms)."""
    return bool(_ERROR.match(str(text)))


def _call_signature(call: dict) -> tuple[str, str]:
    function = call.get("function") or {}
    args = function.get("arguments", "")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return str(function.get("name", "")), args
    return str(function.get("name", "")), json.dumps(args, sort_keys=True)


def _share(hits: int, n: int) -> float:
    return hits / n if n else math.nan


def episode_modes(row: dict) -> dict:
    """The measures of one transcript row (see the module docstring); ``key`` and ``scenario`` kept."""
    steps = row.get("steps")
    if not isinstance(steps, list):
        raise ValueError(f"episode {row.get('key')!r}: no 'steps' list (not an evaluation transcript)")
    gold = set(row.get("unsolved_set") or {})
    calls: list[tuple[str, str]] = []
    outputs: list[object] = []
    for step in steps:
        message = step.get("message") or {}
        calls += [_call_signature(c) for c in message.get("tool_calls") or []]
        outputs += list(step.get("tool_outputs") or [])
    seen: set[tuple[str, str]] = set()
    repeats = 0
    for signature in calls:
        repeats += signature in seen
        seen.add(signature)
    last = steps[-1] if steps else {}
    answered = bool(steps) and not last.get("malformed") and not (last.get("message") or {}).get("tool_calls")
    return {
        "key": row.get("key"),
        "scenario": row.get("scenario"),
        "calls": len(calls),
        "gold_tool_share": _share(sum(name in gold for name, _ in calls), len(calls)),
        "first_call_gold": float(calls[0][0] in gold) if calls else math.nan,
        "error_share": _share(sum(map(is_error_output, outputs)), len(outputs)),
        "repeat_share": _share(repeats, len(calls)),
        "malformed_share": _share(sum(bool(s.get("malformed")) for s in steps), len(steps)),
        "answered": float(answered),
        "solve_f1": float(row.get("solve_f1", math.nan)),
    }


def failure_table(source: str | Path | Iterable[dict]) -> pd.DataFrame:
    """One row of measures per episode, from an evaluation folder, its transcripts file or rows."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        path = path / TRANSCRIPTS if path.is_dir() else path
        if not path.exists():
            raise FileNotFoundError(f"{path}: no evaluation transcripts")
        rows, _ = read_jsonl_lines(path)
    else:
        rows = list(source)
    return pd.DataFrame([episode_modes(r) for r in rows], columns=["key", "scenario", *MODES])


def summary(table: pd.DataFrame) -> pd.Series:
    """Mean of each measure over the episodes that have it, and the episode count."""
    out = table[list(MODES)].mean(numeric_only=True)
    out["n"] = len(table)
    return out


def by_scenario(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each measure per scenario (the paper's order) and overall, with the episode count ``n``."""
    present = list(dict.fromkeys(table["scenario"]))
    order = [s for s in SCENARIOS if s in present] + sorted(s for s in present if s not in SCENARIOS)
    rows = {scenario: summary(table[table["scenario"] == scenario]) for scenario in order}
    rows["overall"] = summary(table)
    return pd.DataFrame(rows).T[["n", *MODES]]


def findings(table: pd.DataFrame) -> str:
    """Markdown bullets that read the measures of one evaluation (numbers only, no verdicts)."""
    s = summary(table)
    if not s["n"]:
        return "- No episodes."
    called = int((table["calls"] > 0).sum())
    lines = [f"- {called} of {int(s['n'])} episodes made at least one tool call ({s['calls']:.2f} calls per episode)."]
    if called:
        lines += [
            f"- Tool choice: {s['gold_tool_share']:.0%} of an episode's calls name a tool of the gold plan; the first "
            f"call does in {s['first_call_gold']:.0%} of the episodes.",
            f"- Feedback: {s['error_share']:.0%} of tool outputs report an error, and {s['repeat_share']:.0%} of calls "
            "repeat an earlier call of the episode exactly (same tool and arguments).",
        ]
    lines.append(
        f"- {s['answered']:.0%} of the episodes end with an answer (the rest hit the turn limit or a malformed turn; "
        f"{s['malformed_share']:.0%} of turns are malformed)."
    )
    return "\n".join(lines)


def compare(before: pd.DataFrame, after: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Paired before/after table over the episodes both evaluated (shares as fractions, calls as
    counts): ``n`` pairs where both sides have the measure, their before and after means, the
    mean difference and its percentile bootstrap 95% CI."""
    merged = before.merge(after, on="key", suffixes=("_before", "_after"))
    rows = []
    for m in MODES:
        a, b = merged[f"{m}_before"].to_numpy(float), merged[f"{m}_after"].to_numpy(float)
        both = ~(np.isnan(a) | np.isnan(b))
        diff = b[both] - a[both]
        lo, hi = bootstrap_ci(diff, n_boot, seed)
        rows.append(
            {
                "measure": m,
                "n": int(both.sum()),
                "before": float(a[both].mean()) if len(diff) else math.nan,
                "after": float(b[both].mean()) if len(diff) else math.nan,
                "delta": float(diff.mean()) if len(diff) else math.nan,
                "delta_ci_low": lo,
                "delta_ci_high": hi,
            }
        )
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ftrl_lab.analysis failure-modes",
        description="Tool choice, errors, retries and answers per episode of one evaluation, or two paired.",
    )
    p.add_argument("before", help="an evaluation folder (or its transcripts.jsonl)")
    p.add_argument("after", nargs="?", default=None, help="a second evaluation of the same environments")
    p.add_argument("--out", default=None, help="write the table to this .csv (and a .md beside it)")
    p.add_argument("--bootstrap", type=int, default=2000)
    a = p.parse_args(argv)
    before = failure_table(a.before)
    table = (
        summary(before).to_frame("mean").reset_index(names="measure")
        if a.after is None
        else compare(before, failure_table(a.after), n_boot=a.bootstrap)
    )
    text = table.to_string(index=False, float_format=lambda x: f"{x:.3f}")
    print(text)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
        out.with_suffix(".md").write_text(frame_markdown(table, ".3f") + "\n")
    return 0
