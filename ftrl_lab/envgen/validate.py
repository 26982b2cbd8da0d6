"""The validation gate every generated environment passes before it is kept.

Static checks: the record is valid (`environment.validate_record`: every code parses and
defines its function, tool documents are OpenAI schemas), the gold call plan matches the
sub-questions and the ``unsolved_set``, and no gold answer leaks into the question or the
tool documents. A code that the sandbox runs is not parsed here as well: the sandbox
compiles and execs it, so a code that does not compile, or does not define its function,
makes every one of its calls raise; only then is it parsed here, and the record rejected as
``invalid_record`` with the same problems `validate_record` reports (codes that are not
run, and codes without a top-level ``def <name>(`` line, are parsed up front). Executed
checks, all through one sandbox run per batch of environments:

* gold: the gold call plan solves 100% of ``unsolved_set`` under FTRL's rule
  (`reward.update_unsolved`), each call solving exactly its own sub-answer;
* decoy / echo: the same call with a decoy row's key, or with the gold answer itself as
  the key, does not solve the answer (the table discriminates, the code does not echo);
* probes: a missing required argument, a bad enum value, a wrong type and an unknown
  argument each give an error message, not an exception.

Rejections are counted by reason in a `GateReport`, never dropped silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.records import EnvRecord, code_errors, validate_record
from ftrl_lab.core.reward import answer_verify, update_unsolved

EXCEPTION_PREFIX = "an error occured when call"  # FTRL's spelling
PROBES = ("missing", "enum", "type", "unknown")
PROBE_TOOLS = ("all", "gold")
BAD_ENUM = "__not_an_option__"
_to_json = json.JSONEncoder(ensure_ascii=False).encode  # = json.dumps(x, ensure_ascii=False), built once
UNKNOWN_ARG = "unexpected_argument_zz"


@dataclass
class GateResult:
    ok: bool
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (reason, detail)


@dataclass
class GateReport:
    """Counts of checked / passed environments and rejection reasons (with a few examples)."""

    checked: int = 0
    passed: int = 0
    rejections: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, result: GateResult) -> None:
        self.checked += 1
        if result.ok:
            self.passed += 1
            return
        for reason in dict.fromkeys(r for r, _ in result.reasons):
            self.rejections[reason] += 1
        reason, detail = result.reasons[0]
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(detail[:300])

    def reject(self, reason: str, detail: str) -> None:
        self.add(GateResult(False, [(reason, detail)]))

    @property
    def pass_rate(self) -> float:
        return self.passed / self.checked if self.checked else 0.0

    def merge(self, other: GateReport) -> None:
        self.checked += other.checked
        self.passed += other.passed
        self.rejections.update(other.rejections)
        for k, v in other.examples.items():
            self.examples.setdefault(k, []).extend(v[: self.max_examples - len(self.examples.get(k, []))])

    def to_dict(self) -> dict:
        return {
            "checked": self.checked,
            "passed": self.passed,
            "pass_rate": round(self.pass_rate, 4),
            "rejections": dict(self.rejections.most_common()),
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, d: dict) -> GateReport:
        return cls(
            d.get("checked", 0),
            d.get("passed", 0),
            Counter(d.get("rejections", {})),
            {k: list(v) for k, v in d.get("examples", {}).items()},
        )


# --- helpers -------------------------------------------------------------------------------------
def env_meta(record: EnvRecord) -> dict:
    """The generator's metadata of a record (empty when absent)."""
    raw = record.extra.get("env_meta")
    if raw is None:
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _norm(text: str) -> str:
    return text.lower().replace(",", "")


def leaks(gold: str, text: str) -> bool:
    """True when any ", "-part of a gold answer occurs in `text` as a whole word (FTRL normal form)."""
    return _leaks_normed(gold, _norm(text))


def _leaks_normed(gold: str, norm: str) -> bool:
    """`leaks` with the text already in normal form (`_norm`)."""
    for part in gold.split(", "):
        p = _norm(part).strip()
        if p and p in norm and re.search(r"(?<![0-9a-z])" + re.escape(p) + r"(?![0-9a-z])", norm):
            return True
    return False


def normalise_question(q: str) -> str:
    """Key for duplicate detection: lower case, collapsed whitespace."""
    return " ".join(q.lower().split())


def example_value(schema: dict) -> Any:
    """A valid value for a JSON-Schema property (first enum value, minimum, ...)."""
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type", "string")
    if t == "integer":
        return int(schema.get("minimum", 1))
    if t == "number":
        return float(schema.get("minimum", 1))
    if t == "boolean":
        return True
    if t == "array":
        item = example_value(schema.get("items", {"type": "string"}))
        return [item] * max(1, int(schema.get("minItems", 1)))
    if t == "object":
        return {}
    return "Example"


WRONG_TYPE = {
    "string": 12345,
    "integer": "not a number",
    "number": "not a number",
    "boolean": "yes",
    "array": "not a list",
    "object": "not an object",
}


def _call(name: str, args: dict, i: int) -> dict:
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": _to_json(args)}}


def _is_error(content: str) -> bool:
    low = content.lower()
    return "error" in low or "invalid" in low or "missing" in low


# --- static checks ------------------------------------------------------------------------------
def static_checks(record: EnvRecord, meta: dict, parse_codes: bool = True) -> list[tuple[str, str]]:
    """Problems found without running code (``parse_codes=False``: codes are not parsed, see
    `environment.validate_record`)."""
    problems = [("invalid_record", f"{f}: {m}") for f, m in validate_record(record, parse_codes=parse_codes)]
    if problems:
        return problems
    plan = meta.get("gold_plan") or []
    subs = {s["id"]: s for s in meta.get("sub_questions", [])}
    if not plan:
        return [("plan_inconsistent", "no gold call plan in env_meta")]
    expected: dict[str, list[str]] = {}
    for c in plan:
        if c["tool"] not in record.codes:
            problems.append(("plan_inconsistent", f"gold call to unknown tool '{c['tool']}'"))
        if c["sub_id"] not in subs:
            problems.append(("plan_inconsistent", f"gold call for unknown sub-question '{c['sub_id']}'"))
            continue
        expected.setdefault(c["tool"], []).append(subs[c["sub_id"]]["answer"])
        for param, sources in c.get("uses", {}).items():
            got = c["arguments"].get(param)
            feeds = [subs[s]["answer"] for s in sources if s in subs]
            if len(feeds) != len(sources) or not _fed_by(got, feeds):
                problems.append(
                    (
                        "plan_inconsistent",
                        f"{c['sub_id']}: argument '{param}'={got!r} is not the answer(s) of {sources}",
                    )
                )
    if expected != record.unsolved_set:
        problems.append(("plan_inconsistent", f"unsolved_set {record.unsolved_set} != gold plan answers {expected}"))
    golds = [s["answer"] for s in subs.values()] + [record.answer]
    question, docs = _norm(record.question), _norm(_to_json(record.tools))
    for g in golds:
        if _leaks_normed(g, question):
            problems.append(("answer_leak", f"gold answer {g!r} appears in the question"))
        elif _leaks_normed(g, docs):
            problems.append(("answer_leak", f"gold answer {g!r} appears in the tool documents"))
    return problems


def _fed_by(value: Any, answers: list[str]) -> bool:
    """An argument carries earlier answers: a string equal to one, or numbers equal to them."""
    if isinstance(value, str):
        return len(answers) == 1 and _norm(value).strip() == _norm(answers[0]).strip()
    if isinstance(value, list):
        try:
            want = sorted(float(a.replace(",", "")) for a in answers)
            return sorted(float(v) for v in value) == want
        except (TypeError, ValueError):
            return False
    return False


# --- executed checks -----------------------------------------------------------------------------
@dataclass
class _Check:
    env: int
    purpose: str  # gold | decoy | echo | probe:<kind>
    call: dict
    answer: str = ""
    tool: str = ""


def _checks_for(k: int, record: EnvRecord, meta: dict, probes: Sequence[str], probe_tools: str = "all") -> list[_Check]:
    out: list[_Check] = []
    subs = {s["id"]: s for s in meta.get("sub_questions", [])}
    docs = {t["function"]["name"]: t["function"]["parameters"] for t in record.tools}
    plan = meta.get("gold_plan", [])
    decoys = meta.get("decoys", {})
    gold_args: dict[str, dict] = {}
    for c in plan:
        answer = subs[c["sub_id"]]["answer"]
        out.append(_Check(k, "gold", _call(c["tool"], c["arguments"], len(out)), answer, c["tool"]))
        gold_args.setdefault(c["tool"], c["arguments"])
        params = docs.get(c["tool"], {}).get("properties", {})
        key = next(
            (p for p, v in c["arguments"].items() if isinstance(v, str) and params.get(p, {}).get("enum") is None), None
        )
        if key is None:
            continue
        options = decoys.get(c["tool"], [])
        if options:
            args = dict(c["arguments"], **{key: options[len(out) % len(options)]})
            out.append(_Check(k, "decoy", _call(c["tool"], args, len(out)), answer, c["tool"]))
        args = dict(c["arguments"], **{key: f"{answer} Annex"})
        out.append(_Check(k, "echo", _call(c["tool"], args, len(out)), answer, c["tool"]))
    for name, schema in docs.items():
        if probe_tools == "gold" and name not in record.unsolved_set:
            continue
        props, required = schema.get("properties", {}), schema.get("required", [])
        base = dict(gold_args.get(name) or {r: example_value(props.get(r, {})) for r in required})
        if "missing" in probes and required:
            out.append(_Check(k, "probe:missing", _call(name, {}, len(out)), tool=name))
        enum_param = next((p for p, s in props.items() if "enum" in s), None)
        if "enum" in probes and enum_param:
            out.append(_Check(k, "probe:enum", _call(name, dict(base, **{enum_param: BAD_ENUM}), len(out)), tool=name))
        typed = next((p for p in required if props.get(p, {}).get("type") in WRONG_TYPE), None)
        if "type" in probes and typed:
            bad = WRONG_TYPE[props[typed]["type"]]
            out.append(_Check(k, "probe:type", _call(name, dict(base, **{typed: bad}), len(out)), tool=name))
        if "unknown" in probes:
            out.append(_Check(k, "probe:unknown", _call(name, dict(base, **{UNKNOWN_ARG: 1}), len(out)), tool=name))
    return out


def _judge(record: EnvRecord, checks: list[_Check], contents: list[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    gold = [(c, out) for c, out in zip(checks, contents) if c.purpose == "gold"]
    remaining = {k: list(v) for k, v in record.unsolved_set.items()}
    solved = update_unsolved(remaining, [c.call for c, _ in gold], [out for _, out in gold])
    for (c, out), hit in zip(gold, solved):
        if out.startswith(EXCEPTION_PREFIX):
            problems.append(("gold_call_error", f"{c.tool}: {out[:200]}"))
        elif hit != c.answer:
            problems.append(
                (
                    "gold_not_solved",
                    f"{c.tool}{c.call['function']['arguments']} -> {out[:200]!r} solved {hit!r}, expected {c.answer!r}",
                )
            )
    left = sum(len(v) for v in remaining.values())
    if left and not problems:
        problems.append(("gold_not_solved", f"{left} gold answer(s) left unsolved: {remaining}"))
    for c, out in zip(checks, contents):
        if c.purpose == "decoy":
            if answer_verify(out, c.answer):
                problems.append(("decoy_solves_gold", f"{c.tool} decoy row gives {c.answer!r}: {out[:200]!r}"))
            elif out.startswith(EXCEPTION_PREFIX) or _is_error(out):
                problems.append(("decoy_call_error", f"{c.tool}: {out[:200]}"))
        elif c.purpose == "echo" and answer_verify(out, c.answer):
            problems.append(("echo_solves_gold", f"{c.tool} echoes its argument: {out[:200]!r}"))
        elif c.purpose.startswith("probe:"):
            if out.startswith(EXCEPTION_PREFIX):
                problems.append(("probe_raised", f"{c.purpose} {c.tool}: {out[:200]}"))
            elif not _is_error(out):
                problems.append(("probe_no_error", f"{c.purpose} {c.tool} accepted bad arguments: {out[:200]!r}"))
    return problems


def defines_at_top(name: str, source: str) -> bool:
    """A cheap necessary sign that `source` defines function `name`: a ``def <name>(`` line at
    column 0. Together with the sandbox exec'ing the code and finding `name` defined, this
    stands in for parsing it."""
    head = f"def {name}("
    return source.startswith(head) or ("\n" + head) in source


def _code_problems(record: EnvRecord, names: Iterable[str]) -> bool:
    """True when one of the named codes does not parse or does not define its function."""
    return any(code_errors(n, record.codes[n]) for n in names if n in record.codes)


@dataclass
class Prepared:
    """A batch after static checks: the sandbox items to run and the checks to judge them by."""

    results: list[GateResult | None]
    items: list[tuple[dict, list]]
    pending: list[tuple[int, list[_Check], list[int]]]  # (record index, checks, run order of the checks)


def prepare(records: Sequence[EnvRecord], probes: Sequence[str] = PROBES, probe_tools: str = "all") -> Prepared:
    """Static checks, and the calls (gold, decoy, echo, probes) to run for the rest.

    `probe_tools`: "all" probes every tool; "gold" only the tools in ``unsolved_set`` (cheaper:
    distractor codes are then only parsed, not run).
    """
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probe(s) {sorted(unknown)} (choose from {PROBES})")
    if probe_tools not in PROBE_TOOLS:
        raise ValueError(f"probe_tools must be one of {PROBE_TOOLS}, got {probe_tools!r}")
    prepared = Prepared([None] * len(records), [], [])
    for k, rec in enumerate(records):
        meta = env_meta(rec)
        if static_checks(rec, meta, parse_codes=False):
            prepared.results[k] = GateResult(False, static_checks(rec, meta))  # the full list of problems
            continue
        checks = _checks_for(k, rec, meta, probes, probe_tools)
        run = {c.tool for c in checks}
        if _code_problems(rec, [n for n, src in rec.codes.items() if n not in run or not defines_at_top(n, src)]):
            prepared.results[k] = GateResult(False, static_checks(rec, meta))
            continue
        # Calls run grouped by tool (each call is independent: a fresh namespace per call), so
        # that a sandbox chunk boundary splits few tools and each source is compiled by few workers.
        rank = {name: i for i, name in enumerate(rec.codes)}
        order = sorted(range(len(checks)), key=lambda i: rank.get(checks[i].tool, -1))
        prepared.items.append((rec.codes, [checks[i].call for i in order]))
        prepared.pending.append((k, checks, order))
    return prepared


def judge(records: Sequence[EnvRecord], prepared: Prepared, outputs: list) -> list[GateResult]:
    """Gate results from the executed calls of `prepare`."""
    if len(outputs) != len(prepared.items) or any(len(o) != len(i[1]) for o, i in zip(outputs, prepared.items)):
        raise RuntimeError("executor returned a different number of results than calls")
    results = list(prepared.results)
    for (k, checks, order), outs in zip(prepared.pending, outputs):
        contents = [""] * len(checks)
        for i, out in zip(order, outs):
            contents[i] = str(out)
        raised = {c.tool for c, out in zip(checks, contents) if out.startswith(EXCEPTION_PREFIX)}
        if raised and _code_problems(records[k], sorted(raised)):  # the code itself is broken
            results[k] = GateResult(False, static_checks(records[k], env_meta(records[k])))
            continue
        problems = _judge(records[k], checks, contents)
        results[k] = GateResult(not problems, problems)
    return results  # type: ignore[return-value]


def validate_batch(
    records: Sequence[EnvRecord],
    executor: ToolExecutor | None = None,
    probes: Sequence[str] = PROBES,
    probe_tools: str = "all",
) -> list[GateResult]:
    """Gate many environments with ONE batched sandbox run."""
    prepared = prepare(records, probes, probe_tools)
    outputs = (executor or sandbox_executor())(prepared.items) if prepared.items else []
    return judge(records, prepared, outputs)


def validate_records(
    records: Sequence[EnvRecord],
    executor: ToolExecutor | None = None,
    probes: Sequence[str] = PROBES,
    report: GateReport | None = None,
    probe_tools: str = "all",
) -> GateReport:
    """Gate a record set (e.g. a generated file) and report pass rate and reasons."""
    report = report or GateReport()
    seen: set[str] = set()
    for rec, res in zip(records, validate_batch(records, executor, probes, probe_tools)):
        q = normalise_question(rec.question)
        if res.ok and q in seen:
            res = GateResult(False, [("duplicate_question", rec.question[:200])])
        seen.add(q)
        report.add(res)
    return report
