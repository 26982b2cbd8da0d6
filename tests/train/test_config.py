"""Presets load, overrides apply, typos fail with the file and key named."""

import json

import pytest

from ftrl_lab.train.config import CONFIG_DIR, config_from_dict, load_config, parse_value, preset_path


@pytest.mark.parametrize("name", ["cpu-smollm2", "gpu-qwen2.5-7b-lora", "gpu-qwen3-8b"])
def test_every_preset_loads(name):
    cfg = load_config(name)
    assert cfg.name == name and cfg.rl.iterations >= 2 and cfg.rl.num_generations >= 2


def test_gpu_presets_mirror_the_paper():
    for name in ("gpu-qwen2.5-7b-lora", "gpu-qwen3-8b"):
        rl = load_config(name).rl
        assert (rl.learning_rate, rl.num_generations, rl.beta, rl.max_new_tokens) == (1e-6, 16, 0.001, 1024)
        assert 0.7 <= rl.temperature <= 1.0


def test_overrides_and_run_name():
    cfg = load_config(
        "cpu-smollm2",
        {
            "rl.reward": "solve_precision",
            "rl.algorithm": "reinforce_pp",
            "rl.generation_prompts": 2,
            "eval.ftrl_limit": 5,
        },
    )
    assert cfg.run_name == "cpu-smollm2_solve_precision_reinforce_pp" and cfg.eval.ftrl_limit == 5
    assert parse_value("2e-5") == 2e-5 and parse_value("null") is None and parse_value("abc") == "abc"


def test_unknown_keys_and_values_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "rl": {"rewrad": "solve_f1"}}))
    with pytest.raises(ValueError, match=r"bad.json: unknown key\(s\) \['rl.rewrad'\]"):
        load_config(bad)
    with pytest.raises(ValueError, match="unknown key 'modle'"):
        config_from_dict({"modle": "x"}, "cfg")
    with pytest.raises(ValueError, match="rl.reward: unknown 'f2'"):
        config_from_dict({"rl": {"reward": "f2"}}, "cfg")
    with pytest.raises(FileNotFoundError, match="no preset 'nope'"):
        preset_path("nope")


def test_humaneval_is_null_or_a_number_of_problems():
    assert config_from_dict({}).eval.humaneval is None and load_config("study-smollm2").eval.humaneval == 20
    assert load_config("cpu-smollm2", {"eval.humaneval": 164}).eval.humaneval == 164
    for bad in (0, 165, "all", True):
        with pytest.raises(
            ValueError, match=r"cpu-smollm2.yaml: eval.humaneval: expected null or a number of problems"
        ):
            load_config("cpu-smollm2", {"eval.humaneval": bad})


def test_accelerate_configs_are_yaml_mappings():
    import yaml

    for path in CONFIG_DIR.glob("accelerate*.yaml"):
        data = yaml.safe_load(path.read_text())
        assert data["distributed_type"] in ("MULTI_GPU", "DEEPSPEED")


def test_restricted_lora_is_spelled_as_data():
    from ftrl_lab.train.config import lora_kwargs

    lora = {"r": 8, "target_modules": "mlp", "layers_to_transform": "lower_third"}
    assert lora_kwargs(lora, 30) == {
        "r": 8,
        "target_modules": ["gate_proj", "up_proj", "down_proj"],
        "layers_to_transform": list(range(10)),
    }
    assert lora_kwargs({"target_modules": ["attention", "down_proj"], "layers_to_transform": "2-4"}, 6) == {
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
        "layers_to_transform": [2, 3, 4],
    }
    assert lora_kwargs({"target_modules": "all-linear", "layers_to_transform": 3}, 6)["target_modules"] == "all-linear"
    cfg = load_config(
        "cpu-smollm2", {"rl.lora": parse_value("{r: 16, target_modules: mlp, layers_to_transform: upper_third}")}
    )
    assert cfg.rl.lora["layers_to_transform"] == "upper_third"
    with pytest.raises(ValueError, match="rl.lora.layers_to_transform: 'bottom_third' is not one of"):
        load_config("cpu-smollm2", {"rl.lora": {"layers_to_transform": "bottom_third"}})
    with pytest.raises(ValueError, match=r"selects no layer or one outside 0-5"):
        lora_kwargs({"layers_to_transform": [4, 9]}, 6)


def test_reinforce_pp_needs_a_generation_batch_of_several_prompts():
    # one prompt per generation: the batch std is the group std, REINFORCE++ would be GRPO exactly
    with pytest.raises(ValueError, match=r"rl.generation_prompts: REINFORCE\+\+ .* holds 1 prompt"):
        load_config("cpu-smollm2", {"rl.algorithm": "reinforce_pp", "rl.prompts_per_step": 1})
    assert load_config("cpu-smollm2", {"rl.algorithm": "reinforce_pp", "rl.prompts_per_step": 2}).rl.prompts_per_step
    assert load_config("cpu-smollm2", {"rl.algorithm": "grpo", "rl.prompts_per_step": 1}).rl.generation_prompts is None
    with pytest.raises(ValueError, match=r"rl.generation_prompts: expected null or a multiple of rl.prompts_per_step"):
        load_config("cpu-smollm2", {"rl.prompts_per_step": 2, "rl.generation_prompts": 3})
    with pytest.raises(ValueError, match=r"rl.generation_prompts: expected null or a multiple"):
        load_config("cpu-smollm2", {"rl.generation_prompts": 0})
    # the CPU preset's study gives its REINFORCE++ arm a generation batch of 2 prompts
    assert load_config("cpu-smollm2").study.arm_overrides["reinforce_pp"] == {"rl.generation_prompts": 2}
    with pytest.raises(ValueError, match=r"study.arm_overrides: unknown arm\(s\) \['ppo'\]"):
        load_config("cpu-smollm2", {"study.arm_overrides": {"ppo": {"rl.beta": 0.1}}})
