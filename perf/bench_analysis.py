"""Peak memory of the change map on a two-checkpoint pair, next to the size of one model and one layer.

Each method runs in a fresh Python process: imports first, then the kernel's peak-RSS counter is
reset (``/proc/self/clear_refs`` = 5), the method runs, and ``VmHWM`` is read. The increase over
the post-import RSS is what the method itself held at its peak. Methods:

* ``change_map``: :func:`ftrl_lab.analysis.change_map` (positioned reads of row blocks);
* ``safe_open``: the same sums with ``safetensors.safe_open``, tensor by tensor, one handle per
  file (memory-mapped: touched pages stay resident while the handle is open);
* ``load_file``: both state dicts loaded whole (``safetensors.torch.load_file``), for scale.

The machine may be shared: CPU seconds are printed beside wall seconds. The issue's bound: the
change map's peak stays below the size of one model plus one layer.

    python perf/bench_analysis.py [--base default] [--trained runs/exp/sft48/start_model]
        [--methods change_map,safe_open,load_file] [--out runs/bench/analysis.json]

Without the trained folder, a synthetic trained checkpoint (base + 0.1% noise, written block
by block) stands in, and the output says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from ftrl_lab.agent.evaluate import machine_info  # noqa: E402
from ftrl_lab.agent.models import resolve_model_path  # noqa: E402
from ftrl_lab.analysis.change_map import parse_name  # noqa: E402
from ftrl_lab.analysis.checkpoint_io import Checkpoint, write_safetensors  # noqa: E402

CHILD = r"""
import json, sys, time
import torch, pandas
sys.path.insert(0, {root!r})
import ftrl_lab.analysis.change_map
from safetensors import safe_open
from safetensors.torch import load_file


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024


base, trained, method = {base!r}, {trained!r}, {method!r}
baseline = status("VmRSS")
try:
    open("/proc/self/clear_refs", "w").write("5")
    reset = True
except OSError:
    reset = False
t0, c0 = time.perf_counter(), time.process_time()
if method == "change_map":
    df = ftrl_lab.analysis.change_map.change_map(base, trained, progress=False)
    total = float(df["diff_sq"].sum())
elif method == "safe_open":
    total = 0.0
    with safe_open(base + "/model.safetensors", "pt") as f, safe_open(trained + "/model.safetensors", "pt") as g:
        for name in f.keys():
            total += float((g.get_tensor(name).double() - f.get_tensor(name).double()).square().sum())
else:
    a, b = load_file(base + "/model.safetensors"), load_file(trained + "/model.safetensors")
    total = sum(float((b[n].double() - a[n].double()).square().sum()) for n in a)
print(json.dumps({{"method": method, "baseline": baseline, "peak": status("VmHWM"), "reset": reset,
                  "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "diff_sq": total}}))
"""


def synthetic_trained(base: Checkpoint, out: Path) -> Path:
    """base + 0.1% relative Gaussian noise per tensor, written block by block."""
    import shutil

    import torch

    gen = torch.Generator().manual_seed(0)

    def blocks(name):
        for start, stop in base.blocks(name):
            w = base.read(name, start, stop)
            yield w + 1e-3 * w.float().std() * torch.randn(w.shape, generator=gen).to(w.dtype)

    out.mkdir(parents=True, exist_ok=True)
    for file in base.files:
        infos = sorted((i for i in base.tensors.values() if i.file == file), key=lambda i: i.offset)
        write_safetensors(out / file.name, [(i.name, i.dtype, i.shape) for i in infos], blocks)
    shutil.copy(base.path / "config.json", out / "config.json")
    return out


def sizes(ckpt: Checkpoint) -> dict[str, int]:
    """Bytes of the model, of its largest decoder layer and of its largest tensor."""
    layers: dict[int, int] = {}
    for info in ckpt.tensors.values():
        layer = parse_name(info.name)[0]
        if layer is not None:
            layers[layer] = layers.get(layer, 0) + info.nbytes
    return {
        "model": ckpt.nbytes,
        "layer": max(layers.values(), default=0),
        "largest_tensor": max(i.nbytes for i in ckpt.tensors.values()),
    }


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="default")
    ap.add_argument("--trained", default="runs/exp/sft48/start_model")
    ap.add_argument("--methods", default="change_map,safe_open,load_file")
    ap.add_argument("--out", default="runs/bench/analysis.json")
    args = ap.parse_args(argv)

    base = Checkpoint(resolve_model_path(args.base))
    trained, note, tmp = Path(args.trained), "", None
    if not (trained / "config.json").exists():
        tmp = tempfile.TemporaryDirectory(prefix="bench_analysis_")
        trained = synthetic_trained(base, Path(tmp.name) / "trained")
        note = f"{args.trained} not found: synthetic trained checkpoint (base + 0.1% noise)"
        print(note)
    size = sizes(base)
    bound = size["model"] + size["layer"]
    print(f"pair: {base.path} -> {trained}")
    print(
        f"one model {mb(size['model'])}, one layer {mb(size['layer'])}, largest tensor (embeddings) "
        f"{mb(size['largest_tensor'])}; bound = model + layer = {mb(bound)}"
    )
    rows = []
    for method in [m for m in args.methods.split(",") if m]:
        code = CHILD.format(
            root=str(Path(__file__).resolve().parents[1]), base=str(base.path), trained=str(trained), method=method
        )
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["increase"] = row["peak"] - row["baseline"] if row["reset"] else row["peak"]
        row["wall_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"{method:>10}: peak RSS {mb(row['peak'])} (after imports {mb(row['baseline'])}), "
            f"held by the method {mb(row['increase'])} = {row['increase'] / size['model']:.2f} x one model; "
            f"{row['seconds']:.1f} s wall, {row['cpu_seconds']:.1f} s CPU"
        )
    diffs = {r["method"]: r["diff_sq"] for r in rows}
    if len(set(round(v, 6) for v in diffs.values())) > 1:
        print(f"WARNING: methods disagree on sum ||dW||^2: {diffs}")
    verdict = None
    if "change_map" in diffs:
        cm = next(r for r in rows if r["method"] == "change_map")
        verdict = cm["increase"] < bound
        print(
            f"VERDICT: change map held {mb(cm['increase'])} at its peak (whole process {mb(cm['peak'])}) "
            f"{'<' if verdict else '>='} one model + one layer ({mb(bound)}): {'PASS' if verdict else 'FAIL'}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "base": str(base.path),
                "trained": str(trained),
                "note": note,
                "sizes": size,
                "bound": bound,
                "rows": rows,
                "pass": verdict,
                "machine": machine_info(),
            },
            indent=2,
        )
        + "\n"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0 if verdict is not False else 1


if __name__ == "__main__":
    sys.exit(main())
