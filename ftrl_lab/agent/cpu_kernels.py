"""Native CPU kernels for decode steps, compiled on first use with the system C compiler.

A decode step's attention reads every cached key and value once per row. PyTorch's CPU path
for it (two batched matmuls with a softmax between, or SDPA) reads the fp32 KV cache at about
9-10 GB/s on the 2-core dev machine, a third of what one core can stream; with long tool
prompts it is most of a batched decode step. :func:`one_query_attention` runs
``kernels/one_query_attention.c`` instead: each key and value is read once for all query
heads of its group, every row stops at its own length (no mask), measured 1.7-1.8x faster than
the torch path at batch 1-12 over 1.5k-4.3k cached tokens, with outputs equal to 1e-7
(``perf/bench_decode.py``, docs/RESULTS.md).

Two more sources serve :class:`~ftrl_lab.agent.decode_step.DecodeStep`:
``kernels/decode_layer_ops.c`` fuses the small ops between a layer's linears into three calls
(:func:`add_rms_norm_bf16`, :func:`rope_attend`, :func:`silu_mul_bf16`), and
``kernels/bf16_gemv.c`` (:func:`gemv_bf16`) streams each weight row once for 1-2 activation rows,
from weights placed in a transparent-huge-page arena (:func:`huge_page_buffer`).

The kernels are built once per source set, compiler and CPU into ``<cache_root>/kernels/`` with
``-O3 -march=native -ffast-math -fopenmp`` (linked without fast-math, so loading the library leaves
the process's floating-point state alone) and loaded with :mod:`ctypes`. Where no C compiler
works, or ``FTRL_LAB_NATIVE=0`` is set, :func:`load_library` returns ``None``,
:func:`one_query_attention` returns ``None`` and callers keep their torch path: results are the
same either way, up to float rounding, only the speed differs.
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

KERNELS = Path(__file__).with_name("kernels")
SOURCES = (KERNELS / "one_query_attention.c", KERNELS / "decode_layer_ops.c", KERNELS / "bf16_gemv.c")
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
        log.warning("no C compiler found: decode steps use the torch path")
        return None
    sources = b"".join(path.read_bytes() for path in SOURCES)
    key = hashlib.sha256(sources + " ".join((cc, *CFLAGS, *LDFLAGS)).encode() + _cpu_tag().encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"decode_kernels-{key}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built, objects = Path(tmp) / target.name, [Path(tmp) / f"{path.stem}.o" for path in SOURCES]
            commands = [[cc, *CFLAGS, "-c", str(src), "-o", str(obj)] for src, obj in zip(SOURCES, objects)]
            commands.append([cc, *LDFLAGS, *map(str, objects), "-o", str(built), "-lm"])
            try:
                for cmd in commands:
                    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as e:
                detail = getattr(e, "stderr", "") or str(e)
                log.warning("building the decode kernels failed (%s): decode steps use the torch path", detail[-500:])
                return None
            os.replace(built, target)  # atomic: a concurrent builder finds a whole file
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as e:
        log.warning("loading %s failed (%s): decode steps use the torch path", target, e)
        return None
    ptr, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    signatures = {
        "one_query_attention_f32": [ptr] * 6 + [i32] * 4 + [i64] * 2 + [f32, i32],
        "one_query_attention_bf16": [ptr] * 6 + [i32] * 4 + [i64] * 2 + [f32, i32],
        "add_rms_norm_bf16": [ptr, ptr, ptr, f32, ptr, i32, i32],
        "silu_mul_bf16": [ptr, ptr, i32, i32],
        "rope_attend": [ptr] * 6 + [f32, ptr, ptr, i32, i64, i64, f32] + [ptr] * 5 + [i32] * 5,
        "gemv_bf16": [ptr] * 4 + [i32] * 4,
        "gemv_bf16_vectorized": [],
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = None, argtypes
    lib.gemv_bf16_vectorized.restype = ctypes.c_int
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


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(name: str, t: torch.Tensor, dtype: torch.dtype) -> None:
    if t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
        raise ValueError(f"{name}: expected a contiguous CPU {dtype} tensor, got {t.dtype} {tuple(t.stride())}")


def add_rms_norm_bf16(x: torch.Tensor, y: torch.Tensor | None, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x += y`` in place (``y`` bf16, optional), then ``bf16(rms_norm(x) * weight)``; ``x`` is
    ``[B, H]`` fp32. The kernel library must be loaded (:func:`load_library`)."""
    _check("x", x, torch.float32)
    if y is not None:
        _check("y", y, torch.bfloat16)
    _check("weight", weight, torch.float32)
    out = torch.empty(x.shape, dtype=torch.bfloat16)
    load_library().add_rms_norm_bf16(x.data_ptr(), _ptr(y), weight.data_ptr(), eps, out.data_ptr(), *x.shape)
    return out


def silu_mul_bf16(gate_up: torch.Tensor) -> torch.Tensor:
    """``bf16(bf16(silu(gate)) * up)`` for ``gate_up = [gate | up]`` ``[B, 2I]`` bf16 (torch's roundings)."""
    _check("gate_up", gate_up, torch.bfloat16)
    batch, width = gate_up.shape
    out = torch.empty(batch, width // 2, dtype=torch.bfloat16)
    load_library().silu_mul_bf16(gate_up.data_ptr(), out.data_ptr(), batch, width // 2)
    return out


def rope_attend(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    kv_len: int,
    heads: int,
    scale: float,
    head_norms: tuple[torch.Tensor, torch.Tensor, float] | None = None,
) -> torch.Tensor:
    """One decode step's attention from its fused q/k/v projection, in one native call.

    ``qkv``: ``[B, (heads + 2 kv) * D]`` bf16; ``cos``/``sin``: ``[B, D]`` fp32; ``positions``:
    ``[B]`` int64 (row b's new token; its earlier ones sit at ``0 .. positions[b] - 1``);
    ``keys``/``values``: whole ``[B, kv, cap, D]`` slabs, fp32 or bf16, into which this step's
    rotated key and value are written; ``head_norms``: Qwen3's per-head q/k RMS norm weights
    and epsilon. Returns the attention output ``[B, heads * D]`` bf16, ready for ``o_proj``.
    """
    _check("qkv", qkv, torch.bfloat16)
    for name, t in (("cos", cos), ("sin", sin)):
        _check(name, t, torch.float32)
    _check("positions", positions, torch.int64)
    if keys.dtype not in (torch.float32, torch.bfloat16) or values.dtype != keys.dtype:
        raise ValueError(f"slabs must be fp32 or bf16 and alike, got {keys.dtype} and {values.dtype}")
    _check("keys", keys, keys.dtype)
    _check("values", values, keys.dtype)
    batch, kv_heads, cap, dim = keys.shape
    if not 0 < kv_len <= cap or qkv.shape != (batch, (heads + 2 * kv_heads) * dim) or positions.shape != (batch,):
        raise ValueError(
            f"rope_attend: qkv {tuple(qkv.shape)}, positions {tuple(positions.shape)}, kv_len {kv_len} "
            f"do not fit slabs {tuple(keys.shape)} with {heads} heads"
        )
    q = torch.empty(batch, heads, dim)
    attn = torch.empty(batch, heads, dim)
    out = torch.empty(batch, heads * dim, dtype=torch.bfloat16)
    lengths = torch.empty(batch, dtype=torch.int64)
    q_norm, k_norm, eps = head_norms if head_norms is not None else (None, None, 0.0)
    scratch = _scratch_buffer(batch * heads * cap)
    load_library().rope_attend(
        qkv.data_ptr(),
        cos.data_ptr(),
        sin.data_ptr(),
        positions.data_ptr(),
        _ptr(q_norm),
        _ptr(k_norm),
        eps,
        keys.data_ptr(),
        values.data_ptr(),
        int(keys.dtype == torch.bfloat16),
        cap,
        kv_len,
        float(scale),
        q.data_ptr(),
        attn.data_ptr(),
        scratch.data_ptr(),
        lengths.data_ptr(),
        out.data_ptr(),
        batch,
        heads,
        kv_heads,
        dim,
        torch.get_num_threads(),
    )
    return out


def gemv_bf16_available() -> bool:
    """Whether :func:`gemv_bf16` runs the AVX512-BF16 kernel (else only its slow portable loop)."""
    lib = load_library()
    return lib is not None and bool(lib.gemv_bf16_vectorized())


def gemv_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``bf16(x @ weight.T + bias)`` for ``x`` ``[B, K]`` and ``weight`` ``[N, K]``, all bf16 and
    contiguous (fp32 sums). Each weight row is read once for all B rows, in order."""
    _check("x", x, torch.bfloat16)
    _check("weight", weight, torch.bfloat16)
    if bias is not None:
        _check("bias", bias, torch.bfloat16)
    (batch, k), (n, k_w) = x.shape, weight.shape
    if k != k_w:
        raise ValueError(f"gemv_bf16: x has {k} columns, weight {k_w}")
    y = torch.empty(batch, n, dtype=torch.bfloat16)
    load_library().gemv_bf16(
        weight.data_ptr(), _ptr(bias), x.data_ptr(), y.data_ptr(), batch, n, k, torch.get_num_threads()
    )
    return y


_MADV_HUGEPAGE = 14  # linux/mman.h
HUGE_PAGE = 2 << 20


def huge_page_buffer(nbytes: int) -> tuple[torch.Tensor, int]:
    """An uninitialised uint8 buffer with a 2 MiB-aligned region of ``nbytes`` that the kernel is
    asked to back with transparent huge pages (``madvise``; a no-op where THP is off): streaming
    weights from it skips most TLB misses. Returns ``(buffer, offset of the region)``."""
    buf = torch.empty(nbytes + HUGE_PAGE, dtype=torch.uint8)  # untouched: pages are placed on first write
    offset = (-buf.data_ptr()) % HUGE_PAGE
    span = (nbytes + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise(buf.data_ptr() + offset, min(span, buf.numel() - offset), _MADV_HUGEPAGE)
    except (OSError, AttributeError):  # not Linux: ordinary pages
        pass
    return buf, offset
