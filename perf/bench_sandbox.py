"""Throughput of the isolated sandbox against FTRL's own in-process executor, on the same calls.

Calls are synthesised from the tool schemas of the FTRL test set (``ftrl_lab.core.schema_args``:
valid, alternative, missing-required, wrong-type and extra-parameter arguments), grouped by
environment as a rollout would issue them. Measured in one process, on the same calls:

* FTRL-style: exec of the source + ``func_timeout`` thread per call, single thread, as FTRL;
* the sandbox with 1 worker and with the default number of workers: one ``run()`` per
  environment and all environments in one ``run_batch()``; "cold" is a fresh sandbox's first
  pass, "warm" a later pass on the same sandbox (every environment gets a fresh child process
  either way; ``--per-call`` adds one ``run()`` per call, the round trip of a single call);
* the per-environment start-up cost: a batch of environments with one trivial call each,
  minus the cost of that call, per environment (fork of the zygote, lock-down, exit);
* sandbox start-up time and the active protections.

Usage: ``python perf/bench_sandbox.py [--calls 5000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrl_lab.core.ftrl_executor import inprocess_feedback, quiet_stdout  # noqa: E402
from ftrl_lab.core.records import default_test_set, load_records  # noqa: E402
from ftrl_lab.core.sandbox import Sandbox  # noqa: E402
from ftrl_lab.core.schema_args import example_tool_calls  # noqa: E402


def build_items(n_calls: int) -> list[tuple[dict, list[dict]]]:
    """(codes, calls) per environment, environments in file order, ``n_calls`` calls in all."""
    path = default_test_set()
    if not path.exists():
        sys.exit(f"bench_sandbox: the FTRL test set is not at {path} (set FTRL_TEST_SET)")
    items, total = [], 0
    records = load_records(path)
    while total < n_calls:
        for rec in records:
            calls = [c for tool in rec.tools for c in example_tool_calls(tool)][: n_calls - total]
            if calls:
                items.append((rec.codes, calls))
                total += len(calls)
            if total >= n_calls:
                break
    return items


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=5000, help="number of synthesised calls (default 5000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per mode; the median is shown")
    ap.add_argument("--workers", type=int, default=None, help="the 'default' worker count (os.cpu_count())")
    ap.add_argument("--per-call", action="store_true", help="also time one run() per call (slow)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = ap.parse_args()

    items = build_items(args.calls)
    n = sum(len(c) for _, c in items)
    default_workers = args.workers or os.cpu_count() or 1
    print(
        f"{n} calls over {len(items)} environments; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}; Python {platform.python_version()}"
    )

    rows: list[tuple[str, float]] = []
    ftrl_times = []
    for _ in range(args.repeats):
        with quiet_stdout():
            dt, reference = timed(lambda: [inprocess_feedback(codes, calls) for codes, calls in items])
        ftrl_times.append(dt)
    ftrl_rate = n / statistics.median(ftrl_times)
    rows.append(("FTRL-style in-process exec + func_timeout (1 thread)", ftrl_rate))

    starts, mismatches = {}, 0
    for workers in sorted({1, default_workers}):
        label = f"{workers} worker" + ("s" if workers > 1 else "")
        modes = ["one run() per environment", "one run_batch()"]
        if args.per_call:
            modes.insert(0, "one run() per call")
        for mode in modes:

            def one_pass(sb):
                if mode == "one run_batch()":
                    return sb.run_batch(items)
                if mode == "one run() per call":
                    return [[sb.run(codes, [c])[0] for c in calls] for codes, calls in items]
                return [sb.run(codes, calls) for codes, calls in items]

            cold, warm, start = [], [], []
            for _ in range(args.repeats):
                t_start, sb = timed(lambda: Sandbox(n_workers=workers))
                with sb:
                    start.append(t_start)
                    dt, got = timed(lambda: one_pass(sb))
                    cold.append(dt)
                    dt, got = timed(lambda: one_pass(sb))
                    warm.append(dt)
                    mismatches += sum(r.content != ref for rr, refs in zip(got, reference) for r, ref in zip(rr, refs))
            starts[workers] = statistics.median(start)
            rows.append((f"sandbox, {label}, {mode}, cold", n / statistics.median(cold)))
            rows.append((f"sandbox, {label}, {mode}, warm", n / statistics.median(warm)))

    # per-environment start-up: many one-call environments vs one environment with as many calls
    trivial = ({"f": "def f():\n    return 1\n"}, [{"function": {"name": "f", "arguments": "{}"}}])
    k = 100
    with Sandbox(n_workers=1) as sb:
        prot = sb.protections()
        sb.run_batch([trivial] * 5)
        many = statistics.median(timed(lambda: sb.run_batch([trivial] * k))[0] for _ in range(args.repeats))
        one = statistics.median(timed(lambda: sb.run(trivial[0], trivial[1] * k))[0] for _ in range(args.repeats))
        per_env, per_call = (many - one) / (k - 1), one / k
    width = max(len(r[0]) for r in rows)
    print(f"\n{'mode':<{width}}  {'calls/s':>9}  {'vs FTRL':>7}")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:>9,.0f}  {rate / ftrl_rate:>6.2f}x")
    print(
        "\nsandbox start-up (all workers ready): "
        + ", ".join(f"{w} worker{'s' if w > 1 else ''}: {s * 1000:.0f} ms" for w, s in starts.items())
    )
    print(
        f"per-environment start-up (1 worker: {k} one-call environments vs one environment of {k} calls):"
        f" {per_env * 1000:.2f} ms per extra environment; {per_call * 1000:.3f} ms per call"
    )
    warm_batch = [rate for name, rate in rows if name.endswith("run_batch(), warm")]
    print(f"warm batch mode vs FTRL-style: {max(warm_batch) / ftrl_rate:.2f}x (required: >= 3x)")
    print("active protections: " + ", ".join(k for k, v in prot.items() if v))
    print("inactive: " + (", ".join(k for k, v in prot.items() if not v) or "none"))
    print(f"feedback strings differing from FTRL-style: {mismatches}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "calls": n,
                    "environments": len(items),
                    "cpus": os.cpu_count(),
                    "rates": {name: rate for name, rate in rows},
                    "ftrl_rate": ftrl_rate,
                    "startup_seconds": starts,
                    "per_environment_startup_seconds": per_env,
                    "protections": prot,
                    "mismatches": mismatches,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
