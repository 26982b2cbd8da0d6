"""Write trajectory-prefix records as a verl-ready Parquet dataset.

Each row keeps FTRL's own columns (``tools``, ``codes``, ``unsolved_set`` as JSON strings,
``solve_rate``, ``data_source``, ``split``, ``answer``) and adds verl's: ``prompt`` (chat
messages), ``ability``, ``reward_model = {"style": "rule", "ground_truth": <unsolved set JSON>}``
and ``extra_info`` (``index``, ``split``, ``codes``, ``tools``, ``solve_rate``, ``answer``,
``variant``) for :func:`ftrl_lab.train.verl_reward.compute_score`.

verl renders a prompt with one chat template for all rows and no per-row tools, so with
``tools_in_system=True`` (default) each prompt's tool documents are rendered into its system
message by the given tokenizer's own chat template: the prompt then renders to the same
text as ``apply_chat_template(messages, tools=tools)`` would.

    python -m ftrl_lab.train.verl_export runs/x/iter_1/prefixes.jsonl data/verl/train.parquet --tokenizer default
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ftrl_lab.core.records import EnvRecord, load_records

REWARD_MODULE = Path(__file__).with_name("verl_reward.py")
SYSTEM_START, TURN_END = "<|im_start|>system\n", "<|im_end|>"


def tools_system_message(tokenizer, tools: list[dict], messages: list[dict]) -> dict:
    """The system message a ChatML template (Qwen2.5-style) renders for ``tools``: what verl
    must see as the first message, since it renders without tools."""
    text = tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False)
    if not text.startswith(SYSTEM_START) or TURN_END not in text:
        raise ValueError("tools_in_system needs a ChatML chat template that opens with a system turn")
    return {"role": "system", "content": text[len(SYSTEM_START) : text.index(TURN_END)]}


def verl_row(rec: EnvRecord, index: int, *, variant: str = "solve_f1", tokenizer=None) -> dict:
    """One verl row of a prefix record (tools rendered into the system message when a
    tokenizer is given)."""
    messages = [m for m in rec.messages]
    if tokenizer is not None:
        rest = messages[1:] if messages and messages[0].get("role") == "system" else messages
        messages = [tools_system_message(tokenizer, rec.tools, messages)] + rest
    row = rec.to_row()
    row.pop("messages")
    row.pop("env_meta", None)
    row.update(
        {
            "prompt": [_plain(m) for m in messages],
            "ability": "tool_use",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(rec.unsolved_set, ensure_ascii=False)},
            "extra_info": {
                "index": index,
                "split": rec.split,
                "codes": row["codes"],
                "tools": row["tools"],
                "solve_rate": float(rec.solve_rate),
                "answer": rec.answer,
                "variant": variant,
            },
        }
    )
    return row


def _plain(message: dict) -> dict:
    """A message with JSON-string tool calls (one Arrow type for every row)."""
    out = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["tool_calls"] = json.dumps(message["tool_calls"], ensure_ascii=False)
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def export_verl(
    records: Sequence[EnvRecord], out_path: str | os.PathLike, *, variant: str = "solve_f1", tokenizer=None
) -> Path:
    """Write ``records`` as verl Parquet to ``out_path``; returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out_path)
    if out_path.suffix != ".parquet":
        raise ValueError(f"{out_path}: verl reads Parquet (use a .parquet path)")
    rows = [verl_row(r, i, variant=variant, tokenizer=tokenizer) for i, r in enumerate(records)]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = out_path.with_name(out_path.name + ".tmp")
    pq.write_table(pa.Table.from_pydict({c: [row.get(c) for row in rows] for c in columns}), tmp)
    os.replace(tmp, out_path)
    return out_path


def verl_overrides(train_path: str, val_path: str | None = None) -> list[str]:
    """The verl command-line overrides that use this data and reward."""
    return [
        f"data.train_files={train_path}",
        f"data.val_files={val_path or train_path}",
        "data.prompt_key=prompt",
        f"custom_reward_function.path={REWARD_MODULE}",
        "custom_reward_function.name=compute_score",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.train.verl_export", description=__doc__.split("\n\n")[0])
    p.add_argument("records", help="prefix records (.jsonl or .parquet)")
    p.add_argument("out", help="output .parquet")
    p.add_argument("--variant", default="solve_f1", help="reward variant stored in extra_info")
    p.add_argument(
        "--tokenizer",
        default=None,
        help='tokenizer whose chat template renders the tools into the system message ("default" or a folder)',
    )
    args = p.parse_args(argv)
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        from ftrl_lab.agent.models import resolve_model_path

        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.tokenizer))
    records = load_records(args.records)
    path = export_verl(records, args.out, variant=args.variant, tokenizer=tokenizer)
    print(f"{len(records)} rows -> {path}\nverl overrides:\n  " + "\n  ".join(verl_overrides(str(path))))
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
