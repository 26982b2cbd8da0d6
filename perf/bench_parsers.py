"""Worst-case time of each model-output parser on hostile inputs (the issue's target: < 0.5 s
for any input of up to 1 MB).

The inputs are those of the parser tests (``tests/adversarial_text.py``: huge integers, deep
nesting, unclosed and repeated tags, end markers, lone surrogates, odd content parts, many
calls), built at ``--size`` characters. Each parser runs on each input ``--repeats`` times; the
best of the repeats is that input's time (the machine may be shared), and the worst input is
the parser's figure. A parse that raises is counted and named; one that runs past ``--timeout``
seconds is stopped and shown as ``>timeout``. Works on older checkouts too (only public names
are used), so ``PYTHONPATH=<old checkout> python perf/bench_parsers.py`` gives the "before".

    python perf/bench_parsers.py [--size 1000000] [--repeats 3] [--timeout 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from adversarial_text import message_inputs, text_inputs  # noqa: E402

from ftrl_lab.benchmarks import bfcl, rotbench  # noqa: E402
from ftrl_lab.benchmarks.common import response_text  # noqa: E402
from ftrl_lab.core.parsing import parse_llama31, parse_openai_message, parse_qwen, parse_response  # noqa: E402


class Timeout(Exception):
    pass


def _bfcl(x):
    try:
        bfcl.decode_output(x)
    except bfcl.DecodeError:
        pass


PARSERS = {
    "parse_qwen": (parse_qwen, "text"),
    "parse_llama31": (parse_llama31, "text"),
    "parse_openai_message": (lambda m: parse_openai_message(m if isinstance(m, dict) else {"content": m}), "both"),
    "parse_response": (parse_response, "both"),
    "bfcl.decode_output": (_bfcl, "both"),
    "rotbench.parse_react": (lambda x: rotbench.parse_react(response_text(x)), "both"),
}


def _alarm(signum, frame):
    raise Timeout


def time_one(parse, value, repeats: int, timeout: float) -> tuple[float, str | None]:
    """Best-of-``repeats`` seconds of ``parse(value)`` and the exception it raised, if any."""
    best, error = float("inf"), None
    for _ in range(repeats):
        signal.setitimer(signal.ITIMER_REAL, timeout)
        t0 = time.perf_counter()
        try:
            parse(value)
        except Timeout:
            return float("inf"), None
        except Exception as e:  # noqa: BLE001 - what the benchmark reports
            error = type(e).__name__
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        best = min(best, time.perf_counter() - t0)
        if best > timeout / 2:
            break  # slow enough: one run says it
    return best, error


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="characters per input (default 1 MB)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a parse is stopped")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    texts, messages = text_inputs(args.size), message_inputs(args.size)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# {len(texts)} text and {len(messages)} message inputs of ~{args.size:,} characters")
    report = {}
    for name, (parse, kinds) in PARSERS.items():
        inputs = dict(texts)
        if kinds == "both":
            inputs.update({f"message:{k}": v for k, v in messages.items()})
        times, errors = {}, {}
        for input_name, value in inputs.items():
            seconds, error = time_one(parse, value, args.repeats, args.timeout)
            times[input_name] = seconds
            if error:
                errors[input_name] = error
        worst = max(times, key=times.get)
        shown = f">{args.timeout:.0f}" if times[worst] == float("inf") else f"{times[worst]:.3f}"
        print(
            f"{name:22s} worst {shown:>8s} s on {worst:28s} raised on {len(errors)} of {len(inputs)}"
            + (f": {errors}" if errors else "")
        )
        report[name] = {"worst_s": times[worst], "worst_input": worst, "errors": errors, "seconds": times}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
