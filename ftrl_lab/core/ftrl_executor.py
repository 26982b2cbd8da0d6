"""FTRL's own tool executor, re-implemented: unisolated ``exec`` plus a thread-based timeout.

What FTRL's ``get_feedback`` does for every tool call (``Code/utils/utils.py``): parse the JSON
arguments, look the source up, and run ``call_function`` (exec of the source inside the calling
function, then ``eval(name)(**arguments)``) under ``func_timeout``. The namespace semantics of
that exec (module-level names of a tool source invisible to its function; FTRL's module names
visible; mode ``"fresh"`` as the documented option) live in the stdlib-only
:mod:`ftrl_lab.core.ftrl_exec`, shared with the sandbox's children, and are re-exported here
(:func:`exec_tool`, :data:`EXEC_MODES`, :func:`ftrl_module_globals`, :func:`to_feedback_text`).

Kept here as

* the reference that the isolated :mod:`ftrl_lab.core.sandbox` is tested against (parity test,
  in both exec modes),
* the baseline of ``perf/bench_sandbox.py``,
* a fast backend for TRUSTED tool code only: the code runs inside this process, can touch
  the network, the file system and this interpreter, and a timed-out tool keeps running in
  its daemon thread.
"""

import json
import os
import sys

from func_timeout import FunctionTimedOut, func_timeout

from ftrl_lab.core.ftrl_exec import (
    EXEC_MODES,
    FTRL_MODULE_NAME,
    exec_tool,
    ftrl_module_globals,
    load_tool,
    to_feedback_text,
)

__all__ = [
    "EXEC_MODES",
    "FTRL_MODULE_NAME",
    "exec_tool",
    "ftrl_module_globals",
    "inprocess_feedback",
    "inprocess_messages",
    "load_tool",
    "quiet_stdout",
    "to_feedback_text",
]


def _timed_target(mode):
    """The thread target; named ``call_function`` so the timeout text is FTRL's."""

    def call_function(name, arguments, code):
        return exec_tool(code, name, arguments, mode)

    return call_function


def inprocess_feedback(codes: dict, tool_calls: list, timeout: float = 10.0, mode: str = "ftrl") -> list[str | None]:
    """Feedback contents (one per call, in order) exactly as FTRL's ``get_feedback`` makes them
    (``mode``: the namespace semantics of :func:`exec_tool`, FTRL's by default).

    An error of any kind (unknown tool -> ``KeyError``, bad JSON, non-dict arguments, an
    exception in the tool, a timeout) becomes ``"an error occured when call <name>: <str(e)>"``.
    As in FTRL, a tool that raises ``SystemExit``/``KeyboardInterrupt`` yields ``None`` (the
    timeout thread swallows it), and the timeout text quotes the tool's arguments and source.
    """
    if mode not in EXEC_MODES:
        raise ValueError(f"unknown exec mode '{mode}' (choose from {EXEC_MODES})")
    target = _timed_target(mode)
    out = []
    for call in tool_calls:
        try:
            name = call["function"]["name"]
            arguments = json.loads(call["function"]["arguments"])
            code = codes[name]
            content = func_timeout(timeout, target, args=(name, arguments, code))
        except FunctionTimedOut as e:
            content = f"an error occured when call {call['function']['name']}: {str(e)}"
        except Exception as e:
            content = f"an error occured when call {call['function']['name']}: {str(e)}"
        out.append(content)
    return out


def inprocess_messages(codes: dict, tool_calls: list, timeout: float = 10.0, mode: str = "ftrl") -> list[dict]:
    """FTRL's tool messages ``{"role": "tool", "content", "tool_call_id"}`` for ``tool_calls``."""
    contents = inprocess_feedback(codes, tool_calls, timeout, mode)
    return [{"role": "tool", "content": c, "tool_call_id": call.get("id")} for c, call in zip(contents, tool_calls)]


class quiet_stdout:
    """Send fd 1 and ``sys.stdout`` to /dev/null: in-process tools print onto our stdout
    (the sandbox captures prints instead)."""

    def __enter__(self) -> "quiet_stdout":
        sys.stdout.flush()
        self.saved = os.dup(1)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
        self.stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout.close()
        sys.stdout = self.stdout
        os.dup2(self.saved, 1)
        os.close(self.saved)
