"""Streamed checkpoint I/O: read safetensors tensors a block of rows at a time, write them the
same way, and see a LoRA adapter as base weights plus a merged delta.

Nothing here holds a whole model. :class:`Checkpoint` parses the safetensors headers of a model
folder (one file, shards with ``model.safetensors.index.json``, or loose ``*.safetensors``) and
reads any row range of a tensor with a plain positioned read. (``safetensors.safe_open`` maps the
file: every page it touches stays resident while the handle is open, so reading two 538 MB files
through it peaked at 1.1 GB here; a positioned read keeps only the rows asked for.)
:func:`open_trained` gives the trained side of a pair: another full checkpoint, or a PEFT LoRA
adapter folder whose delta ``B @ A * scaling`` is computed row block by row block.
:func:`write_safetensors` writes a file from a stream of row blocks (header first, then data).
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "U16": torch.uint16,
    "U32": torch.uint32,
    "U64": torch.uint64,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
INDEX_FILE = "model.safetensors.index.json"
ADAPTER_CONFIG, ADAPTER_FILE = "adapter_config.json", "adapter_model.safetensors"
DEFAULT_BLOCK = 1 << 18
"""Elements per row block (256K: 2 MiB in float64). Larger blocks were no faster here and let
freed temporaries pile up in the allocator (2M elements: 133 MiB held at the peak, 256K: 21 MiB)."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype, shape and absolute byte offset of its data."""

    name: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_numel(self) -> int:
        return math.prod(self.shape[1:]) if self.shape else 1


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """The tensors of one safetensors file (checked against the file size)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: malformed safetensors header: {e}") from None
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise ValueError(f"{path}: tensor '{name}': unsupported dtype {entry.get('dtype')!r}")
        start, end = entry["data_offsets"]
        shape = tuple(int(s) for s in entry["shape"])
        expected = math.prod(shape) * dtype.itemsize
        if end - start != expected or 8 + n + end > size:
            raise ValueError(
                f"{path}: tensor '{name}': data_offsets {start}-{end} do not hold shape {shape} "
                f"{entry['dtype']} within the file"
            )
        out[name] = TensorInfo(name, path, dtype, shape, 8 + n + start, end - start)
    return out


class Checkpoint:
    """The safetensors weights of a model folder (or one ``.safetensors`` file), read lazily."""

    def __init__(self, path: str | Path):
        if sys.byteorder != "little":
            raise RuntimeError("safetensors data is little-endian; this reader needs a little-endian machine")
        self.path = Path(path).expanduser()
        self.files = self._weight_files(self.path)
        self.tensors: dict[str, TensorInfo] = {}
        for file in self.files:
            for name, info in read_header(file).items():
                if name in self.tensors:
                    raise ValueError(f"{file}: tensor '{name}' also in {self.tensors[name].file}")
                self.tensors[name] = info
        config = self.path / "config.json" if self.path.is_dir() else self.path.with_name("config.json")
        self.config: dict = json.loads(config.read_text()) if config.is_file() else {}

    @staticmethod
    def _weight_files(path: Path) -> list[Path]:
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such checkpoint folder or safetensors file")
        index = path / INDEX_FILE
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{index}: no 'weight_map' mapping")
            files = [path / f for f in dict.fromkeys(weight_map.values())]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise FileNotFoundError(f"{index}: shard(s) missing: {missing}")
            return files
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.safetensors weights (a PyTorch .bin checkpoint? convert it first)")
        return files

    @property
    def names(self) -> list[str]:
        return list(self.tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def n_layers(self) -> int | None:
        return self.config.get("num_hidden_layers")

    def read(self, name: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows ``start:stop`` (along dim 0) of a tensor, in its stored dtype."""
        info = self.tensors[name]
        stop = info.rows if stop is None else min(stop, info.rows)
        count = max(stop - start, 0) * info.row_numel
        shape = (stop - start, *info.shape[1:]) if info.shape else ()
        if count == 0:
            return torch.empty(shape, dtype=info.dtype)
        buf = bytearray(count * info.dtype.itemsize)
        with open(info.file, "rb") as f:
            f.seek(info.offset + start * info.row_numel * info.dtype.itemsize)
            if f.readinto(buf) != len(buf):
                raise ValueError(f"{info.file}: tensor '{name}' is truncated")
        return torch.frombuffer(buf, dtype=info.dtype).reshape(shape)

    def blocks(self, name: str, max_elements: int = DEFAULT_BLOCK) -> list[tuple[int, int]]:
        """Row ranges covering a tensor, each at most ``max_elements`` (at least one row)."""
        info = self.tensors[name]
        step = max(1, max_elements // max(info.row_numel, 1))
        return [(a, min(a + step, info.rows)) for a in range(0, info.rows, step)] or [(0, 0)]


# --- the trained side of a pair ------------------------------------------------------------------
class FullTrained:
    """A fully fine-tuned checkpoint with the same tensors (names and shapes) as the base."""

    kind = "full"

    def __init__(self, path: str | Path, base: Checkpoint):
        self.ckpt = Checkpoint(path)
        self.files_dir = self.ckpt.path if self.ckpt.path.is_dir() else self.ckpt.path.parent
        only_base, only_trained = set(base.tensors) - set(self.ckpt.tensors), set(self.ckpt.tensors) - set(base.tensors)
        if only_base or only_trained:
            raise ValueError(
                f"{path} vs {base.path}: different tensors (only in base: {sorted(only_base)[:5]}, "
                f"only in trained: {sorted(only_trained)[:5]})"
            )
        bad = [n for n, t in base.tensors.items() if t.shape != self.ckpt.tensors[n].shape]
        if bad:
            raise ValueError(f"{path} vs {base.path}: shapes differ for {bad[:5]}")

    def changed(self, name: str) -> bool:
        return True

    def delta(self, name: str, start: int, stop: int, before: torch.Tensor) -> torch.Tensor:
        """Rows of ``trained - base`` in float64 (exact for float32 and narrower weights)."""
        return self.ckpt.read(name, start, stop).double().sub_(before)

    def after(self, name: str, start: int, stop: int, before: torch.Tensor) -> torch.Tensor:
        """Rows of the trained tensor, in the base's dtype."""
        return self.ckpt.read(name, start, stop).to(before.dtype)


class LoraTrained:
    """Base weights plus a PEFT LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``).

    Linear layers: ``delta = B @ A * scaling``; embeddings and ``fan_in_fan_out`` layers: its
    transpose; ``scaling = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), with ``alpha_pattern``.
    Full tensors saved by ``modules_to_save`` replace the base tensor. DoRA is refused.
    """

    kind = "lora"
    PREFIX = "base_model.model."

    def __init__(self, path: str | Path, base: Checkpoint):
        self.path = Path(path).expanduser()
        self.files_dir = base.path if base.path.is_dir() else base.path.parent
        self.config = json.loads((self.path / ADAPTER_CONFIG).read_text())
        if self.config.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"{self.path / ADAPTER_CONFIG}: peft_type {self.config.get('peft_type')!r} is not LORA")
        if self.config.get("use_dora"):
            raise ValueError(f"{self.path / ADAPTER_CONFIG}: DoRA adapters are not supported (use_dora: true)")
        self.adapter = Checkpoint(self.path / ADAPTER_FILE)
        self.lora: dict[str, tuple[str, str, bool]] = {}  # base name -> (A key, B key, transposed)
        self.full: dict[str, str] = {}  # base name -> adapter key (modules_to_save)
        parts: dict[str, dict[str, str]] = {}
        for key in self.adapter.names:
            module = key[len(self.PREFIX) :] if key.startswith(self.PREFIX) else key
            m = re.fullmatch(r"(.+)\.(lora_A|lora_B)\.weight|(.+)\.(lora_embedding_A|lora_embedding_B)", module)
            if m:
                mod, role = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
                parts.setdefault(mod, {})[role] = key
            elif ".base_layer." in module:
                continue  # a saved copy of the base weight
            elif "lora_" in module:
                raise ValueError(f"{self.adapter.path}: unsupported LoRA tensor '{key}'")
            else:
                self.full[module] = key
        for mod, roles in parts.items():
            emb = "lora_embedding_A" in roles or "lora_embedding_B" in roles
            a, b = (
                (roles.get("lora_embedding_A"), roles.get("lora_embedding_B"))
                if emb
                else (roles.get("lora_A"), roles.get("lora_B"))
            )
            if a is None or b is None:
                raise ValueError(f"{self.adapter.path}: module '{mod}' has only one of its LoRA A/B matrices")
            self.lora[f"{mod}.weight"] = (a, b, emb or bool(self.config.get("fan_in_fan_out")))
        unknown = sorted(n for n in [*self.lora, *self.full] if n not in base.tensors)
        if unknown:
            raise ValueError(f"{self.path}: adapter targets tensors the base {base.path} lacks: {unknown[:5]}")
        self.base = base

    def scaling(self, name: str, rank: int) -> float:
        module = name.rsplit(".", 1)[0]
        alpha = self.config.get("lora_alpha", 8)
        for pattern, value in (self.config.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                alpha = value
                break
        return alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank

    def changed(self, name: str) -> bool:
        return name in self.lora or name in self.full

    def delta(self, name: str, start: int, stop: int, before: torch.Tensor) -> torch.Tensor:
        """Rows of the merged delta in float64 (zeros for tensors the adapter does not touch)."""
        if name in self.full:
            return self.adapter.read(self.full[name], start, stop).double().sub_(before)
        if name not in self.lora:
            return torch.zeros(before.shape, dtype=torch.float64)
        a_key, b_key, transposed = self.lora[name]
        a, b = self.adapter.read(a_key).double(), self.adapter.read(b_key).double()
        s = self.scaling(name, a.shape[0])
        out = (a[:, start:stop].T @ b.T) if transposed else (b[start:stop] @ a)
        return (out * s).reshape(before.shape)

    def after(self, name: str, start: int, stop: int, before: torch.Tensor) -> torch.Tensor:
        """Rows of the merged tensor, in the base's dtype (as PEFT's merge rounds it)."""
        if not self.changed(name):
            return before
        return (before.double() + self.delta(name, start, stop, before)).to(before.dtype)


def is_adapter(path: str | Path) -> bool:
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def open_trained(path: str | Path, base: Checkpoint) -> FullTrained | LoraTrained:
    """The trained side of a (base, trained) pair: a LoRA adapter folder or a full checkpoint."""
    return LoraTrained(path, base) if is_adapter(path) else FullTrained(path, base)


# --- writing -------------------------------------------------------------------------------------
def write_safetensors(
    path: str | Path,
    layout: Iterable[tuple[str, torch.dtype, tuple[int, ...]]],
    blocks: Callable[[str], Iterator[torch.Tensor]],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a safetensors file tensor by tensor: ``layout`` lists (name, dtype, shape) in file
    order; ``blocks(name)`` yields the tensor's rows in order (any block sizes)."""
    path = Path(path)
    layout = list(layout)
    header: dict = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for name, dtype, shape in layout:
        n = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, dtype, shape in layout:
            written = 0
            for block in blocks(name):
                if block.dtype != dtype:
                    raise ValueError(f"{path}: tensor '{name}': block dtype {block.dtype} != {dtype}")
                data = block.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                f.write(data)
                written += len(data)
            if written != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"{path}: tensor '{name}': wrote {written} bytes for shape {tuple(shape)}")
    return path
