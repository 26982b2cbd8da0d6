"""Every policy, and the one factory :func:`make_policy`.

A policy answers the current conversation of each episode it is given (the
:class:`ftrl_lab.agent.rollout.Policy` protocol that :func:`ftrl_lab.agent.rollout.rollout`
drives):

- :class:`LocalPolicy`: a local model through the batched, cache-reusing engine;
- :class:`HFGeneratePolicy`: plain ``model.generate`` on the re-encoded conversation, one
  episode at a time (FTRL's own way, the reference the engine is checked against);
- :class:`APIPolicy`: an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server, ...);
- :class:`ScriptedPolicy` and :class:`ForcedTurnsPolicy`: fixed responses (tests, demos) and
  scripted first turns on top of a real policy;
- :class:`CallablePolicy`: a plain ``fn(conversations, tools) -> responses`` callable
  (:func:`as_rollout_policy` wraps one).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ftrl_lab.agent.api_client import ChatClient
from ftrl_lab.agent.rollout import Episode, Policy, PolicyOutput
from ftrl_lab.agent.sampling import DEFAULT_MAX_NEW_TOKENS, SamplingParams


# --- local models ----------------------------------------------------------------------------
class LocalPolicy:
    """A local model through the batched, cache-reusing :class:`~ftrl_lab.agent.engine.Engine`.

    ``reuse_cache=False`` re-prefills the whole conversation every turn (still batched).
    """

    fmt = "qwen"

    def __init__(self, engine, params: SamplingParams | None = None, *, reuse_cache: bool = True, fmt: str = "qwen"):
        self.engine, self.params = engine, params or SamplingParams()
        self.reuse_cache, self.fmt = reuse_cache, fmt
        self.states: dict[int, Any] = {}

    def act(self, episodes: Sequence[Episode]) -> list[PolicyOutput]:
        from ftrl_lab.agent.engine import KVState

        prompts = [self.engine.encode_chat(ep.messages, ep.record.tools) for ep in episodes]
        states = [self.states.setdefault(ep.index, KVState()) for ep in episodes] if self.reuse_cache else None
        gens = self.engine.generate(prompts, self.params, states)
        return [
            PolicyOutput(
                g.text,
                g.prompt_tokens,
                g.prefilled_tokens,
                g.completion_tokens,
                g.finish_reason,
                g.prefill_seconds + g.decode_seconds,
            )
            for g in gens
        ]

    def release(self, episode: Episode) -> None:
        self.states.pop(episode.index, None)


class HFGeneratePolicy:
    """FTRL's way: ``model.generate`` on the freshly encoded conversation, one episode at a time.

    Greedy when ``temperature == 0``. The reference the engine is checked against.
    """

    fmt = "qwen"

    def __init__(
        self,
        model,
        tokenizer,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        fmt: str = "qwen",
    ):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.fmt = max_new_tokens, temperature, fmt

    def act(self, episodes: Sequence[Episode]) -> list[PolicyOutput]:
        import torch

        out = []
        device = next(self.model.parameters()).device
        for ep in episodes:
            t0 = time.perf_counter()
            text = self.tokenizer.apply_chat_template(
                ep.messages, tools=ep.record.tools or None, tokenize=False, add_generation_prompt=True
            )
            ids = torch.tensor([self.tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
            sampling = (
                {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
            )
            with torch.inference_mode():
                gen = self.model.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens, **sampling
                )
            new = gen[0, ids.shape[1] :].tolist()
            stops = self.model.generation_config.eos_token_id
            stops = set(stops if isinstance(stops, list) else [stops])
            reason = "stop" if new and new[-1] in stops else "length"
            out.append(
                PolicyOutput(
                    self.tokenizer.decode(new, skip_special_tokens=True),
                    ids.shape[1],
                    ids.shape[1],
                    len(new),
                    reason,
                    time.perf_counter() - t0,
                )
            )
        return out

    def release(self, episode: Episode) -> None:
        pass


Script = Callable[[Episode], Any] | Sequence[Any] | Mapping[str, Sequence[Any]]


class ScriptedPolicy:
    """Replays fixed responses, for tests and demos.

    ``script``: a list of responses (turn ``t`` of every episode gets ``script[t]``); a mapping
    from :func:`episode_key` or question text to such a list; or a function of the episode.
    Past the end of its list an episode gets ``default`` (no call: the episode ends).
    ``fail_after``: raise ``RuntimeError`` once this many episodes have been released (to test
    interrupted runs).
    """

    def __init__(self, script: Script, default: Any = "", fmt: str = "qwen", fail_after: int | None = None):
        self.script, self.default, self.fmt = script, default, fmt
        self.fail_after, self.released = fail_after, 0

    def act(self, episodes: Sequence[Episode]) -> list[PolicyOutput]:
        if self.fail_after is not None and self.released >= self.fail_after:
            raise RuntimeError(f"ScriptedPolicy: simulated failure after {self.released} episodes")
        return [PolicyOutput(self._response(ep), finish_reason="stop") for ep in episodes]

    def _response(self, ep: Episode) -> Any:
        if callable(self.script):
            return self.script(ep)
        if isinstance(self.script, Mapping):
            lines = self.script.get(ep.key, self.script.get(ep.record.question, ()))
        else:
            lines = self.script
        t = len(ep.turns)
        return lines[t] if t < len(lines) else self.default

    def release(self, episode: Episode) -> None:
        self.released += 1


class ForcedTurnsPolicy:
    """Scripted first turns on top of a real policy: for the first ``turns`` turns of each
    episode the response is ``script(episode)``, afterwards the inner policy's own.

    The inner policy generates on every turn (its cost is paid and its text is kept in
    ``Turn.generated``), so episodes are multi-turn even with a model that rarely calls
    tools, while every model input is still exactly what an FTRL loop would feed it.
    """

    def __init__(self, inner: Policy, script: Callable[[Episode], Any], turns: int = 1):
        self.inner, self.script, self.turns = inner, script, turns
        self.fmt = getattr(inner, "fmt", "qwen")

    def act(self, episodes: Sequence[Episode]) -> list[PolicyOutput]:
        outputs = self.inner.act(episodes)
        for ep, out in zip(episodes, outputs):
            if len(ep.turns) < self.turns:
                out.generated, out.response = out.response, self.script(ep)
        return outputs

    def release(self, episode: Episode) -> None:
        self.inner.release(episode)


# --- served models ---------------------------------------------------------------------------
class APIPolicy:
    """A policy backed by a :class:`ftrl_lab.agent.api_client.ChatClient` (an OpenAI-compatible endpoint).

    Each turn sends every active episode's conversation and tools (concurrently). The reply's
    ``tool_calls`` are used as is; a reply without them is parsed as ``fmt`` text (a server
    without a tool parser returns Qwen ``<tool_call>`` blocks in ``content``).
    """

    def __init__(
        self,
        client: ChatClient,
        temperature: float = 0.0,
        max_new_tokens: int | None = DEFAULT_MAX_NEW_TOKENS,
        fmt: str = "qwen",
        **params: Any,
    ):
        self.client, self.temperature, self.max_new_tokens, self.fmt = client, temperature, max_new_tokens, fmt
        self.params = params

    def act(self, episodes):
        results = self.client.complete_many(
            [
                {
                    "messages": ep.messages,
                    "tools": ep.record.tools,
                    "temperature": self.temperature,
                    "max_new_tokens": self.max_new_tokens,
                    **self.params,
                }
                for ep in episodes
            ]
        )
        return [
            PolicyOutput(
                r.message,
                r.usage.get("prompt_tokens", 0),
                r.usage.get("prompt_tokens", 0),
                r.usage.get("completion_tokens", 0),
                r.finish_reason,
                r.seconds,
            )
            for r in results
        ]

    def release(self, episode) -> None:
        pass


# --- plain callables -------------------------------------------------------------------------
class CallablePolicy:
    """A plain ``policy(conversations, tools)`` callable as a :mod:`ftrl_lab.agent.rollout` policy."""

    def __init__(self, fn: Callable, fmt: str = "qwen"):
        self.fn, self.fmt = fn, fmt

    def act(self, episodes):
        responses = list(self.fn([ep.messages for ep in episodes], [ep.record.tools or None for ep in episodes]))
        if len(responses) != len(episodes):
            raise ValueError(f"the policy gave {len(responses)} responses for {len(episodes)} conversations")
        return [PolicyOutput(r, finish_reason="stop") for r in responses]

    def release(self, episode) -> None:
        pass


def as_rollout_policy(policy: Any, fmt: str = "qwen") -> Any:
    """A rollout policy as is; a plain callable wrapped in :class:`CallablePolicy`."""
    if callable(getattr(policy, "act", None)):
        return policy
    if callable(policy):
        return CallablePolicy(policy, fmt)
    raise TypeError(f"not a policy: {type(policy).__name__} (need .act(episodes) or a callable)")


# --- the factory -----------------------------------------------------------------------------
def make_policy(
    model: str | tuple[Any, Any] = "default",
    *,
    api_base: str | None = None,
    api_key: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 8,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    bf16_prefill: bool = False,
    fast_decode: bool = False,
) -> tuple[Policy, dict]:
    """The one policy factory: a policy and a description of it.

    ``model``: a local folder, a hub id or "default" (loaded with
    :func:`ftrl_lab.agent.models.load_model`); an already loaded ``(model, tokenizer)`` pair
    (training evaluates and samples its in-memory model this way); or, with ``api_base``, the
    served name behind an OpenAI-compatible endpoint. Local models decode through the batched
    :class:`ftrl_lab.agent.engine.Engine` (``batch_size`` rows, ``seed`` for sampling,
    ``bf16_prefill`` and ``fast_decode`` as there)."""
    if api_base:
        from ftrl_lab.agent.api_client import ChatClient

        client = ChatClient(api_base, model, api_key, concurrency=batch_size)
        return APIPolicy(client, temperature=temperature, max_new_tokens=max_new_tokens, top_p=top_p), {
            "backend": "api",
            "api_base": api_base,
            "model": model,
        }
    from ftrl_lab.agent.engine import Engine
    from ftrl_lab.agent.models import load_model, model_info

    if isinstance(model, str):
        name, (lm, tokenizer) = model, load_model(model, dtype=dtype, device=device)
    else:
        lm, tokenizer = model
        name = getattr(lm.config, "_name_or_path", "") or type(lm).__name__
    engine = Engine(lm, tokenizer, batch_size=batch_size, seed=seed, bf16_prefill=bf16_prefill, fast_decode=fast_decode)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    return LocalPolicy(engine, params), {
        "backend": "local",
        "model": name,
        "model_info": model_info(lm),
        "bf16_prefill": engine.bf16_prefill,
        "fast_decode": {"bf16_linears": engine.bf16_linears, "decode_attention": engine.decode_attention},
    }


# --- command lines --------------------------------------------------------------------------
def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluated-model options every command line shares (read back by :func:`policy_from_args`)."""
    parser.add_argument("--model", default="default", help='local folder, hub id, "default", or the served name')
    parser.add_argument("--api-base", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=None, help="default: $OPENAI_API_KEY")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="per turn (FTRL: 1024)")
    parser.add_argument("--batch-size", type=int, default=8, help="conversations decoded together")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--bf16-prefill", action="store_true", help="prefill an fp32 model under bf16 autocast (CPUs with bf16)"
    )
    parser.add_argument(
        "--fast-decode",
        action="store_true",
        help="CPU decode with bf16 prepacked linears and matmul attention (faster; not bit-equal to fp32)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def policy_from_args(args: argparse.Namespace) -> tuple[Policy, dict]:
    """:func:`make_policy` from the options of :func:`add_policy_arguments`.

    Local models first set torch's CPU threads (:func:`ftrl_lab.agent.models.pick_threads`: the
    ``--threads`` given, else the cores free now); ``info["threads"]`` says how they were chosen.
    """
    threads_how = None
    if not args.api_base:
        import torch

        from ftrl_lab.agent.models import pick_threads

        threads, threads_how = pick_threads(args.threads)
        torch.set_num_threads(threads)
    policy, info = make_policy(
        args.model,
        api_base=args.api_base,
        api_key=args.api_key,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        temperature=args.temperature,
        device=args.device,
        dtype=args.dtype,
        bf16_prefill=args.bf16_prefill,
        fast_decode=getattr(args, "fast_decode", False),
    )
    if threads_how is not None:
        info["threads"] = threads_how
    return policy, info
