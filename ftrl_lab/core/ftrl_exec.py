"""FTRL's namespace semantics for one tool call, stdlib only (shared by the in-process executor
and the sandbox's children).

What FTRL's ``call_function`` does for every tool call (``Code/utils/utils.py``): ``exec(code)``
*inside the calling function*, then ``eval(name)(**arguments)``. So the tool source runs with the
caller's module globals and the caller's frame locals as two different dicts: the top-level
``def`` lands in the frame locals, but the function's own globals are the caller module's.
Consequences, all reproduced by :func:`load_tool` in mode ``"ftrl"`` (the default):

* a module-level ``import re`` / ``from datetime import datetime`` / constant / helper function
  in the tool source is invisible inside the function: the call fails with FTRL's
  ``an error occured when call <name>: name 're' is not defined``;
* names of FTRL's ``utils.utils`` module are visible instead (``json``, ``sha256``, ``sleep``,
  ``deepcopy``, and, where those packages can be imported, ``requests``, ``func_set_timeout``,
  ``FunctionTimedOut``: inside the sandbox they cannot, so a tool using them without importing
  them gets a NameError there; no tool of FTRL's test set does), and the tool's functions belong
  to module ``utils.utils`` (it shows in some TypeError texts);
* ``name`` is evaluated as an expression (``eval``), after the tool code ran; the module-level
  code sees the caller's locals ``name``, ``arguments``, ``code`` and ``kwargs``.

Mode ``"fresh"`` execs each source in one fresh namespace used as both globals and locals, as a
standalone module would run: module-level names are visible.
FTRL's semantics are those of CPython <= 3.12 (PEP 667 changed ``exec`` in function scopes in
3.13); explicit dicts are passed, so they hold on any version.

Imported by the sandbox worker as a plain module (inside the sandbox only the standard library
is there). Deliberately no ``from __future__`` import in this module: ``exec`` of a source
string inherits the compiler flags of the calling module, and FTRL's caller has none.
"""

import copy
import hashlib
import json
import time

EXEC_MODES = ("ftrl", "fresh")
FTRL_MODULE_NAME = "utils.utils"  # the module FTRL's call_function lives in

_optional: dict = {}  # names of FTRL's module from third-party packages, found once per process


def _optional_names() -> dict:
    """``requests``, ``func_set_timeout``, ``FunctionTimedOut`` where importable (cached)."""
    if "done" not in _optional:
        names = {}
        try:
            from func_timeout import FunctionTimedOut, func_set_timeout

            names.update(func_set_timeout=func_set_timeout, FunctionTimedOut=FunctionTimedOut)
        except ImportError:
            pass
        try:
            import requests

            names["requests"] = requests
        except ImportError:
            pass
        _optional.update(done=True, names=names)
    return _optional["names"]


def ftrl_module_globals() -> dict:
    """A stand-in for the globals of FTRL's ``utils.utils``: the names its tools can see.

    FTRL's module also binds ``AutoTokenizer``/``AutoModelForCausalLM`` (transformers) and its own
    functions; they are left out (no tool uses them, and core imports no transformers).
    """
    names = {
        "__name__": FTRL_MODULE_NAME,
        "__package__": "utils",
        "__builtins__": __builtins__,
        "json": json,
        "sha256": hashlib.sha256,
        "sleep": time.sleep,
        "deepcopy": copy.deepcopy,
    }
    names.update(_optional_names())
    return names


def to_feedback_text(predict):
    """FTRL's conversion of a tool result: dict/list (exact types) -> ``json.dumps(ensure_ascii=
    False)``, other non-str -> ``str``."""
    if type(predict) == dict or type(predict) == list:  # noqa: E721 (exact types, as FTRL)
        return json.dumps(predict, ensure_ascii=False)
    if type(predict) != str:  # noqa: E721
        return str(predict)
    return predict


def load_tool(code, name, arguments, mode="ftrl", module_globals=None):
    """Exec ``code`` (source text or a compiled code object) with the namespace semantics of
    ``mode`` ("ftrl" or "fresh", see the module notes) and return the callable ``name`` names;
    raises what exec / the lookup raises. ``arguments`` is visible to the module-level code in
    mode "ftrl" (as the caller's local of that name is in FTRL).

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
        return eval(name, module, frame)
    if mode == "fresh":
        namespace = {}
        exec(code, namespace, namespace)
        if name not in namespace:
            raise NameError(f"name {name} is not defined")
        return namespace[name]
    raise ValueError(f"unknown exec mode '{mode}' (choose from {EXEC_MODES})")


def exec_tool(code, name, arguments, mode="ftrl", module_globals=None):
    """Run one tool call: :func:`load_tool`, then ``function(**arguments)``; returns FTRL's
    feedback text and raises whatever the call raises."""
    function = load_tool(code, name, arguments, mode, module_globals)
    return to_feedback_text(function(**arguments))
