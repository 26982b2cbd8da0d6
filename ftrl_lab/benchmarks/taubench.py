"""tau-bench (Yao et al., 2024) as FTRL runs it: an agent, a simulated user, a database.

Data (supplied by the user, as FTRL ships it): a tasks JSONL (``Data/jsonl/raw/tau-bench.jsonl``:
``instruction``, gold ``actions`` (OpenAI-style tool calls), ``outputs`` (strings the agent must
say), ``data_source`` ``tau-bench/<domain>``) and a folder with one sub-folder per domain
(``tau-bench/airline``, ``tau-bench/retail``) holding ``tools.json`` (OpenAI tool documents),
``codes.json`` (tool name -> Python source of ``def name(data, ...)``), ``wiki.md`` (the agent's
policy, its system prompt) and the database tables, every other ``*.json`` file (airline:
``flights``, ``reservations``, ``users``; retail: ``orders``, ``products``, ``users``: the
tau-bench repository's ``envs/<domain>/data``).

An episode: the simulated user opens; each agent turn is one response, of which only the first
tool call is kept (as tau-bench and FTRL do); a tool call runs in the sandbox against this
episode's copy of the database; a reply without a call goes to the user. It ends when the user
says ``###STOP###``, the agent calls ``transfer_to_human_agents``, or after ``max_turns``.

Pass^1 (one trial): the episode passes when the final database hashes the same as the database
after replaying the gold actions on a fresh copy, and every gold ``output`` appears
(lower-cased, commas removed) in a reply the agent sent the user. (FTRL's script looks for the
outputs in assistant messages that carry tool calls instead, and ends on a tool named
``transform_to_user_agent`` that its tool lists do not have; we follow tau-bench.)

The simulated user is a chat model: behind an OpenAI-compatible endpoint
(:class:`UserSimulator`: ``base_url``, ``api_key``, ``model``, or the environment variables
``FTRL_USER_BASE_URL``, ``FTRL_USER_API_KEY``, ``FTRL_USER_MODEL``; a server at a local URL
works offline), or a local model through this project's engine (:class:`LocalUserSimulator`,
no network at all). Without one, :func:`run` raises :class:`UserSimulatorNotConfigured`. Any
callable ``user(instruction, transcript) -> str`` may stand in (tests use a scripted one).

The paper's user was gpt-4o-2024-08-06. Every output row and result names the user
(``user_simulator``, :func:`describe_user`) and says whether it was the paper's
(``paper_user``); a local model or a local URL is flagged ``local user simulator``, and such
Pass^1 numbers are not comparable to the paper's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ftrl_lab.agent.sampling import DEFAULT_MAX_NEW_TOKENS
from ftrl_lab.benchmarks.common import (
    category_table,
    in_item_order,
    new_keys,
    pending,
    progress,
    read_records,
    release,
    require,
    respond,
    response_text,
    write_output,
)
from ftrl_lab.core.parsing import make_tool_call, parse_openai_message, parse_response, strip_end_markers
from ftrl_lab.core.records import RecordError

STOP = "###STOP###"
PAPER_USER = "gpt-4o-2024-08-06"
LOCAL_FLAG = "local user simulator"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
TERMINATE_TOOLS = ("transfer_to_human_agents",)
MAX_TURNS = 30
FIRST_AGENT_LINE = "Hi! How can I help you today?"
USER_RULES = (
    "You play a customer talking to a customer-service agent. Your goal and what you know:\n\n"
    "{instruction}\n\n"
    "How to behave:\n"
    "- Write one short message at a time, as the customer would.\n"
    "- Reveal information only when the agent needs it for the current step, not all at once.\n"
    "- Never invent details the goal does not give you (an id, a number): say you do not know or do not have it.\n"
    "- Use your own words rather than repeating the goal text.\n"
    "- Keep to the personality the goal describes.\n"
    "- When the goal is reached (or cannot be reached), reply with " + STOP + " alone to end the conversation."
)
_STEP = "tau_step__"

Transcript = list[tuple[str, str]]
"""The user's view of a conversation: ("agent" | "user", text) pairs, oldest first."""


class UserSimulatorNotConfigured(RuntimeError):
    """No simulated user: tau-bench cannot run without one."""


# --- data ----------------------------------------------------------------------------------------
@dataclass
class TauDomain:
    """One tau-bench domain: tools, their sources, the database tables and the agent policy."""

    name: str
    tools: list[dict]
    codes: dict[str, str]
    tables: dict[str, Any]
    wiki: str = ""
    folder: str = ""


@lru_cache(maxsize=8)
def load_domain(folder: str) -> TauDomain:
    """A domain folder (``tools.json``, ``codes.json``, optional ``wiki.md``, table ``*.json``)."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such tau-bench domain folder")
    for needed in ("tools.json", "codes.json"):
        if not (path / needed).exists():
            raise FileNotFoundError(f"{path / needed}: missing (a domain folder needs tools.json and codes.json)")
    tools = json.loads((path / "tools.json").read_text(encoding="utf-8"))
    codes = json.loads((path / "codes.json").read_text(encoding="utf-8"))
    if not isinstance(tools, list) or not all(isinstance(t, dict) and "function" in t for t in tools):
        raise RecordError("expected a list of OpenAI tool documents", source=str(path / "tools.json"))
    if not isinstance(codes, dict) or not all(isinstance(v, str) for v in codes.values()):
        raise RecordError("expected an object: tool name -> Python source", source=str(path / "codes.json"))
    missing = [t["function"]["name"] for t in tools if t["function"]["name"] not in codes]
    if missing:
        raise RecordError(f"no code for tool(s) {missing}", source=str(path / "codes.json"))
    tables = {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(path.glob("*.json"))
        if p.name not in ("tools.json", "codes.json")
    }
    if not tables:
        raise FileNotFoundError(
            f"{path}: no database tables (*.json besides tools.json and codes.json); "
            "copy them from the tau-bench repository's envs/<domain>/data"
        )
    wiki = (path / "wiki.md").read_text(encoding="utf-8") if (path / "wiki.md").exists() else ""
    return TauDomain(path.name, tools, codes, tables, wiki, str(path))


def load(path: str | os.PathLike, info_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[dict]:
    """tau-bench tasks: ``id`` (``<domain>/<index>``), ``category`` (the domain), ``instruction``,
    ``actions``, ``outputs`` and ``domain_dir``. ``info_dir`` (default: the folder named like the
    tasks file without its suffix, FTRL's layout) holds the domain folders."""
    path = Path(path)
    info = Path(info_dir) if info_dir is not None else path.with_suffix("")
    items, counts = [], {}
    for n, (rec, loc) in enumerate(read_records(path)):
        if limit is not None and n >= limit:
            break
        require(rec, {"instruction": str, "actions": list, "data_source": str}, loc)
        domain = rec["data_source"].rsplit("/", 1)[-1]
        for k, action in enumerate(rec["actions"]):
            fn = action.get("function") if isinstance(action, dict) else None
            if (
                not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str)
                or not isinstance(fn.get("arguments"), str)
            ):
                raise RecordError("not an OpenAI tool call {function: {name, arguments}}", field=f"actions[{k}]", **loc)
        outputs = rec.get("outputs") or []
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise RecordError("expected a list of strings", field="outputs", **loc)
        index = counts.get(domain, 0)
        counts[domain] = index + 1
        items.append(
            {
                "id": f"{domain}/{index}",
                "category": domain,
                "instruction": rec["instruction"],
                "actions": rec["actions"],
                "outputs": outputs,
                "domain_dir": str(info / domain),
            }
        )
    return items


# --- the database environment --------------------------------------------------------------------
def db_hash(db: Any) -> str:
    """A stable hash of a database state (key order ignored, list order kept)."""
    text = json.dumps(db, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _step_source(name: str, source: str) -> str:
    """A tool's source plus an entry point that runs it on a database passed in and returns
    the feedback string (FTRL's conversion and error text) with the updated database."""
    return (
        f"{source}\n\n\ndef {_STEP}(db, arguments):\n"
        f"    import json as _json\n"
        f"    try:\n"
        f"        out = {name}(**arguments, data=db)\n"
        f"        if type(out) == dict or type(out) == list:\n"
        f"            out = _json.dumps(out, ensure_ascii=False)\n"
        f"        elif type(out) != str:\n"
        f"            out = str(out)\n"
        f"    except Exception as e:\n"
        f"        out = 'an error occured when call {name}: ' + str(e)\n"
        f"    return {{'output': out, 'db': db}}\n"
    )


class TauEnv:
    """One episode's database copy; tool calls run in the sandbox against it.

    The database travels to the sandbox worker and back with each call (tau-bench tools
    mutate it in place), so the sandbox needs a large ``max_output`` (see :func:`tau_sandbox`).
    """

    def __init__(self, domain: TauDomain, sandbox: Any):
        self.domain = domain
        self.sandbox = sandbox
        self.db = copy.deepcopy(domain.tables)

    def call(self, tool_call: dict) -> str:
        """Run one OpenAI-style tool call; returns FTRL's feedback string."""
        name = tool_call.get("function", {}).get("name")
        try:
            arguments = json.loads(tool_call["function"]["arguments"])
            source = self.domain.codes[name]
        except (KeyError, TypeError, ValueError, RecursionError) as e:
            return f"an error occured when call {name}: {e}"
        if not isinstance(arguments, dict):
            return f"an error occured when call {name}: {name}() argument after ** must be a mapping"
        call = make_tool_call(_STEP, {"db": self.db, "arguments": arguments}, tool_call.get("id") or "call")
        result = self.sandbox.run({_STEP: _step_source(name, source)}, [call])[0]
        if not result.ok or result.truncated:
            why = result.error or "the database did not fit in the sandbox's output limit"
            return f"an error occured when call {name}: {why}".replace(_STEP, name)
        reply = json.loads(result.content)
        self.db = reply["db"]
        return reply["output"]

    def hash(self) -> str:
        return db_hash(self.db)


def tau_sandbox(**kwargs):
    """A sandbox sized for whole databases in and out (256 MB of output per call).

    Tools run in a fresh namespace (``exec_mode="fresh"``): tau-bench calls its tools as ordinary
    Python functions, and each step's source defines the tool beside the code that calls it."""
    from ftrl_lab.core.sandbox import Sandbox

    defaults = {"n_workers": 1, "max_output": 1 << 28, "memory_bytes": 4 << 30, "exec_mode": "fresh"}
    return Sandbox(**{**defaults, **kwargs})


def gold_hash(item: dict, sandbox: Any) -> str:
    """The database hash after replaying the task's gold actions on a fresh copy."""
    env = TauEnv(load_domain(item["domain_dir"]), sandbox)
    for action in item["actions"]:
        env.call(action)
    return env.hash()


# --- the simulated user --------------------------------------------------------------------------
def user_messages(instruction: str, transcript: Transcript) -> list[dict]:
    """The chat the user model sees: the agent speaks as ``user``, the customer as ``assistant``."""
    msgs = [{"role": "system", "content": USER_RULES.format(instruction=instruction)}]
    msgs += [{"role": "user" if who == "agent" else "assistant", "content": text} for who, text in transcript]
    return msgs


@dataclass
class UserSimulator:
    """A simulated user played by a chat model behind an OpenAI-compatible ``/chat/completions``."""

    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    timeout: float = 120.0
    retries: int = 3
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> UserSimulator:
        """From ``FTRL_USER_BASE_URL``, ``FTRL_USER_MODEL`` and ``FTRL_USER_API_KEY``."""
        base = os.environ.get("FTRL_USER_BASE_URL")
        model = os.environ.get("FTRL_USER_MODEL")
        if not base or not model:
            raise UserSimulatorNotConfigured(
                "tau-bench needs a simulated user: pass user=UserSimulator(base_url=..., model=..., api_key=...) "
                "or set FTRL_USER_BASE_URL and FTRL_USER_MODEL (and FTRL_USER_API_KEY) to an OpenAI-compatible "
                f"endpoint (the paper used {PAPER_USER}); offline: user=LocalUserSimulator.from_model('default') "
                "(command line: --user-local default)"
            )
        return cls(base_url=base, model=model, api_key=os.environ.get("FTRL_USER_API_KEY"))

    @property
    def local(self) -> bool:
        """Whether the endpoint is on this machine (localhost, 127.0.0.1, ::1)."""
        return (urllib.parse.urlparse(self.base_url).hostname or "") in _LOCAL_HOSTS

    def describe(self) -> str:
        where = f"{self.model} at {self.base_url}"
        return f"{LOCAL_FLAG}: {where}" if self.local else where

    def messages(self, instruction: str, transcript: Transcript) -> list[dict]:
        """See :func:`user_messages`."""
        return user_messages(instruction, transcript)

    def __call__(self, instruction: str, transcript: Transcript) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": self.messages(instruction, transcript),
                "temperature": self.temperature,
                "max_tokens": self.max_new_tokens,  # the wire name
                **self.extra,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        last: Exception | None = None
        for _ in range(max(1, self.retries)):
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    data = json.loads(resp.read())
                return data["choices"][0]["message"].get("content") or ""
            except (urllib.error.URLError, TimeoutError, KeyError, IndexError, json.JSONDecodeError) as e:
                last = e
        raise RuntimeError(f"the simulated user at {url} did not answer: {last}")


class LocalUserSimulator:
    """A simulated user played by a local model: any benchmark policy (see
    :mod:`ftrl_lab.benchmarks.common`), e.g. the engine's :class:`~ftrl_lab.agent.policies.LocalPolicy`.
    Its reply is the model's text (end-of-turn markers removed); it is offered no tools."""

    local = True

    def __init__(self, policy: Any, name: str = "local model"):
        self.policy, self.name = policy, name

    @classmethod
    def from_model(
        cls, model: str = "default", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0, **kwargs
    ) -> LocalUserSimulator:
        """A local model ("default" or a folder) through the engine (``kwargs``: ``device``,
        ``dtype``, ``batch_size``, as :func:`ftrl_lab.agent.policies.make_policy` takes them)."""
        from ftrl_lab.agent.policies import make_policy

        policy, _ = make_policy(model, max_new_tokens=max_new_tokens, temperature=temperature, **kwargs)
        return cls(policy, name=str(model))

    def describe(self) -> str:
        return f"{LOCAL_FLAG}: {self.name} through the engine"

    def __call__(self, instruction: str, transcript: Transcript) -> str:
        reply = respond(self.policy, [user_messages(instruction, transcript)], [None])[0]
        return strip_end_markers(response_text(reply))


def describe_user(user: Any) -> str:
    """How a simulated user is reported: its model and where it runs (local ones flagged
    :data:`LOCAL_FLAG`); a plain callable is a scripted user."""
    if callable(getattr(user, "describe", None)):
        return user.describe()
    return f"scripted user ({getattr(user, '__name__', type(user).__name__)})"


def is_paper_user(user: Any) -> bool:
    """Whether the simulated user is the paper's: :data:`PAPER_USER` behind a remote endpoint."""
    return isinstance(user, UserSimulator) and not user.local and user.model.startswith("gpt-4o")


# --- episodes ------------------------------------------------------------------------------------
def _first_call(response: Any, fmt: str):
    parsed = parse_openai_message(response) if isinstance(response, dict) else parse_response(response, fmt)
    parsed.tool_calls = parsed.tool_calls[:1]
    return parsed


def episode(
    policy: Any,
    item: dict,
    user: Callable[[str, Transcript], str],
    sandbox: Any,
    max_turns: int = MAX_TURNS,
    fmt: str = "qwen",
) -> dict:
    """One tau-bench episode; the output row (messages, final and gold database hashes)."""
    domain = load_domain(item["domain_dir"])
    env = TauEnv(domain, sandbox)
    transcript: Transcript = [("agent", FIRST_AGENT_LINE)]
    first = user(item["instruction"], transcript)
    transcript.append(("user", first))
    messages = ([{"role": "system", "content": domain.wiki}] if domain.wiki else []) + [
        {"role": "user", "content": first}
    ]
    key = new_keys(1)  # one episode id for the whole conversation: a local engine reuses its cache
    try:
        ended = _turns(policy, item, user, env, domain, messages, transcript, key, max_turns, fmt)
    finally:
        release(policy, key)
    return {
        "id": item["id"],
        "messages": messages,
        "ended": ended,
        "db_hash": env.hash(),
        "gold_db_hash": gold_hash(item, sandbox),
    }


def _turns(policy, item, user, env, domain, messages, transcript, key, max_turns, fmt) -> str:
    """The agent/user/tool turns of an episode (appending to ``messages``); how it ended."""
    for _ in range(max_turns):
        parsed = _first_call(respond(policy, [messages], [domain.tools], keys=key)[0], fmt)
        messages.append(parsed.to_message())
        if parsed.tool_calls:
            call = parsed.tool_calls[0]
            messages.append({"role": "tool", "content": env.call(call), "tool_call_id": call["id"]})
            if call["function"]["name"] in TERMINATE_TOOLS:
                return "transfer"
            continue
        transcript.append(("agent", parsed.content))
        reply = user(item["instruction"], transcript)
        transcript.append(("user", reply))
        messages.append({"role": "user", "content": reply})
        if STOP in reply:
            return "stop"
    return "max_turns"


def run(
    policy: Any,
    items: Sequence[dict],
    out_path: str | os.PathLike | None = None,
    user: Callable[[str, Transcript], str] | None = None,
    max_turns: int = MAX_TURNS,
    fmt: str = "qwen",
    sandbox: Any = None,
    show_progress: bool = True,
) -> list[dict]:
    """Run the episodes one task at a time; each row is appended to ``out_path`` when done, with
    the simulated user named (``user_simulator``, ``paper_user``)."""
    user = user if user is not None else UserSimulator.from_env()
    todo, done = pending(items, out_path)
    own = sandbox is None and bool(todo)
    sandbox = tau_sandbox() if own else sandbox
    try:
        for item in progress(todo, total=len(todo), desc="tau-bench", enabled=show_progress):
            row = episode(policy, item, user, sandbox, max_turns, fmt)
            row.update(user_simulator=describe_user(user), paper_user=is_paper_user(user))
            done[str(item["id"])] = row
            write_output(out_path, row)
    finally:
        if own:
            sandbox.close()
    return in_item_order(items, done)


# --- scoring -------------------------------------------------------------------------------------
def outputs_said(messages: Sequence[dict], outputs: Sequence[str]) -> bool:
    """Every gold output occurs in some reply the agent sent the user (tau-bench's rule)."""
    replies = [
        (m.get("content") or "").lower().replace(",", "")
        for m in messages
        if m.get("role") == "assistant" and not m.get("tool_calls")
    ]
    return all(any(o.lower() in r for r in replies) for o in outputs)


def score(items: Sequence[dict], outputs: Sequence[dict]) -> list[dict]:
    """Per-task results ``{id, category, pass, db_match, outputs_said, ended, user_simulator,
    paper_user}`` (no row: fail)."""
    by_id = {str(o["id"]): o for o in outputs}
    results = []
    for it in items:
        row = by_id.get(str(it["id"]))
        db_ok = bool(row) and row["db_hash"] == row["gold_db_hash"]
        said = bool(row) and outputs_said(row["messages"], it["outputs"])
        results.append(
            {
                "id": it["id"],
                "category": it["category"],
                "pass": float(db_ok and said),
                "db_match": float(db_ok),
                "outputs_said": float(said),
                "ended": row["ended"] if row else None,
                "user_simulator": row.get("user_simulator", "unknown") if row else None,
                "paper_user": bool(row.get("paper_user")) if row else False,
            }
        )
    return results


def table(results: Sequence[dict]):
    """Pass^1 (percent) per domain and the mean over domains, with a ``user_simulator`` column
    naming the simulated user(s) of each row (local ones flagged :data:`LOCAL_FLAG`)."""
    df = category_table(results, ["pass", "db_match"], order=("airline", "retail"), overall="macro")
    df = df.rename(columns={"pass": "pass^1"})
    if len(df):
        users: dict[str, set] = {}
        for r in results:
            if r.get("user_simulator"):
                users.setdefault(r["category"], set()).add(r["user_simulator"])
        every = set().union(*users.values()) if users else set()
        df["user_simulator"] = [
            "; ".join(sorted(every if c == "overall" else users.get(c, set()))) or "none" for c in df.index
        ]
    return df
