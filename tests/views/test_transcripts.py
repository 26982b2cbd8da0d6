"""Transcript tables, HTML rendering and the widget browser, on saved evaluation transcripts."""

import json

import pytest
from helpers import TOY

from ftrl_lab.agent.policies import ScriptedPolicy
from ftrl_lab.agent.rollout import rollout
from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.records import load_records
from ftrl_lab.views.transcripts import TranscriptBrowser, render_turn, turn_table


def call(name, **args):
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


@pytest.fixture(scope="module")
def transcripts():
    toy = load_records(TOY)
    script = {
        toy[1].question: [
            call("capital_lookup", country="Japan") + call("city_population", city="Paris"),
            "<tool_call>{bad</tool_call>",
        ],
        toy[0].question: ["Paris <b>"],
    }
    eps = rollout(toy[:2], ScriptedPolicy(script), executor=inprocess_executor(), progress=False)
    return [json.loads(json.dumps(e.to_dict())) for e in eps]  # as read back from transcripts.jsonl


def test_turn_table(transcripts):
    t = turn_table(transcripts[1])
    assert list(t["turn"]) == [1, 2]
    assert t.loc[0, "calls"].startswith("capital_lookup(") and "city_population(" in t.loc[0, "calls"]
    assert t.loc[0, "solved"] == "Tokyo" and "2.1 million" in t.loc[0, "tool outputs"]
    assert bool(t.loc[1, "malformed"]) and t.loc[1, "calls"] == ""


def test_render_turn_escapes_and_marks_solved(transcripts):
    page = render_turn(transcripts[1], 0)
    assert "solved “Tokyo”" in page and "solved nothing" in page and "Solve-F1 0.50" in page
    assert "malformed" in render_turn(transcripts[1], 1)
    assert "Paris &lt;b&gt;" in render_turn(transcripts[0], 0)  # model text is escaped
    with pytest.raises(IndexError, match="2 turn"):
        render_turn(transcripts[1], 2)


def test_browser_steps_through_turns(transcripts):
    b = TranscriptBrowser(transcripts)
    assert b.turn.max == 1 and "Paris &lt;b&gt;" in b.view.value
    b.episode.value = 1
    assert b.turn.max == 2 and "Turn 1 of 2" in b.view.value
    b.turn.value = 2
    assert "Turn 2 of 2" in b.view.value
    with pytest.raises(ValueError, match="no transcripts"):
        TranscriptBrowser([])


HOSTILE = "<img src=x onerror=alert(2)>"


def test_render_turn_escapes_every_field(transcripts):
    bad = json.loads(json.dumps(transcripts[1]))
    bad.update(index=HOSTILE, scenario=HOSTILE, question=HOSTILE, answer=HOSTILE, unsolved_set={HOSTILE: [HOSTILE]})
    step = bad["steps"][0]
    step["response"], step["generated"] = HOSTILE, HOSTILE
    step["tool_outputs"] = [HOSTILE for _ in step["tool_outputs"]]
    step["solved"] = [HOSTILE for _ in step["solved"]]
    step["message"]["tool_calls"][0]["function"].update(name=HOSTILE, arguments=HOSTILE)
    page = render_turn(bad, 0)
    assert "<img" not in page and "&lt;img" in page
    b = TranscriptBrowser([bad])
    assert "<img" not in b.view.value
    assert "<img" not in turn_table(bad).to_html()  # the notebook shows the table as HTML
