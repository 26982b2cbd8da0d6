"""The value Python's ``eval`` gives an expression of literals, operators, pure builtins and
methods of those values, without running any other code or building values too large to hold.

BFCL's prompting decoder ``eval``s every binary operation in a model's argument (``'x' + '**2'``,
``str(5) + 'x'``, ``(n := 2) * n``); ``bfcl_decode`` needs the same values without executing
model text. What is evaluated here:

* literals, containers, comprehension-free operators (arithmetic, comparison, boolean, ``if``
  expressions, subscripts, f-strings) and assignment expressions (``:=``) with their names;
* calls of the builtins in :data:`SAFE_BUILTINS` (also as values, e.g. ``key=len``), and calls of
  the methods in :data:`METHODS` of any value (``'x'.upper()``);

and, for size: integers of at most :data:`MAX_BITS` bits from ``**`` and ``<<``; at most
:data:`MAX_ITEMS` items from repetition (``*``), ``join``, ``replace``, padding methods, and
format widths. Anything else raises :class:`Refused` before evaluation starts (or, for sizes,
when the operation is reached); the expression's own errors (``1 / 0``) propagate as they are.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

MAX_BITS = 10_000_000
MAX_ITEMS = 10_000_000
SAFE_BUILTINS: dict[str, Any] = {
    f.__name__: f
    for f in (str, int, float, bool, complex, len, abs, round, min, max, sorted, list, tuple, dict, set)
    + (chr, ord, hex, oct, bin, repr, divmod, ascii)
}  # round is size-checked: see _round
METHODS = frozenset(
    "upper lower title capitalize casefold swapcase strip lstrip rstrip split rsplit splitlines join "
    "startswith endswith find rfind index rindex count replace format encode decode zfill center ljust "
    "rjust removeprefix removesuffix partition rpartition isdigit isalpha isalnum isspace islower "
    "isupper isnumeric isdecimal keys values items get copy real imag numerator denominator "
    "conjugate is_integer bit_length hex".split()
)
_LITERAL_NODES = (
    ast.Expression,
    ast.Constant,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.List,
    ast.Tuple,
    ast.Set,
    ast.Dict,
    ast.Subscript,
    ast.Slice,
    ast.Starred,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.NamedExpr,
    ast.keyword,
    ast.expr_context,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)
_LONG_NUMBER = re.compile(r"\d{8,}")


class Refused(ValueError):
    """An expression this module does not evaluate (it would run other code, or is too large)."""


def _too_long(spec: Any) -> bool:
    if isinstance(spec, bytes):
        spec = spec.decode("latin-1")
    return isinstance(spec, str) and bool(_LONG_NUMBER.search(spec))


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and b * a.bit_length() > MAX_BITS:
        raise Refused("power too large")
    return operator.pow(a, b)


def _lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a and b + a.bit_length() > MAX_BITS:
        raise Refused("shift too large")
    return operator.lshift(a, b)


def _mul(a: Any, b: Any) -> Any:
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_ITEMS:
            raise Refused("repetition too large")
    return operator.mul(a, b)


def _big(values: Any) -> bool:
    return any(isinstance(x, int) and abs(x) > MAX_ITEMS for x in values)


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, (str, bytes)):
        star = ("*" if isinstance(a, str) else b"*") in a
        if _too_long(a) or (star and _big(b if isinstance(b, tuple) else (b,))):
            raise Refused("format width too large")
    return operator.mod(a, b)


def _round(number: Any, ndigits: Any = None) -> Any:
    if isinstance(ndigits, int) and abs(ndigits) > 100_000:
        raise Refused("round: ndigits too large")
    return round(number, ndigits)


def _method(obj: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    if _big((*args, *kwargs.values())):
        raise Refused(f"{name}: argument too large")
    if name in ("format", "format_map") and _too_long(obj):
        raise Refused("format width too large")
    if isinstance(obj, (str, bytes)) and args:
        if name == "replace" and len(args) >= 2 and isinstance(args[0], type(obj)) and isinstance(args[1], type(obj)):
            if len(obj) + obj.count(args[0]) * len(args[1]) > MAX_ITEMS:
                raise Refused("replace result too large")
        if name == "join" and hasattr(args[0], "__len__") and len(obj) * len(args[0]) > MAX_ITEMS:
            raise Refused("join result too large")
    return getattr(obj, name)(*args, **kwargs)


_OPERATORS = {ast.Pow: "_pow", ast.LShift: "_lshift", ast.Mult: "_mul", ast.Mod: "_mod"}
_HELPERS = {"_pow": _pow, "_lshift": _lshift, "_mul": _mul, "_mod": _mod, "_method": _method}


def _check(tree: ast.AST) -> None:
    """Raise :class:`Refused` unless every node is one this module evaluates."""
    assigned = {n.target.id for n in ast.walk(tree) if isinstance(n, ast.NamedExpr)}
    if assigned & set(_HELPERS):
        raise Refused("assignment to a reserved name")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            spec = node.format_spec
            if any(isinstance(v, ast.FormattedValue) for v in spec.values) or any(
                _too_long(v.value) for v in spec.values if isinstance(v, ast.Constant)
            ):
                raise Refused("computed or too large format width")
        if isinstance(node, _LITERAL_NODES):
            continue
        if isinstance(node, ast.Name) and (node.id in SAFE_BUILTINS or node.id in assigned):
            continue
        if isinstance(node, ast.Attribute) and node.attr in METHODS and id(node) in called:
            continue  # a method call (a bound method as a value could be called with any size)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SAFE_BUILTINS:
            if node.func.id not in assigned:
                continue
        raise Refused(f"not evaluated: {type(node).__name__}")


class _Guard(ast.NodeTransformer):
    """Size-checked operators and method calls (the same Python semantics, through helpers)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        helper = _OPERATORS.get(type(node.op))
        if helper is None:
            return node
        return ast.copy_location(ast.Call(ast.Name(helper, ast.Load()), [node.left, node.right], []), node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.func, ast.Attribute):
            return node
        args = [node.func.value, ast.Constant(node.func.attr), *node.args]
        return ast.copy_location(ast.Call(ast.Name("_method", ast.Load()), args, node.keywords), node)


def evaluate(tree: ast.Expression) -> Any:
    """The value of a parsed expression (``ast.parse(source, mode="eval")``); raises
    :class:`Refused` or the expression's own exception."""
    _check(tree)
    guarded = ast.fix_missing_locations(_Guard().visit(tree))
    code = compile(guarded, "<bounded-eval>", "eval")
    namespace = {"__builtins__": {}, **SAFE_BUILTINS, "round": _round, **_HELPERS}
    return eval(code, namespace, {})  # noqa: S307 - checked above
