"""An OpenAI-compatible chat-completions backend (vLLM, SGLang, llama.cpp server, OpenAI, ...).

:class:`ChatClient` posts ``{model, messages, tools, ...}`` to ``<base_url>/chat/completions``
with the standard library only: a timeout per request, retries with exponential backoff and
jitter on network errors, 408/409/429 and 5xx (honouring ``Retry-After``), and a clear
:class:`APIError` otherwise. :meth:`ChatClient.complete_many` runs requests on a thread pool.
:class:`ftrl_lab.agent.policies.APIPolicy` plugs the client into :func:`ftrl_lab.agent.rollout.rollout`.

The HTTP layer is a replaceable ``transport(url, body, headers, timeout) -> (status, body,
headers)``, so tests can inject one (or point the client at a local fake server).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ftrl_lab.agent.sampling import DEFAULT_MAX_NEW_TOKENS

Transport = Callable[[str, bytes, dict, float], tuple[int, bytes, dict]]
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class APIError(RuntimeError):
    """A request that failed for good: the HTTP status (None: no response) and the server's words."""

    def __init__(self, message: str, status: int | None = None, body: str = "", attempts: int = 1):
        super().__init__(message)
        self.status, self.body, self.attempts = status, body, attempts


@dataclass
class ChatResult:
    """One completion: the assistant message, its usage, finish reason and wall time."""

    message: dict
    finish_reason: str = ""
    usage: dict = field(default_factory=dict)
    seconds: float = 0.0
    attempts: int = 1


def urllib_transport(url: str, body: bytes, headers: dict, timeout: float) -> tuple[int, bytes, dict]:
    """POST with urllib; HTTP errors come back as a status, network errors raise OSError."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read() or b"", dict(e.headers or {})


class ChatClient:
    """Client of an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is appended).
        model: the served model name.
        api_key: bearer token (default ``$OPENAI_API_KEY``; none sent when empty).
        timeout: seconds per HTTP request.
        max_retries: retries after the first attempt on transient failures.
        backoff, max_backoff: the wait before retry ``i`` is ``min(max_backoff, backoff * 2**i)``
            times a random factor in [0.5, 1] (or the server's ``Retry-After``).
        concurrency: threads of :meth:`complete_many`.
        transport: the HTTP function (default: urllib).
        extra_body: fields added to every request (e.g. ``{"top_k": 1}`` for vLLM).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        concurrency: int = 8,
        transport: Transport | None = None,
        extra_body: dict | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = os.environ.get("OPENAI_API_KEY", "") if api_key is None else api_key
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.concurrency = max(1, int(concurrency))
        self.transport = transport or urllib_transport
        self.extra_body = dict(extra_body or {})
        self.sleep = sleep

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    def complete(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        *,
        temperature: float = 0.0,
        max_new_tokens: int | None = DEFAULT_MAX_NEW_TOKENS,
        **params: Any,
    ) -> ChatResult:
        """One chat completion (retried on transient errors); raises :class:`APIError`."""
        payload = {"model": self.model, "messages": messages, "temperature": temperature, **self.extra_body, **params}
        if max_new_tokens is not None:
            payload["max_tokens"] = max_new_tokens  # the wire name
        if tools:
            payload["tools"] = tools
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        t0 = time.perf_counter()
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                status, raw, headers = self.transport(self.url, body, self._headers(), self.timeout)
            except (TimeoutError, OSError, http.client.HTTPException) as e:  # refused, reset, DNS, timeout
                reason = getattr(e, "reason", e)
                last = f"network error: {type(reason).__name__}: {reason}"
            else:
                text = raw.decode("utf-8", "replace")
                if status == 200:
                    return self._parse(text, time.perf_counter() - t0, attempt + 1)
                last = f"HTTP {status}: {_error_text(text)}"
                if status not in RETRY_STATUS:
                    raise APIError(f"{self.url}: {last}", status, text, attempt + 1)
                retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after")
            if attempt < self.max_retries:
                self.sleep(self._wait(attempt, retry_after))
        raise APIError(
            f"{self.url}: gave up after {self.max_retries + 1} attempt(s); last: {last}", attempts=self.max_retries + 1
        )

    def _parse(self, text: str, seconds: float, attempts: int) -> ChatResult:
        try:
            data = json.loads(text)
            choice = data["choices"][0]
            message = choice["message"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise APIError(
                f"{self.url}: not a chat completion ({type(e).__name__}: {e}): {text[:300]!r}", 200, text, attempts
            ) from None
        if not isinstance(message, dict):
            raise APIError(f"{self.url}: choices[0].message is not an object: {text[:300]!r}", 200, text, attempts)
        return ChatResult(message, choice.get("finish_reason") or "", data.get("usage") or {}, seconds, attempts)

    def complete_many(self, requests: Sequence[dict]) -> list[ChatResult]:
        """Run many ``complete(**request)`` calls on the thread pool; results in request order."""
        if len(requests) <= 1 or self.concurrency == 1:
            return [self.complete(**r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self.complete(**r), requests))


def _error_text(text: str) -> str:
    """The server's error message (OpenAI style ``{"error": {"message": ...}}``) or the body."""
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    except (json.JSONDecodeError, AttributeError):
        pass
    return text.strip()[:300] or "(empty body)"
