"""Reading saved evaluation transcripts: per-turn tables, HTML rendering, a widget browser.

Works on the JSON lines :mod:`ftrl_lab.agent.evaluate` writes (``Episode.to_dict()``): ``messages``,
``steps`` (one per turn: ``response``, ``message`` with ``tool_calls``, ``tool_outputs``,
``solved``, ``generated``), the metrics and the gold ``unsolved_set``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd


def _text(response: Any) -> str:
    if isinstance(response, dict):
        return json.dumps(response, ensure_ascii=False)
    return "" if response is None else str(response)


def _call_text(call: dict) -> str:
    fn = call.get("function", {})
    return f"{fn.get('name')}({fn.get('arguments')})"


def turn_table(transcript: dict, width: int = 160) -> pd.DataFrame:
    """One row per turn: what the model said, the calls parsed, the tool outputs, what was solved."""
    rows = []
    for t, step in enumerate(transcript.get("steps", [])):
        calls = step["message"].get("tool_calls") or []
        rows.append(
            {
                "turn": t + 1,
                "model text": _text(step["generated"] if step.get("generated") is not None else step["response"])[
                    :width
                ],
                "calls": "; ".join(_call_text(c) for c in calls),
                "tool outputs": " | ".join(o[: width // 2] for o in step["tool_outputs"]),
                "solved": ", ".join(s for s in step["solved"] if s is not None),
                "malformed": step["malformed"],
                "tokens": step.get("completion_tokens", 0),
            }
        )
    return pd.DataFrame(rows, columns=["turn", "model text", "calls", "tool outputs", "solved", "malformed", "tokens"])


def render_turn(transcript: dict, turn: int) -> str:
    """HTML of one turn (0-based) with the episode's header: question, gold answers, metrics."""
    esc = html.escape
    steps = transcript.get("steps", [])
    gold = "; ".join(f"{k}: {', '.join(v)}" for k, v in transcript.get("unsolved_set", {}).items())
    head = (
        f"<b>#{esc(str(transcript.get('index')))} · {esc(str(transcript.get('scenario')))}</b> · "
        f"Solve-P {transcript['solve_precision']:.2f} · Solve-R {transcript['solve_rate']:.2f} · "
        f"Solve-F1 {transcript['solve_f1']:.2f} · {len(steps)} turn(s), {transcript.get('calls', 0)} call(s)<br>"
        f"<b>Question:</b> {esc(str(transcript.get('question', '')))}<br>"
        f"<b>Gold sub-answers:</b> {esc(gold)} · <b>final answer:</b> {esc(str(transcript.get('answer', '')))}"
    )
    if not steps:
        return head + "<p><i>no turns</i></p>"
    if not 0 <= turn < len(steps):
        raise IndexError(f"turn {turn} out of range: the episode has {len(steps)} turn(s)")
    step = steps[turn]
    body = [f"<h4>Turn {turn + 1} of {len(steps)}</h4>"]
    if step.get("generated") is not None:
        body.append(f"<b>Model text (replaced by a scripted call):</b><pre>{esc(_text(step['generated']))}</pre>")
    body.append(f"<b>Model output:</b><pre>{esc(_text(step['response']))}</pre>")
    if step["malformed"]:
        body.append("<b style='color:#b00'>malformed tool call</b>")
    calls = step["message"].get("tool_calls") or []
    if not calls:
        body.append("<i>no tool call: the episode ends here</i>")
    for call, out, hit in zip(calls, step["tool_outputs"], step["solved"]):
        mark = (
            f"<b style='color:#070'>solved “{esc(hit)}”</b>"
            if hit
            else "<span style='color:#777'>solved nothing</span>"
        )
        body.append(f"<div><code>{esc(_call_text(call))}</code> → {mark}<pre>{esc(str(out))[:2000]}</pre></div>")
    return head + "".join(body)


class TranscriptBrowser:
    """Step through episodes turn by turn (ipywidgets): pick an episode, move the turn slider."""

    def __init__(self, transcripts: Sequence[dict]):
        import ipywidgets as w

        if not transcripts:
            raise ValueError("no transcripts to browse")
        self.transcripts = sorted(transcripts, key=lambda r: r.get("index", 0))
        labels = [
            (f"#{r.get('index')} {r.get('scenario')} F1={r['solve_f1']:.2f} turns={len(r.get('steps', []))}", i)
            for i, r in enumerate(self.transcripts)
        ]
        self.episode = w.Dropdown(options=labels, description="episode", layout=w.Layout(width="60%"))
        self.turn = w.IntSlider(min=1, max=1, value=1, description="turn")
        self.view = w.HTML()
        self.episode.observe(self._on_episode, names="value")
        self.turn.observe(lambda _: self._show(), names="value")
        self.widget = w.VBox([w.HBox([self.episode, self.turn]), self.view])
        self._on_episode()

    def _on_episode(self, *_):
        n = max(1, len(self.transcripts[self.episode.value].get("steps", [])))
        self.turn.value = 1
        self.turn.max = n
        self._show()

    def _show(self) -> None:
        self.view.value = render_turn(self.transcripts[self.episode.value], self.turn.value - 1)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def longest_transcript(transcripts: list[dict]) -> dict:
    """The transcript with the most steps (ties: the higher Solve-F1), the one worth reading first."""
    if not transcripts:
        raise ValueError("no transcripts to choose from")
    return max(transcripts, key=lambda t: (len(t["steps"]), t["solve_f1"]))
