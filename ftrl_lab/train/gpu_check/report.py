"""The GPU check's outputs: ``gpu_check.json`` (everything), ``gpu_check.md`` (tables) and a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def generation_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per engine-vs-generate measurement of every shape."""
    rows = []
    for name, entry in results["shapes"].items():
        gen = entry.get("generation") or {}
        measured = [(f"prefill {r['prompt_tokens']} tok", r) for r in gen.get("prefill", [])]
        measured += [(f"decode batch {r['batch']}", r) for r in gen.get("decode", [])]
        if gen.get("sample_group"):
            g = gen["sample_group"]
            measured.append((f"sample group k={g['group_size']}, {g['prompt_tokens']}-tok prompt", g))
        for what, r in measured:
            rows.append(
                [
                    name,
                    what,
                    r["engine_tokens_per_s"],
                    r["generate_tokens_per_s"],
                    r["engine_over_generate"],
                    r["engine_peak_gib"],
                    r["generate_peak_gib"],
                ]
            )
    return rows


def training_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per SFT / GRPO run of every shape."""
    rows = []
    for name, entry in results["shapes"].items():
        for stage in ("sft", "grpo"):
            r = entry.get(stage)
            if not r or "error" in r:
                continue
            rows.append(
                [
                    name,
                    stage.upper(),
                    "LoRA" if r["lora"] else "full",
                    r["steps"],
                    r["seconds_per_step"],
                    r["tokens_per_s"],
                    r["peak_gib"],
                    r["loss_finite"],
                ]
            )
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The check as Markdown: where it ran, the modes, the two tables and the verdict."""
    env = results["environment"]
    modes = results["modes"]
    lines = [
        f"# GPU check ({'tiny shapes, ' if results['tiny'] else ''}{results['started']})",
        "",
        f"Device: {env['device_name']} ({env['device']}), bf16 supported: {_fmt(env['bf16_supported'])}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "",
        f"Modes: attention {modes['attn_implementation']}, model.generate cache {modes['hf_cache']}"
        f"{' (torch.compile by transformers)' if modes['hf_compiled_by_transformers'] else ''}, "
        f"engine torch.compile {_fmt(modes['engine_compile'])}. Weights are random (speed and memory only).",
        "",
        "## Generation: engine vs model.generate (tokens/s)",
        "",
        *_table(
            ["shape", "measurement", "engine", "generate", "engine/generate", "engine peak GiB", "generate peak GiB"],
            generation_rows(results),
        ),
        "",
        "## Training steps",
        "",
        *_table(
            ["shape", "stage", "tuning", "steps", "s/step", "tokens/s", "peak GiB", "loss finite"],
            training_rows(results),
        ),
        "",
        "## Checks",
        "",
        *[f"- {name}: {_fmt(value)}" for name, value in results["checks"].items()],
        *[f"- error in {where}: {message}" for where, message in results["errors"].items()],
        f"- total: {results['seconds']:.0f} s",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``gpu_check.json`` and ``gpu_check.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "gpu_check.json", out_dir / "gpu_check.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")
    return json_path, md_path


def summary_lines(results: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: verdict, and per shape the key ratios and step figures."""
    lines = [f"gpu_check: {'OK' if results['ok'] else 'FAILED'} in {results['seconds']:.0f} s"]
    for name, entry in results["shapes"].items():
        gen = entry.get("generation") or {}
        parts = [f"{r['batch']}:{_fmt(r['engine_over_generate'])}x" for r in gen.get("decode", [])]
        group = gen.get("sample_group")
        grpo = entry.get("grpo") or {}
        lines.append(
            f"  {name}: decode engine/generate {' '.join(parts) or '-'}; "
            f"group {_fmt(group['engine_over_generate']) if group else '-'}x; "
            f"GRPO {_fmt(grpo.get('seconds_per_step'))} s/step, peak {_fmt(grpo.get('peak_gib'))} GiB"
        )
    lines += [f"  error in {where}: {message}" for where, message in results["errors"].items()]
    return lines
