"""Tests for ftrl_lab.agent.models: chat template, tiny model, loading, default-model conversion."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from ftrl_lab.agent import models as M

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
]


def tool_chat(arguments_as_string: bool) -> list[dict]:
    """A two-call tool round trip, arguments either FTRL-style JSON strings or dicts."""
    args = [{"city": "Zürich"}, {"city": "Oslo"}]
    if arguments_as_string:
        args = [json.dumps(a, ensure_ascii=False) for a in args]
    return [
        {"role": "user", "content": "Weather and time in Zürich and Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": args[0]}},
                {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": args[1]}},
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_0"},
        {"role": "tool", "content": "12:00", "tool_call_id": "call_1"},
    ]


@pytest.fixture(scope="module")
def tiny():
    return M.tiny_model()


# --- chat template -----------------------------------------------------------------------------
def test_template_renders_tools_calls_and_responses_the_qwen25_way(tiny):
    _, tok = tiny
    text = tok.apply_chat_template(tool_chat(True), tools=TOOLS, tokenize=False, add_generation_prompt=True)
    tools_block = "\n".join(json.dumps(t, ensure_ascii=False) for t in TOOLS)
    expected = (
        f"<|im_start|>system\n{M.SMOLLM2_SYSTEM_PROMPT}\n\n# Tools\n\nYou may call one or more functions "
        "to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> "
        f"XML tags:\n<tools>\n{tools_block}\n</tools>\n\nFor each function call, return a json object with "
        "function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather and time in Zürich and Oslo?<|im_end|>\n"
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n"
        "<tool_response>\n12:00\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert text == expected
    assert "Qwen" not in text


def test_string_and_dict_arguments_render_identically(tiny):
    _, tok = tiny
    as_str = tok.apply_chat_template(tool_chat(True), tools=TOOLS, tokenize=False)
    as_dict = tok.apply_chat_template(tool_chat(False), tools=TOOLS, tokenize=False)
    assert as_str == as_dict
    assert '"arguments": "{' not in as_str  # a string is not JSON-quoted a second time


def test_matches_trls_original_qwen25_template(tiny):
    """With a system message and dict arguments, our rendering equals the original Qwen2.5 one."""
    _, tok = tiny
    original = M._trl_template_path("qwen2_5.jinja").read_text(encoding="utf-8")
    for tools in (TOOLS, None):
        chat = [{"role": "system", "content": "Be brief."}] + tool_chat(False)
        ours = tok.apply_chat_template(chat, tools=tools, tokenize=False, add_generation_prompt=True)
        theirs = tok.apply_chat_template(
            chat, tools=tools, tokenize=False, add_generation_prompt=True, chat_template=original
        )
        assert ours == theirs


def test_custom_system_prompt_with_quotes_and_backslashes(tiny):
    _, tok = tiny
    prompt = "It's a test \\n of C:\\dir."
    template = M.qwen25_tool_template(system_prompt=prompt)
    for tools in (None, TOOLS):
        text = tok.apply_chat_template(
            [{"role": "user", "content": "hi"}], tools=tools, tokenize=False, chat_template=template
        )
        assert text.startswith(f"<|im_start|>system\n{prompt}")
        assert text.endswith("<|im_start|>user\nhi<|im_end|>\n")


def test_assistant_mask_covers_only_assistant_turns(tiny):
    _, tok = tiny
    chat = tool_chat(True) + [{"role": "assistant", "content": "Sunny, noon."}]
    enc = tok.apply_chat_template(chat, tools=TOOLS, return_assistant_tokens_mask=True)
    masked = tok.decode([i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m])
    assert "get_weather" in masked and "Sunny, noon." in masked
    assert "sunny\n</tool_response>" not in masked and "Weather and time" not in masked


# --- tiny model and tokenizer ------------------------------------------------------------------
def test_tiny_tokenizer_chatml_tokens_and_byte_fallback(tiny):
    _, tok = tiny
    for t in M.CHATML_SPECIAL_TOKENS:
        assert len(tok.encode(t, add_special_tokens=False)) == 1
    text = 'naïve 東京 🙂 {"a": [1, 2]}\t\n'
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.padding_side == "left" and tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id != tok.eos_token_id


def test_tiny_model_is_small_seeded_and_in_eval_mode():
    m1, _ = M.tiny_model(seed=0)
    m2, _ = M.tiny_model(seed=0)
    m3, _ = M.tiny_model(seed=1)
    info = M.model_info(m1)
    assert info["layers"] == 2 and info["hidden_size"] == 64 and info["params"] < 500_000
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert not m1.training
    w1, w2, w3 = (m.model.layers[0].mlp.up_proj.weight for m in (m1, m2, m3))
    assert torch.equal(w1, w2) and not torch.equal(w1, w3)


def test_tiny_model_with_given_tokenizer(tiny):
    _, tok = tiny
    model, tok2 = M.tiny_model(vocab_from=tok)
    assert tok2 is tok and model.config.vocab_size == len(tok)


def test_left_padded_batch_generation_matches_one_by_one(tiny):
    model, tok = tiny
    chats = [[{"role": "user", "content": "hi"}], tool_chat(True)]
    batch = tok.apply_chat_template(chats, tools=TOOLS, add_generation_prompt=True, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and ids[0, 0] == tok.pad_token_id  # padded on the left
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
        for row, chat in enumerate(chats):
            one = tok.apply_chat_template(chat, tools=TOOLS, add_generation_prompt=True, return_tensors="pt")
            single = model.generate(**one, max_new_tokens=6, do_sample=False)
            new_batched = out[row, ids.shape[1] :].tolist()
            new_single = single[0, one["input_ids"].shape[1] :].tolist()
            assert new_batched[: len(new_single)] == new_single
    assert isinstance(tok.batch_decode(out[:, ids.shape[1] :]), list)


def test_model_info_counts_tied_weights_once(tiny):
    model, _ = tiny
    assert model.config.tie_word_embeddings
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}
    assert M.model_info(model)["params"] == sum(unique.values())


# --- loading -----------------------------------------------------------------------------------
def test_pick_device_and_dtype():
    assert M.pick_dtype("auto", "cpu") == torch.float32
    assert M.pick_dtype("bf16") == torch.bfloat16 and M.pick_dtype(torch.float16) == torch.float16
    assert M.pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        M.pick_dtype("float8")


def test_prepare_tokenizer_sets_pad_from_eos_and_left_padding():
    tok = M.tiny_tokenizer()
    tok.pad_token = None
    tok.padding_side = "right"
    M.prepare_tokenizer(tok)
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"
    tok.pad_token = None
    tok.eos_token = None
    with pytest.raises(ValueError, match="neither a pad nor an eos"):
        M.prepare_tokenizer(tok)


def test_load_model_from_local_folder(tmp_path, tiny):
    model, tok = tiny
    tok.padding_side = "right"  # load_model must fix this
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tok.padding_side = "left"
    loaded, ltok = M.load_model(tmp_path, dtype="fp32", device="cpu")
    assert not loaded.training and ltok.padding_side == "left" and ltok.pad_token == "<|endoftext|>"
    assert ltok.chat_template == tok.chat_template
    x = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-6)
    bf16, _ = M.load_model(tmp_path, dtype="bf16", device="cpu")
    assert M.model_info(bf16)["dtype"] == "bfloat16"


def test_load_model_offline_and_not_cached_says_so(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1: the hub is never asked
    with pytest.raises(
        FileNotFoundError, match="HF_HUB_OFFLINE=1 forbids downloading it: fetch it once with `hf download"
    ):
        M.load_model("no-such-org/no-such-model-ftrl-lab")
    with pytest.raises(FileNotFoundError, match="no config.json"):  # an empty folder
        M.load_model(tmp_path)


HUB_SCRIPT = """
from ftrl_lab.agent.models import load_model
model, tok = load_model("tiny-org/tiny-model", device="cpu")
print("loaded", model.config.num_hidden_layers, tok.padding_side)
try:
    load_model("tiny-org/absent-model", device="cpu")
except FileNotFoundError as e:
    print("missing:", e)
"""


def test_hub_ids_load_from_the_hf_cache_offline(tmp_path):
    """A tiny model saved in the hub cache layout under a fresh HF_HOME loads by its hub id with
    HF_HUB_OFFLINE=1 (in a subprocess: huggingface_hub reads its paths and offline flag at import)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    model, tok = M.tiny_model()
    repo = tmp_path / "hf" / "hub" / "models--tiny-org--tiny-model"
    commit = "0123456789abcdef0123456789abcdef01234567"
    model.save_pretrained(repo / "snapshots" / commit)
    tok.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_HOME")}
    root = str(Path(M.__file__).resolve().parents[2])
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=root)
    out = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded 2 left" in out.stdout
    assert "missing: tiny-org/absent-model: not a local model folder and not in the Hugging Face cache" in out.stdout
    assert str(tmp_path / "hf" / "hub") in out.stdout and "HF_HUB_OFFLINE=1" in out.stdout


# --- default model: cache bookkeeping (cheap, conversion faked) ---------------------------------
def test_default_gguf_is_installed():
    path = M.default_gguf_path()
    assert path.name == M.GGUF_FILE and path.stat().st_size > 50_000_000


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FTRL_LAB_CACHE", str(tmp_path))
    assert M.default_model_dir() == tmp_path / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("FTRL_LAB_CACHE")
    assert M.default_model_dir() == Path.home() / ".cache" / "ftrl_lab" / "models" / "smollm2-135m-instruct"


def test_check_model_dir_detects_every_kind_of_damage(tmp_path):
    source = tmp_path / "src.gguf"
    source.write_bytes(b"gguf")
    folder = tmp_path / "m"
    assert "missing" in M.check_model_dir(folder)[0]
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"0123456789")
    (folder / "b.json").write_text("{}")
    M.write_manifest(folder, source, "abc")
    assert M.check_model_dir(folder, "abc") == []
    assert "different GGUF" in M.check_model_dir(folder, "other")[0]
    (folder / "a.bin").write_bytes(b"0123456788")  # same size, one byte changed
    assert "sha256 mismatch" in M.check_model_dir(folder)[0]
    (folder / "a.bin").write_bytes(b"01234")
    assert "partial write" in M.check_model_dir(folder)[0]
    (folder / "b.json").unlink()
    assert any("b.json: missing" in p for p in M.check_model_dir(folder))
    manifest = json.loads((folder / M.MANIFEST).read_text())
    manifest["conversion_version"] = -1
    (folder / M.MANIFEST).write_text(json.dumps(manifest))
    assert any("conversion version" in p for p in M.check_model_dir(folder))
    (folder / M.MANIFEST).write_text("{not json")
    assert "unreadable manifest" in M.check_model_dir(folder)[0]


def test_ensure_default_model_converts_once_and_rebuilds_damage(tmp_path, monkeypatch):
    calls = []

    def fake_convert(source, source_sha, out):
        calls.append(out)
        (out / "model.safetensors").write_bytes(b"weights" * 100)
        (out / "chat_template.jinja").write_text(M.qwen25_tool_template(), encoding="utf-8")
        M.write_manifest(out, source, source_sha)

    monkeypatch.setattr(M, "_convert_gguf", fake_convert)
    path = M.ensure_default_model(tmp_path)
    assert path == tmp_path / "models" / "smollm2-135m-instruct" and len(calls) == 1
    assert M.ensure_default_model(tmp_path) == path and len(calls) == 1  # idempotent
    (path / "model.safetensors").write_bytes(b"Weights" * 100)  # corrupt
    M.ensure_default_model(tmp_path)
    assert len(calls) == 2 and M.check_model_dir(path) == []
    template = M.qwen25_tool_template()
    monkeypatch.setattr(M, "qwen25_tool_template", lambda: template + "{# changed #}")
    assert "chat template differs" in M.check_model_dir(path, chat_template=M.qwen25_tool_template())[0]
    M.ensure_default_model(tmp_path)  # an outdated template is rebuilt too
    assert len(calls) == 3 and M.ensure_default_model(tmp_path) == path and len(calls) == 3
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert leftovers == []


def test_failed_conversion_leaves_no_partial_folder(tmp_path, monkeypatch):
    def broken_convert(source, source_sha, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(M, "_convert_gguf", broken_convert)
    with pytest.raises(RuntimeError, match="disk full"):
        M.ensure_default_model(tmp_path)
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


# --- default model: the real conversion ---------------------------------------------------------
@pytest.mark.slow
def test_default_model_conversion_load_and_generate(tmp_path, monkeypatch):
    monkeypatch.setenv("FTRL_LAB_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    path = M.ensure_default_model()
    convert_s = time.perf_counter() - t0
    manifest = json.loads((path / M.MANIFEST).read_text())
    assert "model.safetensors" in manifest["files"] and "tokenizer.json" in manifest["files"]
    print(f"conversion took {convert_s:.0f} s")  # speed is measured by benchmarks/, never asserted here

    weights = path / "model.safetensors"
    stamp = (weights.stat().st_ino, weights.stat().st_mtime_ns, (path / M.MANIFEST).stat().st_mtime_ns)
    t0 = time.perf_counter()
    assert M.ensure_default_model() == path
    assert time.perf_counter() - t0 < convert_s / 3
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns, (path / M.MANIFEST).stat().st_mtime_ns) == stamp

    with open(weights, "r+b") as f:  # flip bytes in the middle of the weights: same size
        f.seek(weights.stat().st_size // 2)
        f.write(b"\x00\x01\x02\x03")
    assert "sha256 mismatch" in M.check_model_dir(path)[0]
    M.ensure_default_model()
    assert M.check_model_dir(path, manifest["source"]["sha256"]) == []

    model, tok = M.load_model("smollm2-135m", device="cpu")
    info = M.model_info(model)
    assert info["layers"] == 30 and 130e6 < info["params"] < 140e6 and info["dtype"] == "float32"
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [1, 2]
    assert tok.eos_token == "<|im_end|>" and tok.padding_side == "left"
    assert tok.eos_token_id in model.generation_config.eos_token_id

    chat = tool_chat(True)[:1]
    enc = tok.apply_chat_template(chat, tools=TOOLS, add_generation_prompt=True, return_tensors="pt")
    text = tok.apply_chat_template(chat, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert '"name": "get_weather"' in text and tok.decode(enc["input_ids"][0]) == text  # lossless
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    new = out[0, enc["input_ids"].shape[1] :]
    text = tok.decode(new, skip_special_tokens=True)
    assert len(new) > 0 and text.strip(), f"empty generation: {tok.decode(new)!r}"


def test_bf16_mixed_precision_modes(monkeypatch):
    assert M.bf16_mixed_precision("bf16", "cpu") and not M.bf16_mixed_precision("no", "cpu")
    monkeypatch.setattr(M, "cpu_has_native_bf16", lambda: False)
    assert not M.bf16_mixed_precision("auto", "cpu")
    monkeypatch.setattr(M, "cpu_has_native_bf16", lambda: True)
    assert M.bf16_mixed_precision("auto", "cpu")
    with pytest.raises(ValueError, match="mixed_precision"):
        M.bf16_mixed_precision("fp8", "cpu")


def test_pick_threads_takes_the_request_or_the_free_cores(monkeypatch):
    import ftrl_lab.agent.models as M

    assert M.pick_threads(3) == (3, "3 (requested)")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    for busy, want in ((1.2, 1), (0.1, 2), (7.0, 1)):  # never below one thread
        monkeypatch.setattr(M, "busy_cores", lambda window_s=1.0, b=busy: (b, f"{b:.2f} busy"))
        n, how = M.pick_threads(None)
        assert n == want and "2 usable cores" in how and f"{busy:.2f} busy" in how


def test_busy_cores_reads_the_cpus_now_and_falls_back_to_the_load_average(monkeypatch):
    import builtins

    import ftrl_lab.agent.models as M

    busy, how = M.busy_cores(0.05)
    assert 0.0 <= busy <= (os.cpu_count() or 1) and "busy over" in how
    real_open = builtins.open
    monkeypatch.setattr(
        builtins,
        "open",
        lambda p, *a, **k: (_ for _ in ()).throw(OSError("no /proc")) if p == "/proc/stat" else real_open(p, *a, **k),
    )
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert M.busy_cores(0.01) == (1.5, "1-minute load 1.50")


def test_version_dependent_names_match_the_installed_transformers():
    """The KV-cache keyword and the checkpointing option are the ones this transformers accepts."""
    import dataclasses
    import inspect

    from transformers import LlamaModel, TrainingArguments

    from ftrl_lab.agent.models import cache_keyword, checkpointing_option

    assert cache_keyword() in inspect.signature(LlamaModel.forward).parameters
    assert checkpointing_option() in {f.name for f in dataclasses.fields(TrainingArguments)}
