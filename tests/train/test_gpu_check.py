"""The GPU check in --tiny mode on the CPU: the whole path (engine vs generate, SFT, GRPO with
sandboxed rewards, JSON + Markdown), so the prepared GPU run cannot rot."""

import json
import math
import os

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from ftrl_lab.train.gpu_check.run import Job, main, parse_args, run_check  # noqa: E402
from ftrl_lab.train.gpu_check.shapes import build_model, load_shape, tiny_shape  # noqa: E402


def test_shapes_have_the_published_sizes():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    billions = {}
    for name in ("qwen2.5-0.5b", "qwen2.5-7b", "qwen3-8b"):
        shape = load_shape(name)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**shape.config))
        billions[name] = round(sum(p.numel() for p in model.parameters()) / 1e9, 2)
    assert billions == {"qwen2.5-0.5b": 0.49, "qwen2.5-7b": 7.62, "qwen3-8b": 8.19}


def test_bad_shape_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {"hidden_size": 8}}))
    with pytest.raises(ValueError, match="bad.json: config.model_type is missing"):
        load_shape(bad)
    bad.write_text(json.dumps({"config": {"model_type": "no-such-family"}}))
    with pytest.raises(ValueError, match="bad.json: config is not a valid"):
        load_shape(bad)
    with pytest.raises(FileNotFoundError, match="no model shape 'nope'"):
        load_shape("nope")


def test_tiny_shape_keeps_the_family_and_uses_sdpa():
    import torch

    from ftrl_lab.agent.models import tiny_tokenizer

    tok = tiny_tokenizer()
    model = build_model(tiny_shape(load_shape("qwen3-8b")), tok, dtype=torch.float32, device="cpu")
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert model.config._attn_implementation == "sdpa"
    assert model.config.vocab_size == len(tok) and model.config.num_hidden_layers == 2


def test_cli_options_and_bad_jobs():
    opts = parse_args(["--tiny", "--hf-cache", "static", "--sections", "generation", "--job", "qwen3-8b:gpu-qwen3-8b"])
    assert opts.generation.hf_cache == "static" and opts.sections == ("generation",)
    assert opts.jobs == [Job("qwen3-8b", "gpu-qwen3-8b", "preset")]
    with pytest.raises(SystemExit):
        parse_args(["--sections", "generation,warp"])
    with pytest.raises(ValueError, match="SHAPE:PRESET"):
        Job.parse("qwen3-8b")


@pytest.mark.slow
def test_tiny_check_runs_the_whole_path_on_cpu(tmp_path):
    out = tmp_path / "check"
    opts = parse_args(
        ["--tiny", "--tokenizer", "tiny", "--out", str(out), "--sft-steps", "2", "--grpo-steps", "1"]
        + ["--hf-cache", "static"]
    )
    results = run_check(opts)
    assert results["errors"] == {} and results["ok"], results.get("tracebacks")
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["checks"] == {"greedy_identical_engine_vs_generate": True, "losses_finite": True}
    assert saved["modes"]["hf_cache"] == "static" and saved["modes"]["attn_implementation"] == "sdpa"
    assert set(saved["environment"]["versions"]) == {"torch", "transformers", "peft", "trl", "accelerate", "datasets"}
    assert set(saved["shapes"]) == {"qwen2.5-7b-tiny", "qwen2.5-0.5b-tiny"}
    for name, entry in saved["shapes"].items():
        gen = entry["generation"]
        assert gen["greedy_identity"]["identical"] and gen["attn_implementation"] == "sdpa"
        assert [r["prompt_tokens"] for r in gen["prefill"]] == [32, 128]
        assert [r["batch"] for r in gen["decode"]] == [1, 4]
        assert gen["sample_group"]["group_size"] == 4
        for row in [*gen["prefill"], *gen["decode"], gen["sample_group"]]:
            assert row["engine_tokens_per_s"] > 0 and row["generate_tokens_per_s"] > 0
        sft, grpo = entry["sft"], entry["grpo"]
        assert sft["steps"] == 2 and grpo["steps"] == 1
        assert sft["loss_finite"] and grpo["loss_finite"]
        assert all(math.isfinite(x) for x in sft["losses"] + grpo["losses"])
        assert sft["tokens_per_s"] > 0 and grpo["tokens_per_s"] > 0
        assert grpo["group_size"] == 4 and grpo["max_new_tokens"] == 6
        assert sft["lora"] == grpo["lora"] == (name == "qwen2.5-7b-tiny")
    assert saved["shapes"]["qwen2.5-0.5b-tiny"]["grpo"]["beta"] == 0.001  # the full-FT preset's KL reference ran
    table = (out / "gpu_check.md").read_text()
    assert "| qwen2.5-7b-tiny | decode batch 4 |" in table
    assert "| qwen2.5-0.5b-tiny | GRPO | full | 1 |" in table
    assert "greedy_identical_engine_vs_generate: yes" in table


def test_a_failing_section_is_recorded_and_fails_the_exit_status(tmp_path, monkeypatch, capsys):
    import ftrl_lab.train.gpu_check.run as run

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(run, "measure_generation", broken)
    argv = ["--tiny", "--tokenizer", "tiny", "--out", str(tmp_path), "--sections", "generation"]
    assert main([*argv, "--job", "qwen2.5-0.5b:gpu-qwen3-8b:full"]) == 1
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["errors"] == {"qwen2.5-0.5b-tiny/generation": "RuntimeError: CUDA out of memory (simulated)"}
    assert "FAILED" in capsys.readouterr().out
