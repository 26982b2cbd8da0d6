"""Native CPU kernels for decode steps, compiled on first use with the system C compiler.

A decode step's attention reads every cached key and value once per row. PyTorch's CPU path
for it (two batched matmuls with a softmax between, or SDPA) reads the fp32 KV cache at about
9-10 GB/s on the 2-core dev machine, a third of what one core can stream; with long tool
prompts it is most of a batched decode step. :func:`one_query_attention` runs
``kernels/one_query_attention.c`` instead: each key and value is read once for all query
heads of its group, every row stops at its own length (no mask), measured 1.7-1.8x faster than
the torch path at batch 1-12 over 1.5k-4.3k cached tokens, with outputs equal to 1e-7
(``perf/bench_decode.py``, docs/RESULTS.md).

The kernel is built once per source, compiler and CPU into ``<cache_root>/kernels/`` with
``-O3 -march=native -ffast-math -fopenmp`` (linked without fast-math, so loading it leaves the
process's floating-point state alone) and loaded with :mod:`ctypes`. Where no C compiler works, or
``FTRL_LAB_NATIVE=0`` is set, :func:`one_query_attention` returns ``None`` and callers keep
their torch path: results are the same either way, only the speed differs.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from ftrl_lab.agent.models import cache_root

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "one_query_attention.c"
CFLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC")
# Linked in a separate step without -ffast-math: linking with it adds crtfastmath.o, whose
# constructor sets flush-to-zero for the whole process when the library loads (subnormals vanish
# everywhere; a hypothesis float test caught it).
LDFLAGS = ("-shared", "-fopenmp")
ENV_SWITCH = "FTRL_LAB_NATIVE"


def native_enabled() -> bool:
    """False when ``FTRL_LAB_NATIVE=0`` (or ``false``/``no``/``off``) turns the native kernels off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _cpu_tag() -> str:
    """The CPU's model and flags (a kernel built with -march=native runs only where they match)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
    return platform.machine() + "\n" + "\n".join(lines)


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


@functools.lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL | None:
    """The compiled kernel library (built on first call), or None where it cannot be built."""
    if not native_enabled():
        return None
    cc = _compiler()
    if cc is None:
        log.warning("no C compiler found: decode attention uses the torch path")
        return None
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join((cc, *CFLAGS, *LDFLAGS)).encode() + _cpu_tag().encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"one_query_attention-{key}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built, obj = Path(tmp) / target.name, Path(tmp) / "kernel.o"
            compile_cmd = [cc, *CFLAGS, "-c", str(SOURCE), "-o", str(obj)]
            link_cmd = [cc, *LDFLAGS, str(obj), "-o", str(built), "-lm"]
            try:
                for cmd in (compile_cmd, link_cmd):
                    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as e:
                detail = getattr(e, "stderr", "") or str(e)
                log.warning("building %s failed (%s): decode attention uses the torch path", SOURCE.name, detail[-500:])
                return None
            os.replace(built, target)  # atomic: a concurrent builder finds a whole file
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as e:
        log.warning("loading %s failed (%s): decode attention uses the torch path", target, e)
        return None
    for fn in (lib.one_query_attention_f32, lib.one_query_attention_bf16):
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_float, ctypes.c_int]
    return lib


_scratch = threading.local()


def _scratch_buffer(n: int) -> torch.Tensor:
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.numel() < n:
        buf = torch.empty(max(n, 1 << 16), dtype=torch.float32)
        _scratch.buf = buf
    return buf


def _slab_capacity(t: torch.Tensor) -> int | None:
    """``cap`` when ``t`` is ``buffer[:, :, :L]`` of a contiguous fp32/bf16 ``[B, KV, cap, D]`` buffer."""
    if t.dtype not in (torch.float32, torch.bfloat16) or t.device.type != "cpu" or t.dim() != 4:
        return None
    b, kv, _, d = t.shape
    s0, s1, s2, s3 = t.stride()
    if s3 != 1 or s2 != d or s1 % d or (b > 1 and s0 != kv * s1):
        return None
    return s1 // d


def one_query_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: torch.Tensor, scale: float
) -> torch.Tensor | None:
    """``softmax(q K^T * scale) V`` for one query per row, or None where the kernel does not apply.

    ``query``: ``[B, KV, G, D]`` fp32 (the G query heads that read key/value head h);
    ``key``/``value``: ``[B, KV, L, D]`` fp32 or bf16 (both the same), each a prefix ``[:, :, :L]``
    of a contiguous slab (bf16 halves the bytes read; the sums are fp32 either way);
    ``lengths``: ``[B]`` how many leading keys row b sees (at most L). Returns ``[B, KV, G, D]``.
    """
    lib = load_library()
    if lib is None or query.dtype != torch.float32 or query.device.type != "cpu":
        return None
    cap = _slab_capacity(key)
    if cap is None or _slab_capacity(value) != cap or key.stride() != value.stride() or key.dtype != value.dtype:
        return None
    batch, kv_heads, groups, dim = query.shape
    if key.shape[0] != batch or key.shape[1] != kv_heads or key.shape[3] != dim:
        return None
    q = query.contiguous()
    lens = lengths if lengths.dtype == torch.int64 and lengths.is_contiguous() else lengths.to(torch.int64).contiguous()
    if lens.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lens.shape)}")
    out = torch.empty_like(q)
    scratch = _scratch_buffer(batch * kv_heads * groups * cap)
    kernel = lib.one_query_attention_bf16 if key.dtype == torch.bfloat16 else lib.one_query_attention_f32
    kernel(
        q.data_ptr(),
        key.data_ptr(),
        value.data_ptr(),
        lens.data_ptr(),
        out.data_ptr(),
        scratch.data_ptr(),
        batch,
        kv_heads,
        groups,
        dim,
        cap,
        min(key.shape[2], cap),
        float(scale),
        torch.get_num_threads(),
    )
    return out
