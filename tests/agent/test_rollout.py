"""The multi-turn loop: FTRL semantics, batching across environments, policies, the default model."""

import copy
import json

import pytest
from helpers import TOY, call

from ftrl_lab.agent.policies import ForcedTurnsPolicy, ScriptedPolicy
from ftrl_lab.agent.rollout import Episode, PolicyOutput, episode_key, parse_output, rollout
from ftrl_lab.core.executor import inprocess_executor, sandbox_executor
from ftrl_lab.core.parsing import parse_qwen
from ftrl_lab.core.records import load_records
from ftrl_lab.core.reward import episode_metrics, update_unsolved


def scripts(toy):
    """Per question: turn-by-turn model outputs (right, wrong, malformed and parallel calls)."""
    return {
        toy[0].question: [call("capital_lookup", country="France"), "The capital of France is Paris."],
        toy[1].question: [
            call("capital_lookup", country="Japan") + "\n" + call("city_population", city="Paris"),
            "<tool_call>\n{not json}\n</tool_call>",
            call("city_population", city="Tokyo") + call("capital_lookup", country="Japan"),
            "14 million",
        ],
        toy[2].question: ["Rome and Tokyo, I believe."],
    }


def ftrl_reference(record, outputs, executor, max_turns):
    """FTRL's loop, written out plainly for one environment."""
    messages = copy.deepcopy(record.messages)
    unsolved = copy.deepcopy(record.unsolved_set)
    total = sum(len(v) for v in unsolved.values())
    solved = calls = 0
    for turn in range(max_turns):
        response = outputs[turn] if turn < len(outputs) else ""
        parsed = parse_qwen(response)
        messages.append(parsed.to_message())
        if parsed.tool_calls:
            contents = executor([(record.codes, parsed.tool_calls)])[0]
            messages.extend(
                {"role": "tool", "content": c, "tool_call_id": tc["id"]} for c, tc in zip(contents, parsed.tool_calls)
            )
            solved += sum(s is not None for s in update_unsolved(unsolved, parsed.tool_calls, contents))
            calls += len(parsed.tool_calls)
        else:
            break
    return messages, episode_metrics(solved, calls, total), unsolved


@pytest.mark.parametrize("max_active", [1, 2, 8])
@pytest.mark.parametrize("max_turns", [1, 2, 20])
def test_rollout_matches_ftrl_loop(toy, max_active, max_turns):
    executor = inprocess_executor()
    script = scripts(toy)
    episodes = rollout(
        toy, ScriptedPolicy(script), max_turns=max_turns, max_active=max_active, executor=executor, progress=False
    )
    assert [e.index for e in episodes] == [0, 1, 2]
    for rec, ep in zip(toy, episodes):
        messages, metrics, unsolved = ftrl_reference(rec, script[rec.question], executor, max_turns)
        assert ep.messages == messages
        assert ep.metrics == pytest.approx(metrics)
        assert ep.unsolved == unsolved
        assert ep.done and len(ep.turns) <= max_turns
        assert rec.messages == load_records(TOY)[ep.index].messages  # the input was not modified


def test_turn_details(toy):
    episodes = rollout(toy, ScriptedPolicy(scripts(toy)), executor=inprocess_executor(), progress=False)
    ep = episodes[1]
    assert [len(t.tool_calls) for t in ep.turns] == [2, 0, 2, 0][: len(ep.turns)]
    # turn 1 parsed nothing (malformed JSON): the episode ends there, as in FTRL
    assert len(ep.turns) == 2 and ep.turns[1].malformed
    first = ep.turns[0]
    assert first.solved == ["Tokyo", None]
    assert json.loads(first.tool_outputs[0]) == {"country": "Japan", "capital": "Tokyo"}
    assert "2.1 million" in first.tool_outputs[1]
    assert first.messages_end == 4 and ep.messages[3]["role"] == "tool"
    assert ep.calls == 2 and ep.solved == 1 and ep.total == 2
    assert ep.metrics == {"solve_precision": 0.5, "solve_rate": 0.5, "solve_f1": 0.5}
    d = ep.to_dict()
    assert d["key"] == episode_key(toy[1]) and d["scenario"] == "multi_hop" and d["turns"] == len(d["steps"]) == 2
    json.dumps(d)  # JSON-ready
    # a response without a call ends the episode with no calls: Solve-P = 1, Solve-R = 0
    assert episodes[2].metrics == {"solve_precision": 1.0, "solve_rate": 0.0, "solve_f1": 0.0}


def test_on_episode_order_and_refill(toy):
    """Short episodes finish first and free their slot for the next environment."""
    seen, widths = [], []

    class Spy(ScriptedPolicy):
        def act(self, episodes):
            widths.append(sorted(e.index for e in episodes))
            return super().act(episodes)

    script = {
        toy[0].question: ["Paris."],
        toy[2].question: ["Rome."],
        toy[1].question: [call("capital_lookup", country="Japan"), call("city_population", city="Tokyo"), "."],
    }
    rollout(
        toy,
        Spy(script),
        max_active=2,
        executor=inprocess_executor(),
        progress=False,
        on_episode=lambda e: seen.append(e.index),
    )
    assert widths == [[0, 1], [1, 2], [1]]
    assert seen == [0, 2, 1]


def test_sandbox_executor_gives_same_episodes(toy):
    a = rollout(toy, ScriptedPolicy(scripts(toy)), executor=inprocess_executor(), progress=False)
    b = rollout(toy, ScriptedPolicy(scripts(toy)), executor=sandbox_executor(), progress=False)
    assert [e.messages for e in a] == [e.messages for e in b]


def test_policy_errors_propagate(toy):
    class Bad(ScriptedPolicy):
        def act(self, episodes):
            return []

    with pytest.raises(RuntimeError, match="0 outputs for 3"):
        rollout(toy, Bad([]), executor=inprocess_executor(), progress=False)
    with pytest.raises(RuntimeError, match="simulated failure"):
        rollout(
            toy, ScriptedPolicy(scripts(toy), fail_after=1), max_active=1, executor=inprocess_executor(), progress=False
        )
    with pytest.raises(ValueError, match="max_turns"):
        rollout(toy, ScriptedPolicy([]), max_turns=0)


def test_parse_output_accepts_openai_messages():
    msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
    }
    p = parse_output(msg)
    assert p.tool_calls[0]["function"] == {"name": "f", "arguments": '{"x": 1}'} and p.tool_calls[0]["id"] == "a"
    text = parse_output({"role": "assistant", "content": call("f", x=2)})  # no tool parser on the server
    assert json.loads(text.tool_calls[0]["function"]["arguments"]) == {"x": 2}
    assert parse_output("plain").content == "plain"


def test_forced_turns_policy_keeps_model_text(toy):
    inner = ScriptedPolicy(["model says A", "model says B", "model says C"])
    forced = ForcedTurnsPolicy(inner, lambda ep: call("capital_lookup", country="Italy"), turns=2)
    ep = rollout(toy[2:], forced, executor=inprocess_executor(), progress=False)[0]
    assert [t.generated for t in ep.turns] == ["model says A", "model says B", None]
    assert ep.turns[2].response == "model says C"
    assert ep.solved == 1 and ep.calls == 2  # Rome once; the repeated call solves nothing


@pytest.fixture
def one_thread():
    """One torch thread: far faster than two on this shared 2-core machine (no OpenMP spinning)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_default_model_episode_matches_model_generate(toy, one_thread):
    """The default model, one environment, two turns (first one scripted): the engine's
    transcript equals FTRL's (model.generate on the re-encoded conversation)."""
    from ftrl_lab.agent.engine import Engine, SamplingParams
    from ftrl_lab.agent.models import load_model
    from ftrl_lab.agent.policies import HFGeneratePolicy, LocalPolicy

    model, tok = load_model("default")
    script = lambda ep: call("capital_lookup", country="Japan")  # noqa: E731
    ours = rollout(
        toy[1:2],
        ForcedTurnsPolicy(LocalPolicy(Engine(model, tok), SamplingParams(max_new_tokens=48)), script),
        max_turns=2,
        executor=inprocess_executor(),
        progress=False,
    )[0]
    ref = rollout(
        toy[1:2],
        ForcedTurnsPolicy(HFGeneratePolicy(model, tok, max_new_tokens=48), script),
        max_turns=2,
        executor=inprocess_executor(),
        progress=False,
    )[0]
    assert ours.messages == ref.messages
    assert ours.turns[0].generated == ref.turns[0].generated
    assert isinstance(ours, Episode) and len(ours.turns) == 2 and ours.solved >= 1
    assert ours.turns[1].prefilled_tokens < ours.turns[1].prompt_tokens  # the cache was reused
    assert ours.turns[0].completion_tokens > 0 and ours.turns[0].gen_seconds > 0


def test_policy_output_defaults():
    out = PolicyOutput("x")
    assert out.prompt_tokens == 0 and out.generated is None
