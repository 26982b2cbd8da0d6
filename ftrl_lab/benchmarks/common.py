"""What every benchmark module shares: file reading, resumable outputs, policies, tables.

Each benchmark module (``toolhop``, ``rotbench``, ``bfcl``, ``taubench``) has the same four
functions:

* ``load(path=None, ...) -> list[dict]``: the items, plain JSON-able dicts, each with a
  unique ``id`` and a ``category`` (the row it is reported under);
* ``run(policy, items, out_path, ...) -> list[dict]``: model outputs, one JSON line per item
  appended to ``out_path`` as soon as it is done, so that a rerun skips finished items;
* ``score(items, outputs) -> list[dict]``: per-item results, pure Python (no model, no tools);
* ``table(results) -> pandas.DataFrame``: the per-category numbers, as the benchmark reports them.

A *policy* is either a :mod:`ftrl_lab.agent.rollout` policy (``act(episodes)``: the local engine,
the API backend, the scripted policy) or a plain callable ``policy(conversations, tools)`` that
returns one response per conversation, raw text (parsed here) or an OpenAI-style assistant
message dict. :func:`respond` asks either kind; :func:`ftrl_lab.agent.policies.as_rollout_policy` makes a callable
usable by :func:`ftrl_lab.agent.rollout.rollout`.

No torch or transformers here: a benchmark is scored without a model.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ftrl_lab.core.records import RecordError, append_jsonl

Conversation = list[dict]
Response = str | dict


# --- reading data ------------------------------------------------------------------------------
def read_records(path: str | os.PathLike) -> Iterator[tuple[Any, dict]]:
    """Yield (record, location) from a ``.json`` file holding a list, or from JSON lines
    (``.jsonl``, or a ``.json`` file with one object per line, as BFCL ships them).

    A malformed line or file raises :class:`RecordError` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    data = _json_list(path) if path.suffix.lower() == ".json" else None
    if data is not None:
        for i, rec in enumerate(data):
            yield rec, {"source": str(path), "row": i}
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line), {"source": str(path), "line": lineno}
            except json.JSONDecodeError as e:
                raise RecordError(
                    f"malformed JSON ({e.msg} at column {e.colno})", source=str(path), line=lineno
                ) from None


def _json_list(path: Path) -> list | None:
    """The list a ``.json`` file holds, or None when it holds several values (JSON lines)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return None
        raise RecordError(f"malformed JSON ({e.msg})", source=str(path), line=e.lineno) from None
    if not isinstance(data, list):
        raise RecordError(f"expected a JSON list of records, got {type(data).__name__}", source=str(path))
    return data


def require(rec: Any, fields: dict[str, type | tuple], loc: dict) -> None:
    """Raise a located :class:`RecordError` unless ``rec`` is a dict with these typed fields."""
    if not isinstance(rec, dict):
        raise RecordError(f"expected a JSON object, got {type(rec).__name__}", **loc)
    for name, want in fields.items():
        if name not in rec:
            raise RecordError("missing field", field=name, **loc)
        if not isinstance(rec[name], want):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise RecordError(f"expected {names}, got {type(rec[name]).__name__}", field=name, **loc)


# --- resumable outputs -------------------------------------------------------------------------
def read_outputs(path: str | os.PathLike | None) -> dict[str, dict]:
    """Rows already written to an output JSONL, by ``id`` (empty when the file does not exist).

    A truncated last line (an interrupted write) is ignored; other bad lines raise.
    """
    if path is None or not Path(path).exists():
        return {}
    out: dict[str, dict] = {}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):
                break
            raise RecordError(f"malformed output line ({e.msg})", source=str(path), line=lineno) from None
        if not isinstance(row, dict) or "id" not in row:
            raise RecordError("output row without an 'id'", source=str(path), line=lineno)
        out[str(row["id"])] = row
    return out


def pending(items: Sequence[dict], out_path: str | os.PathLike | None) -> tuple[list[dict], dict[str, dict]]:
    """(items not yet in ``out_path``, rows already there)."""
    done = read_outputs(out_path)
    return [it for it in items if str(it["id"]) not in done], done


def write_output(out_path: str | os.PathLike | None, row: dict) -> None:
    """Append one output row (flushed) when an output path is given."""
    if out_path is not None:
        append_jsonl(out_path, [row])


def in_item_order(items: Sequence[dict], rows: dict[str, dict]) -> list[dict]:
    """The output rows of these items, in item order (items without a row are left out)."""
    return [rows[str(it["id"])] for it in items if str(it["id"]) in rows]


def batches(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), max(1, size)):
        yield seq[i : i + size]


# --- policies ------------------------------------------------------------------------------------
def respond(
    policy: Any,
    conversations: Sequence[Conversation],
    tools: Sequence[list[dict] | None],
    keys: Sequence[int] | None = None,
) -> list[Response]:
    """One response per conversation from either kind of policy (see the module docstring).

    ``keys`` (rollout policies only) are stable episode ids, so that a local engine keeps each
    conversation's KV cache from one call to the next; call :func:`release` with them when the
    conversations end. Without keys every call is a fresh episode, released at once.
    """
    if len(conversations) != len(tools):
        raise ValueError(f"{len(conversations)} conversations but {len(tools)} tool lists")
    if not conversations:
        return []
    if callable(getattr(policy, "act", None)):
        episodes = _episodes(conversations, tools, keys)
        outs = policy.act(episodes)
        if keys is None:
            for ep in episodes:
                policy.release(ep)
        out = [o.response for o in outs]
    elif callable(policy):
        out = list(policy(list(conversations), list(tools)))
    else:
        raise TypeError(f"not a policy: {type(policy).__name__} (need .act(episodes) or a callable)")
    if len(out) != len(conversations):
        raise ValueError(f"the policy gave {len(out)} responses for {len(conversations)} conversations")
    return out


_fresh_ids = itertools.count(1 << 40)


def _episodes(conversations, tools, keys):
    from ftrl_lab.agent.rollout import new_episode
    from ftrl_lab.core.records import EnvRecord

    keys = list(keys) if keys is not None else new_keys(len(conversations))
    return [
        new_episode(k, EnvRecord(messages=list(conv), tools=list(t or []), codes={}, unsolved_set={}))
        for k, conv, t in zip(keys, conversations, tools)
    ]


def new_keys(n: int) -> list[int]:
    """Fresh episode ids for :func:`respond`'s ``keys``."""
    return [next(_fresh_ids) for _ in range(n)]


def release(policy: Any, keys: Sequence[int]) -> None:
    """Tell a rollout policy that the conversations with these ``keys`` are over."""
    if callable(getattr(policy, "release", None)) and callable(getattr(policy, "act", None)):
        for ep in _episodes([[]] * len(keys), [None] * len(keys), keys):
            policy.release(ep)


def response_text(response: Response) -> str:
    """The text of a response: the string itself, or an OpenAI message's ``content``."""
    if isinstance(response, dict):
        content = response.get("content") or ""
        if isinstance(content, list):
            content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return str(content)
    return "" if response is None else str(response)


# --- function documents and possible values ----------------------------------------------------
def function_doc(functions: Sequence[dict], name: str) -> dict:
    """The function document named ``name`` in a list of them (BFCL's ``functions``)."""
    for f in functions:
        if f["name"] == name:
            return f
    raise KeyError(f"no function document named {name!r}")


def concrete_value(value: Any) -> Any:
    """A possible value made concrete: inside dicts each key takes its first possible value."""
    if isinstance(value, dict):
        return {k: concrete_value(v[0]) for k, v in value.items() if isinstance(v, list) and v and v[0] != ""}
    if isinstance(value, list):
        return [concrete_value(v) for v in value]
    return value


# --- tables --------------------------------------------------------------------------------------
def category_table(
    results: Sequence[dict],
    metrics: Sequence[str],
    by: str = "category",
    order: Iterable[str] | None = None,
    overall: str = "macro",
    percent: bool = True,
):
    """Per-category means of ``metrics`` (in percent), a count column ``n``, and an overall row.

    ``overall`` is ``"macro"`` (mean of the category rows, as the papers average over
    scenarios), ``"micro"`` (mean over all items) or ``None``.
    """
    import pandas as pd

    if not results:
        return pd.DataFrame(columns=["n", *metrics])
    df = pd.DataFrame([{by: r[by], **{m: r[m] for m in metrics}} for r in results])
    scale = 100.0 if percent else 1.0
    grouped = df.groupby(by, sort=False)
    out = grouped[list(metrics)].mean() * scale
    out.insert(0, "n", grouped.size())
    if order is not None:
        known = [c for c in order if c in out.index]
        out = out.loc[known + [c for c in out.index if c not in known]]
    if overall == "macro":
        out.loc["overall"] = [int(out["n"].sum()), *out[list(metrics)].mean().tolist()]
    elif overall == "micro":
        out.loc["overall"] = [len(df), *(df[list(metrics)].mean() * scale).tolist()]
    elif overall is not None:
        raise ValueError(f"overall must be 'macro', 'micro' or None, got {overall!r}")
    out["n"] = out["n"].astype(int)
    out.index.name = by
    return out.round(2)


def progress(iterable: Iterable, total: int | None = None, desc: str = "", enabled: bool = True):
    """A tqdm progress bar (a plain iterator when disabled or tqdm is missing)."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc)
