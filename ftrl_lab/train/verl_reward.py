"""FTRL's verifiable reward in verl's custom-reward convention (``compute_score``).

Point verl at this file::

    custom_reward_function.path=<checkout>/ftrl_lab/verl_reward.py custom_reward_function.name=compute_score

Rows written by :mod:`ftrl_lab.train.verl_export` carry ``reward_model.ground_truth`` (the prefix's
unsolved set, JSON) and ``extra_info`` (``codes``, ``solve_rate``, ``answer``, and the reward
``variant``). The model's response is parsed (Qwen ``<tool_call>`` format), its calls run in
the sandbox, and the reward is :mod:`ftrl_lab.core.reward`'s. ``FTRL_REWARD_VARIANT`` overrides
the variant stored in the rows. No torch / transformers imports.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ftrl_lab.core.reward import RewardConfig, score_response


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **kwargs: Any
) -> float:
    """The FTRL reward of one response (``data_source`` is unused: every FTRL row scores alike)."""
    extra = dict(extra_info or {})
    unsolved = json.loads(ground_truth) if isinstance(ground_truth, str) else dict(ground_truth)
    codes = extra.get("codes")
    if codes is None:
        raise KeyError("extra_info has no 'codes' (rows must come from ftrl_lab.train.verl_export)")
    codes = json.loads(codes) if isinstance(codes, str) else dict(codes)
    variant = os.environ.get("FTRL_REWARD_VARIANT") or extra.get("variant") or "solve_f1"
    result = score_response(
        solution_str,
        codes,
        unsolved,
        float(extra.get("solve_rate") or 0.0),
        extra.get("answer"),
        RewardConfig(variant=variant),
    )
    return float(result.reward)
