"""Validated environments per second: generation + sandbox validation, end to end.

Runs the real pipeline (``ftrl_lab.envgen.pipeline``: five stages, the validation gate with
static checks and a batched run of gold / decoy / echo / probe calls in the isolated
sandbox, JSONL writing) into a temporary file, after starting the sandbox (its start-up
time is reported apart). Also reports the time of each phase and the machine's load, since
the machine may be shared.

Usage: ``python perf/bench_envgen.py [--n 800] [--complexity 3] [--probes missing,enum,type,unknown]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrl_lab.core.sandbox import get_sandbox  # noqa: E402
from ftrl_lab.envgen.pipeline import PipelineConfig, generate_split  # noqa: E402
from ftrl_lab.envgen.validate import PROBES  # noqa: E402

TARGET = 100.0  # validated environments per second on the 2-core CI machine


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU time (user + system) used so far by (this process, the other processes): the given
    live sandbox workers plus reaped children (workers replaced after `recycle_after` calls,
    generator processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    t = os.times()
    workers = t[2] + t[3]
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            workers += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return t[0] + t[1], workers


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=800, help="environments to generate (default 800)")
    p.add_argument("--complexity", default="3")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--chunk-size", type=int, default=100)
    p.add_argument("--probes", default=",".join(PROBES))
    p.add_argument("--probe-tools", choices=["all", "gold"], default="all")
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="generator processes working ahead of the sandbox (default: the pipeline's)",
    )
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)

    t = time.perf_counter()
    sandbox = get_sandbox()
    startup = time.perf_counter() - t
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        config = PipelineConfig(
            n=args.n,
            seed=args.seed,
            complexity=args.complexity,
            chunk_size=args.chunk_size,
            probes=tuple(x for x in args.probes.split(",") if x),
            probe_tools=args.probe_tools,
        )
        cpu0, t = cpu_seconds(sandbox.worker_pids()), time.perf_counter()
        report = generate_split(config, Path(tmp) / "bench.jsonl", progress=False, processes=args.processes)
        seconds = time.perf_counter() - t
        own, workers = (b - a for a, b in zip(cpu0, cpu_seconds(sandbox.worker_pids())))
        cpu = own + workers
    run = report["runs"][-1]
    result = {
        "validated_envs": report["records"],
        "seconds": round(seconds, 2),
        "validated_envs_per_s": round(report["records"] / seconds, 1),
        "target_envs_per_s": TARGET,
        "gate_pass_rate": report["gate"]["pass_rate"],
        "rejections": report["gate"]["rejections"],
        "cpu_seconds_per_env": round(cpu / max(report["records"], 1), 4),
        "cpu_split_ms_per_env": {
            "pipeline_process": round(1000 * own / max(report["records"], 1), 2),
            "other_processes": round(1000 * workers / max(report["records"], 1), 2),
        },
        "cpu_bound_envs_per_s": round((os.cpu_count() or 1) * report["records"] / cpu, 1) if cpu else None,
        "phases_s": run["phases"],
        "sandbox_workers": sandbox.n_workers,
        "sandbox_startup_s": round(startup, 2),
        "complexity": args.complexity,
        "probes": args.probes,
        "probe_tools": args.probe_tools,
        "generator_processes": args.processes,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print(
        f"envgen: {result['validated_envs']} validated environments in {result['seconds']} s = "
        f"{result['validated_envs_per_s']} envs/s (target >= {TARGET:.0f}; gate pass rate "
        f"{result['gate_pass_rate']:.4f}; {os.cpu_count()} CPUs, load {result['machine']['loadavg_before'][0]})"
    )
    print(
        f"CPU: {result['cpu_seconds_per_env'] * 1000:.1f} ms per validated environment (this process + sandbox "
        f"workers) -> at most {result['cpu_bound_envs_per_s']} envs/s on {os.cpu_count()} idle CPUs"
    )
    split = result["cpu_split_ms_per_env"]
    print(
        f"CPU split (ms per environment): pipeline process {split['pipeline_process']}, sandbox workers"
        f"{' + generator processes' if args.processes else ''} {split['other_processes']}"
    )
    print("phases (s): " + ", ".join(f"{k} {v}" for k, v in run["phases"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
