"""FTRL's own tool executor, re-implemented: unisolated ``exec`` plus a thread-based timeout.

What FTRL's ``call_function`` does for every tool call (``Code/utils/utils.py``): ``exec(code)``
*inside the calling function*, then ``eval(name)(**arguments)``. So the tool source runs with the
caller's module globals and the caller's frame locals as two different dicts: the top-level
``def`` lands in the frame locals, but the function's own globals are the caller module's.
Consequences, all reproduced by :func:`exec_tool` in mode ``"ftrl"`` (the default):

* a module-level ``import re`` / ``from datetime import datetime`` / constant / helper function
  in the tool source is invisible inside the function: the call fails with FTRL's
  ``an error occured when call <name>: name 're' is not defined``;
* names of FTRL's ``utils.utils`` module are visible instead (``json``, ``sha256``, ``sleep``,
  ``deepcopy``, ``requests``, ``func_set_timeout``, ``FunctionTimedOut``), and the tool's
  functions belong to module ``utils.utils`` (it shows in some TypeError texts);
* ``name`` is evaluated as an expression (``eval``), after the tool code ran.

Mode ``"fresh"`` (the documented option) execs each source in one fresh namespace used as both
globals and locals, as a standalone module would run: module-level names are visible.
FTRL's semantics are those of CPython <= 3.12 (PEP 667 changed ``exec`` in function scopes in
3.13); :func:`exec_tool` passes explicit dicts, so it gives them on any version.

Kept here as

* the reference that the isolated :mod:`ftrl_lab.core.sandbox` is tested against (parity test);
  the sandbox worker calls :func:`exec_tool` for the namespace semantics,
* the baseline of ``perf/bench_sandbox.py``,
* a fast backend for TRUSTED tool code only: the code runs inside this process, can touch
  the network, the file system and this interpreter, and a timed-out tool keeps running in
  its daemon thread.

Deliberately no ``from __future__`` import in this module: ``exec`` of a source string inherits
the compiler flags of the calling module, and FTRL's caller has none.
"""

import copy
import hashlib
import json
import os
import sys
import time

from func_timeout import FunctionTimedOut, func_set_timeout, func_timeout

EXEC_MODES = ("ftrl", "fresh")
FTRL_MODULE_NAME = "utils.utils"  # the module FTRL's call_function lives in


def ftrl_module_globals():
    """A stand-in for the globals of FTRL's ``utils.utils``: the names its tools can see.

    FTRL's module also binds ``AutoTokenizer``/``AutoModelForCausalLM`` (transformers) and its own
    functions; they are left out (no tool uses them, and core imports no transformers).
    """
    names = {
        "__name__": FTRL_MODULE_NAME,
        "__package__": "utils",
        "__builtins__": __builtins__,
        "json": json,
        "func_set_timeout": func_set_timeout,
        "FunctionTimedOut": FunctionTimedOut,
        "sha256": hashlib.sha256,
        "sleep": time.sleep,
        "deepcopy": copy.deepcopy,
    }
    try:
        import requests

        names["requests"] = requests
    except ImportError:  # pragma: no cover - requests is a dependency
        pass
    return names


def to_feedback_text(predict):
    """FTRL's conversion of a tool result: dict/list (exact types) -> ``json.dumps(ensure_ascii=
    False)``, other non-str -> ``str``."""
    if type(predict) == dict or type(predict) == list:  # noqa: E721 (exact types, as FTRL)
        return json.dumps(predict, ensure_ascii=False)
    if type(predict) != str:  # noqa: E721
        return str(predict)
    return predict


def exec_tool(code, name, arguments, mode="ftrl", module_globals=None):
    """Run one tool call: exec ``code`` (source text or a compiled code object) and call
    ``name(**arguments)`` with the namespace semantics of ``mode`` ("ftrl" or "fresh", see the
    module notes); returns the feedback text and raises whatever the call raises.

    ``module_globals`` (mode "ftrl" only) is the dict standing for FTRL's module globals; by
    default a new :func:`ftrl_module_globals` per call (in FTRL a ``global`` statement in a tool
    writes into that module and persists for the process; pass one dict to keep that).
    """
    if mode == "ftrl":
        module = ftrl_module_globals() if module_globals is None else module_globals
        frame = {"name": name, "arguments": arguments, "code": code, "kwargs": {}}
        exec(code, module, frame)
        # eval() re-reads the caller's locals: its own four variables win over the tool's.
        frame.update(name=name, arguments=arguments, code=code, kwargs={})
        function = eval(name, module, frame)
    elif mode == "fresh":
        namespace = {}
        exec(code, namespace, namespace)
        if name not in namespace:
            raise NameError(f"name {name} is not defined")
        function = namespace[name]
    else:
        raise ValueError(f"unknown exec mode '{mode}' (choose from {EXEC_MODES})")
    extra = {}
    return to_feedback_text(function(**arguments, **extra))


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
