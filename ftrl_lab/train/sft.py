"""SFT warm start on gold trajectories (for base models that do not yet emit tool calls).

envgen stores each environment's gold call plan in the record's ``env_meta`` column: the
calls, their concrete arguments, and which sub-question each one uses (``uses``). A gold
trajectory plays that plan as FTRL's loop would see it: every turn the assistant makes all
the calls whose inputs are already known (parallel calls in one turn), the sandbox answers
them, and after the last turn the assistant states the final answer.

The conversations are tokenized here with the chat template's assistant mask
(``return_assistant_tokens_mask``; our Qwen2.5 template marks assistant turns), so the loss
covers the assistant turns only, and handed to TRL's ``SFTTrainer`` as ``input_ids`` +
``labels``: a ``datasets`` round trip of raw messages would merge tool-call argument dicts
into one struct and add null keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.records import EnvRecord
from ftrl_lab.core.reward import update_unsolved

log = logging.getLogger(__name__)

FINAL_ANSWER = "The answer is {answer}."
"""The closing assistant message of a gold trajectory."""


def env_meta(record: EnvRecord) -> dict | None:
    """envgen's ``env_meta`` of a record (stored as JSON text or a mapping), None for other records."""
    meta = record.extra.get("env_meta")
    return json.loads(meta) if isinstance(meta, str) else meta


def complexity_level(record: EnvRecord) -> str:
    """An envgen record's complexity level (the highest of its strategies' levels), "?" for others."""
    levels = (env_meta(record) or {}).get("levels") or {}
    return str(max(levels.values())) if levels else "?"


def gold_plan(record: EnvRecord) -> list[dict]:
    """The record's gold calls (``sub_id``, ``tool``, ``arguments``, ``uses``) from ``env_meta``."""
    meta = env_meta(record)
    if meta is None:
        raise ValueError(f"record '{record.question[:60]}' has no env_meta (not made by ftrl_lab.envgen)")
    plan = meta.get("gold_plan")
    if not plan:
        raise ValueError(f"record '{record.question[:60]}': env_meta has no gold_plan")
    return plan


def plan_turns(plan: Sequence[dict]) -> list[list[dict]]:
    """Gold calls grouped into turns: a call joins the first turn after all the calls whose
    answers it uses (those of its ``uses`` sub-questions)."""
    turn_of: dict[str, int] = {}
    turns: list[list[dict]] = []
    pending = list(plan)
    while pending:
        ready = [c for c in pending if all(s in turn_of for subs in c.get("uses", {}).values() for s in subs)]
        if not ready:
            missing = sorted({s for c in pending for subs in c.get("uses", {}).values() for s in subs} - set(turn_of))
            raise ValueError(f"gold plan uses unknown or circular sub-question(s) {missing}")
        t = len(turns)
        turns.append(ready)
        for c in ready:
            turn_of[c["sub_id"]] = t
        pending = [c for c in pending if c not in ready]
    return turns


def plan_fit(records: Sequence[EnvRecord], episodes: Sequence[dict], tolerance: float = 0.25) -> dict[str, Any] | None:
    """Calls and turns per episode of a model against the gold plans of the same environments.

    ``episodes``: evaluation rows (``key``, ``calls``, ``turns``; turns count the final answer,
    as a gold plan's turns + 1 do). Only records with a gold plan (made by envgen) count; None
    when there are none. ``healthy``: both ratios within ``tolerance`` of 1 (a warm start that
    neither loops nor stops early).
    """
    from ftrl_lab.agent.rollout import episode_key

    by_key = {row["key"]: row for row in episodes}
    pairs = []
    for r in records:
        row = by_key.get(episode_key(r))
        if row is None or not r.extra.get("env_meta"):
            continue
        turns = plan_turns(gold_plan(r))
        pairs.append((row["calls"], row["turns"], sum(len(t) for t in turns), len(turns) + 1))
    if not pairs:
        return None
    calls, turns, gold_calls, gold_turns = (sum(p[i] for p in pairs) / len(pairs) for i in range(4))
    ratios = {"calls_ratio": calls / gold_calls, "turns_ratio": turns / gold_turns}
    return {
        "episodes": len(pairs),
        "calls": calls,
        "turns": turns,
        "gold_calls": gold_calls,
        "gold_turns": gold_turns,
        **ratios,
        "tolerance": tolerance,
        "healthy": all(abs(r - 1) <= tolerance for r in ratios.values()),
    }


def _tool_call(call: dict, turn: int, index: int) -> dict:
    return {
        "id": f"call_gold_{turn}_{index}",
        "type": "function",
        "function": {"name": call["tool"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)},
    }


@dataclass
class GoldTrajectory:
    """A played gold plan: the conversation, and how many gold answers it solved."""

    messages: list[dict]
    tools: list[dict]
    solved: int
    total: int

    @property
    def complete(self) -> bool:
        return self.solved == self.total


def gold_trajectories(
    records: Sequence[EnvRecord], executor: ToolExecutor | None = None, final_answer: str = FINAL_ANSWER
) -> list[GoldTrajectory]:
    """Play every record's gold plan through the tools (all records' turn ``t`` in one batch)."""
    executor = executor or sandbox_executor()
    plans = [plan_turns(gold_plan(r)) for r in records]
    convs = [list(r.messages) for r in records]
    unsolved = [{k: list(v) for k, v in r.unsolved_set.items()} for r in records]
    solved = [0] * len(records)
    for t in range(max((len(p) for p in plans), default=0)):
        live = [i for i, p in enumerate(plans) if t < len(p)]
        calls = {i: [_tool_call(c, t, j) for j, c in enumerate(plans[i][t])] for i in live}
        outputs = executor([(records[i].codes, calls[i]) for i in live])
        for i, outs in zip(live, outputs):
            convs[i].append({"role": "assistant", "content": "", "tool_calls": calls[i]})
            convs[i].extend({"role": "tool", "content": o, "tool_call_id": c["id"]} for c, o in zip(calls[i], outs))
            solved[i] += sum(s is not None for s in update_unsolved(unsolved[i], calls[i], outs))
    out = []
    for i, r in enumerate(records):
        convs[i].append({"role": "assistant", "content": final_answer.format(answer=r.answer)})
        out.append(GoldTrajectory(convs[i], r.tools, solved[i], r.n_unsolved))
    return out


def tokenize_trajectory(tokenizer, messages: list[dict], tools: list[dict] | None) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (-100 outside assistant turns) of one conversation."""
    enc = tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(enc["input_ids"])
    mask = list(enc["assistant_masks"])
    if not any(mask):
        raise ValueError("the chat template marks no assistant tokens ({% generation %} missing?)")
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}


def build_sft_dataset(trajectories: Sequence[GoldTrajectory], tokenizer, max_length: int | None = None):
    """A tokenized ``datasets.Dataset`` of the complete gold trajectories no longer than
    ``max_length`` tokens, and a count of those dropped (incomplete, too long)."""
    from datasets import Dataset

    rows, dropped = [], {"incomplete": 0, "too_long": 0}
    for tr in trajectories:
        if not tr.complete:
            dropped["incomplete"] += 1
            continue
        row = tokenize_trajectory(tokenizer, tr.messages, tr.tools)
        if max_length is not None and len(row["input_ids"]) > max_length:
            dropped["too_long"] += 1
            continue
        rows.append(row)
    return Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]}
    ), dropped


def run_sft(
    model,
    tokenizer,
    dataset,
    output_dir: str,
    *,
    learning_rate: float = 5e-5,
    epochs: float = 1.0,
    batch_size: int = 1,
    gradient_accumulation_steps: int = 4,
    max_length: int | None = None,
    use_cpu: bool = True,
    bf16: bool = False,
    seed: int = 0,
    extra_args: dict[str, Any] | None = None,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place on a tokenized gold-trajectory dataset with TRL's SFTTrainer.

    ``bf16``: bf16 autocast over fp32 weights (CPU or GPU; see ``models.bf16_mixed_precision``).
    Returns the training log (``trainer.state.log_history``) and the run time.
    """
    from trl import SFTConfig, SFTTrainer

    from ftrl_lab.agent.models import checkpointing_option

    args = SFTConfig(
        output_dir=output_dir,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        max_length=max_length,
        use_cpu=use_cpu,
        bf16=bf16,
        **{checkpointing_option(): False},
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=2,
        **(extra_args or {}),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    out = trainer.train()
    model.eval()
    return {
        "log_history": trainer.state.log_history,
        "train_runtime": out.metrics.get("train_runtime"),
        "train_loss": out.metrics.get("train_loss"),
    }
