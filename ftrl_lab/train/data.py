"""Trajectory-prefix records -> a TRL-ready ``datasets.Dataset`` for GRPO / RLOO.

One row per prefix record: a conversational ``prompt`` (the messages so far) and the columns
the reward needs (:func:`ftrl_lab.core.reward.make_reward_func`): ``codes``, ``unsolved_set``,
``solve_rate``, ``answer``; plus ``tools`` (the record's OpenAI tool documents, rendered into
the prompt by the trainer), ``data_source`` and ``prompt_tokens``.

``tools``, ``codes`` and ``unsolved_set`` are JSON strings: Arrow would otherwise merge every
tool's parameter schema into one struct and fill the missing keys with nulls. Arrow still
pads the messages' keys (``tool_calls``, ``tool_call_id``) with nulls; :func:`clean_messages`
drops them again before a prompt is rendered.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftrl_lab.core.records import EnvRecord

COLUMNS = ("prompt", "tools", "codes", "unsolved_set", "solve_rate", "answer", "data_source", "prompt_tokens")


def clean_messages(messages: Sequence[dict]) -> list[dict]:
    """Chat messages without the null keys Arrow adds (``content`` is always kept)."""
    out = []
    for m in messages:
        msg = {k: v for k, v in dict(m).items() if v is not None or k == "content"}
        if msg.get("tool_calls"):
            msg["tool_calls"] = [{k: v for k, v in dict(c).items() if v is not None} for c in msg["tool_calls"]]
        else:
            msg.pop("tool_calls", None)
        out.append(msg)
    return out


def decode_json(value: Any) -> Any:
    """A JSON-string column value decoded (already-decoded values pass through)."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class PrefixDataReport:
    """What :func:`build_prefix_dataset` kept and dropped."""

    records: int = 0
    kept: int = 0
    too_long: int = 0
    solved: int = 0  # prefixes with nothing left to solve (kept unless drop_solved)
    duplicates: int = 0
    max_prompt_tokens: int = 0
    prompt_tokens: list[int] = field(default_factory=list)
    reserve: list[dict] = field(default_factory=list)  # rows left out by ``limit``, in a seeded order

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("prompt_tokens", "reserve")}
        d["reserved"] = len(self.reserve)
        if self.prompt_tokens:
            d["prompt_tokens_mean"] = sum(self.prompt_tokens) / len(self.prompt_tokens)
            d["prompt_tokens_max"] = max(self.prompt_tokens)
        return d

    def __str__(self) -> str:
        return (
            f"{self.kept}/{self.records} prefixes kept ({self.too_long} longer than {self.max_prompt_tokens} "
            f"tokens dropped, {self.duplicates} duplicates dropped, {self.solved} fully solved)"
        )


def prompt_length_fn(tokenizer) -> Callable[[list[dict], list[dict]], int]:
    """Tokens of a conversation rendered with the chat template and a generation prompt."""

    def length(messages: list[dict], tools: list[dict]) -> int:
        text = tokenizer.apply_chat_template(
            clean_messages(messages), tools=tools or None, tokenize=False, add_generation_prompt=True
        )
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return length


def prefix_row(rec: EnvRecord, prompt_tokens: int = 0) -> dict:
    """One dataset row of a prefix record."""
    return {
        "prompt": clean_messages(rec.messages),
        "tools": json.dumps(rec.tools, ensure_ascii=False),
        "codes": json.dumps(rec.codes, ensure_ascii=False),
        "unsolved_set": json.dumps(rec.unsolved_set, ensure_ascii=False),
        "solve_rate": float(rec.solve_rate),
        "answer": rec.answer,
        "data_source": rec.data_source,
        "prompt_tokens": int(prompt_tokens),
    }


def build_prefix_dataset(
    records: Sequence[EnvRecord],
    tokenizer=None,
    *,
    max_prompt_tokens: int | None = None,
    drop_solved: bool = False,
    limit: int | None = None,
    seed: int = 0,
):
    """A ``datasets.Dataset`` of prefix prompts, and a :class:`PrefixDataReport`.

    Prompts longer than ``max_prompt_tokens`` (rendered with ``tokenizer``'s chat template and
    the record's tools) are dropped and counted; repeated prefixes (same messages) are kept
    once; ``drop_solved`` drops prefixes with no gold answer left; ``limit`` keeps a seeded
    random subset of that size (in the original order) and leaves the rest, shuffled, in
    ``report.reserve`` (the replacement prompts of dynamic sampling, :func:`rows_dataset`).
    """
    if max_prompt_tokens is not None and tokenizer is None:
        raise ValueError("max_prompt_tokens needs a tokenizer to count prompt tokens")
    length = prompt_length_fn(tokenizer) if tokenizer is not None else None
    report = PrefixDataReport(records=len(records), max_prompt_tokens=max_prompt_tokens or 0)
    rows, seen = [], set()
    for rec in records:
        key = json.dumps(rec.messages, sort_keys=True, ensure_ascii=False)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        if rec.n_unsolved == 0:
            report.solved += 1
            if drop_solved:
                continue
        n = length(rec.messages, rec.tools) if length else 0
        if max_prompt_tokens is not None and n > max_prompt_tokens:
            report.too_long += 1
            continue
        rows.append(prefix_row(rec, n))
    if limit is not None and len(rows) > limit:
        rng = random.Random(seed)
        keep = sorted(rng.sample(range(len(rows)), limit))
        chosen = set(keep)
        report.reserve = [rows[i] for i in range(len(rows)) if i not in chosen]
        rng.shuffle(report.reserve)
        rows = [rows[i] for i in keep]
    report.kept = len(rows)
    report.prompt_tokens = [r["prompt_tokens"] for r in rows]
    return rows_dataset(rows), report


def rows_dataset(rows: Sequence[dict]):
    """A ``datasets.Dataset`` of :func:`prefix_row` rows (the columns :data:`COLUMNS`)."""
    from datasets import Dataset

    return Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS})
