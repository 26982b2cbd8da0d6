"""FTRL's own tool executor, re-implemented: unisolated ``exec`` plus a thread-based timeout.

This is what the FTRL paper's code does for every tool call: exec the tool's source in a fresh
namespace, call the named function with the decoded JSON arguments under ``func_timeout``
(a thread per call), and turn the result into a feedback string. It is kept here as

* the reference that the isolated :mod:`ftrl_lab.core.sandbox` is tested against (parity test),
* the baseline of ``perf/bench_sandbox.py``,
* a fast backend for TRUSTED tool code only: the code runs inside this process, can touch
  the network, the file system and this interpreter, and a timed-out tool keeps running in
  its daemon thread.

Deliberately no ``from __future__`` import in this module: ``exec`` of a source string inherits
the compiler flags of the calling module, and FTRL's caller has none.
"""

import json
import os
import sys

from func_timeout import FunctionTimedOut, func_timeout


def call_function(name, arguments, code):
    """Exec ``code`` in a fresh namespace and call ``name(**arguments)``; FTRL's conversion of
    the result: dict/list -> ``json.dumps(ensure_ascii=False)``, other non-str -> ``str``."""
    namespace = {}
    exec(code, namespace, namespace)
    if name in namespace:
        predict = namespace[name](**arguments)
    else:
        raise NameError(f"name {name} is not defined")
    if type(predict) == dict or type(predict) == list:  # noqa: E721 (exact types, as FTRL)
        predict = json.dumps(predict, ensure_ascii=False)
    elif type(predict) != str:  # noqa: E721
        predict = str(predict)
    return predict


def inprocess_feedback(codes: dict, tool_calls: list, timeout: float = 10.0) -> list[str | None]:
    """Feedback contents (one per call, in order) exactly as FTRL's ``get_feedback`` makes them.

    An error of any kind (unknown tool -> ``KeyError``, bad JSON, non-dict arguments, an
    exception in the tool, a timeout) becomes ``"an error occured when call <name>: <str(e)>"``.
    As in FTRL, a tool that raises ``SystemExit``/``KeyboardInterrupt`` yields ``None`` (the
    timeout thread swallows it), and the timeout text quotes the tool's arguments and source.
    """
    out = []
    for call in tool_calls:
        try:
            name = call["function"]["name"]
            arguments = json.loads(call["function"]["arguments"])
            code = codes[name]
            content = func_timeout(timeout, call_function, args=(name, arguments, code))
        except FunctionTimedOut as e:
            content = f"an error occured when call {call['function']['name']}: {str(e)}"
        except Exception as e:
            content = f"an error occured when call {call['function']['name']}: {str(e)}"
        out.append(content)
    return out


def inprocess_messages(codes: dict, tool_calls: list, timeout: float = 10.0) -> list[dict]:
    """FTRL's tool messages ``{"role": "tool", "content", "tool_call_id"}`` for ``tool_calls``."""
    contents = inprocess_feedback(codes, tool_calls, timeout)
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
