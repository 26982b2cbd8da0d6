"""The OpenAI-compatible client: a fake server on 127.0.0.1, retries, errors, the rollout policy."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import TOY

from ftrl_lab.agent.api_client import APIError, ChatClient
from ftrl_lab.agent.policies import APIPolicy
from ftrl_lab.agent.rollout import rollout
from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.records import load_records


def completion(message, finish="stop"):
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7},
    }


class FakeServer:
    """Answers POST /v1/chat/completions with ``respond(request_json) -> (status, body, headers)``."""

    def __init__(self, respond):
        self.requests, self.headers = [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    status, payload, extra = 404, {"error": {"message": f"no route {self.path}"}}, {}
                else:
                    status, payload, extra = respond(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_complete_sends_request_and_parses_reply():
    msg = {"role": "assistant", "content": "hi"}
    with FakeServer(lambda body: (200, completion(msg), {})) as srv:
        client = ChatClient(srv.url, "m1", api_key="sk-test")
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        res = client.complete([{"role": "user", "content": "q"}], tools, temperature=0.0, max_new_tokens=5)
    assert res.message == msg and res.finish_reason == "stop" and res.usage["completion_tokens"] == 7
    body = srv.requests[0]
    assert body["model"] == "m1" and body["tools"] == tools and body["max_tokens"] == 5 and body["temperature"] == 0
    assert srv.headers[0]["Authorization"] == "Bearer sk-test"


def test_retries_transient_errors_then_succeeds():
    answers = iter(
        [
            (503, {"error": {"message": "overloaded"}}, {}),
            (429, {"error": "slow down"}, {"Retry-After": "2"}),
            (200, completion({"role": "assistant", "content": "ok"}), {}),
        ]
    )
    waits = []
    with FakeServer(lambda body: next(answers)) as srv:
        client = ChatClient(srv.url, "m", api_key="", sleep=waits.append, backoff=0.5)
        res = client.complete([{"role": "user", "content": "q"}])
    assert res.message["content"] == "ok" and res.attempts == 3
    assert 0.25 <= waits[0] <= 0.5 and waits[1] == 2.0  # jittered backoff, then Retry-After
    assert "Authorization" not in srv.headers[0]


def test_client_errors_are_not_retried_and_name_the_cause():
    with FakeServer(lambda body: (400, {"error": {"message": "model 'm' does not exist"}}, {})) as srv:
        client = ChatClient(srv.url, "m", sleep=lambda s: pytest.fail("must not retry"))
        with pytest.raises(APIError, match="HTTP 400: model 'm' does not exist") as e:
            client.complete([{"role": "user", "content": "q"}])
    assert e.value.status == 400 and len(srv.requests) == 1


def test_gives_up_after_max_retries_and_bad_bodies():
    with FakeServer(lambda body: (500, b"internal", {})) as srv:
        client = ChatClient(srv.url, "m", max_retries=2, sleep=lambda s: None)
        with pytest.raises(APIError, match="gave up after 3 attempt.*HTTP 500: internal"):
            client.complete([{"role": "user", "content": "q"}])
    assert len(srv.requests) == 3
    with FakeServer(lambda body: (200, {"choices": []}, {})) as srv:
        with pytest.raises(APIError, match="not a chat completion"):
            ChatClient(srv.url, "m").complete([{"role": "user", "content": "q"}])


def test_timeouts_and_refused_connections_are_retried():
    def slow(body):
        time.sleep(0.5)
        return 200, completion({"role": "assistant", "content": "late"}), {}

    with FakeServer(slow) as srv:
        client = ChatClient(srv.url, "m", timeout=0.1, max_retries=1, sleep=lambda s: None)
        with pytest.raises(APIError, match="gave up after 2 attempt.*network error.*timed out"):
            client.complete([{"role": "user", "content": "q"}])
    closed = ChatClient(srv.url, "m", max_retries=1, sleep=lambda s: None)  # the server is gone now
    with pytest.raises(APIError, match="network error"):
        closed.complete([{"role": "user", "content": "q"}])
    with pytest.raises(ValueError, match="http"):
        ChatClient("127.0.0.1:8000", "m")


def test_complete_many_keeps_order_with_injected_transport():
    def transport(url, body, headers, timeout):
        n = json.loads(body)["messages"][0]["content"]
        time.sleep(0.02 * (5 - int(n)))  # later requests answer first
        return 200, json.dumps(completion({"role": "assistant", "content": f"answer {n}"})).encode(), {}

    client = ChatClient("http://fake/v1", "m", transport=transport, concurrency=5)
    t0 = time.perf_counter()
    results = client.complete_many([{"messages": [{"role": "user", "content": str(i)}]} for i in range(5)])
    assert [r.message["content"] for r in results] == [f"answer {i}" for i in range(5)]
    assert time.perf_counter() - t0 < 0.3  # concurrent, not 0.3 s in a row


def test_api_policy_plays_episodes_against_a_fake_tool_calling_model():
    """The fake model calls capital_lookup first, then answers with the tool's output."""

    def respond(body):
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            return 200, completion({"role": "assistant", "content": "Answer: " + messages[-1]["content"]}), {}
        country = messages[0]["content"].split("capital of ")[-1].split()[0].strip("?")
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "capital_lookup", "arguments": json.dumps({"country": country})},
        }
        return 200, completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"), {}

    records = load_records(TOY)
    with FakeServer(respond) as srv:
        policy = APIPolicy(ChatClient(srv.url, "fake"), max_new_tokens=64)
        episodes = rollout(records, policy, max_active=3, executor=inprocess_executor(), progress=False)
    first = episodes[0]
    assert first.metrics == {"solve_precision": 1.0, "solve_rate": 1.0, "solve_f1": 1.0}
    assert first.messages[1]["tool_calls"][0]["id"] == "call_1" and first.messages[2]["role"] == "tool"
    assert first.turns[0].completion_tokens == 7 and first.turns[0].finish_reason == "tool_calls"
    assert "Paris" in first.messages[-1]["content"]
    assert all(r["tools"] == records[0].tools for r in srv.requests)
    assert any(m["role"] == "tool" for r in srv.requests for m in r["messages"])
