"""TRL's GRPO and RLOO trainers, generating with our cache-reusing :class:`~ftrl_lab.agent.engine.Engine`.

Two hooks make RL on long tool prompts affordable on a CPU:

* **Generation**: TRL hands a generation batch whose prompts each repeat ``num_generations``
  times. :class:`EngineRolloutMixin` renders every prompt with *its own* tools (the dataset's
  ``tools`` column; TRL itself only knows one global tool list), then samples each group
  with ``Engine.generate_n`` (what ``Engine.sample_group`` does): the prompt is prefilled
  once and its keys/values are copied into the group's ``k`` decode rows. TRL then scores
  and trains on exactly these prompt and completion token ids.
* **Log-probabilities**: TRL runs the policy (and the reference) over ``prompt + completion``
  for every row, so a group pays its prompt ``k`` times, with gradients. :func:`shared_prefix_logps`
  runs each distinct prompt once, repeats its key/value cache over the group and runs only
  the completions on top; gradients flow back through the shared prompt. Same numbers, one
  prompt pass per group (tested against TRL's own computation).

Two more make the steps count:

* **Dynamic sampling** (DAPO): a step whose groups all got one reward each (every advantage 0)
  carries no gradient. With ``ftrl_redraws > 0`` the mixin samples that step again on fresh
  prompts from ``ftrl_reserve`` (the iteration's prefixes left out of the dataset), up to that
  many times, and trains on the first draw with spread (or on the last one).
* **Skipping zero-advantage updates**: with ``beta == 0`` the loss and every gradient of a
  micro-batch whose advantages are all 0 are exactly 0, so ``compute_loss`` returns a zero
  that touches each trainable parameter instead of running the model (single process only).

All are overrides of TRL (1.16) methods (``_tokenize_prompts``, ``_generate_single_turn``,
``_get_per_token_logps_and_entropies``, ``_generate_and_score_completions``, ``compute_loss``); the tests pin
their behaviour so a TRL upgrade that changes them fails loudly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from trl import GRPOTrainer, RLOOTrainer

from ftrl_lab.agent.engine import Engine, SamplingParams
from ftrl_lab.agent.library_warnings import silence_known_warnings
from ftrl_lab.agent.models import cache_keyword, checkpointing_option
from ftrl_lab.train.data import clean_messages, decode_json

silence_known_warnings()  # TRL's own deprecated calls (see ftrl_lab.agent.library_warnings)


def group_rows(prompts: list[list[int]]) -> dict[tuple[int, ...], list[int]]:
    """Row indices of each distinct prompt, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, ids in enumerate(prompts):
        groups.setdefault(tuple(ids), []).append(i)
    return groups


def shared_prefix_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    temperature: float = 1.0,
    compute_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row.

    ``input_ids``/``attention_mask`` are TRL's ``[B, P + C]`` batch: left-padded prompts, then
    right-padded completions. Rows with the same prompt share one prompt forward pass (with
    gradients, when enabled); each prompt sits at positions ``0..L-1`` with no padding, as the
    generation engine saw it. Returns ``[B, C]`` tensors (padding positions hold junk that
    TRL masks out).
    """
    C = logits_to_keep
    P = input_ids.size(1) - C
    prompt_mask = attention_mask[:, :P].bool()
    completions, completion_mask = input_ids[:, P:], attention_mask[:, P:]
    groups = group_rows([input_ids[b, :P][prompt_mask[b]].tolist() for b in range(input_ids.size(0))])
    pieces_lp, pieces_ent, order = [], [], []
    for key, rows in groups.items():
        g = len(rows)
        prompt = torch.tensor([key], device=input_ids.device)
        L = prompt.size(1)
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1:].expand(g, 1, -1)
        if C > 1:
            cache = getattr(out, cache_keyword())
            cache.batch_repeat_interleave(g)
            comp = completions[rows, : C - 1]
            mask = torch.cat(
                [
                    torch.ones(g, L, dtype=completion_mask.dtype, device=input_ids.device),
                    completion_mask[rows, : C - 1],
                ],
                dim=1,
            )
            positions = torch.arange(L, L + C - 1, device=input_ids.device).unsqueeze(0).expand(g, -1)
            out2 = model(
                input_ids=comp, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_keyword(): cache}
            )
            logits = torch.cat([logits, out2.logits], dim=1)
        logits = logits.float() / temperature
        logp_all = logits.log_softmax(-1)
        pieces_lp.append(logp_all.gather(-1, completions[rows].unsqueeze(-1)).squeeze(-1))
        if compute_entropy:
            pieces_ent.append(-(logp_all.exp() * logp_all).sum(-1))
        order.extend(rows)
    inverse = torch.empty(len(order), dtype=torch.long, device=input_ids.device)
    inverse[torch.tensor(order, device=input_ids.device)] = torch.arange(len(order), device=input_ids.device)
    logps = torch.cat(pieces_lp)[inverse]
    entropies = torch.cat(pieces_ent)[inverse] if compute_entropy else None
    return logps, entropies


@contextmanager
def without_autocast_wrapper(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` without the bf16-autocast wrapper accelerate puts on its ``forward``.

    With mixed precision, accelerate replaces ``model.forward`` by an autocast version and keeps
    the previous one as ``_original_forward``. Sampling stays in the weights' dtype: the engine's
    KV caches keep one dtype, and bf16 autocast decode re-casts every weight at each token.
    """
    original = model.__dict__.get("_original_forward")
    wrapped = model.__dict__.get("forward")
    if original is None or wrapped is None:
        yield
        return
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


class EngineRolloutMixin:
    """Per-example tools, Engine generation and shared-prefix log-probs for a TRL online trainer.

    Settings (attributes, set by :func:`configure_engine`): ``ftrl_engine_batch_size`` (decode
    rows together), ``ftrl_share_prefix`` (use :func:`shared_prefix_logps`). After each
    generation ``ftrl_last_generation`` holds the prompt and completion ids sampled (for
    checks) and ``ftrl_generation_stats`` its cost.
    """

    ftrl_engine_batch_size: int = 16
    ftrl_share_prefix: bool = True
    ftrl_seed: int = 0
    ftrl_redraws: int = 0
    ftrl_reserve = None  # a datasets.Dataset with the train dataset's columns
    ftrl_reserve_used: int = 0
    ftrl_skip_zero_advantage: bool = False

    def _ftrl_engine(self) -> Engine:
        model = self.accelerator.unwrap_model(self.model)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT: LoRA layers inside
        engine = getattr(self, "_ftrl_engine_cache", None)
        if engine is None or engine.model is not base:
            engine = Engine(
                base,
                self.processing_class,
                batch_size=self.ftrl_engine_batch_size,
                seed=self.ftrl_seed,
                bf16_prefill=getattr(self, "ftrl_bf16_prefill", False),
                fast_decode=getattr(self, "ftrl_fast_decode", False),
            )
            self._ftrl_engine_cache = engine
        return engine

    def _generate_and_score_completions(self, inputs):
        training = self.model.training
        redraws = 0
        while True:
            self._ftrl_inputs = inputs  # the rows behind the prompts: their tools render the prompts
            out = super()._generate_and_score_completions(inputs)
            if not training or redraws >= self.ftrl_redraws or self._ftrl_has_spread(out["advantages"]):
                break
            fresh = self._ftrl_fresh_rows(len(inputs))
            if fresh is None:  # the reserve is used up
                break
            inputs, redraws = fresh, redraws + 1
        if training:
            metrics = self._metrics["train"]
            metrics["ftrl/redraws"].append(float(redraws))
            metrics["ftrl/no_spread"].append(float(not self._ftrl_has_spread(out["advantages"])))
        return out

    def _ftrl_has_spread(self, advantages: torch.Tensor) -> bool:
        """Whether any advantage of the step (on any process) is non-zero."""
        local = (advantages != 0).any().float().reshape(1)
        return bool(self.accelerator.gather(local).max() > 0)

    def _ftrl_fresh_rows(self, n_local: int) -> list[dict] | None:
        """This process's rows of a fresh step from the reserve, each prompt repeated
        ``num_generations`` times in a row (TRL's group layout), or None when too few are left."""
        k = self.num_generations
        n_global = n_local * self.accelerator.num_processes
        prompts = n_global // k
        start = self.ftrl_reserve_used
        if self.ftrl_reserve is None or prompts == 0 or start + prompts > len(self.ftrl_reserve):
            return None
        self.ftrl_reserve_used += prompts
        rows = [self.ftrl_reserve[i] for i in range(start, start + prompts) for _ in range(k)]
        first = self.accelerator.process_index * n_local
        return rows[first : first + n_local]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        advantages = inputs.get("advantages") if isinstance(inputs, dict) else None
        if (
            self.ftrl_skip_zero_advantage
            and not return_outputs
            and getattr(self, "beta", None) == 0.0
            and self.accelerator.num_processes == 1
            and advantages is not None
            and not bool((advantages != 0).any())
        ):
            self._metrics["train"]["ftrl/skipped_updates"].append(1.0)
            return sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        if self.model.training:
            self._metrics["train"]["ftrl/skipped_updates"].append(0.0)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _tokenize_prompts(self, prompts: list):
        inputs = getattr(self, "_ftrl_inputs", None)
        if inputs is None or len(inputs) != len(prompts):
            raise RuntimeError("EngineRolloutMixin: prompts arrived without their dataset rows")
        engine = self._ftrl_engine()
        ids = []
        for prompt, row in zip(prompts, inputs):
            if isinstance(prompt, str):
                raise ValueError("ftrl trainers need conversational prompts (a list of messages)")
            tools = decode_json(row.get("tools")) if row.get("tools") is not None else None
            ids.append(engine.encode_chat(clean_messages(prompt), tools or None))
        return ids, None, {}

    def _engine_generate(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        """Sample one completion per row; rows with the same prompt form one prefilled group."""
        args = self.args
        if args.temperature <= 0:
            raise ValueError("RL sampling needs temperature > 0")
        params = SamplingParams(
            max_new_tokens=args.max_completion_length,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or 0,
        )
        engine = self._ftrl_engine()
        groups = group_rows(prompt_ids)
        by_size: dict[int, list[tuple[int, ...]]] = {}
        for key, rows in groups.items():
            by_size.setdefault(len(rows), []).append(key)
        completions: list[list[int] | None] = [None] * len(prompt_ids)
        model = engine.model
        was_training = model.training
        model.eval()
        t0 = time.perf_counter()
        prefilled = 0
        try:
            with without_autocast_wrapper(model):
                for k, keys in by_size.items():
                    gens = engine.generate_n([list(key) for key in keys], k, params)
                    for key, group in zip(keys, gens):
                        for row, gen in zip(groups[key], group):
                            completions[row] = list(gen.token_ids)
                        prefilled += group[0].prefilled_tokens
        finally:
            model.train(was_training)
        self.ftrl_last_generation = {"prompt_ids": [list(p) for p in prompt_ids], "completion_ids": completions}
        self.ftrl_generation_stats = {
            "seconds": time.perf_counter() - t0,
            "groups": len(groups),
            "rows": len(prompt_ids),
            "prefilled_tokens": prefilled,
            "prompt_tokens_if_unshared": sum(len(p) for p in prompt_ids),
        }
        metrics = getattr(self, "_metrics", None)
        if metrics is not None:
            metrics["train" if self.model.training else "eval"]["ftrl/generation_seconds"].append(
                self.ftrl_generation_stats["seconds"]
            )
        return completions

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **extra,
    ):
        multimodal = any(v is not None for v in extra.values())
        checkpointing = getattr(self.args, checkpointing_option(), False)  # drops the KV cache it needs
        if not self.ftrl_share_prefix or compute_aux_loss or multimodal or checkpointing:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **extra,
            )
        with self.accelerator.autocast():
            logps, entropies = shared_prefix_logps(
                model, input_ids, attention_mask, logits_to_keep, self.temperature, compute_entropy
            )
        return logps, entropies, None


class FTRLGRPOTrainer(EngineRolloutMixin, GRPOTrainer):
    """GRPO (and REINFORCE++-style settings of it) with Engine generation and shared prompts."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations=None, has_tool_images=False):
        if self.use_vllm:  # vLLM generation (GPU presets with rl.trl.use_vllm): TRL's own path
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        return self._engine_generate(prompt_ids), None


class FTRLRLOOTrainer(EngineRolloutMixin, RLOOTrainer):
    """RLOO (leave-one-out baseline) with Engine generation and shared prompts."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields):
        if self.use_vllm:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields)
        return self._engine_generate(prompt_ids)


def configure_engine(
    trainer: EngineRolloutMixin,
    *,
    batch_size: int = 16,
    share_prefix: bool = True,
    seed: int = 0,
    fast_decode: bool = False,
    bf16_prefill: bool = False,
    redraws: int = 0,
    reserve=None,
    skip_zero_advantage: bool = False,
) -> Any:
    """Set the Engine, dynamic-sampling and update-skipping settings of a trainer built from
    this module (returns it)."""
    trainer.ftrl_engine_batch_size = batch_size
    trainer.ftrl_share_prefix = share_prefix
    trainer.ftrl_seed = seed
    trainer.ftrl_fast_decode = fast_decode
    trainer.ftrl_bf16_prefill = bf16_prefill
    trainer.ftrl_redraws = redraws
    trainer.ftrl_reserve = reserve
    trainer.ftrl_reserve_used = 0
    trainer.ftrl_skip_zero_advantage = skip_zero_advantage
    trainer._ftrl_engine_cache = None
    return trainer
