"""The LLM backend on recorded chat replies: good runs, repairs, malformed replies, timeouts."""

import json
import random
from pathlib import Path

import pytest

from ftrl_lab.envgen.llm import (
    LLMBackend,
    LLMError,
    OpenAIChat,
    TransformersChat,
    TransportError,
    check_decomposition,
    extract_json,
)
from ftrl_lab.envgen.pipeline import PipelineConfig, generate_split
from ftrl_lab.envgen.validate import env_meta, validate_batch

FIXTURES = Path(__file__).parents[1] / "fixtures" / "envgen_llm"


class Replay:
    """An injectable transport that replays a fixture's responses and records the requests."""

    def __init__(self, responses):
        self.responses, self.requests = list(responses), []

    def __call__(self, url, headers, payload, timeout):
        self.requests.append((url, headers, payload, timeout))
        if not self.responses:
            raise AssertionError("the backend asked more often than the fixture has replies")
        r = self.responses.pop(0)
        if r.get("raise") == "timeout":
            raise TimeoutError("timed out")
        if r.get("raise") == "http":
            raise TransportError(r["status"], r.get("body", ""))
        return r


def _backend(name):
    fx = json.loads((FIXTURES / name).read_text())
    sleeps = []
    replay = Replay(fx["responses"])
    chat = OpenAIChat("http://localhost:9/v1", "gpt-4o", api_key="sk-test", transport=replay, sleep=sleeps.append)
    return LLMBackend(chat), fx, replay, sleeps


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_recorded_runs(name):
    backend, fx, replay, sleeps = _backend(name)
    if fx["expect"]["ok"]:
        rec = backend.generate(fx["scenario"], fx["levels"], random.Random(0), split="test")
        assert len(rec.tools) == fx["expect"]["tools"]
        result = validate_batch([rec])[0]  # the same gate as procedural environments (sandbox)
        assert result.ok, result.reasons
        meta = env_meta(rec)
        assert meta["generator"] == "llm" and [c["sub_id"] for c in meta["gold_plan"]] == ["q1", "q2"]
        assert meta["gold_plan"][1]["uses"] == {"company_name": ["q1"]}
        assert not replay.responses  # every recorded reply was used
    else:
        with pytest.raises(LLMError) as e:
            backend.generate(fx["scenario"], fx["levels"], random.Random(0))
        assert e.value.reason == fx["expect"]["reason"]
    url, headers, payload, timeout = replay.requests[0]
    assert url == "http://localhost:9/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert payload["model"] == "gpt-4o" and payload["messages"][0]["role"] == "system"


def test_retries_back_off_exponentially_and_4xx_is_not_retried():
    backend, fx, replay, sleeps = _backend("timeout.json")
    with pytest.raises(LLMError, match="4 attempts"):
        backend.generate("multi_hop", fx["levels"], random.Random(0))
    assert sleeps == [2.0, 4.0, 8.0]
    backend, fx, replay, sleeps = _backend("bad_request.json")
    with pytest.raises(LLMError):
        backend.generate("multi_hop", fx["levels"], random.Random(0))
    assert len(replay.requests) == 1 and sleeps == []


def test_repair_prompt_names_the_problem():
    backend, fx, replay, _ = _backend("repaired_decomposition.json")
    backend.generate(fx["scenario"], fx["levels"], random.Random(0))
    second = replay.requests[1][2]["messages"]
    assert second[-2]["role"] == "assistant" and "problem" in second[-1]["content"]


def test_extract_json_tolerates_fences_and_prose():
    assert extract_json('Sure:\n```json\n{"a": 1}\n```\nDone.') == {"a": 1}
    assert extract_json('The answer is {"a": [1, 2]} as requested') == {"a": [1, 2]}
    assert extract_json("```\n[1, 2]\n```") == [1, 2]
    assert extract_json('first {not json} then {"b": 2}') == {"b": 2}
    for bad in ("", "no json here", '{"a": '):
        with pytest.raises(LLMError) as e:
            extract_json(bad)
        assert e.value.reason == "llm_malformed"


def test_decomposition_shape_checks():
    ok = {
        "question": "Q?",
        "answer": "A",
        "sub_questions": [
            {"id": "q1", "question": "a?", "answer": "x"},
            {"id": "q2", "question": "b?", "answer": "A", "depends_on": ["q1"]},
        ],
    }
    assert check_decomposition(json.loads(json.dumps(ok)), "multi_hop")["sub_questions"][0]["depends_on"] == []
    for scenario in ("single_hop", "parallel_single_hop", "parallel_multi_hop"):
        with pytest.raises(LLMError, match=scenario):
            check_decomposition(json.loads(json.dumps(ok)), scenario)
    bad = json.loads(json.dumps(ok))
    bad["sub_questions"][1]["depends_on"] = ["q9"]
    with pytest.raises(LLMError, match="earlier"):
        check_decomposition(bad, "multi_hop")


def test_bad_response_shapes():
    chat = OpenAIChat("http://x", "m", transport=lambda *a: {"choices": []}, sleep=lambda s: None)
    with pytest.raises(LLMError) as e:
        chat([{"role": "user", "content": "hi"}])
    assert e.value.reason == "llm_bad_response"


def test_transformers_chat_with_a_local_model_object():
    class Ids(list):
        shape = (1, 3)

    class Tok:
        def apply_chat_template(self, messages, add_generation_prompt, return_tensors):
            assert add_generation_prompt and messages[-1]["content"] == "hi"
            return Ids([1, 2, 3])

        def decode(self, ids, skip_special_tokens):
            return "|".join(map(str, ids))

    class Model:
        def generate(self, ids, max_new_tokens, do_sample, **kw):
            return [[1, 2, 3, 7, 8]]

    assert TransformersChat(Model(), Tok())([{"role": "user", "content": "hi"}]) == "7|8"


def test_pipeline_records_llm_rejections_without_crashing(tmp_path):
    replies = json.loads((FIXTURES / "malformed.json").read_text())["responses"] * 2
    replay = Replay(replies + [{"raise": "timeout"}] * 8)
    backend = LLMBackend(OpenAIChat("http://x/v1", "m", transport=replay, retries=1, sleep=lambda s: None))
    report = generate_split(
        PipelineConfig(n=1, scenarios=("multi_hop",), complexity="1", max_attempts=4),
        tmp_path / "llm.jsonl",
        backend=backend,
        progress=False,
    )
    assert report["records"] == 0 and report["runs"][-1]["exhausted_slots"] == [0]
    assert report["gate"]["rejections"] == {"llm_malformed": 2, "llm_unavailable": 2}
