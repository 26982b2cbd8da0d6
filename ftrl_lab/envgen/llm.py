"""The LLM backend: each pipeline stage as a prompt to a chat model, as the paper did with GPT-4o.

Stages: decomposition -> one tool document per sub-question -> integration (with the
sub-question -> tool mapping) -> the four scaling steps (skipped at level 0) -> one
deployment prompt per tool (code plus the gold call arguments). Replies are parsed with
`extract_json` (tolerant to code fences and prose around the JSON) and checked; a bad reply
gets `max_repairs` follow-up prompts naming the problem, then the environment is rejected
with an `LLMError` (a `GenerationError`: counted in the report, never a crash). The record
then goes through the same validation gate as procedural ones.

A chat model is any callable ``messages -> str``: `OpenAIChat` (an OpenAI-compatible
endpoint over `urllib`, with retries, exponential backoff and timeouts, and an injectable
transport for recorded responses) or `TransformersChat` (a local transformers model).
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftrl_lab.core.records import FTRL_INSTRUCTION, EnvRecord, tool_schema_errors
from ftrl_lab.envgen.backend import EnvGenerator, GenerationError
from ftrl_lab.envgen.decompose import SCENARIOS
from ftrl_lab.envgen.schema import DOMAINS
from ftrl_lab.envgen.spec import STRATEGIES

Chat = Callable[[list[dict]], str]
Transport = Callable[[str, dict, dict, float], dict]
"""(url, headers, JSON payload, timeout seconds) -> decoded JSON response."""


class LLMError(GenerationError):
    """A stage could not get a usable reply (reason: llm_unavailable, llm_http_error,
    llm_bad_response, llm_malformed, llm_invalid)."""


class TransportError(Exception):
    def __init__(self, status: int | None, body: str):
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {body[:200]}" if status else body[:200])


def urllib_transport(url: str, headers: dict, payload: dict, timeout: float) -> dict:
    """POST JSON with the standard library; TimeoutError / TransportError on failure."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        raise TransportError(e.code, e.read().decode("utf-8", "replace")) from None
    except TimeoutError as e:
        raise TimeoutError(f"no reply in {timeout} s") from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise TimeoutError(f"no reply in {timeout} s") from e
        raise TransportError(None, f"connection failed: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise TransportError(200, f"reply is not JSON: {e}") from None


ENVGEN_MAX_NEW_TOKENS = 4096
"""Tokens one environment-generation call may produce (a whole environment's documents or code)."""


@dataclass
class OpenAIChat:
    """Chat completions from an OpenAI-compatible endpoint (``{base_url}/chat/completions``)."""

    base_url: str
    model: str
    api_key: str = ""
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 2.0
    temperature: float = 0.7
    max_new_tokens: int = ENVGEN_MAX_NEW_TOKENS
    transport: Transport = urllib_transport
    sleep: Callable[[float], None] = time.sleep
    calls: int = 0

    def __call__(self, messages: list[dict]) -> str:
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_new_tokens,  # the wire name
        }
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            self.calls += 1
            try:
                response = self.transport(url, headers, payload, self.timeout)
            except TimeoutError as e:
                last = e
                continue
            except TransportError as e:
                if e.status is not None and e.status not in (408, 409, 429) and e.status < 500:
                    raise LLMError("llm_http_error", str(e)) from None
                last = e
                continue
            try:
                content = response["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise LLMError("llm_bad_response", f"no choices[0].message.content in {str(response)[:200]}") from None
            if not isinstance(content, str):
                raise LLMError("llm_bad_response", f"content is {type(content).__name__}, not text")
            return content
        reason = "timeout" if isinstance(last, TimeoutError) else "error"
        raise LLMError("llm_unavailable", f"{self.retries + 1} attempts failed ({reason}): {last}")


class TransformersChat:
    """A local transformers chat model as a `Chat` callable (greedy unless temperature > 0)."""

    def __init__(
        self, model: Any, tokenizer: Any, max_new_tokens: int = ENVGEN_MAX_NEW_TOKENS, temperature: float = 0.0
    ):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature = max_new_tokens, temperature

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> TransformersChat:
        """Load from a LOCAL directory (never downloads)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        return cls(model, tok, **kwargs)

    def __call__(self, messages: list[dict]) -> str:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        sample = self.temperature > 0
        out = self.model.generate(
            ids,
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            **({"temperature": self.temperature} if sample else {}),
        )
        return self.tokenizer.decode(out[0][ids.shape[-1] :], skip_special_tokens=True)


# --- reply parsing -------------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|JSON|python)?\s*\n(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The first JSON object (or array) in a reply: fenced blocks first, then any '{' that decodes."""
    if not isinstance(text, str) or not text.strip():
        raise LLMError("llm_malformed", "empty reply")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for m in re.finditer(r"[{\[]", chunk):
            try:
                obj, _ = decoder.raw_decode(chunk[m.start() :])
            except json.JSONDecodeError:
                continue
            if isinstance(obj, (dict, list)):
                return obj
    raise LLMError("llm_malformed", f"no JSON object in reply: {text[:160]!r}")


# --- prompts -------------------------------------------------------------------------------------
SYSTEM = (
    "You build tool-use training environments for language models. Every name, date and number you "
    "write is invented (a fictional world), so that answers cannot come from memory. Reply with ONE JSON "
    "object and nothing else."
)
SCENARIO_RULES = {
    "single_hop": "exactly 1 sub-question; the final answer is its answer.",
    "parallel_single_hop": "2 or 3 independent sub-questions (empty depends_on); the final answer combines "
    "their answers (a sum, a difference, a comparison or a list).",
    "multi_hop": "a chain of 2 to 10 sub-questions, each q_i depending on q_(i-1) (its answer is needed to ask "
    "it); the final answer is the last one's answer.",
    "parallel_multi_hop": "5 to 11 sub-questions in all: 2 or 3 independent chains of at least 2 steps, and "
    "optionally a last arithmetic step depending on the chain ends.",
}
STRATEGY_PROMPTS = {
    "functional": (
        "Functional generalization, level {level} of 3 (1: broader wording; 2: a more general tool "
        "that also returns related information; 3: a comprehensive multi-purpose tool). Keep every "
        "tool name and every existing parameter."
    ),
    "parameters": (
        "Parameter expansion, level {level} of 3 (1: add one or two optional parameters; 2: two to "
        "four; 3: about seven parameters per tool in total). Optional parameters get sensible "
        "defaults. Keep every tool name and existing parameter."
    ),
    "types": (
        "Parameter-type generalization, level {level} of 3 (1: enums for categorical strings; 2: numbers, "
        "integers and booleans with minimum/maximum; 3: arrays and objects with item / property "
        "schemas). Keep every tool name and parameter name."
    ),
    "toolset": (
        "Toolset extension, level {level} of 3: add {k} distractor tool(s), some from unrelated domains "
        "and some near-duplicates of existing tools that do something slightly different. Do not change "
        "the existing tools."
    ),
}
DEPLOY_RULES = (
    "Write the Python implementation as ONE function `def {name}(...)` taking the documented "
    "parameters as keyword arguments (required ones default to None and are checked; optional ones "
    "have their documented defaults; accept **kwargs and reject unknown names). Validate every "
    "argument and RETURN an error dict or string (never raise) for missing required parameters, wrong "
    "types, bad enum values and out-of-range numbers. Answer from a small hard-coded table holding "
    "the rows needed below plus a few plausible other rows; no imports beyond json/datetime, no "
    "randomness, deterministic output (a dict or a sentence). Never echo an argument back unless it "
    "matched a table row."
)


def _tools_json(tools: list[dict]) -> str:
    return json.dumps([t["function"] if "function" in t else t for t in tools], ensure_ascii=False)


def _as_tool(d: Any, where: str) -> dict:
    if not isinstance(d, dict) or not isinstance(d.get("name"), str):
        raise LLMError("llm_invalid", f"{where}: a tool needs a name: {str(d)[:120]}")
    fn = {
        "name": d["name"],
        "description": str(d.get("description", "")),
        "parameters": d.get("parameters") or {"type": "object", "properties": {}},
    }
    tool = {"type": "function", "function": fn}
    problems = tool_schema_errors(tool)
    if problems:
        raise LLMError("llm_invalid", f"{where}: tool '{d['name']}': {problems[0][0]}: {problems[0][1]}")
    return tool


def _tool_list(obj: Any, where: str) -> list[dict]:
    tools = obj.get("tools") if isinstance(obj, dict) else None
    if not isinstance(tools, list) or not tools:
        raise LLMError("llm_invalid", f'{where}: expected {{"tools": [...]}}')
    out = [_as_tool(t, where) for t in tools]
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        raise LLMError("llm_invalid", f"{where}: duplicate tool names {names}")
    return out


@dataclass
class LLMBackend(EnvGenerator):
    """The five stages as prompts to `chat` (see the module docstring)."""

    chat: Chat
    max_repairs: int = 1
    model_name: str = ""
    name: str = field(default="llm", init=False)

    def describe(self) -> dict[str, Any]:
        return {"backend": "llm", "model": self.model_name or getattr(self.chat, "model", type(self.chat).__name__)}

    # --- one stage ---------------------------------------------------------------------------
    def ask(self, stage: str, prompt: str, check: Callable[[Any], Any]) -> Any:
        """Prompt, parse, check; on a bad reply ask again naming the problem (max_repairs times)."""
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        error: LLMError | None = None
        for _ in range(self.max_repairs + 1):
            reply = self.chat(messages)
            try:
                return check(extract_json(reply))
            except LLMError as e:
                error = e
                messages += [
                    {"role": "assistant", "content": reply},
                    {
                        "role": "user",
                        "content": f"That reply has a problem: {e.detail}. Reply again "
                        f"with the corrected JSON object only.",
                    },
                ]
        detail = error.detail if error.detail.startswith(stage) else f"{stage}: {error.detail}"
        raise LLMError(error.reason, detail)

    # --- stages ------------------------------------------------------------------------------
    def decompose(self, scenario: str, rng: random.Random) -> dict:
        prompt = (
            f"Create one question of the scenario type '{scenario}': {SCENARIO_RULES[scenario]}\n"
            f"Topic: {rng.choice(DOMAINS)}. Variation seed: {rng.randrange(10**6)}.\n"
            "Each sub-question is answered by one tool call; gold answers are short strings (a name, a "
            'number, a date YYYY-MM-DD).\nReturn {"question": str, "answer": str, "sub_questions": '
            '[{"id": "q1", "question": str, "answer": str, "depends_on": []}]}.'
        )
        return self.ask("decompose", prompt, lambda obj: check_decomposition(obj, scenario))

    def documents(self, dec: dict) -> list[dict]:
        subs = [{"id": s["id"], "question": s["question"]} for s in dec["sub_questions"]]
        prompt = (
            "For each sub-question write the OpenAI function schema of ONE tool that answers it (one tool "
            "per sub-question): a snake_case name, a description, and parameters as a JSON-Schema object "
            "with typed properties, 'required', enums for categorical values and defaults for optional "
            "parameters. Never put an answer into a document.\n"
            f"Sub-questions: {json.dumps(subs, ensure_ascii=False)}\n"
            'Return {"tools": [{"sub_id": "q1", "name": ..., "description": ..., "parameters": {...}}]}.'
        )

        def check(obj: Any) -> list[dict]:
            tools = _tool_list(obj, "documents")
            ids = [t.get("sub_id") for t in obj["tools"]]
            if sorted(map(str, ids)) != sorted(s["id"] for s in subs):
                raise LLMError("llm_invalid", f"documents: need one tool per sub-question, got sub_ids {ids}")
            return tools

        return self.ask("documents", prompt, check)

    def integrate(self, dec: dict, tools: list[dict]) -> tuple[list[dict], dict[str, str]]:
        prompt = (
            "Merge tools whose functions overlap into one more general tool (for example several lookups "
            "about the same kind of entity become one tool with an enum parameter choosing the "
            "information); keep the other tools unchanged.\n"
            f"Tools: {_tools_json(tools)}\nSub-question -> tool now: "
            f"{json.dumps({s['id']: t['function']['name'] for s, t in zip(dec['sub_questions'], tools)})}\n"
            'Return {"tools": [...], "mapping": {"q1": "tool_name", ...}} covering every sub-question.'
        )

        def check(obj: Any) -> tuple[list[dict], dict]:
            merged = _tool_list(obj, "integrate")
            mapping = obj.get("mapping")
            names = {t["function"]["name"] for t in merged}
            want = {s["id"] for s in dec["sub_questions"]}
            if not isinstance(mapping, dict) or set(mapping) != want or not set(mapping.values()) <= names:
                raise LLMError(
                    "llm_invalid",
                    f"integrate: mapping {mapping} must send each of {sorted(want)} to one of {sorted(names)}",
                )
            return merged, {k: str(v) for k, v in mapping.items()}

        return self.ask("integrate", prompt, check)

    def scale(
        self, tools: list[dict], mapping: dict[str, str], levels: dict[str, int], rng: random.Random
    ) -> list[dict]:
        for strategy in STRATEGIES:
            level = levels.get(strategy, 0)
            if level == 0:
                continue
            k = {1: rng.randint(1, 2), 2: rng.randint(2, 4), 3: rng.randint(4, 8)}[level]
            prompt = (
                STRATEGY_PROMPTS[strategy].format(level=level, k=k) + f"\nTools: {_tools_json(tools)}\n"
                'Return {"tools": [...]} with the full list of tools.'
            )

            def check(obj: Any, before=len(tools), strategy=strategy) -> list[dict]:  # noqa: B008 - binds the count now
                new = _tool_list(obj, f"scale/{strategy}")
                names = {t["function"]["name"] for t in new}
                lost = sorted(set(mapping.values()) - names)
                if lost:
                    raise LLMError("llm_invalid", f"scale/{strategy}: tool(s) {lost} disappeared or were renamed")
                if strategy == "toolset" and len(new) <= before:
                    raise LLMError("llm_invalid", f"scale/toolset: no tool was added ({len(new)} tools)")
                return new

            tools = self.ask(f"scale/{strategy}", prompt, check)
        return tools

    def deploy_tool(self, tool: dict, subs: list[dict], answers: dict[str, str]) -> tuple[str, dict]:
        name = tool["function"]["name"]
        asks = [
            {
                "id": s["id"],
                "question": s["question"],
                "answer": s["answer"],
                "uses_answers_of": {d: answers[d] for d in s.get("depends_on", [])},
            }
            for s in subs
        ]
        prompt = (
            DEPLOY_RULES.format(name=name)
            + f"\nTool: {json.dumps(tool['function'], ensure_ascii=False)}\n"
            + (
                f"It must answer these sub-questions: {json.dumps(asks, ensure_ascii=False)}\n"
                if asks
                else "It answers no sub-question of this environment (a distractor): return plausible invented data.\n"
            )
            + 'Return {"code": "<python source>", "calls": [{"sub_id": "q1", "arguments": {...}}]} '
            "where calls give the exact arguments answering each listed sub-question."
        )
        want = {s["id"] for s in subs}

        def check(obj: Any) -> tuple[str, dict]:
            code = obj.get("code") if isinstance(obj, dict) else None
            if not isinstance(code, str) or f"def {name}(" not in code:
                raise LLMError("llm_invalid", f"deploy/{name}: 'code' must define def {name}(...)")
            try:
                compile(code, name, "exec")
            except SyntaxError as e:
                raise LLMError(
                    "llm_invalid", f"deploy/{name}: code does not compile: {e.msg} (line {e.lineno})"
                ) from None
            calls = obj.get("calls") or []
            got = {str(c.get("sub_id")): c.get("arguments") for c in calls if isinstance(c, dict)}
            if set(got) != want or not all(isinstance(a, dict) for a in got.values()):
                raise LLMError(
                    "llm_invalid", f"deploy/{name}: need arguments for exactly {sorted(want)}, got {sorted(got)}"
                )
            return code, got

        return self.ask(f"deploy/{name}", prompt, check)

    # --- the whole environment ---------------------------------------------------------------
    def generate(
        self,
        scenario: str,
        levels: dict[str, int],
        rng: random.Random,
        split: str = "train",
        meta: dict[str, Any] | None = None,
    ) -> EnvRecord:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario '{scenario}' (choose from {SCENARIOS})")
        dec = self.decompose(scenario, rng)
        tools = self.documents(dec)
        tools, mapping = self.integrate(dec, tools)
        tools = self.scale(tools, mapping, levels, rng)
        answers = {s["id"]: s["answer"] for s in dec["sub_questions"]}
        codes: dict[str, str] = {}
        plan: list[dict] = []
        for tool in tools:
            name = tool["function"]["name"]
            subs = [s for s in dec["sub_questions"] if mapping[s["id"]] == name]
            codes[name], args = self.deploy_tool(tool, subs, answers)
            for s in subs:
                uses = {
                    p: [d]
                    for p, v in args[s["id"]].items()
                    for d in s.get("depends_on", [])
                    if isinstance(v, str) and v.strip().lower() == answers[d].strip().lower()
                }
                plan.append({"sub_id": s["id"], "tool": name, "arguments": args[s["id"]], "uses": uses})
        order = {s["id"]: i for i, s in enumerate(dec["sub_questions"])}
        plan.sort(key=lambda c: order[c["sub_id"]])
        unsolved: dict[str, list[str]] = {}
        for c in plan:
            unsolved.setdefault(c["tool"], []).append(answers[c["sub_id"]])
        subs_meta = [
            {
                "id": s["id"],
                "text": s["question"],
                "answer": s["answer"],
                "kind": "llm",
                "depends_on": list(s.get("depends_on", [])),
            }
            for s in dec["sub_questions"]
        ]
        env_meta = {
            "generator": "llm",
            **self.describe(),
            **(meta or {}),
            "scenario": scenario,
            "levels": dict(levels),
            "composition": "llm",
            "sub_questions": subs_meta,
            "edges": [[d, s["id"]] for s in subs_meta for d in s["depends_on"]],
            "gold_plan": plan,
            "integration": {"n": len(dec["sub_questions"]), "m": len(set(mapping.values())), "merged": {}},
            "tool_origin": {
                t["function"]["name"]: ("gold" if t["function"]["name"] in unsolved else "distractor") for t in tools
            },
            "decoys": {},
        }
        return EnvRecord(
            messages=[{"role": "user", "content": FTRL_INSTRUCTION + dec["question"]}],
            tools=tools,
            codes=codes,
            unsolved_set=unsolved,
            solve_rate=0.0,
            data_source=f"self/{scenario}",
            split=split,
            answer=str(dec["answer"]),
            extra={"env_meta": json.dumps(env_meta, ensure_ascii=False)},
        )


def check_decomposition(obj: Any, scenario: str) -> dict:
    """A decomposition reply, checked against the scenario's shape (raises LLMError)."""
    if not isinstance(obj, dict):
        raise LLMError("llm_invalid", "decompose: expected a JSON object")
    subs = obj.get("sub_questions")
    if not isinstance(obj.get("question"), str) or not obj["question"].strip() or "answer" not in obj:
        raise LLMError("llm_invalid", "decompose: need a non-empty 'question' and an 'answer'")
    if not isinstance(subs, list) or not subs:
        raise LLMError("llm_invalid", "decompose: need a non-empty 'sub_questions' list")
    seen: list[str] = []
    for s in subs:
        if not isinstance(s, dict) or not all(isinstance(s.get(k), str) and s[k].strip() for k in ("id", "question")):
            raise LLMError("llm_invalid", f"decompose: bad sub-question {str(s)[:120]}")
        if s["id"] in seen:
            raise LLMError("llm_invalid", f"decompose: duplicate id {s['id']}")
        s["answer"] = str(s.get("answer", "")).strip()
        if not s["answer"]:
            raise LLMError("llm_invalid", f"decompose: sub-question {s['id']} has no answer")
        deps = s.setdefault("depends_on", [])
        if not isinstance(deps, list) or any(d not in seen for d in deps):
            raise LLMError("llm_invalid", f"decompose: {s['id']} depends on {deps}, not all earlier ids")
        seen.append(s["id"])
    n = len(subs)
    if scenario == "single_hop" and n != 1:
        raise LLMError("llm_invalid", f"decompose: single_hop needs 1 sub-question, got {n}")
    if scenario == "parallel_single_hop" and (not 2 <= n <= 3 or any(s["depends_on"] for s in subs)):
        raise LLMError("llm_invalid", "decompose: parallel_single_hop needs 2-3 independent sub-questions")
    if scenario == "multi_hop" and (
        not 2 <= n <= 10 or any(s["depends_on"] != [subs[i - 1]["id"]] for i, s in enumerate(subs) if i)
    ):
        raise LLMError("llm_invalid", "decompose: multi_hop needs a chain of 2-10, each on the previous one")
    if scenario == "parallel_multi_hop" and (not 5 <= n <= 11 or sum(not s["depends_on"] for s in subs) < 2):
        raise LLMError("llm_invalid", "decompose: parallel_multi_hop needs 5-11 sub-questions in >= 2 chains")
    obj["answer"] = str(obj["answer"])
    return obj
