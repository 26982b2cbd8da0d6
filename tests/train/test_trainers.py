"""Engine generation inside TRL, shared-prefix log-probs, and tiny GRPO / RLOO smoke runs."""

import json
import math
import os

import pytest
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from _train_helpers import small_record  # noqa: E402

from ftrl_lab.agent.models import tiny_model  # noqa: E402
from ftrl_lab.train.data import build_prefix_dataset  # noqa: E402
from ftrl_lab.train.trainers import (  # noqa: E402
    FTRLGRPOTrainer,
    FTRLRLOOTrainer,
    configure_engine,
    group_rows,
    shared_prefix_logps,
    without_autocast_wrapper,
)


def test_group_rows_keeps_first_seen_order():
    assert group_rows([[1, 2], [3], [1, 2], [3], [4]]) == {(1, 2): [0, 2], (3,): [1, 3], (4,): [4]}


def _batch(pad_id: int):
    """Two prompts (lengths 5 and 3) x 3 completions of lengths 4, 2, 3, in TRL's layout."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, 500, (5,), generator=g), torch.randint(10, 500, (3,), generator=g)]
    lengths = [4, 2, 3]
    rows = [(p, torch.randint(10, 500, (n,), generator=g)) for p in prompts for n in lengths]
    P, C = 5, 4
    ids = torch.full((len(rows), P + C), pad_id)
    mask = torch.zeros_like(ids)
    for b, (p, c) in enumerate(rows):
        ids[b, P - len(p) : P], mask[b, P - len(p) : P] = p, 1
        ids[b, P : P + len(c)], mask[b, P : P + len(c)] = c, 1
    return rows, ids, mask, C


def _reference(model, rows, temperature):
    """Each row alone, unpadded: log-probs of its completion tokens."""
    out = []
    for p, c in rows:
        x = torch.cat([p, c]).unsqueeze(0)
        logits = model(input_ids=x).logits[0, len(p) - 1 : -1].float() / temperature
        out.append(logits.log_softmax(-1).gather(-1, c.unsqueeze(-1)).squeeze(-1))
    return out


def test_shared_prefix_logps_match_per_row_computation_and_gradients():
    model, tok = tiny_model()
    model.train()
    rows, ids, mask, C = _batch(tok.pad_token_id)
    logps, ent = shared_prefix_logps(model, ids, mask, C, temperature=0.7, compute_entropy=True)
    ref = _reference(model, rows, 0.7)
    assert logps.shape == (len(rows), C) and ent.shape == (len(rows), C)
    for b, r in enumerate(ref):
        torch.testing.assert_close(logps[b, : len(r)], r, atol=1e-5, rtol=1e-5)
    assert bool((ent[mask[:, -C:].bool()] > 0).all())
    # gradients flow through the shared prompt exactly as through separate rows
    comp_mask = mask[:, -C:].bool()
    logps[comp_mask].sum().backward()
    shared = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.stack([r.sum() for r in _reference(model, rows, 0.7)]).sum().backward()
    for a, b in zip(shared, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _dataset(tok):
    recs = [small_record(), small_record("What is the capital of Sudmark?", "Brenholt")]
    ds, report = build_prefix_dataset(recs, tok, max_prompt_tokens=4096)
    assert report.kept == 2
    return ds


def length_reward(completions, **kwargs):
    """A reward with in-group variance for any model: the share of digits in the completion."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]


class RecordingGRPO(FTRLGRPOTrainer):
    """Keeps, per loss call, the ids TRL trains on and the ids the engine sampled."""

    seen: list

    def _compute_loss(self, model, inputs):
        self.seen.append(
            (
                inputs["prompt_ids"].clone(),
                inputs["prompt_mask"].clone(),
                inputs["completion_ids"].clone(),
                inputs["completion_mask"].clone(),
                self.ftrl_last_generation,
            )
        )
        return super()._compute_loss(model, inputs)


def _grpo_args(tmp_path, **kw):
    from trl import GRPOConfig

    base = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        use_vllm=False,
        per_device_train_batch_size=8,
        num_generations=4,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        max_completion_length=12,
        temperature=1.0,
        learning_rate=5e-3,
        beta=0.0,
        max_steps=2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=0,
        disable_dropout=True,
    )
    base.update(kw)
    return GRPOConfig(**base)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_grpo_smoke_trains_on_exactly_the_sampled_tokens(tmp_path, bf16):
    model, tok = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    RecordingGRPO.seen = []
    trainer = RecordingGRPO(
        model=model,
        reward_funcs=[length_reward],
        args=_grpo_args(tmp_path, bf16=bf16),
        train_dataset=_dataset(tok),
        processing_class=tok,
    )
    configure_engine(trainer, batch_size=8)
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    changed = sum(float((p.detach() - before[n]).abs().sum()) for n, p in model.named_parameters())
    assert changed > 0
    # one prefill per group: 2 distinct prompts for 8 rows
    stats = trainer.ftrl_generation_stats
    assert stats["groups"] == 2 and stats["rows"] == 8
    assert stats["prefilled_tokens"] * 4 == stats["prompt_tokens_if_unshared"]
    # the loss saw exactly the sampled (prompt, completion) pairs, shuffled
    assert len(RecordingGRPO.seen) == 2
    for pids, pmask, cids, cmask, sampled in RecordingGRPO.seen:
        used = sorted(
            (tuple(p[m.bool()].tolist()), tuple(c[n.bool()].tolist())) for p, m, c, n in zip(pids, pmask, cids, cmask)
        )
        want = sorted((tuple(p), tuple(c)) for p, c in zip(sampled["prompt_ids"], sampled["completion_ids"]))
        assert used == want


def test_prompts_are_rendered_with_each_rows_own_tools(tmp_path):
    model, tok = tiny_model()
    trainer = FTRLGRPOTrainer(
        model=model,
        reward_funcs=[length_reward],
        args=_grpo_args(tmp_path),
        train_dataset=_dataset(tok),
        processing_class=tok,
    )
    rows = [dict(trainer.train_dataset[0]), dict(trainer.train_dataset[1])]
    rows[1]["tools"] = "[]"
    trainer._ftrl_inputs = rows
    ids, images, fields = trainer._tokenize_prompts([r["prompt"] for r in rows])
    text0, text1 = tok.decode(ids[0]), tok.decode(ids[1])
    assert "get_capital" in text0 and "<tools>" in text0
    assert "<tools>" not in text1
    with pytest.raises(RuntimeError, match="without their dataset rows"):
        trainer._ftrl_inputs = rows[:1]
        trainer._tokenize_prompts([r["prompt"] for r in rows])


def test_rloo_smoke(tmp_path):
    from trl import RLOOConfig

    model, tok = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = RLOOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        per_device_train_batch_size=8,
        num_generations=4,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        max_completion_length=12,
        temperature=1.0,
        learning_rate=5e-3,
        beta=0.0,
        max_steps=1,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=0,
    )
    trainer = FTRLRLOOTrainer(
        model=model, reward_funcs=[length_reward], args=args, train_dataset=_dataset(tok), processing_class=tok
    )
    configure_engine(trainer, batch_size=8)
    trainer.train()
    assert trainer.ftrl_generation_stats["groups"] == 2
    assert sum(float((p.detach() - before[n]).abs().sum()) for n, p in model.named_parameters()) > 0


def test_sampling_runs_without_accelerates_autocast_wrapper():
    class Model(torch.nn.Module):
        def forward(self, x):
            return "class"

    model = Model()  # as accelerate leaves it: an instance-level autocast forward over the original
    model._original_forward = lambda x: "original"
    model.forward = lambda x: "wrapped"
    with without_autocast_wrapper(model):
        assert model(1) == "original"
    assert model(1) == "wrapped"
    plain = Model()
    with without_autocast_wrapper(plain):  # no wrapper: nothing to undo
        assert plain(1) == "class"


def constant_reward(completions, **kwargs):
    """One reward for every completion: no group has spread, every advantage is 0."""
    return [1.0] * len(completions)


def spread_only_for_sudmark(prompts, completions, **kwargs):
    """Reward spread (the completion's length) only for prompts about Sudmark."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [len(t) / 100 if "Sudmark" in json.dumps(p) else 1.0 for p, t in zip(prompts, texts)]


def _one_prompt_dataset(tok, question="What is the capital of Norland?", answer="Oslavik"):
    ds, _ = build_prefix_dataset([small_record(question, answer)], tok, max_prompt_tokens=4096)
    return ds


@pytest.mark.parametrize("skip", [True, False], ids=["skipped", "trl"])
def test_zero_advantage_steps_skip_the_model_and_leave_the_weights_as_trl_does(tmp_path, skip):
    model, tok = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    RecordingGRPO.seen = []
    trainer = RecordingGRPO(
        model=model,
        reward_funcs=[constant_reward],
        args=_grpo_args(tmp_path, per_device_train_batch_size=4, max_steps=2),
        train_dataset=_one_prompt_dataset(tok),
        processing_class=tok,
    )
    configure_engine(trainer, batch_size=4, skip_zero_advantage=skip)
    trainer.train()
    assert len(RecordingGRPO.seen) == (0 if skip else 2)  # the model ran only without the skip
    for n, p in model.named_parameters():  # zero advantages: zero gradients either way
        torch.testing.assert_close(p.detach(), before[n], atol=0, rtol=0)
    skipped = [r["ftrl/skipped_updates"] for r in trainer.state.log_history if "ftrl/skipped_updates" in r]
    assert skipped == ([1.0, 1.0] if skip else [0.0, 0.0])
    assert [r["ftrl/no_spread"] for r in trainer.state.log_history if "ftrl/no_spread" in r] == [1.0, 1.0]


@pytest.mark.parametrize("redraws", [0, 1, 3])
def test_redraws_replace_a_step_without_spread_by_a_reserve_prompt(tmp_path, redraws):
    model, tok = tiny_model()
    RecordingGRPO.seen = []
    reserve = _one_prompt_dataset(tok, "What is the capital of Sudmark?", "Brenholt")
    trainer = RecordingGRPO(
        model=model,
        reward_funcs=[spread_only_for_sudmark],
        args=_grpo_args(tmp_path, per_device_train_batch_size=4, max_steps=1),
        train_dataset=_one_prompt_dataset(tok),
        processing_class=tok,
    )
    configure_engine(trainer, batch_size=4, redraws=redraws, reserve=reserve, skip_zero_advantage=False)
    trainer.train()
    ((pids, pmask, *_),) = RecordingGRPO.seen
    trained_on = tok.decode(pids[0][pmask[0].bool()])
    # one reserve prompt: it is drawn once, then the reserve is used up
    assert ("Sudmark" in trained_on) == (redraws > 0) and ("Norland" in trained_on) == (redraws == 0)
    assert trainer.ftrl_reserve_used == (1 if redraws else 0)
    row = next(r for r in trainer.state.log_history if "ftrl/redraws" in r)
    assert row["ftrl/redraws"] == (1.0 if redraws else 0.0) and row["ftrl/no_spread"] == (0.0 if redraws else 1.0)


class AdvantageRecorder(FTRLGRPOTrainer):
    """Keeps the advantages of every loss call and the row count of every generation."""

    advantages: list
    generations: list

    def _compute_loss(self, model, inputs):
        self.advantages.append(inputs["advantages"].clone())
        return super()._compute_loss(model, inputs)

    def _generate_and_score_completions(self, inputs):
        self.generations.append(len(inputs))
        return super()._generate_and_score_completions(inputs)


def _advantages(tmp_path, scale_rewards, steps_per_generation):
    model, tok = tiny_model()
    AdvantageRecorder.advantages, AdvantageRecorder.generations = [], []
    trainer = AdvantageRecorder(
        model=model,
        reward_funcs=[length_reward],
        args=_grpo_args(
            tmp_path,
            per_device_train_batch_size=4,
            steps_per_generation=steps_per_generation,
            scale_rewards=scale_rewards,
            max_steps=2,
            learning_rate=1e-9,
        ),
        train_dataset=_dataset(tok),
        processing_class=tok,
    )
    configure_engine(trainer, batch_size=8, skip_zero_advantage=False)
    trainer.train()
    return AdvantageRecorder.advantages, AdvantageRecorder.generations


def test_reinforce_pp_equals_grpo_on_one_group_and_differs_on_a_generation_batch_of_two(tmp_path):
    # one prompt per generation: the batch std is the group std, so the advantages are identical
    grpo, gens = _advantages(tmp_path, "group", 1)
    rpp, _ = _advantages(tmp_path, "batch", 1)
    assert gens == [4, 4] and len(grpo) == len(rpp) == 2
    for a, b in zip(grpo, rpp):
        torch.testing.assert_close(a, b)
    # two prompts sampled together (rl.generation_prompts = 2): one generation shared by two updates of 4 rows
    grpo2, gens2 = _advantages(tmp_path, "group", 2)
    rpp2, _ = _advantages(tmp_path, "batch", 2)
    assert gens2 == [8] and [len(a) for a in rpp2] == [4, 4]
    # same samples (same seed, one generation before any update): both centre on the group mean,
    # GRPO divides by the group's std, REINFORCE++ by the batch's, so their ratio is one per group
    a, b = torch.cat(grpo2), torch.cat(rpp2)
    moved = a.abs() > 1e-6
    assert bool(moved.any()) and not torch.allclose(a, b)
    ratios = {round(float(r), 4) for r in b[moved] / a[moved]}
    assert 1 <= len(ratios) <= 2 and ratios != {1.0}
