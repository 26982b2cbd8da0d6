"""Local-model generation for multi-turn tool use: KV caches kept across turns, batched decoding.

An FTRL episode re-renders the whole conversation every turn and generates from it. Prefill
of the 3-5k-token tool prompts dominates on a CPU, so the :class:`Engine` keeps one
:class:`KVState` (token ids + per-layer keys/values) per conversation. Each turn it tokenizes
the freshly rendered conversation, keeps the cached keys/values of the longest common token
prefix and prefills only the rest (the tool messages and the generation prompt). The model
therefore sees exactly the tokens an FTRL loop would feed it: the re-rendered parsed assistant
message, never the raw generated text.

Decoding runs many conversations (or ``k`` samples of one prompt, prefilled once) as one batch.
The batch's keys/values live in preallocated "slabs" with every row left-aligned at its true
positions (no left padding, no ``torch.cat`` per step); a row writes its next key/value at
its own position and a boolean mask hides the unused tail of shorter rows. Finished rows stop
counting and the batch is compacted once half of it is done.

Device-agnostic: everything runs on the model's device and dtype (bf16 on CUDA via
:func:`ftrl_lab.agent.models.load_model`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache, DynamicLayer

from ftrl_lab.agent.bf16_linears import PackedBF16Linears, packed_bf16_available
from ftrl_lab.agent.decode_attention import decode_attention_on
from ftrl_lab.agent.decode_step import DecodeStep, unsupported_reason
from ftrl_lab.agent.models import cache_keyword
from ftrl_lab.agent.sampling import DEFAULT_MAX_NEW_TOKENS, SamplingParams


@dataclass
class Generation:
    """One completion: the decoded text and what it cost."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (an end token) or "length" (max_new_tokens)
    prompt_tokens: int  # tokens of the prompt
    prefilled_tokens: int  # prompt tokens actually run through the model (the rest were cached)
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0  # wall time of the batched decode this row took part in

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class KVState:
    """A conversation's cached tokens and their keys/values (per layer, ``[1, heads, len, dim]``)."""

    ids: list[int] = field(default_factory=list)
    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)

    def clear(self) -> None:
        self.ids, self.layers = [], []


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class SlabLayer(DynamicLayer):
    """One layer's keys/values for a decode batch: ``[batch, heads, capacity, dim]`` buffers.

    Row ``b`` holds its tokens at their true positions ``0 .. length_b - 1``; ``update`` writes
    the step's key/value of row ``b`` at ``positions[b]`` (set by the engine before each step)
    and returns the buffers cut to the longest row.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, step: _Step):
        super().__init__()
        self.keys, self.values, self.step = keys, values, step
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        s = self.step
        self.keys[s.rows, :, s.positions] = key_states[:, :, 0]
        self.values[s.rows, :, s.positions] = value_states[:, :, 0]
        return self.keys[:, :, : s.kv_len], self.values[:, :, : s.kv_len]

    def get_seq_length(self) -> int:
        return max(self.step.kv_len - 1, 0)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.step.kv_len, 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keys = self.keys[indices]
        self.values = self.values[indices]


@dataclass
class _Step:
    """Where each row of a decode batch writes this step (shared by all slab layers)."""

    rows: torch.Tensor
    positions: torch.Tensor
    kv_len: int = 0


@dataclass(eq=False)
class _Row:
    """One sequence being decoded."""

    owner: int  # index of the request it belongs to
    state: KVState  # prompt keys/values (read; written back for single samples)
    length: int  # tokens in the cache before decoding
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    finish_reason: str = "length"
    write_back: bool = True


class Engine:
    """Batched, cache-reusing generation with a Hugging Face causal LM.

    Args:
        model, tokenizer: e.g. from :func:`ftrl_lab.agent.models.load_model`.
        batch_size: rows decoded together (conversations, or samples of one prompt).
        prefill_chunk: prefill at most this many tokens per forward (``None``: all at once,
            as ``model.generate`` does; chunking saves memory but changes floating-point
            rounding, so greedy transcripts may then differ from a single-pass prefill).
        seed: seeds the sampling generator (reproducible sampled completions).
        bf16_prefill: run prefills of an fp32 model under bf16 autocast (decode stays fp32,
            caches are kept in fp32). On a CPU with native bf16 this makes long prompts several
            times faster (``perf/bench_model_speed.py``); results then differ from a pure
            fp32 run by bf16 rounding, so greedy transcripts can change.
        fast_decode: generation for throughput rather than bit-equality with ``model.generate``
            (CPU): every linear layer of an fp32 model runs on a prepacked bf16 copy of its
            weights (:mod:`ftrl_lab.agent.bf16_linears`; norms and caches stay fp32; the copy
            follows weight updates; only where oneDNN has native bf16), and one-query decode
            steps of SDPA/eager models compute attention with the native one-query kernel
            (:mod:`ftrl_lab.agent.decode_attention`, :mod:`ftrl_lab.agent.cpu_kernels`). For
            Llama-family models whose projections are plain linears, decode steps skip the
            module stack altogether (:mod:`ftrl_lab.agent.decode_step`; prefill still runs
            ``model(...)``). ``self.bf16_linears``, ``self.decode_attention`` and
            ``self.decode_step`` say what is on. ``perf/bench_decode.py`` measures it.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 8,
        prefill_chunk: int | None = None,
        seed: int | None = 0,
        bf16_prefill: bool = False,
        fast_decode: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        layer_types = getattr(model.config.get_text_config(decoder=True), "layer_types", None) or []
        odd = sorted({t for t in layer_types if t != "full_attention"})
        if odd:
            raise ValueError(
                f"{type(model).__name__}: the engine supports full-attention layers only, "
                f"this model also has {odd}; use HFGeneratePolicy"
            )
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.prefill_chunk = prefill_chunk
        self.device = next(model.parameters()).device
        self.kv_dtype = next(model.parameters()).dtype
        self.bf16_prefill = bf16_prefill and self.kv_dtype == torch.float32
        self.packed = PackedBF16Linears(model) if fast_decode and packed_bf16_available(model) else None
        self.bf16_linears = self.packed is not None
        implementation = self.model.config.get_text_config(decoder=True)._attn_implementation
        self.decode_attention = fast_decode and self.device.type == "cpu" and implementation in ("sdpa", "eager")
        self.decode_step = DecodeStep(model) if self.bf16_linears and unsupported_reason(model) is None else None
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)
        self.generator = torch.Generator(device=self.device)
        if seed is not None:
            self.generator.manual_seed(seed)

    # --- prompts ---------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Token ids of a conversation rendered with the chat template and a generation prompt."""
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=True
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # --- public generation API -------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams | None = None,
        states: Sequence[KVState | None] | None = None,
    ) -> list[Generation]:
        """One completion per prompt (token ids). With ``states`` (one per prompt), each
        state's cached prefix is reused and the state is left holding prompt + completion."""
        return [g[0] for g in self._run(prompts, params or SamplingParams(), states, n=1)]

    def generate_n(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        params: SamplingParams | None = None,
        states: Sequence[KVState | None] | None = None,
    ) -> list[list[Generation]]:
        """``n`` completions per prompt, each prompt prefilled once; states keep the prompt only."""
        return self._run(prompts, params or SamplingParams(temperature=1.0), states, n=n)

    def chat(
        self,
        conversations: Sequence[tuple[list[dict], list[dict] | None]],
        params: SamplingParams | None = None,
        states: Sequence[KVState | None] | None = None,
    ) -> list[Generation]:
        """One completion per ``(messages, tools)`` conversation (see :meth:`generate`)."""
        return self.generate([self.encode_chat(m, t) for m, t in conversations], params, states)

    def sample_group(
        self,
        prompt_messages: list[dict],
        tools: list[dict] | None,
        k: int,
        temperature: float = 1.0,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        top_p: float = 1.0,
        state: KVState | None = None,
    ) -> list[Generation]:
        """``k`` sampled completions of one prompt (a GRPO group): one prefill, ``k`` rows."""
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        return self.generate_n([self.encode_chat(prompt_messages, tools)], k, params, [state])[0]

    # --- internals -------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, prompts, params, states, n):
        if self.decode_step is not None:
            self.decode_step.sync()  # follows weight updates between generations
        # Generation runs in the model's own dtype even inside a trainer's bf16 autocast: the
        # KV caches it keeps across turns must not change dtype between calls.
        with torch.autocast(self.device.type, enabled=False), self._linears(), self._attention():
            return self._run_batches(prompts, params, states, n)

    def _linears(self):
        return self.packed.active() if self.packed is not None else nullcontext()

    def _attention(self):
        return decode_attention_on(self.model) if self.decode_attention else nullcontext()

    def _run_batches(self, prompts, params, states, n):
        if states is None:
            states = [None] * len(prompts)
        if len(states) != len(prompts):
            raise ValueError(f"got {len(states)} states for {len(prompts)} prompts")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompts = [list(p) for p in prompts]
        for i, ids in enumerate(prompts):
            if not ids:
                raise ValueError(f"prompt {i} is empty")
        results: list[list[Generation]] = [[] for _ in prompts]
        # Similar lengths decode together; a batch's prompts are prefilled one by one (exact, no
        # padding) just before it, so only one batch of caches is alive when states are not kept.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        per_batch = max(1, self.batch_size // n)
        for start in range(0, len(order), per_batch):
            rows, first_logits, prefilled = [], [], {}
            for i in order[start : start + per_batch]:
                state = states[i] if states[i] is not None else KVState()
                t0 = time.perf_counter()
                logits, fresh = self._prefill(prompts[i], state)
                prefilled[i] = (fresh, time.perf_counter() - t0)
                for _ in range(n):
                    rows.append(_Row(owner=i, state=state, length=len(state), write_back=n == 1))
                    first_logits.append(logits)
            for lo in range(0, len(rows), self.batch_size):
                chunk = rows[lo : lo + self.batch_size]
                t0 = time.perf_counter()
                self._decode(chunk, torch.stack(first_logits[lo : lo + self.batch_size]), params)
                dt = time.perf_counter() - t0
                for row in chunk:
                    results[row.owner].append(self._result(row, *prefilled[row.owner], dt))
        return results

    def _result(self, row: _Row, fresh: int, prefill_seconds: float, decode_seconds: float) -> Generation:
        return Generation(
            text=self.tokenizer.decode(row.tokens, skip_special_tokens=True),
            token_ids=list(row.tokens),
            finish_reason=row.finish_reason,
            prompt_tokens=row.length,
            prefilled_tokens=fresh,
            prefill_seconds=prefill_seconds,
            decode_seconds=decode_seconds,
        )

    def _prefill(self, ids: list[int], state: KVState) -> tuple[torch.Tensor, int]:
        """Bring ``state`` to hold ``ids``; return the next-token logits and the tokens run."""
        keep = min(common_prefix(state.ids, ids), len(ids) - 1)
        if keep > 0:
            cache = DynamicCache(ddp_cache_data=[(k[:, :, :keep], v[:, :, :keep]) for k, v in state.layers])
        else:
            cache = DynamicCache(config=self.model.config)
        todo = ids[keep:]
        step = self.prefill_chunk or len(todo)
        pos = keep
        logits = None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16_prefill):
            for lo in range(0, len(todo), step):
                part = todo[lo : lo + step]
                input_ids = torch.tensor([part], device=self.device)
                position_ids = torch.arange(pos, pos + len(part), device=self.device).unsqueeze(0)
                out = self.model(
                    input_ids=input_ids,
                    position_ids=position_ids,
                    **{cache_keyword(): cache},
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits = out.logits[0, -1].float()
                pos += len(part)
        state.ids = list(ids)
        state.layers = [(layer.keys.to(self.kv_dtype), layer.values.to(self.kv_dtype)) for layer in cache.layers]
        return logits, len(todo)

    def _pick(self, logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
        """Next token per row from ``[rows, vocab]`` float logits."""
        if params.greedy:
            return logits.argmax(-1)
        logits = logits / params.temperature
        if params.top_k and params.top_k < logits.shape[-1]:
            kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if params.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > params.top_p  # keep the smallest set reaching top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    def _decode(self, rows: list[_Row], first_logits: torch.Tensor, params: SamplingParams) -> None:
        """Decode a batch of rows in place (tokens, finish reason, states written back)."""
        cfg = self.model.config.get_text_config(decoder=True)
        n_layers = cfg.num_hidden_layers
        lengths = [r.length for r in rows]
        capacity = max(lengths) + params.max_new_tokens
        k0, _ = rows[0].state.layers[0]
        heads, dim, dtype = k0.shape[1], k0.shape[3], k0.dtype
        step = _Step(
            rows=torch.arange(len(rows), device=self.device), positions=torch.tensor(lengths, device=self.device)
        )
        layers = []
        slab_dtype = torch.bfloat16 if self.decode_step is not None else dtype  # see agent.decode_step
        for li in range(n_layers):
            keys = torch.zeros(len(rows), heads, capacity, dim, dtype=slab_dtype, device=self.device)
            values = torch.zeros_like(keys)
            for b, r in enumerate(rows):
                k, v = r.state.layers[li]
                keys[b, :, : r.length] = k[0, :, : r.length]
                values[b, :, : r.length] = v[0, :, : r.length]
            layers.append(SlabLayer(keys, values, step))
        cache = Cache(layers=layers)
        active = list(range(len(rows)))  # batch index -> row index
        stop = torch.tensor(sorted(self.stop_ids), device=self.device)
        next_tokens = self._pick(first_logits, params)
        columns = torch.arange(capacity, device=self.device)
        for _step in range(params.max_new_tokens):
            picked = next_tokens.tolist()
            is_stop = torch.isin(next_tokens, stop).tolist()
            for b, row_index in enumerate(active):
                row = rows[row_index]
                if row.done:
                    continue
                row.tokens.append(picked[b])
                if is_stop[b]:
                    row.done, row.finish_reason = True, "stop"
                elif len(row.tokens) >= params.max_new_tokens:
                    row.done, row.finish_reason = True, "length"
            n_done = sum(rows[i].done for i in active)
            if n_done == len(active):
                break
            if n_done * 2 >= len(active):  # compact: drop finished rows from the batch
                self._write_back([(b, rows[i]) for b, i in enumerate(active) if rows[i].done], layers)
                keep = [b for b, i in enumerate(active) if not rows[i].done]
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                step.positions = step.positions[index]
                next_tokens = next_tokens[index]
                active = [active[b] for b in keep]
                step.rows = torch.arange(len(active), device=self.device)
            feed = torch.tensor(
                [rows[i].tokens[-1] if not rows[i].done else self.pad_id for i in active], device=self.device
            )
            step.kv_len = int(step.positions.max()) + 1
            if self.decode_step is not None:
                slabs = [(layer.keys, layer.values) for layer in layers]
                logits = self.decode_step(feed, step.positions, slabs, step.kv_len)
            else:
                mask = (columns[: step.kv_len].unsqueeze(0) <= step.positions.unsqueeze(1))[:, None, None, :]
                if bool(mask.all()):
                    mask = None  # all rows equally long: the unmasked path, as model.generate takes
                out = self.model(
                    input_ids=feed.unsqueeze(1),
                    attention_mask=mask,
                    position_ids=step.positions.unsqueeze(1),
                    **{cache_keyword(): cache},
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits = out.logits[:, -1]
            step.positions = step.positions + 1
            next_tokens = self._pick(logits.float(), params)
        self._write_back([(b, rows[i]) for b, i in enumerate(active)], layers)

    def _write_back(self, finished: list[tuple[int, _Row]], layers: list[SlabLayer]) -> None:
        """Store each finished single-sample row's prompt + completion keys/values in its state
        (``b`` is the row's index in the current batch). From bf16 slabs the prompt keeps the
        state's own fp32 keys/values and only the completion's are widened."""
        for b, row in finished:
            if not row.write_back:
                continue
            fed = row.tokens[:-1]  # the last token was picked but never run through the model
            end = row.length + len(fed)
            kept = []
            for layer, (old_k, old_v) in zip(layers, row.state.layers):
                k, v = layer.keys[b : b + 1, :, :end], layer.values[b : b + 1, :, :end]
                if k.dtype == self.kv_dtype:
                    kept.append((k.clone(), v.clone()))
                else:
                    n = row.length
                    kept.append(
                        (
                            torch.cat([old_k[:, :, :n], k[:, :, n:].to(self.kv_dtype)], 2),
                            torch.cat([old_v[:, :, :n], v[:, :, n:].to(self.kv_dtype)], 2),
                        )
                    )
            row.state.layers = kept
            row.state.ids = row.state.ids[: row.length] + fed
            row.write_back = False  # written once


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end a turn: the model's eos ids, the tokenizer's eos and ``<|im_end|>``."""
    ids: set[int] = set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is not None:
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    im_end = tokenizer.get_vocab().get("<|im_end|>")
    if im_end is not None:
        ids.add(im_end)
    if not ids:
        raise ValueError("the model and tokenizer define no end-of-turn token (eos_token_id)")
    return ids
