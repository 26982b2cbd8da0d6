"""Perplexity on text that Python ships: deterministic, and it sees a trained model change."""

import math

import torch

from ftrl_lab.agent.general_ability import perplexity, reference_texts
from ftrl_lab.agent.models import tiny_model


def test_reference_text_is_shipped_and_stable():
    a, b = reference_texts(4), reference_texts(4)
    assert a == b and len(a) == 4 and all(len(text) > 100 for _, text in a)


def test_perplexity_is_finite_deterministic_and_moves_when_weights_move():
    model, tok = tiny_model()
    first = perplexity(model, tok, n_topics=2, window=64)
    assert math.isfinite(first["perplexity"]) and first["windows"] == 2 and first["tokens"] > 0
    assert perplexity(model, tok, n_topics=2, window=64)["perplexity"] == first["perplexity"]
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(3.0)
    assert perplexity(model, tok, n_topics=2, window=64)["perplexity"] != first["perplexity"]


def test_window_nlls_are_listed_in_order_and_make_up_the_perplexity():
    model, tok = tiny_model()
    first = perplexity(model, tok, n_topics=3, window=32, windows_per_topic=2)
    nll, tokens = first["window_nll"], first["window_tokens"]
    assert len(nll) == len(tokens) == first["windows"] >= 3 and sum(tokens) == first["tokens"]
    assert math.isclose(sum(a * n for a, n in zip(nll, tokens)) / sum(tokens), first["nll"], rel_tol=1e-9)
    assert perplexity(model, tok, n_topics=3, window=32, windows_per_topic=2)["window_nll"] == nll
