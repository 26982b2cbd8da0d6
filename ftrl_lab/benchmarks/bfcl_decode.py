"""BFCL model outputs -> BFCL's decoded form ``[{name: {param: value}}, ...]``, under two rule sets.

``rules="official"`` (:data:`DEFAULT_RULES`) reproduces the decoders of BFCL's own handlers
(``bfcl-eval``; written from their behaviour, not copied):

* ``python``: the prompting decoder (``default_decode_ast_prompting`` + ``ast_parse``): the text
  is stripped of backticks, newlines and spaces at both ends and wrapped in ``[...]`` unless it
  already starts / ends with a bracket, then parsed as one Python expression that must be a
  list of calls. A fence label (```` ```python ````) therefore fails, and so does
  a quoted whole output. Keyword arguments only (positional ones are dropped, ``**x`` becomes the
  parameter ``None``); argument values: literals; ``-c`` / ``+c`` / ``not c`` / ``~c`` of a numeric
  literal ``c`` all become ``-c`` and anything else behind a unary operator fails (``-(-10)``);
  names become their text; a call with keyword arguments becomes a nested ``{name: {...}}``,
  one without becomes its source text; ``a[i]`` becomes ``"a[i]"``; binary operations
  (``'x' + '**2'``, ``2 * 3``) are evaluated; other values (sets, attributes, comparisons,
  f-strings, lambdas, comprehensions, ``**`` in a dict) fail the decode.
* ``qwen``: the Qwen FC handler: each ``<tool_call>\\n...\\n</tool_call>`` (the newlines are
  part of the tags; text between calls is ignored) whose body is JSON is kept, others are
  skipped; the decode fails if a kept body is not an object, lacks ``name`` or ``arguments``,
  or its ``arguments`` is not an object (a JSON string of an object fails too).
* ``openai``: the OpenAI FC handler: each tool call's ``arguments`` string is JSON-decoded as
  it is (any JSON value); a message without ``tool_calls`` decodes to ``[]`` when its content is
  empty and fails otherwise.

BFCL's Qwen handlers also keep only the text after the last ``</think>`` (left-stripped of
newlines) before decoding: :func:`bfcl_response` does that step; ``bfcl.score_output`` applies it.
``fmt="auto"`` (:func:`output_format`) picks one of the three by the output's shape.

One documented residual: BFCL evaluates a binary operation with Python's ``eval`` in its own
module, so any name, call or attribute lookup inside it runs there. Here
:func:`bounded_eval.evaluate` gives the same value for literals, operators, ``:=``, pure
builtins (``str(5) + 'x'``) and common methods (``'x'.upper() + 'y'``), within size bounds;
anything else (a name BFCL's module happens to define, another function or attribute, a
lambda, a value of more than 10^7 items) fails the decode here, as it does in BFCL whenever
the name is not defined there or the value cannot be built in memory.

``rules="lenient"`` is this project's forgiving reading: a code fence, a ``python`` label and
quotes around the whole output are removed; unary ``+``/``-`` of any number; sets become lists;
``**x`` is dropped; only arithmetic between numbers is evaluated (other operations become their
text); Qwen calls are read by ``ftrl_lab.core.parsing.parse_qwen`` (calls without the tag
newlines, ``parameters`` for ``arguments``, arguments as a JSON string, a missing last
``</tool_call>``) and OpenAI messages by ``parse_openai_message``.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from typing import Any

from ftrl_lab.benchmarks import bounded_eval
from ftrl_lab.core.parsing import parse_openai_message, parse_qwen

# Bounds on what the Python decoders hand to ast.parse (CPython's parser costs tens of
# microseconds per node, so a megabyte of calls takes seconds): far above any BFCL answer.
MAX_PYTHON_CHARS = 65_536
MAX_PYTHON_PUNCTUATION = 4_096
_PUNCTUATION = re.compile(r"[(\[{,=+\-*/%.:]")

RULES = ("official", "lenient")
DEFAULT_RULES = "official"
FORMATS = ("auto", "qwen", "python", "openai")
TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"


class DecodeError(ValueError):
    """A model output that is not a list of function calls."""


def check_rules(rules: str) -> None:
    if rules not in RULES:
        raise ValueError(f"unknown BFCL rules {rules!r} (choose from {RULES})")


def bfcl_response(text: Any) -> Any:
    """What BFCL's Qwen handlers store for a generation: the text after the last ``</think>``,
    left-stripped of newlines (other values unchanged)."""
    if isinstance(text, str) and "</think>" in text:
        return text.split("</think>")[-1].lstrip("\n")
    return text


# --- official: Python call syntax ------------------------------------------------------------------
def _evaluate(node: ast.BinOp) -> Any:
    """The value BFCL's ``eval(ast.unparse(node))`` gives (see :mod:`bounded_eval` for what is
    evaluated); a failure or a refusal fails the decode."""
    try:
        source = ast.unparse(node)
        return bounded_eval.evaluate(ast.parse(source, mode="eval"))
    except bounded_eval.Refused as e:
        raise DecodeError(f"not evaluated here ({e}): {ast.unparse(node)[:80]}") from None
    except Exception as e:  # noqa: BLE001 - any failure is BFCL's decode failure too
        raise DecodeError(f"{type(e).__name__} evaluating an argument: {e}"[:200]) from None


def _official_value(node: Any) -> Any:
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp):
        operand = node.operand
        if isinstance(operand, ast.Constant) and isinstance(operand.value, (int, float, complex)):
            return -operand.value  # whatever the operator: BFCL negates the literal
        raise DecodeError(f"unsupported unary operand: {ast.unparse(node)[:80]}")
    if isinstance(node, ast.List):
        return [_official_value(v) for v in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_official_value(v) for v in node.elts)
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise DecodeError("'**' inside a dict literal")
            key = _official_value(k)
            try:
                out[key] = _official_value(v)
            except TypeError:
                raise DecodeError(f"unhashable dict key {key!r}") from None
        return out
    if isinstance(node, ast.BinOp):
        return _evaluate(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _official_call(node) if node.keywords else ast.unparse(node)
    if isinstance(node, ast.Subscript):
        return f"{ast.unparse(node.value)}[{ast.unparse(node.slice)}]"
    raise DecodeError(f"unsupported argument: {type(node).__name__}")


def _official_call(node: ast.Call) -> dict:
    parts, func = [], node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return {".".join(reversed(parts)): {kw.arg: _official_value(kw.value) for kw in node.keywords}}


def check_python_size(text: str) -> None:
    """Refuse texts beyond :data:`MAX_PYTHON_CHARS` or :data:`MAX_PYTHON_PUNCTUATION` before parsing
    (both rule sets: the one bound on model text where we differ from BFCL, far above any answer)."""
    if len(text) > MAX_PYTHON_CHARS:
        raise DecodeError(f"longer than {MAX_PYTHON_CHARS} characters: not decoded as Python calls")
    if len(_PUNCTUATION.findall(text)) > MAX_PYTHON_PUNCTUATION:
        raise DecodeError(f"more than {MAX_PYTHON_PUNCTUATION} operators/brackets: not decoded as Python calls")


def decode_python_official(text: Any) -> list[dict]:
    """BFCL's prompting decoder (Python call syntax); raises :class:`DecodeError`."""
    if not isinstance(text, str):
        raise DecodeError(f"not text: {type(text).__name__}")
    check_python_size(text)
    text = text.strip("`\n ")
    text = text if text.startswith("[") else "[" + text
    text = text if text.endswith("]") else text + "]"
    try:
        body = ast.parse(text, mode="eval").body
        if isinstance(body, ast.Call):
            return [_official_call(body)]
        if not isinstance(body, (ast.List, ast.Tuple, ast.Set)):
            raise DecodeError(f"not a list of calls: {type(body).__name__}")
        calls = []
        for elt in body.elts:
            if not isinstance(elt, ast.Call):
                raise DecodeError(f"not a call: {ast.unparse(elt)[:80]}")
            calls.append(_official_call(elt))
        return calls
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - BFCL counts every exception as a failed decode
        raise DecodeError(f"{type(e).__name__}: {str(e)[:200]}") from None


# --- official: Qwen <tool_call> and OpenAI messages ---------------------------------------------------
def tool_call_bodies(text: str) -> list[str]:
    """The text between each ``<tool_call>\\n`` and the next ``\\n</tool_call>``, left to right."""
    bodies, pos = [], 0
    while (start := text.find(TOOL_CALL_OPEN, pos)) != -1:
        end = text.find(TOOL_CALL_CLOSE, start + len(TOOL_CALL_OPEN))
        if end == -1:
            break
        bodies.append(text[start + len(TOOL_CALL_OPEN) : end])
        pos = end + len(TOOL_CALL_CLOSE)
    return bodies


def decode_qwen_official(text: Any) -> list[dict]:
    """BFCL's Qwen FC handler decoder; raises :class:`DecodeError`."""
    if not isinstance(text, str):
        raise DecodeError(f"not text: {type(text).__name__}")
    calls = []
    for body in tool_call_bodies(text):
        try:
            calls.append(json.loads(body))
        except Exception:  # noqa: BLE001, S112 - BFCL skips a body that is not JSON
            continue
    if any(type(c) is not dict for c in calls):
        raise DecodeError("a <tool_call> body is not a JSON object")
    out = []
    for c in calls:
        if "name" not in c or "arguments" not in c:
            raise DecodeError(f"a call without {'name' if 'name' not in c else 'arguments'!r}")
        if type(c["arguments"]) is not dict:
            raise DecodeError(f"arguments are a {type(c['arguments']).__name__}, not an object")
        try:
            out.append({c["name"]: dict(c["arguments"])})
        except TypeError:
            raise DecodeError(f"unhashable function name {c['name']!r}") from None
    return out


def decode_openai_official(message: Any) -> list[dict]:
    """BFCL's OpenAI FC handler decoder for one assistant message; raises :class:`DecodeError`."""
    if isinstance(message, str):  # BFCL keeps the content when there are no tool calls
        message = {"content": message}
    if not isinstance(message, dict):
        raise DecodeError(f"not a message: {type(message).__name__}")
    try:
        pairs = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls")]
    except Exception:  # noqa: BLE001 - BFCL falls back to the content
        content = message.get("content")
        if content == "":
            return []
        raise DecodeError("the message has no tool calls") from None
    out = []
    for name, arguments in pairs:
        try:
            out.append({name: json.loads(arguments)})
        except Exception as e:  # noqa: BLE001
            raise DecodeError(f"arguments of {name!r} are not JSON: {e}") from None
    return out


# --- lenient -------------------------------------------------------------------------------------
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _lenient_value(node: ast.AST) -> Any:
    """A Python literal from an argument node, without evaluating code."""
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _lenient_value(node.operand)
        if isinstance(inner, (int, float, complex)) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
        return ast.unparse(node)
    if isinstance(node, (ast.List, ast.Set)):
        return [_lenient_value(v) for v in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_lenient_value(v) for v in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            return ast.unparse(node)
        return {_lenient_value(k): _lenient_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _lenient_value(node.left), _lenient_value(node.right)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (left, right)):
            try:
                if isinstance(node.op, ast.Pow) and abs(right) > 64:
                    raise OverflowError
                return _ARITHMETIC[type(node.op)](left, right)
            except (ArithmeticError, ValueError):
                pass
        return ast.unparse(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call) and node.keywords:
        return _lenient_call(node)
    return ast.unparse(node)


def _call_name(func: ast.AST) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        raise DecodeError(f"not a function name: {ast.unparse(func)}")
    parts.append(func.id)
    return ".".join(reversed(parts))


def _lenient_call(node: ast.Call) -> dict:
    return {_call_name(node.func): {kw.arg: _lenient_value(kw.value) for kw in node.keywords if kw.arg is not None}}


def decode_python_lenient(text: Any) -> list[dict]:
    """``[f(a=1), g(b="x")]`` (brackets optional, code fences and quotes stripped) -> calls."""
    if not isinstance(text, str):
        raise DecodeError(f"not text: {type(text).__name__}")
    check_python_size(text)
    text = text.strip("`\n ")
    if text.startswith("python\n"):
        text = text[len("python\n") :]
    text = text.strip().strip("'")
    text = text if text.startswith("[") else "[" + text
    text = text if text.endswith("]") else text + "]"
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise DecodeError(f"not Python call syntax: {e}") from None
    body = tree.body
    elts = [body] if isinstance(body, ast.Call) else getattr(body, "elts", None)
    if elts is None:
        raise DecodeError("not a list of calls")
    calls = []
    for elt in elts:
        if not isinstance(elt, ast.Call):
            raise DecodeError(f"not a call: {ast.unparse(elt)[:80]}")
        calls.append(_lenient_call(elt))
    return calls


def _from_tool_calls(tool_calls: list[dict]) -> list[dict]:
    return [{c["function"]["name"]: json.loads(c["function"]["arguments"])} for c in tool_calls]


def _decode_lenient(output: Any, fmt: str) -> list[dict]:
    if isinstance(output, dict) or fmt == "openai":
        parsed = parse_openai_message(output if isinstance(output, dict) else {"content": output})
        if parsed.tool_calls:
            return _from_tool_calls(parsed.tool_calls)
        if fmt == "openai":
            raise DecodeError("the message has no tool calls")
        output = parsed.content
    if fmt == "qwen" or (fmt == "auto" and isinstance(output, str) and "<tool_call>" in output):
        parsed = parse_qwen(output)
        if not parsed.tool_calls:
            raise DecodeError("no parsable <tool_call>: " + "; ".join(parsed.errors or ["no tool call"]))
        return _from_tool_calls(parsed.tool_calls)
    return decode_python_lenient(output)


# --- entry point ---------------------------------------------------------------------------------
def output_format(output: Any, fmt: str = "auto") -> str:
    """The decoder ``auto`` picks: a dict is an OpenAI message, text holding ``<tool_call>`` is
    Qwen, other text is Python call syntax. Explicit formats are returned as given."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r} (choose from {FORMATS})")
    if fmt != "auto":
        return fmt
    if isinstance(output, dict):
        return "openai"
    return "qwen" if isinstance(output, str) and "<tool_call>" in output else "python"


def decode_output(output: Any, fmt: str = "auto", rules: str = DEFAULT_RULES) -> list[dict]:
    """A model output as BFCL's decoded form ``[{name: {param: value}}, ...]``.

    ``fmt``: ``qwen``, ``openai``, ``python`` or ``auto`` (see :func:`output_format`). Raises
    :class:`DecodeError` when the output does not decode.
    """
    check_rules(rules)
    fmt = output_format(output, fmt)
    if rules == "lenient":
        return _decode_lenient(output, fmt)
    if fmt == "openai":
        return decode_openai_official(output)
    if fmt == "qwen":
        return decode_qwen_official(output)
    return decode_python_official(output)


def well_formed(decoded: Any) -> bool:
    """BFCL's format check: a list of one-key dicts whose values are dicts (``[]`` passes)."""
    return type(decoded) is list and all(
        type(d) is dict and len(d) == 1 and type(next(iter(d.values()))) is dict for d in decoded
    )


def has_call(output: Any, fmt: str = "auto", rules: str = DEFAULT_RULES) -> bool:
    """Whether the output decodes to at least one call (BFCL's relevance test)."""
    try:
        decoded = decode_output(output, fmt, rules)
    except (DecodeError, ValueError, TypeError):
        return False
    return well_formed(decoded) and bool(decoded) and not (len(decoded) == 1 and not decoded[0])
