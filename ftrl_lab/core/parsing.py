"""Model output -> assistant content + tool calls.

Formats: Qwen / Hermes ``<tool_call>{json}</tool_call>`` (several per turn, FTRL's format),
Llama-3.1 ``<|python_tag|>{json}`` or bare JSON, and OpenAI-style assistant messages with
``tool_calls``. Every parser returns a :class:`ParsedResponse` and never raises.

Tool calls are OpenAI-style dicts, ``arguments`` a JSON string, as FTRL stores them::

    {"id": "call_ab12cd34_0", "type": "function", "function": {"name": "f", "arguments": "{\\"x\\": 1}"}}

Semantics follow FTRL's ``parse_qwen``: text before the first ``<tool_call>`` is the content;
each block is a JSON object with ``name`` and ``arguments`` (an object, or a string holding
JSON); a final block without ``</tool_call>`` still counts; bad blocks are dropped, good ones
kept; when no call survives, the content is the whole text (so the reward can see the tags).
Unlike FTRL, call ids are deterministic (a hash of the text), not clock-based.

Rule sets (``rules=``): ``"lenient"`` (the default here, the rules above) and ``"official"``, the
outcome of FTRL's own ``parse_qwen`` on every input, quirks included:

- the text after ``<tool_call>`` loses every leading character of the set ``<tool_call>`` (a
  character-set strip: ``<tool_call><tool_call>{...}`` is one good call);
- any truthy JSON ``name`` is a call (``7``, ``true``, ``[1]``); the key must be ``arguments``
  (``parameters`` drops the block);
- ``arguments`` that are not an object must be a string holding JSON, and any JSON value is kept
  (``"[1]"``, ``"null"``, ``"5"`` become calls that the executor then fails on); a non-string
  non-object value (``[1]``, ``null``, ``5``) drops the block;
- no end-of-turn markers are removed (the reward removes its own, :func:`strip_reward_suffixes`).

Only Qwen text has an official rule set (FTRL's paper numbers are Qwen's); other formats parse the
same under both.

Model text can never stop a run: every parser runs in time linear in its input and never
raises. JSON that cannot be decoded (too deep, an integer over Python's digit limit) makes a
bad call, and so does a call whose name or arguments hold a lone surrogate (not valid Unicode:
no file or tool could take it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
END_MARKERS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "</s>")
FORMATS = ("qwen", "llama31", "openai")
RULE_SETS = ("official", "lenient")
REWARD_SUFFIXES = ("<|endoftext|>", "<|im_end|>")  # what FTRL's reward strips, once each, in order
MAX_CALLS_PER_TURN = 1024  # blocks / values / tool_calls read per turn; the rest are dropped, with an error
MAX_INT_DIGITS = 4300  # Python's default int/str conversion limit, kept even if the process raises it
# Trailing whitespace and end markers, read on the reversed text: one left-to-right match.
_TOO_MANY_CALLS = f"more than {MAX_CALLS_PER_TURN} tool calls in one turn: the rest were ignored"
_VALUE_SEPARATORS = re.compile(r"[ \t\r\n;]*")
# Trailing whitespace and end markers, read on the reversed text: one left-to-right match
# (possessive where the re module has it, 3.11+: no backtracking stack to keep).
_TRAILING_MARKERS_REVERSED = re.compile(
    "(?:\\s+|" + "|".join(re.escape(m[::-1]) for m in END_MARKERS) + ")*" + ("+" if sys.version_info >= (3, 11) else "")
)


@dataclass
class ParsedResponse:
    """What a model turn said: free text, parsed tool calls, and whether a call was malformed."""

    content: str
    tool_calls: list[dict] = field(default_factory=list)
    malformed: bool = False
    errors: list[str] = field(default_factory=list)

    def to_message(self) -> dict:
        """The assistant message FTRL appends to the conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        return msg


def strip_end_markers(text: str) -> str:
    """Remove trailing end-of-turn tokens (and the whitespace around them), as FTRL does
    before parsing; one pass over the text, however many markers it ends with."""
    suffix = _TRAILING_MARKERS_REVERSED.match(text[::-1]).end()
    return text[: len(text) - suffix].strip()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def strip_reward_suffixes(text: str) -> str:
    """FTRL's reward clean-up: strip, drop one trailing ``<|endoftext|>``, strip, drop one
    trailing ``<|im_end|>``, strip (``</s>`` and ``<|eot_id|>`` stay)."""
    text = text.strip()
    for marker in REWARD_SUFFIXES:
        text = text.removesuffix(marker).strip()
    return text


def check_rules(rules: str) -> str:
    """``rules`` itself, or a ValueError naming the rule sets."""
    if rules not in RULE_SETS:
        raise ValueError(f"unknown rule set '{rules}' (choose from {RULE_SETS})")
    return rules


def _call_id(text: str, index: int) -> str:
    return f"call_{_digest(text)}_{index}"


def _call_ids(text: str) -> Callable[[int], str]:
    """``_call_id(text, i)`` for any ``i``, hashing ``text`` once (on first use)."""
    digest: list[str] = []

    def call_id(index: int) -> str:
        if not digest:
            digest.append(_digest(text))
        return f"call_{digest[0]}_{index}"

    return call_id


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (over {MAX_INT_DIGITS})")
    return int(digits)


_DECODER = json.JSONDecoder(parse_int=_bounded_int)


def _loads(text: str) -> Any:
    """``json.loads`` whose every failure is a ValueError: too deep nesting or an integer
    over the digit limit, as well as malformed JSON."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _json_error(e: ValueError) -> str:
    return e.msg if isinstance(e, json.JSONDecodeError) else str(e)


def _is_unicode(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (it cannot be written as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def make_tool_call(name: str, arguments: Any, call_id: str) -> dict:
    """An OpenAI-style tool call with JSON-string arguments."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _checked_tool_call(name: str, arguments: dict, call_id: str) -> dict | str:
    """:func:`make_tool_call`, or an error message when the call cannot travel (its arguments
    cannot be encoded, or it holds a lone surrogate)."""
    try:
        call = make_tool_call(name, arguments, call_id)
    except (ValueError, TypeError, RecursionError) as e:
        return f"arguments of '{name[:100]}' cannot be encoded as JSON: {type(e).__name__}"
    if not (_is_unicode(name) and _is_unicode(call["function"]["arguments"])):
        return f"call to '{name[:100]!r}' holds a lone surrogate (not valid Unicode)"
    return call


def _never_raises(parser: Callable[..., ParsedResponse]) -> Callable[..., ParsedResponse]:
    """Last line of defence: anything a parser did not foresee makes a malformed response."""

    @functools.wraps(parser)
    def safe(response: Any, *args: Any, **kwargs: Any) -> ParsedResponse:
        try:
            return parser(response, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - model output must never stop a run
            return ParsedResponse(content="", malformed=True, errors=[f"unparseable response: {type(e).__name__}"])

    return safe


def _decode_call(obj: Any, args_key: str = "arguments") -> tuple[str, dict] | str:
    """(name, arguments) from a decoded JSON call, or an error message."""
    if not isinstance(obj, dict):
        return f"call is a JSON {type(obj).__name__}, not an object"
    name = obj.get("name")
    if not name or not isinstance(name, str):
        return "call has no 'name'"
    if args_key not in obj:
        alt = "parameters" if args_key == "arguments" else "arguments"
        if alt not in obj:
            return f"call to '{name}' has no '{args_key}'"
        args_key = alt
    args = obj[args_key]
    if isinstance(args, str):
        try:
            args = _loads(args)
        except ValueError as e:
            return f"arguments of '{name}' are not valid JSON: {_json_error(e)}"
    if not isinstance(args, dict):
        return f"arguments of '{name}' are a {type(args).__name__}, not an object"
    return name, args


def _official_block(body: str) -> tuple[Any, str] | str:
    """(name, arguments JSON text) of one ``<tool_call>`` block by FTRL's rules, or why it is dropped."""
    try:
        obj = json.loads(body.lstrip(TOOL_CALL_START).strip())
    except (ValueError, RecursionError) as e:
        return f"tool call is not valid JSON: {getattr(e, 'msg', e)}"
    if not isinstance(obj, dict):
        return f"call is a JSON {type(obj).__name__}, not an object"
    name = obj.get("name")
    if not name:
        return "call has no truthy 'name'"
    if "arguments" not in obj:
        return f"call to {name!r} has no 'arguments'"
    args = obj["arguments"]
    if type(args) is not dict:  # noqa: E721 (FTRL tests the exact type)
        if not isinstance(args, str):
            return f"arguments of {name!r} are a JSON {type(args).__name__}, neither an object nor a string"
        try:
            args = json.loads(args)
        except (ValueError, RecursionError) as e:
            return f"arguments of {name!r} are not valid JSON: {getattr(e, 'msg', e)}"
    try:
        return name, json.dumps(args, ensure_ascii=False)
    except (ValueError, RecursionError) as e:
        return f"arguments of {name!r} cannot be re-encoded: {e}"


def parse_qwen_official(text: str) -> ParsedResponse:
    """FTRL's ``parse_qwen`` outcome (see the module notes); ``name`` may be any truthy JSON value."""
    stripped = text.strip()
    start = text.find(TOOL_CALL_START)
    if start == -1:
        return ParsedResponse(content=stripped)
    calls: list[dict] = []
    errors: list[str] = []
    ids = _call_ids(text)
    for block in text[start:].split(TOOL_CALL_END):
        if len(calls) >= MAX_CALLS_PER_TURN:
            errors.append(_TOO_MANY_CALLS)
            break
        block = block.strip()
        if not block.startswith(TOOL_CALL_START):
            continue
        decoded = _official_block(block)
        if isinstance(decoded, str):
            errors.append(decoded)
            continue
        name, arguments = decoded
        call_id = ids(len(calls))
        calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    content = text[:start].strip() if calls else stripped
    return ParsedResponse(content=content, tool_calls=calls, malformed=bool(errors), errors=errors)


@_never_raises
def parse_qwen(text: Any, rules: str = "lenient") -> ParsedResponse:
    """Parse Qwen / Hermes ``<tool_call>`` output (FTRL's training format) by ``rules``."""
    if check_rules(rules) == "official" and isinstance(text, str):
        return parse_qwen_official(text)
    if not isinstance(text, str):
        return ParsedResponse(
            content="" if text is None else str(text),
            malformed=text is not None,
            errors=[] if text is None else [f"not text: {type(text).__name__}"],
        )
    text = strip_end_markers(text)
    start = text.find(TOOL_CALL_START)
    if start == -1:
        malformed = TOOL_CALL_END in text
        return ParsedResponse(
            content=text, malformed=malformed, errors=["'</tool_call>' without '<tool_call>'"] if malformed else []
        )
    content = text[:start].strip()
    call_id = _call_ids(text)
    calls: list[dict] = []
    errors: list[str] = []
    blocks = 0
    for block in text[start:].split(TOOL_CALL_END):
        block = block.strip()
        if not block:
            continue
        blocks += 1
        if blocks > MAX_CALLS_PER_TURN:
            errors.append(_TOO_MANY_CALLS)
            break
        if not block.startswith(TOOL_CALL_START):
            # FTRL ignores a block that does not open with <tool_call>: trailing text, or
            # text followed by another call (that call is lost, so flag it).
            if TOOL_CALL_START in block:
                errors.append("a tool call preceded by text after an earlier call was ignored (as FTRL does)")
            continue
        body = block[len(TOOL_CALL_START) :].strip()
        try:
            decoded = _decode_call(_loads(body))
        except ValueError as e:
            decoded = f"tool call is not valid JSON: {_json_error(e)}"
        if isinstance(decoded, str):
            errors.append(decoded)
            continue
        name, args = decoded
        call = _checked_tool_call(name, args, call_id(len(calls)))
        if isinstance(call, str):
            errors.append(call)
            continue
        calls.append(call)
    if not calls:
        content = text
    return ParsedResponse(content=content, tool_calls=calls, malformed=bool(errors), errors=errors)


def _json_values(text: str) -> list[Any] | None:
    """Decode one JSON value, or several objects separated by ';' or newlines; None if any
    part fails, is not an object, or there are more than MAX_CALLS_PER_TURN of them."""
    text = text.strip()
    if not text:
        return None
    try:
        value = _loads(text)
        values = value if isinstance(value, list) else [value]
        return values if len(values) <= MAX_CALLS_PER_TURN else None
    except ValueError:
        pass
    values, i, n = [], 0, len(text)
    while i < n:
        i = _VALUE_SEPARATORS.match(text, i).end()
        if i >= n:
            break
        try:
            value, i = _DECODER.raw_decode(text, i)
        except (ValueError, RecursionError):
            return None
        if not isinstance(value, dict) or len(values) >= MAX_CALLS_PER_TURN:
            return None
        values.append(value)
    return values or None


@_never_raises
def parse_llama31(text: Any) -> ParsedResponse:
    """Parse Llama-3.1 tool calls: ``<|python_tag|>{json}`` or a bare JSON call."""
    if not isinstance(text, str):
        return parse_qwen(text)
    text = strip_end_markers(text)
    if PYTHON_TAG in text:
        content, _, payload = text.partition(PYTHON_TAG)
        content = content.strip()
        payload = payload.replace(PYTHON_TAG, ";")
        explicit = True
    else:
        content, payload, explicit = "", text, False
    values = _json_values(payload)
    if values is None or not all(isinstance(v, dict) for v in values):
        return ParsedResponse(
            content=text, malformed=explicit, errors=["<|python_tag|> payload is not a JSON call"] if explicit else []
        )
    calls, errors, call_id = [], [], _call_ids(text)
    for value in values:
        decoded = _decode_call(value, args_key="parameters")
        call = decoded if isinstance(decoded, str) else _checked_tool_call(*decoded, call_id(len(calls)))
        if isinstance(call, str):
            errors.append(call)
        else:
            calls.append(call)
    if not calls:
        # A bare JSON object that is not a call is just content.
        return ParsedResponse(content=text, malformed=explicit, errors=errors if explicit else [])
    return ParsedResponse(content=content, tool_calls=calls, malformed=bool(errors), errors=errors)


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the string ``text`` of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else str(content)


def _message_ids(message: dict) -> Callable[[int], str]:
    """Call ids for a message's calls that carry none: a hash of the whole message, taken once."""
    try:
        text = json.dumps(message, default=str)
    except (ValueError, TypeError, RecursionError):  # circular or too deep to encode
        text = repr(_content_text(message.get("content")))
    return _call_ids(text)


@_never_raises
def parse_openai_message(message: Any) -> ParsedResponse:
    """Normalise an OpenAI-style assistant message (``content`` + ``tool_calls``)."""
    if not isinstance(message, dict):
        return ParsedResponse(
            content="" if message is None else str(message),
            malformed=message is not None,
            errors=[] if message is None else [f"not a message: {type(message).__name__}"],
        )
    content = _content_text(message.get("content") or "")
    calls, errors, message_id = [], [], None
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raw_calls, errors = [], ["tool_calls is not a list"]
    if len(raw_calls) > MAX_CALLS_PER_TURN:
        raw_calls, errors = raw_calls[:MAX_CALLS_PER_TURN], [_TOO_MANY_CALLS]
    for i, call in enumerate(raw_calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            errors.append(f"tool_calls[{i}] has no function")
            continue
        decoded = _decode_call({"name": fn.get("name"), "arguments": fn.get("arguments") or "{}"})
        if isinstance(decoded, str):
            errors.append(decoded)
            continue
        call_id = call.get("id")
        if not (isinstance(call_id, str) and call_id):
            message_id = message_id or _message_ids(message)
            call_id = message_id(i)
        checked = _checked_tool_call(decoded[0], decoded[1], call_id)
        if isinstance(checked, str):
            errors.append(checked)
            continue
        calls.append(checked)
    return ParsedResponse(content=content.strip(), tool_calls=calls, malformed=bool(errors), errors=errors)


def parse_response(response: Any, fmt: str = "qwen", rules: str = "lenient") -> ParsedResponse:
    """Parse a model response in the given format: 'qwen', 'llama31' or 'openai'.

    ``rules`` ('official' or 'lenient') applies to Qwen text (see the module notes).

    A dict is always treated as an OpenAI message; a TRL conversational completion (a list
    of messages) is parsed from its last assistant message. Raises ValueError only for an
    unknown ``fmt``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown tool-call format '{fmt}' (choose from {FORMATS})")
    return _parse_response(response, fmt, check_rules(rules))


@_never_raises
def _parse_response(response: Any, fmt: str, rules: str) -> ParsedResponse:
    if isinstance(response, list):
        msgs = [m for m in response if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        if not msgs:
            return ParsedResponse(content="")
        response = msgs[-1] if msgs[-1].get("tool_calls") else msgs[-1].get("content") or ""
    if isinstance(response, dict):
        return parse_openai_message(response)
    if fmt == "qwen":
        return parse_qwen(response, rules)
    if fmt == "llama31":
        return parse_llama31(response)
    return parse_openai_message({"content": response})


def render_qwen_calls(tool_calls: list[dict], content: str = "") -> str:
    """Render tool calls as Qwen ``<tool_call>`` text (the inverse of :func:`parse_qwen`)."""
    parts = [content] if content else []
    for call in tool_calls:
        fn = call["function"]
        args = fn["arguments"]
        args = json.loads(args) if isinstance(args, str) else args
        parts.append(
            TOOL_CALL_START
            + "\n"
            + json.dumps({"name": fn["name"], "arguments": args}, ensure_ascii=False)
            + "\n"
            + TOOL_CALL_END
        )
    return "\n".join(parts)
