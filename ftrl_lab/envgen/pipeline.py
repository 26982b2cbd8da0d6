"""Generate a split of validated environments into JSONL, resumably and deterministically.

Slot ``k`` of a split gets scenario ``scenarios[k % len(scenarios)]``; its attempt ``j``
draws everything (complexity levels, question, tools, tables) from ``Random(f"{seed}:{k}:{j}")``.
A slot keeps its first attempt that passes the validation gate and whose question is new
(not earlier in the file, not in the ``exclude`` files). Slots are resolved in order, so
the output depends only on (seed, settings): a rerun skips the slots already written and
appends byte-identical records. Chunks of slots are written as they finish; the sandbox
run of one chunk overlaps the generation of the next. A sidecar ``<out>.report.json``
holds counts, rejections with reasons, integration n -> m statistics and timing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.records import EnvRecord, RecordError, append_jsonl, load_records
from ftrl_lab.envgen.backend import EnvGenerator, GenerationError, ProceduralBackend, draw_levels, parse_complexity
from ftrl_lab.envgen.decompose import SCENARIOS
from ftrl_lab.envgen.validate import (
    PROBE_TOOLS,
    PROBES,
    GateReport,
    GateResult,
    judge,
    normalise_question,
    prepare,
)

log = logging.getLogger(__name__)
SWITCH_INTERVAL = 0.0005  # seconds; see Pipeline.run


@dataclass
class PipelineConfig:
    """What to generate; recorded in every record's env_meta and in the report."""

    n: int = 2000
    split: str = "train"
    seed: int = 0
    world_seed: int | None = None  # default: the seed (train and test worlds differ)
    scenarios: tuple[str, ...] = SCENARIOS
    complexity: str = "3"
    chunk_size: int = 100
    max_attempts: int = 20
    probes: tuple[str, ...] = PROBES
    probe_tools: str = "all"  # "gold": probe only the tools in unsolved_set (faster)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.scenarios = tuple(self.scenarios)
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ValueError(f"unknown scenario(s) {bad} (choose from {SCENARIOS})")
        parse_complexity(self.complexity)  # raises on a bad spec
        if self.probe_tools not in PROBE_TOOLS:
            raise ValueError(f"probe_tools must be one of {PROBE_TOOLS}, got {self.probe_tools!r}")
        if self.n < 0 or self.chunk_size < 1 or self.max_attempts < 1:
            raise ValueError("n must be >= 0, chunk_size and max_attempts >= 1")
        self.probes, self.exclude = tuple(self.probes), tuple(str(p) for p in self.exclude)

    @property
    def effective_world_seed(self) -> int:
        return self.seed if self.world_seed is None else self.world_seed

    def identity(self) -> dict[str, Any]:
        """The settings (and generator code) a resumed file must share."""
        return {
            "seed": self.seed,
            "split": self.split,
            "world_seed": self.effective_world_seed,
            "scenarios": list(self.scenarios),
            "complexity": self.complexity,
            "probes": list(self.probes),
            "probe_tools": self.probe_tools,
            "code": generator_fingerprint(),
        }


@lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """A hash of the envgen sources: a resumed file must come from the same generator code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def report_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".report.json")


def question_set(paths: Iterable[str | Path]) -> set[str]:
    """Normalised questions of record files (for --exclude)."""
    seen: set[str] = set()
    for p in paths:
        for rec in load_records(p, validate=False):
            seen.add(normalise_question(rec.question))
    return seen


def _read_existing(out: Path, config: PipelineConfig) -> list[dict]:
    """Rows already written (checked to share this run's settings); a torn last line is cut off."""
    if not out.exists():
        return []
    data = out.read_bytes()
    lines = data.split(b"\n")
    rows: list[dict] = []
    offset = 0
    for i, line in enumerate(lines):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:  # only an unterminated last line can be an interrupted write
                    raise RecordError(
                        "malformed JSON line in the file being resumed", source=str(out), line=i + 1
                    ) from None
                log.warning("%s: dropping a torn last line (interrupted write)", out)
                with open(out, "r+b") as f:
                    f.truncate(offset)
                break
        offset += len(line) + 1
    want = config.identity()
    for i, row in enumerate(rows):
        meta = json.loads(row.get("env_meta") or "{}")
        got = {k: meta.get(k) for k in want}
        if got != want:
            complete = bool(rows) and max(json.loads(r["env_meta"])["slot"] for r in rows) + 1 >= config.n
            differ = sorted(k for k in want if got[k] != want[k])
            if not complete:
                raise RecordError(
                    f"written with other settings ({', '.join(differ)}: {[got[k] for k in differ]} "
                    f"vs now {[want[k] for k in differ]}); use another --out or delete the file",
                    source=str(out),
                    line=i + 1,
                    field="env_meta",
                )
            log.warning(
                "%s is complete but was written with other settings (%s); not regenerated", out, ", ".join(differ)
            )
            break
    return rows


def integration_stats(metas: list[dict]) -> dict[str, Any]:
    """n -> m of function integration, overall and per scenario."""
    out: dict[str, Any] = {}
    for name, group in [("all", metas)] + [(s, [m for m in metas if m.get("scenario") == s]) for s in SCENARIOS]:
        pairs = [(m["integration"]["n"], m["integration"]["m"]) for m in group if m.get("integration")]
        if not pairs:
            continue
        out[name] = {
            "envs": len(pairs),
            "mean_n": round(sum(a for a, _ in pairs) / len(pairs), 3),
            "mean_m": round(sum(b for _, b in pairs) / len(pairs), 3),
            "merged_envs": sum(a > b for a, b in pairs),
            "n_to_m": dict(Counter(f"{a}->{b}" for a, b in pairs).most_common()),
        }
    return out


@dataclass
class _Candidate:
    record: EnvRecord | None
    result: GateResult | None = None


@dataclass
class _Timing:
    generate: float = 0.0
    prepare: float = 0.0
    sandbox: float = 0.0
    judge: float = 0.0
    extra_rounds: int = 0

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class Pipeline:
    """One generation run (see the module docstring)."""

    def __init__(
        self,
        config: PipelineConfig,
        out: str | Path,
        backend: EnvGenerator | None = None,
        executor: ToolExecutor | None = None,
        progress: bool = True,
        processes: int | None = None,
    ):
        self.config, self.out = config, Path(out)
        self.backend = backend or ProceduralBackend(config.effective_world_seed)
        if processes is None:  # a thread: on 2 cores a generator process only adds contention and pickling
            processes = 0
        self.processes = processes
        self.executor = executor or sandbox_executor()
        self.progress = progress
        self.spec = parse_complexity(config.complexity)
        self.gate = GateReport()
        self.timing = _Timing()
        self.exhausted: list[int] = []

    # --- candidates ----------------------------------------------------------------------------
    def candidate(self, slot: int, attempt: int) -> _Candidate:
        """Generate (not yet validate) attempt `attempt` of slot `slot`."""
        c = self.config
        rng = random.Random(f"{c.seed}:{slot}:{attempt}")
        levels = draw_levels(self.spec, rng)
        scenario = c.scenarios[slot % len(c.scenarios)]
        meta = {**c.identity(), "slot": slot, "attempt": attempt}
        try:
            rec = self.backend.generate(scenario, levels, rng, c.split, meta)
        except GenerationError as e:
            return _Candidate(None, GateResult(False, [(e.reason, e.detail)]))
        return _Candidate(rec)

    def _generate(self, keys: list[tuple[int, int]]) -> tuple[dict, Any]:
        t = time.perf_counter()
        cands = {key: self.candidate(*key) for key in keys}
        self.timing.generate += time.perf_counter() - t
        t = time.perf_counter()
        live = [key for key in keys if cands[key].record is not None]
        prepared = prepare([cands[k].record for k in live], self.config.probes, self.config.probe_tools)
        self.timing.prepare += time.perf_counter() - t
        return cands, (live, prepared)

    def _judge(self, cands: dict, live: list, prepared, outputs) -> None:
        t = time.perf_counter()
        results = judge([cands[k].record for k in live], prepared, outputs)
        for key, res in zip(live, results):
            cands[key].result = res
        self.timing.judge += time.perf_counter() - t

    def _run_items(self, items: list) -> list:
        t = time.perf_counter()
        out = self.executor(items) if items else []
        self.timing.sandbox += time.perf_counter() - t
        return out

    # --- resolution ----------------------------------------------------------------------------
    def _resolve(self, slots: list[int], cands: dict, seen: set[str]) -> list[EnvRecord]:
        """Pick each slot's first passing, new attempt, in slot order (extra rounds as needed)."""
        attempt = {s: 0 for s in slots}
        done: dict[int, EnvRecord | None] = {}
        while len(done) < len(slots):
            for s in slots:  # gate failures do not depend on order: skip them at once
                while s not in done and (s, attempt[s]) in cands and not cands[(s, attempt[s])].result.ok:
                    self.gate.add(cands[(s, attempt[s])].result)
                    attempt[s] += 1
                    if attempt[s] >= self.config.max_attempts:
                        done[s] = None
                        self.exhausted.append(s)
            missing = [(s, attempt[s]) for s in slots if s not in done and (s, attempt[s]) not in cands]
            if missing:
                self.timing.extra_rounds += 1
                new, (live, prepared) = self._generate(missing)
                self._judge(new, live, prepared, self._run_items(prepared.items))
                cands.update(new)
                continue
            for s in slots:  # duplicates depend on order: resolve in slot order
                if s in done:
                    continue
                cand = cands[(s, attempt[s])]
                q = normalise_question(cand.record.question)
                if q in seen:
                    reason = "excluded_question" if q in self._excluded else "duplicate_question"
                    self.gate.add(GateResult(False, [(reason, cand.record.question[:200])]))
                    attempt[s] += 1
                    if attempt[s] >= self.config.max_attempts:
                        done[s] = None
                        self.exhausted.append(s)
                    break
                self.gate.add(cand.result)
                seen.add(q)
                done[s] = cand.record
        return [done[s] for s in slots if done[s] is not None]

    # --- the run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        c = self.config
        start = time.perf_counter()
        rows = _read_existing(self.out, c)
        previous = self._previous_report() if rows else None
        self._excluded = question_set(c.exclude)
        seen = set(self._excluded)
        for row in rows:
            seen.add(normalise_question(EnvRecord.from_row(row, validate=False).question))
        # The metadata of every record in the file, for the report (kept here, not read back).
        self._metas = [json.loads(row.get("env_meta") or "{}") for row in rows]
        first = (max(m["slot"] for m in self._metas) + 1) if rows else 0
        chunks = [list(range(a, min(c.n, a + c.chunk_size))) for a in range(first, c.n, c.chunk_size)]
        self._written = 0
        bar = tqdm(total=c.n, initial=first, desc=f"envgen {c.split}", unit="env", disable=not self.progress)
        # The sandbox dispatcher (this thread) mostly waits on worker sockets; with the default
        # 5 ms GIL switch interval the generator thread would keep it (and so the workers)
        # waiting after each reply. A short interval keeps the workers busy.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
        try:
            self._run_chunks(chunks, seen, bar)
        finally:
            sys.setswitchinterval(switch)
        bar.close()
        elapsed = time.perf_counter() - start
        return self._write_report(previous, self._written, elapsed)

    def _run_chunks(self, chunks: list[list[int]], seen: set[str], bar) -> None:
        """Generate chunks ahead (a thread or processes) while this thread runs the sandbox."""
        with self._generator_pool() as pool:
            ahead: deque = deque()
            todo = iter(chunks)
            for _ in range(max(self.processes, 1) + 1):  # generate ahead while the sandbox runs
                self._submit(pool, ahead, next(todo, None))
            while ahead:
                slots, fut = ahead.popleft()
                cands, (live, prepared), seconds = fut.result()
                self.timing.generate += seconds[0]
                self.timing.prepare += seconds[1]
                self._submit(pool, ahead, next(todo, None))
                self._judge(cands, live, prepared, self._run_items(prepared.items))
                records = self._resolve(slots, cands, seen)
                rows = [r.to_row() for r in records]
                append_jsonl(self.out, rows)
                self._metas.extend(json.loads(row.get("env_meta") or "{}") for row in rows)
                self._written += len(records)
                bar.update(len(slots))

    def _generator_pool(self):
        """Processes (procedural backend: own interpreter, no GIL shared with the sandbox
        dispatcher) or one thread (e.g. an LLM backend, which waits on the network)."""
        if self.processes > 0:
            ctx = multiprocessing.get_context("spawn")  # never fork a process that holds sandbox sockets
            return ProcessPoolExecutor(
                self.processes, mp_context=ctx, initializer=_worker_init, initargs=(self.config, self.backend)
            )
        return ThreadPoolExecutor(1, thread_name_prefix="envgen-generate")

    def _submit(self, pool, ahead: deque, slots: list[int] | None) -> None:
        if slots is None:
            return
        keys = [(s, 0) for s in slots]
        fut = pool.submit(_worker_generate, keys) if self.processes > 0 else pool.submit(self._timed_generate, keys)
        ahead.append((slots, fut))

    def _timed_generate(self, keys: list[tuple[int, int]]) -> tuple:
        """`_generate` plus the seconds it spent (generate, prepare), not added to this run's timing."""
        g, p = self.timing.generate, self.timing.prepare
        out = self._generate(keys)
        spent = (self.timing.generate - g, self.timing.prepare - p)
        self.timing.generate, self.timing.prepare = g, p
        return out + (spent,)

    def _previous_report(self) -> dict | None:
        path = report_path(self.out)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("%s: unreadable report, counts restart from this run", path)
            return None

    def _write_report(self, previous: dict | None, written: int, elapsed: float) -> dict[str, Any]:
        metas = self._metas
        gate = GateReport.from_dict(previous["gate"]) if previous else GateReport()
        gate.merge(self.gate)
        runs = (previous or {}).get("runs", []) + [
            {
                "written": written,
                "seconds": round(elapsed, 3),
                "envs_per_s": round(written / elapsed, 2) if elapsed > 0 else None,
                "phases": self.timing.to_dict(),
                "exhausted_slots": self.exhausted,
            }
        ]
        report = {
            "out": str(self.out),
            "config": asdict(self.config),
            "backend": self.backend.describe(),
            "records": len(metas),
            "per_scenario": dict(Counter(m.get("scenario") for m in metas)),
            "levels": dict(Counter(json.dumps(m.get("levels"), sort_keys=True) for m in metas)),
            "gate": gate.to_dict(),
            "integration": integration_stats(metas),
            "runs": runs,
        }
        path = report_path(self.out)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        tmp.replace(path)
        return report


_WORKER: Pipeline | None = None


def _worker_init(config: PipelineConfig, backend: EnvGenerator) -> None:
    """Generator-process start: its own Pipeline (generation + static checks, no sandbox)."""
    global _WORKER
    _WORKER = Pipeline(config, os.devnull, backend, executor=_no_executor, progress=False, processes=0)


def _no_executor(items: list) -> list:
    raise RuntimeError("a generator process does not run tool calls")


def _worker_generate(keys: list[tuple[int, int]]) -> tuple:
    return _WORKER._timed_generate(keys)


def generate_split(
    config: PipelineConfig,
    out: str | Path,
    backend: EnvGenerator | None = None,
    executor: ToolExecutor | None = None,
    progress: bool = True,
    processes: int | None = None,
) -> dict[str, Any]:
    """Generate (or resume) a split into `out` (JSONL); returns the report (also written beside it).

    `processes`: generator processes working ahead of the sandbox (default 1 for the procedural
    backend, 0 = a thread of this process, as for an LLM backend). The output does not depend on it.
    """
    if Path(out).suffix.lower() != ".jsonl":
        raise ValueError(f"{out}: the pipeline writes JSONL (append, resume); convert with environment.save_records")
    return Pipeline(config, out, backend, executor, progress, processes).run()


def generate_records(
    n: int,
    seed: int = 0,
    scenarios: Iterable[str] = SCENARIOS,
    complexity: str = "3",
    split: str = "train",
    backend: EnvGenerator | None = None,
    executor: ToolExecutor | None = None,
    probes: Iterable[str] = PROBES,
) -> tuple[list[EnvRecord], GateReport]:
    """In-memory generation of n validated records (for notebooks and tests)."""
    config = PipelineConfig(
        n=n, split=split, seed=seed, scenarios=tuple(scenarios), complexity=complexity, probes=tuple(probes)
    )
    pipe = Pipeline(config, Path("/nonexistent/in-memory.jsonl"), backend, executor, progress=False)
    pipe._excluded = set()
    seen: set[str] = set()
    records: list[EnvRecord] = []
    for a in range(0, n, config.chunk_size):
        slots = list(range(a, min(n, a + config.chunk_size)))
        cands, (live, prepared) = pipe._generate([(s, 0) for s in slots])
        pipe._judge(cands, live, prepared, pipe._run_items(prepared.items))
        records.extend(pipe._resolve(slots, cands, seen))
    return records, pipe.gate


__all__ = [
    "PipelineConfig",
    "Pipeline",
    "generate_split",
    "generate_records",
    "question_set",
    "report_path",
    "integration_stats",
]
