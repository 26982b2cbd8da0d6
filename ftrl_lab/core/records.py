"""FTRL environment records: the typed record, validation, and JSONL / Parquet I/O.

One record is one tool-use environment (or one trajectory prefix of it) in FTRL's own
format: ``messages, tools, codes, unsolved_set, solve_rate, data_source, split, answer``.
On disk ``tools``, ``codes`` and ``unsolved_set`` are JSON strings (as FTRL and verl expect);
in memory they are Python objects.

This module is part of the light core: it imports no torch or transformers.
"""

from __future__ import annotations

import ast
import copy
import json
import logging
import os
import random
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema

log = logging.getLogger(__name__)
_to_json = json.JSONEncoder(ensure_ascii=False).encode  # = json.dumps(x, ensure_ascii=False), built once
JSONL_ERRORS = "backslashreplace"
"""Encoding error handler for JSONL written with ``ensure_ascii=False``: a lone surrogate (which
only a JSON string can hold) is written as its ``\\ud800``-style escape, so it reads back unchanged."""

FTRL_INSTRUCTION = (
    "Please call given tools to answer the question. Please note that all your information "
    "must be obtained by calling tools and not by answering the question directly.\n"
    "If the call fails, you need to try to correct it and continue until you arrive at an answer.\n"
    "Question: "
)
"""The fixed user instruction that opens every FTRL record (followed by the question)."""

FIELDS = ("messages", "tools", "codes", "unsolved_set", "solve_rate", "data_source", "split", "answer")
SCENARIOS = ("single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop")

# An OpenAI function-calling tool document. `parameters` is additionally checked to be a
# valid JSON Schema (Draft 7) object schema.
OPENAI_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "parameters"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                "description": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"const": "object"},
                        "properties": {"type": "object", "additionalProperties": {"type": "object"}},
                        "required": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}
_TOOL_VALIDATOR = jsonschema.Draft7Validator(OPENAI_TOOL_SCHEMA)
_META_VALIDATOR = jsonschema.Draft7Validator(jsonschema.Draft7Validator.META_SCHEMA)
# Compiled validators for the fast path; jsonschema explains a failure precisely.
_fast_tool_check = fastjsonschema.compile(OPENAI_TOOL_SCHEMA, use_default=False)
_fast_meta_check = fastjsonschema.compile(jsonschema.Draft7Validator.META_SCHEMA, use_default=False)


_VALID_PROPERTIES: set[str] = set()  # JSON texts of parameter schemas that passed the meta-schema
_MAX_VALID_PROPERTIES = 200_000


def _fast_parameters_check(params: Any) -> None:
    """The meta-schema check of a tool's `parameters` (raises JsonSchemaException), each
    distinct property schema checked once: the Draft 7 meta-schema checks every keyword on its
    own and every entry of ``properties`` against the whole meta-schema, so a property schema
    that passed once passes again (generated tools share most of theirs)."""
    props = params.get("properties") if isinstance(params, dict) else None
    if not isinstance(props, dict):
        _fast_meta_check(params)
        return
    _fast_meta_check({k: v for k, v in params.items() if k != "properties"})
    for prop in props.values():
        try:
            key = json.dumps(prop)
        except (TypeError, ValueError):  # not plain JSON: check it, do not remember it
            _fast_meta_check(prop)
            continue
        if key not in _VALID_PROPERTIES:
            _fast_meta_check(prop)
            if len(_VALID_PROPERTIES) >= _MAX_VALID_PROPERTIES:
                _VALID_PROPERTIES.clear()
            _VALID_PROPERTIES.add(key)


def tool_schema_errors(tool: Any) -> list[tuple[str, str]]:
    """Problems with one OpenAI tool document, as (path, message); empty when valid."""
    try:
        _fast_tool_check(tool)
        _fast_parameters_check(tool["function"]["parameters"])
        fast_ok = True
    except fastjsonschema.JsonSchemaException:
        fast_ok = False
    errors: list[tuple[str, str]] = []
    if not fast_ok:
        problems = sorted(_TOOL_VALIDATOR.iter_errors(tool), key=lambda e: list(e.path))
        if problems:
            p = problems[0]
            return [("/".join(str(x) for x in p.path), f"not an OpenAI function schema: {p.message}")]
        bad = next(iter(_META_VALIDATOR.iter_errors(tool["function"]["parameters"])), None)
        if bad is not None:
            return [("function/parameters", f"not a valid JSON Schema: {bad.message}")]
    params = tool["function"]["parameters"]
    unknown = [r for r in params.get("required", []) if r not in params.get("properties", {})]
    if unknown:
        errors.append(("function/parameters/required", f"names undeclared parameter(s) {unknown}"))
    return errors


_ROLES = {"system", "user", "assistant", "tool"}


class RecordError(ValueError):
    """A record that cannot be used, located by file, line (1-based) or row (0-based), and field."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ):
        self.message, self.source, self.line, self.row, self.field = message, source, line, row, field
        where = source or "<record>"
        if line is not None:
            where += f":{line}"
        elif row is not None:
            where += f" row {row}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass
class EnvRecord:
    """One FTRL environment or trajectory prefix, with JSON fields decoded."""

    messages: list[dict]
    tools: list[dict]
    codes: dict[str, str]
    unsolved_set: dict[str, list[str]]
    solve_rate: float = 0.0
    data_source: str = "self/single_hop"
    split: str = "test"
    answer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # unknown columns, round-tripped

    # --- convenience views -------------------------------------------------------------
    @property
    def question(self) -> str:
        """The question text of the first user message (after FTRL's instruction)."""
        for m in self.messages:
            if m.get("role") == "user":
                text = m.get("content") or ""
                return text.split("Question: ", 1)[1] if "Question: " in text else text
        return ""

    @property
    def scenario(self) -> str:
        """`single_hop`, `parallel_single_hop`, `multi_hop` or `parallel_multi_hop`."""
        return self.data_source.rsplit("/", 1)[-1]

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def n_unsolved(self) -> int:
        """Gold sub-answers still to be found in this record."""
        return sum(len(v) for v in self.unsolved_set.values())

    def copy(self) -> EnvRecord:
        return copy.deepcopy(self)

    # --- (de)serialisation -------------------------------------------------------------
    def to_row(self) -> dict[str, Any]:
        """FTRL's on-disk row: JSON strings for tools, codes and unsolved_set."""
        row = {
            "messages": self.messages,
            "tools": _to_json(self.tools),
            "codes": _to_json(self.codes),
            "unsolved_set": _to_json(self.unsolved_set),
            "solve_rate": float(self.solve_rate),
            "data_source": self.data_source,
            "split": self.split,
            "answer": self.answer,
        }
        row.update(self.extra)
        return row

    @classmethod
    def from_row(
        cls,
        row: dict[str, Any],
        *,
        source: str | None = None,
        line: int | None = None,
        row_index: int | None = None,
        validate: bool = True,
    ) -> EnvRecord:
        """Decode one FTRL row (JSON strings or already-decoded objects); validate by default."""
        loc = dict(source=source, line=line, row=row_index)
        if not isinstance(row, dict):
            raise RecordError(f"expected a JSON object, got {type(row).__name__}", **loc)
        missing = [f for f in FIELDS if f not in row and f != "solve_rate"]
        if missing:
            raise RecordError(f"missing field(s) {missing}", field=missing[0], **loc)

        def decode(name: str, want: type) -> Any:
            value = row[name]
            if isinstance(value, str):
                try:
                    value = json_loads(value)
                except ValueError as e:
                    raise RecordError(f"not valid JSON ({e})", field=name, **loc) from None
            if hasattr(value, "tolist"):  # numpy array from parquet
                value = value.tolist()
            if not isinstance(value, want):
                raise RecordError(f"expected {want.__name__}, got {type(value).__name__}", field=name, **loc)
            return value

        messages = row["messages"]
        if isinstance(messages, str):
            messages = decode("messages", list)
        if hasattr(messages, "tolist"):
            messages = messages.tolist()
        if not isinstance(messages, list):
            raise RecordError(f"expected list, got {type(messages).__name__}", field="messages", **loc)
        try:
            solve_rate = float(row.get("solve_rate", 0.0) or 0.0)
        except (TypeError, ValueError):
            raise RecordError(f"not a number: {row.get('solve_rate')!r}", field="solve_rate", **loc) from None
        rec = cls(
            messages=[_normalise_message(m) for m in messages],
            tools=decode("tools", list),
            codes=decode("codes", dict),
            unsolved_set=decode("unsolved_set", dict),
            solve_rate=solve_rate,
            data_source=str(row["data_source"]),
            split=str(row["split"]),
            answer="" if row["answer"] is None else str(row["answer"]),
            extra={k: v for k, v in row.items() if k not in FIELDS and v is not None},
        )
        if validate:
            try:
                errors = validate_record(rec)
            except RecursionError:
                raise RecordError("nested too deeply to validate", **loc) from None
            if errors:
                fld, msg = errors[0]
                more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
                raise RecordError(msg + more, field=fld, **loc)
        return rec


def _normalise_message(m: Any) -> dict:
    """Plain dict, numpy arrays to lists, and keys whose value is None dropped (Arrow pads
    heterogeneous structs with nulls); `content` is always kept."""
    if not isinstance(m, dict):
        return m  # validate_record reports it
    out = {}
    for k, v in m.items():
        if hasattr(v, "tolist"):
            v = v.tolist()
        if k == "tool_calls" and isinstance(v, list):
            v = [_normalise_message(c) for c in v]
        elif k == "function" and isinstance(v, dict):
            v = _normalise_message(v)
        if v is not None or k == "content":
            out[k] = v
    return out


def function_names_defined(source: str) -> set[str]:
    """Top-level function names a Python source defines (raises SyntaxError if it does not parse)."""
    with warnings.catch_warnings():  # tool codes often hold regexes with invalid escapes
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source)
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def docstring_ids(tree: ast.AST) -> set[int]:
    """``id()`` of every docstring constant in a parsed source (module, class and function ones)."""
    return {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
        and isinstance(n.body[0].value.value, str)
    }


def code_errors(name: str, source: Any) -> list[tuple[str, str]]:
    """Problems with the code of tool `name`: not a string, does not parse, or does not define
    a top-level function `name`; (field, message) pairs, empty when it is fine."""
    field_name = f"codes[{name}]"
    if not isinstance(source, str):
        return [(field_name, f"expected Python source, got {type(source).__name__}")]
    try:
        defined = function_names_defined(source)
    except SyntaxError as e:
        return [(field_name, f"does not parse: {e.msg} (line {e.lineno})")]
    if name not in defined:
        return [(field_name, f"does not define function '{name}' (defines {sorted(defined)})")]
    return []


SHORT_GOLD_CHARS = 2  # gold answers this short (or shorter) are warned about at load time


def degenerate_answer(answer: str) -> bool:
    """True for a gold answer without a single letter or digit (``''``, ``' '``, ``','``): after
    FTRL's normalisation it is contained in (almost) any output, so it is solved by anything."""
    return not any(ch.isalnum() for ch in answer)


def short_gold_answers(rec: EnvRecord) -> list[tuple[str, str]]:
    """(field, answer) of the gold answers of at most SHORT_GOLD_CHARS characters (stripped)."""
    return [
        (f"unsolved_set[{name}][{i}]", a)
        for name, answers in rec.unsolved_set.items()
        if isinstance(answers, list)
        for i, a in enumerate(answers)
        if isinstance(a, str) and not degenerate_answer(a) and len(a.strip()) <= SHORT_GOLD_CHARS
    ]


def message_errors(m: Any, where: str) -> list[tuple[str, str]]:
    """Problems with one chat message: a role FTRL knows, ``content`` a string (or null), and
    ``tool_calls`` a list of OpenAI-style calls; (field, message) pairs, empty when fine."""
    if not isinstance(m, dict) or m.get("role") not in _ROLES:
        return [(where, f"not a chat message with a role in {sorted(_ROLES)}: {_short(m)}")]
    errors = []
    content = m.get("content")
    if content is not None and not isinstance(content, str):
        kind = "a list of content parts" if isinstance(content, list) else f"a {type(content).__name__}"
        errors.append((f"{where}.content", f"expected a string, got {kind} (FTRL records hold plain text)"))
    calls = m.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            errors.append((f"{where}.tool_calls", f"expected a list, got {type(calls).__name__}"))
        else:
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if not (isinstance(fn, dict) and isinstance(fn.get("name"), str)):
                    errors.append((f"{where}.tool_calls[{j}]", f"not a call with a function name: {_short(call)}"))
                elif not isinstance(fn.get("arguments"), (str, dict)):
                    errors.append((f"{where}.tool_calls[{j}].function.arguments", "expected a JSON string"))
    return errors


def _short(value: Any, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, never failing (deep or odd objects)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError, TypeError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def validate_record(rec: EnvRecord, *, parse_codes: bool = True) -> list[tuple[str, str]]:
    """All problems with a record, as (field, message) pairs; empty when it is valid.

    ``parse_codes=False`` checks only that every code is a string, not that it parses and
    defines its function (`code_errors`): for callers that run every code anyway and check
    that themselves, as envgen's validation gate does, since parsing is most of the cost.
    """
    errors: list[tuple[str, str]] = []
    # messages
    if not rec.messages:
        errors.append(("messages", "empty conversation"))
    for i, m in enumerate(rec.messages):
        errors.extend(message_errors(m, f"messages[{i}]"))
    # tools
    names: list[str] = []
    for i, tool in enumerate(rec.tools):
        problems = tool_schema_errors(tool)
        errors.extend((f"tools[{i}]" + (f"/{path}" if path else ""), msg) for path, msg in problems)
        if not problems or "function/parameters" in problems[0][0]:
            names.append(tool["function"]["name"])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        errors.append(("tools", f"duplicate tool name(s) {dup}"))
    # codes
    for name, source in rec.codes.items():
        if parse_codes:
            errors.extend(code_errors(name, source))
        elif not isinstance(source, str):
            errors.append((f"codes[{name}]", f"expected Python source, got {type(source).__name__}"))
    for name in names:
        if name not in rec.codes:
            errors.append(("codes", f"no code for tool '{name}'"))
    # unsolved_set
    if not rec.unsolved_set:
        errors.append(("unsolved_set", "empty: the record has no gold answer to find"))
    for name, answers in rec.unsolved_set.items():
        if name not in names:
            errors.append((f"unsolved_set[{name}]", f"names unknown tool '{name}'"))
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            errors.append((f"unsolved_set[{name}]", f"expected a list of strings, got {_short(answers, 80)}"))
            continue
        for i, a in enumerate(answers):
            if degenerate_answer(a):
                errors.append(
                    (
                        f"unsolved_set[{name}][{i}]",
                        f"degenerate gold answer {a!r}: no letter or digit, any output would contain it",
                    )
                )
    if rec.answer and degenerate_answer(rec.answer):
        errors.append(
            ("answer", f"degenerate final answer {rec.answer!r}: no letter or digit, any output would contain it")
        )
    if not 0.0 <= rec.solve_rate <= 1.0:
        errors.append(("solve_rate", f"must lie in [0, 1], got {rec.solve_rate}"))
    return errors


# --- files ---------------------------------------------------------------------------------
class Records(list):
    """A list of EnvRecord that also carries the errors of the rows it skipped."""

    skipped: list[RecordError]

    def __init__(self, items: Iterable[EnvRecord] = (), skipped: list[RecordError] | None = None):
        super().__init__(items)
        self.skipped = skipped or []


def json_loads(text: str | bytes) -> Any:
    """``json.loads`` whose every failure is a ValueError with a short message: too deep
    nesting and integers over Python's digit limit as well as malformed JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{e.msg} at column {e.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply to decode") from None


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path when it is a readable file; else a RecordError naming it."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"no such {what}", source=str(path))
    if path.is_dir():
        raise RecordError(f"is a directory, not a {what}", source=str(path))
    if not os.access(path, os.R_OK):
        raise RecordError("not readable (permission denied)", source=str(path))
    return path


def _decode_line(raw: bytes, lineno: int) -> str:
    """One line of a JSONL file as text (a UTF-8 BOM on the first line is dropped)."""
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line)") from None


def _parquet_rows(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise RecordError(f"not a readable Parquet file ({_first_line(str(e))})", source=str(path)) from None


def _first_line(text: str, limit: int = 200) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text if len(text) <= limit else text[:limit] + "..."


def iter_rows(path: str | os.PathLike) -> Iterator[tuple[dict | RecordError, dict]]:
    """Yield (raw row, location) for a .jsonl/.json/.parquet file.

    A line that is not UTF-8 or not JSON (malformed, nested too deeply, an integer over the
    digit limit) is yielded as a RecordError in place of the row, so that the caller decides
    whether to stop or skip, and the lines after it are still read. A missing, unreadable or
    unknown kind of file raises a RecordError.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".jsonl", ".json"):
        raise RecordError(f"unknown record file type '{suffix}' (use .jsonl or .parquet)", source=str(path))
    check_input_file(path, "record file")
    if suffix == ".parquet":
        for i, row in enumerate(_parquet_rows(path)):
            yield row, {"source": str(path), "row_index": i}
        return
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            loc = {"source": str(path), "line": lineno}
            try:
                line = _decode_line(raw, lineno)
            except ValueError as e:
                yield RecordError(str(e), source=str(path), line=lineno), loc
                continue
            if not line.strip():
                continue
            try:
                yield json_loads(line), loc
            except ValueError as e:
                yield RecordError(f"malformed JSON ({e})", source=str(path), line=lineno), loc


def load_records(path: str | os.PathLike, *, skip_invalid: bool = False, validate: bool = True) -> Records:
    """Load FTRL records from JSONL or Parquet.

    A bad row raises a RecordError naming the file, line/row and field, unless
    ``skip_invalid=True``: then it is skipped, kept in ``result.skipped`` and logged.
    """
    out = Records()
    short: list[str] = []
    for row, loc in iter_rows(path):
        try:
            if isinstance(row, RecordError):
                raise row
            rec = EnvRecord.from_row(
                row, source=loc["source"], line=loc.get("line"), row_index=loc.get("row_index"), validate=validate
            )
            out.append(rec)
            where = f"line {loc['line']}" if loc.get("line") is not None else f"row {loc.get('row_index')}"
            short.extend(f"{where} {fld} {a!r}" for fld, a in short_gold_answers(rec))
        except RecordError as e:
            if not skip_invalid:
                raise
            out.skipped.append(e)
    if short:
        log.warning(
            "%s: %d gold answer(s) of <= %d characters (easy to hit by chance or echo): %s",
            path,
            len(short),
            SHORT_GOLD_CHARS,
            "; ".join(short[:5]) + (" ..." if len(short) > 5 else ""),
        )
    if out.skipped:
        log.warning(
            "%s: skipped %d invalid record(s): %s",
            path,
            len(out.skipped),
            "; ".join(str(e) for e in out.skipped[:5]) + (" ..." if len(out.skipped) > 5 else ""),
        )
    return out


def save_records(records: Iterable[EnvRecord], path: str | os.PathLike) -> Path:
    """Write records as FTRL rows to .jsonl or .parquet (readable by `datasets`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.to_row() for r in records]
    suffix = path.suffix.lower()
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".jsonl":
        with open(tmp, "w", encoding="utf-8", errors=JSONL_ERRORS) as f:
            for row in rows:
                f.write(_to_json(row) + "\n")
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(dict.fromkeys(k for row in rows for k in row))  # union, first-seen order
        pq.write_table(pa.Table.from_pydict({c: [row.get(c) for row in rows] for c in columns}), tmp)
    else:
        raise ValueError(f"{path}: unknown record file type '{suffix}' (use .jsonl or .parquet)")
    os.replace(tmp, path)  # never leave a half-written file behind
    return path


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append rows to a JSONL file and flush, for incremental, resumable outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", errors=JSONL_ERRORS) as f:
        for row in rows:
            f.write(_to_json(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def default_test_set() -> Path:
    """Path of the FTRL paper's test set in ../shared (FTRL_TEST_SET overrides it)."""
    env = os.environ.get("FTRL_TEST_SET")
    if env:
        return Path(env)
    return shared_dir() / "benchmarks" / "ftrl" / "test.parquet"


def shared_dir() -> Path:
    """The ../shared folder beside the project root (FTRL_SHARED overrides it)."""
    env = os.environ.get("FTRL_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared"


# --- subsets by scenario ---------------------------------------------------------------------
def per_scenario(records: Sequence[EnvRecord], k: int | None) -> list[EnvRecord]:
    """The first ``k`` records of each scenario, in file order (all records when ``k`` is None)."""
    if k is None:
        return list(records)
    counts: dict[str, int] = {}
    out = []
    for rec in records:
        if counts.get(rec.scenario, 0) < k:
            counts[rec.scenario] = counts.get(rec.scenario, 0) + 1
            out.append(rec)
    return out


def interleaved_order(records: Sequence[EnvRecord], seed: int = 0) -> list[int]:
    """Indices of ``records`` taken round-robin over the scenarios (each scenario's records in a
    seeded shuffle): every prefix is spread evenly over the scenarios, so an evaluation played in
    this order and stopped early has scored a stratified subset (the first ``n`` are
    :func:`stratified_subset`'s ``n``)."""
    rng = random.Random(seed)
    by_scenario: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_scenario.setdefault(r.scenario, []).append(i)
    for idx in by_scenario.values():
        rng.shuffle(idx)
    order: list[int] = []
    while len(order) < len(records):
        for idx in by_scenario.values():
            if idx:
                order.append(idx.pop())
    return order


def stratified_subset(records: Sequence[EnvRecord], n: int | None, seed: int = 0) -> list[EnvRecord]:
    """``n`` records spread evenly over the scenarios (seeded; input order kept); all when ``n`` is None."""
    if n is None or n >= len(records):
        return list(records)
    return [records[i] for i in sorted(interleaved_order(records, seed)[:n])]
