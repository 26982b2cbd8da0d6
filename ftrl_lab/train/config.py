"""Training configuration: typed sections, loaded from preset files in ``configs/``.

A preset is a YAML (or JSON) file with top-level keys ``name``, ``model``, ``device`` ...
and the sections ``data``, ``sft``, ``rl``, ``eval`` and ``study`` (see :class:`TrainConfig`). Unknown
keys are errors naming the file and the key, so a typo never silently falls back to a
default. ``configs/<name>.yaml`` is found by name::

    cfg = load_config("cpu-smollm2", overrides={"rl.reward": "solve_precision"})
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftrl_lab.agent.anatomy import GROUP_MODULES, layer_thirds
from ftrl_lab.agent.humaneval import HUMANEVAL_PROBLEMS
from ftrl_lab.agent.sampling import DEFAULT_MAX_NEW_TOKENS
from ftrl_lab.core.parsing import RULE_SETS
from ftrl_lab.core.reward import VARIANTS

ALGORITHMS = ("grpo", "reinforce_pp", "rloo", "continued_sft")
"""RL algorithms, and ``continued_sft``: the equal-wall-time SFT control (:mod:`ftrl_lab.train.control`)."""
SELECT = ("validation", "last")
"""How the final checkpoint is chosen (``eval.select``; "validation" needs ``data.validation``, else the last)."""
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class DataSection:
    """Where the environments come from; missing splits are generated with envgen."""

    train: str = "data/envs/cpu/train.jsonl"
    test: str = "data/envs/cpu/test.jsonl"
    generate: bool = True
    complexity: str = "0"
    scenarios: str = "single_hop,parallel_single_hop,multi_hop,parallel_multi_hop"
    train_n: int = 400
    test_n: int = 200
    train_seed: int = 1001
    test_seed: int = 2002
    ftrl_test: str | None = "default"  # path, "default" (../shared FTRL test set) or null
    # complexity scaling as a curriculum, validation and held-out splits (ftrl_lab.train.splits)
    curriculum: list[str] = field(default_factory=list)  # e.g. ["0", "1", "2"]; empty: data.complexity only
    validation: str | None = None  # generated validation split (checkpoint selection); null: none
    validation_n: int = 24
    validation_seed: int = 3003
    validation_complexity: str | None = None  # default: the curriculum's range of levels
    heldout: str | None = None  # held-out test split from another world; null: none
    heldout_n: int = 48
    heldout_seed: int = 4004
    heldout_world_seed: int = 5005
    heldout_complexity: str = "3"


@dataclass
class SFTSection:
    """Optional warm start on gold trajectories of the first ``n_envs`` train environments."""

    enabled: bool = True
    n_envs: int = 48
    learning_rate: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 1
    gradient_accumulation_steps: int = 4
    max_length: int = 2048


@dataclass
class RLSection:
    """Iterative resampling + RL (GRPO / REINFORCE++-baseline / RLOO) settings."""

    algorithm: str = "grpo"
    reward: str = "solve_f1"
    reward_rules: str = "official"  # the reward's rule set (core.reward.RewardConfig.rules)
    echo_guard: bool = True  # refuse solves by echo while training (off in the paper-parity evaluation)
    iterations: int = 2
    iteration_levels: list[str] | None = None  # the level of each iteration; None: spread over data.curriculum
    envs_per_iteration: int = 16
    prefixes_per_iteration: int = 24
    num_generations: int = 8
    prompts_per_step: int = 2
    micro_batch_prompts: int | None = None  # prompts per forward/backward (None: all of a step's)
    # prompts sampled together, whose rewards make one advantage batch (TRL's generation batch;
    # a multiple of prompts_per_step, the later steps reuse it off-policy); None: prompts_per_step.
    # REINFORCE++ normalises by this batch's reward std: with one prompt that is GRPO exactly.
    generation_prompts: int | None = None
    learning_rate: float = 1e-5
    beta: float = 0.0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS  # per turn, in collection and in the RL samples
    max_prompt_tokens: int = 1536
    epsilon: float = 0.2
    loss_type: str | None = None  # default per algorithm (see train.trl_config)
    scale_rewards: str | None = None  # default per algorithm
    lora: dict | None = None  # peft LoraConfig kwargs; null = full fine-tuning (see lora_kwargs)
    collect_temperature: float = 0.7
    collect_max_turns: int = 6
    drop_solved: bool = False
    # DAPO's dynamic sampling: when no group of a step has reward spread (every advantage 0), draw
    # up to this many fresh steps from the iteration's prefixes left out by prefixes_per_iteration
    redraws: int = 0
    skip_zero_advantage: bool = True  # no forward/backward for a micro-batch whose advantages are all 0 (beta 0: exact)
    share_prefix: bool = True
    engine_batch_size: int = 16
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    save_steps: int = 4
    trl: dict = field(default_factory=dict)  # extra GRPOConfig / RLOOConfig fields, passed as is
    # continued_sft only (the control): its wall-time budget, given directly or read from a finished
    # run folder (the sum of its iterations' collect_seconds + train_seconds), or a count of optimizer
    # steps (replays a finished control exactly: a wall-time stop varies with the machine's load).
    # Set exactly one.
    budget_seconds: float | None = None
    budget_from: str | None = None
    budget_steps: int | None = None


@dataclass
class EvalSection:
    """Before/after evaluation (greedy, FTRL's loop)."""

    max_turns: int = 8
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 16
    test_limit: int | None = None
    ftrl_limit: int | None = 20
    base: bool = True  # with a warm start, also evaluate the model before any training
    perplexity_topics: int = 16
    humaneval: int | None = None  # HumanEval problems (first N by task id, 164 = all); null: skip
    select: str = "validation"  # final checkpoint: best iteration on data.validation ("validation") or the last
    bootstrap: int = 2000


@dataclass
class StudySection:
    """The seeds and arms of ``python -m ftrl_lab.train study`` (:mod:`ftrl_lab.train.study`)."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: ["grpo", "reinforce_pp", "continued_sft"])
    # per-arm config overrides, e.g. {"reinforce_pp": {"rl.generation_prompts": 2}}
    arm_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "shared": one warm start for every seed (the seeds vary RL only); "per_seed": each seed trains
    # its own (SFT data order seeded too), so the spread over seeds includes the warm start's
    warm_start: str = "shared"


STUDY_WARM_STARTS = ("shared", "per_seed")


@dataclass
class TrainConfig:
    """A whole training run (one preset)."""

    name: str = "cpu-smollm2"
    description: str = ""
    model: str = "default"
    device: str = "auto"
    dtype: str = "auto"
    mixed_precision: str = "auto"  # bf16 autocast in SFT/RL steps and engine prefills: auto | bf16 | no
    fast_decode: bool = True  # CPU generation with bf16 prepacked linears + matmul decode attention (agent.engine)
    threads: int | None = None  # torch CPU threads; null: the cores free at start (agent.models.pick_threads)
    seed: int = 0
    runs_dir: str = "runs/train"
    publish_dir: str | None = "data/train"
    data: DataSection = field(default_factory=DataSection)
    sft: SFTSection = field(default_factory=SFTSection)
    rl: RLSection = field(default_factory=RLSection)
    eval: EvalSection = field(default_factory=EvalSection)
    study: StudySection = field(default_factory=StudySection)

    def __post_init__(self) -> None:
        if self.rl.algorithm not in ALGORITHMS:
            raise ValueError(f"rl.algorithm: unknown '{self.rl.algorithm}' (choose from {ALGORITHMS})")
        self._check_budget()
        self._check_study()
        if self.rl.reward not in VARIANTS:
            raise ValueError(f"rl.reward: unknown '{self.rl.reward}' (choose from {VARIANTS})")
        if self.rl.reward_rules not in RULE_SETS:
            raise ValueError(f"rl.reward_rules: unknown '{self.rl.reward_rules}' (choose from {RULE_SETS})")
        if self.rl.iterations < 1 or self.rl.num_generations < 2 or self.rl.prompts_per_step < 1:
            raise ValueError("rl.iterations >= 1, rl.num_generations >= 2 and rl.prompts_per_step >= 1 required")
        micro = self.rl.micro_batch_prompts or self.rl.prompts_per_step
        if self.rl.prompts_per_step % micro:
            raise ValueError(
                f"rl.prompts_per_step ({self.rl.prompts_per_step}) must be a multiple of "
                f"rl.micro_batch_prompts ({micro})"
            )
        self._check_generation_batch()
        he = self.eval.humaneval
        if he is not None and (isinstance(he, bool) or not isinstance(he, int) or not 1 <= he <= HUMANEVAL_PROBLEMS):
            raise ValueError(
                f"eval.humaneval: expected null or a number of problems from 1 to {HUMANEVAL_PROBLEMS}, got {he!r}"
            )
        self._check_data()
        if self.rl.lora is not None:
            lora_kwargs(self.rl.lora)  # spelling of a restricted LoRA, checked before any training

    def _check_budget(self) -> None:
        rl = self.rl
        if rl.budget_seconds is not None:
            try:
                rl.budget_seconds = float(rl.budget_seconds)
            except (TypeError, ValueError):
                raise ValueError(
                    f"rl.budget_seconds: expected a number of seconds, got {rl.budget_seconds!r}"
                ) from None
            if rl.budget_seconds <= 0:
                raise ValueError(f"rl.budget_seconds: must be > 0, got {rl.budget_seconds}")
        if rl.budget_steps is not None:
            if isinstance(rl.budget_steps, bool) or not isinstance(rl.budget_steps, int) or rl.budget_steps < 1:
                raise ValueError(f"rl.budget_steps: expected a whole number of steps >= 1, got {rl.budget_steps!r}")
        if rl.algorithm != "continued_sft":
            return
        given = [k for k in ("budget_seconds", "budget_from", "budget_steps") if getattr(rl, k) not in (None, "")]
        if not given:
            raise ValueError(
                "rl.budget_seconds / rl.budget_from / rl.budget_steps: continued_sft needs its budget (set "
                "rl.budget_seconds, rl.budget_from to a finished RL run folder, or rl.budget_steps)"
            )
        if len(given) > 1:
            raise ValueError(f"{' and '.join('rl.' + k for k in given)}: both set, set only one")

    def _check_generation_batch(self) -> None:
        rl = self.rl
        gen = rl.generation_prompts
        if gen is not None and (
            isinstance(gen, bool) or not isinstance(gen, int) or gen < 1 or gen % rl.prompts_per_step
        ):
            raise ValueError(
                f"rl.generation_prompts: expected null or a multiple of rl.prompts_per_step ({rl.prompts_per_step}), "
                f"got {gen!r}"
            )
        if rl.algorithm == "reinforce_pp" and (gen or rl.prompts_per_step) < 2 and rl.scale_rewards in (None, "batch"):
            raise ValueError(
                "rl.generation_prompts: REINFORCE++ normalises advantages by the reward std of the generation "
                f"batch, which holds {gen or rl.prompts_per_step} prompt here: one group, so REINFORCE++ would be "
                "GRPO exactly. Set rl.generation_prompts (or rl.prompts_per_step) to 2 or more"
            )

    def _check_data(self) -> None:
        from ftrl_lab.envgen.backend import parse_complexity

        d = self.data
        if not isinstance(d.curriculum, list) or not all(isinstance(c, (str, int)) for c in d.curriculum):
            raise ValueError(
                f"data.curriculum: expected a list of complexity levels like ['0', '1'], got {d.curriculum!r}"
            )
        d.curriculum = [str(c) for c in d.curriculum]
        bad = [c for c in d.curriculum if not (c.isdigit() and len(c) == 1)]
        if bad:
            raise ValueError(f"data.curriculum: {bad} are not single levels 0-3 (one train pool per level)")
        for key in ("complexity", "validation_complexity", "heldout_complexity"):
            value = getattr(d, key)
            if value is not None:
                try:
                    parse_complexity(str(value))
                except ValueError as e:
                    raise ValueError(f"data.{key}: {e}") from None
        levels = self.rl.iteration_levels
        if levels is not None:
            if not isinstance(levels, list) or len(levels) != self.rl.iterations:
                raise ValueError(
                    f"rl.iteration_levels: expected one level per iteration ({self.rl.iterations}), got {levels!r}"
                )
            self.rl.iteration_levels = [str(c) for c in levels]
            pools = d.curriculum or [str(d.complexity)]
            bad = [c for c in self.rl.iteration_levels if c not in pools]
            if bad:
                raise ValueError(f"rl.iteration_levels: {bad} have no train pool (data.curriculum: {pools})")
        if self.eval.select not in SELECT:
            raise ValueError(f"eval.select: unknown '{self.eval.select}' (choose from {SELECT})")

    def _check_study(self) -> None:
        st = self.study
        if not isinstance(st.seeds, list) or not st.seeds or not all(isinstance(s, int) for s in st.seeds):
            raise ValueError(f"study.seeds: expected a non-empty list of integers, got {st.seeds!r}")
        if len(set(st.seeds)) != len(st.seeds):
            raise ValueError(f"study.seeds: repeated seed in {st.seeds}")
        if not isinstance(st.arms, list) or not st.arms:
            raise ValueError(f"study.arms: expected a non-empty list of algorithms, got {st.arms!r}")
        bad = [a for a in st.arms if a not in ALGORITHMS]
        if bad:
            raise ValueError(f"study.arms: unknown {bad} (choose from {ALGORITHMS})")
        if len(set(st.arms)) != len(st.arms):
            raise ValueError(f"study.arms: repeated arm in {st.arms}")
        if "continued_sft" in st.arms and "grpo" not in st.arms:
            raise ValueError("study.arms: continued_sft takes its budget from the same seed's grpo run; add grpo")
        ov = st.arm_overrides
        if not isinstance(ov, dict) or not all(isinstance(v, dict) for v in ov.values()):
            raise ValueError(f"study.arm_overrides: expected {{arm: {{dotted key: value}}}}, got {ov!r}")
        bad = [a for a in ov if a not in ALGORITHMS]
        if bad:
            raise ValueError(f"study.arm_overrides: unknown arm(s) {bad} (choose from {ALGORITHMS})")
        if st.warm_start not in STUDY_WARM_STARTS:
            raise ValueError(f"study.warm_start: unknown {st.warm_start!r} (choose from {STUDY_WARM_STARTS})")

    @property
    def run_name(self) -> str:
        return f"{self.name}_{self.rl.reward}_{self.rl.algorithm}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LORA_THIRDS = {"lower_third": "lower", "middle_third": "middle", "upper_third": "upper"}


def lora_kwargs(lora: dict, n_layers: int | None = None) -> dict[str, Any]:
    """``rl.lora`` as ``peft.LoraConfig`` keyword arguments, with LoRA restricted to chosen
    modules and layers written as data:

    * ``target_modules``: a group ("mlp", "attention"), a module name, "all-linear", or a list
      mixing groups and module names (``[mlp, q_proj]``);
    * ``layers_to_transform``: a third of the depth ("lower_third", "middle_third",
      "upper_third", as :func:`ftrl_lab.agent.anatomy.layer_thirds` splits it), a range "0-9", an
      int or a list of ints.

    With ``n_layers`` None only the spelling is checked (thirds stay unresolved).
    """
    if not isinstance(lora, dict):
        raise ValueError(f"rl.lora: expected a mapping of LoraConfig arguments, got {lora!r}")
    out = dict(lora)
    targets = out.get("target_modules")
    if isinstance(targets, str) and targets in GROUP_MODULES:
        out["target_modules"] = list(GROUP_MODULES[targets])
    elif isinstance(targets, list):
        out["target_modules"] = list(dict.fromkeys(m for t in targets for m in GROUP_MODULES.get(t, (t,))))
    layers = out.get("layers_to_transform")
    if isinstance(layers, str):
        if layers in LORA_THIRDS:
            if n_layers is not None:
                out["layers_to_transform"] = layer_thirds(n_layers)[LORA_THIRDS[layers]]
        else:
            lo, _, hi = layers.partition("-")
            if not (lo.strip().isdigit() and (not hi or hi.strip().isdigit())):
                raise ValueError(
                    f"rl.lora.layers_to_transform: '{layers}' is not one of {list(LORA_THIRDS)}, "
                    "'i-j', an int or a list of ints"
                )
            out["layers_to_transform"] = list(range(int(lo), int(hi or lo) + 1))
    elif (
        layers is not None
        and not isinstance(layers, int)
        and not (isinstance(layers, list) and all(isinstance(i, int) for i in layers))
    ):
        raise ValueError(f"rl.lora.layers_to_transform: expected a third, 'i-j', an int or a list, got {layers!r}")
    chosen = out.get("layers_to_transform")
    if n_layers is not None and chosen is not None:
        chosen = [chosen] if isinstance(chosen, int) else chosen
        if not chosen or any(not 0 <= i < n_layers for i in chosen):
            raise ValueError(
                f"rl.lora.layers_to_transform: {chosen} selects no layer or one outside "
                f"0-{n_layers - 1} (the model has {n_layers})"
            )
    return out


SECTIONS = {"data": DataSection, "sft": SFTSection, "rl": RLSection, "eval": EvalSection, "study": StudySection}


def preset_path(name_or_path: str | os.PathLike) -> Path:
    """``configs/<name>.yaml`` (or .yml / .json) for a preset name, or the given file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return path
    for ext in (".yaml", ".yml", ".json"):
        candidate = CONFIG_DIR / f"{name_or_path}{ext}"
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.y*ml") if p.stem != "accelerate")
    raise FileNotFoundError(f"no preset '{name_or_path}' (presets in {CONFIG_DIR}: {names})")


def read_preset(path: Path) -> dict[str, Any]:
    """The raw mapping of a YAML / JSON preset file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a preset must be a mapping, got {type(data).__name__}")
    return data


RENAMED = {
    "rl.max_completion_length": "rl.max_new_tokens",
    "rl.collect_max_new_tokens": "rl.max_new_tokens",
}
"""Keys of older presets and their one name now (tokens per turn is ``max_new_tokens`` everywhere)."""


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """A :class:`TrainConfig` from a mapping; unknown keys raise ``ValueError`` naming them."""
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in top:
            raise ValueError(f"{source}: unknown key '{key}' (known: {sorted(top)})")
        if key in SECTIONS:
            cls = SECTIONS[key]
            known = {f.name for f in dataclasses.fields(cls)}
            if not isinstance(value, dict):
                raise ValueError(f"{source}: '{key}' must be a mapping")
            bad = sorted(set(value) - known)
            renamed = [f"'{key}.{b}' is now '{RENAMED[f'{key}.{b}']}'" for b in bad if f"{key}.{b}" in RENAMED]
            if renamed:
                raise ValueError(f"{source}: {'; '.join(renamed)}")
            if bad:
                raise ValueError(f"{source}: unknown key(s) {[f'{key}.{b}' for b in bad]} (known: {sorted(known)})")
            kwargs[key] = cls(**{k: _coerce(cls, k, v, f"{source}: {key}.{k}") for k, v in value.items()})
        else:
            kwargs[key] = value
    try:
        return TrainConfig(**kwargs)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def _coerce(cls: type, name: str, value: Any, where: str) -> Any:
    """A string where the field's default is a number becomes that number (YAML reads "1e-5" as text)."""
    default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(float(value)) if isinstance(default, float) else int(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    return value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"rl.reward": "solve_rate"}`` style dotted overrides applied to a raw mapping (copy)."""
    out = json.loads(json.dumps(data))
    for dotted, value in overrides.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line override value: YAML scalars (numbers, true/false, null) or a string."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 reads "2e-5" as a string
        try:
            return float(value)
        except ValueError:
            pass
    return value


def load_config(
    name_or_path: str | os.PathLike = "cpu-smollm2", overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Load a preset by name or path and apply dotted overrides."""
    path = preset_path(name_or_path)
    data = apply_overrides(read_preset(path), overrides or {})
    return config_from_dict(data, str(path))
