"""An offline general-capability check: perplexity on generic text that Python itself ships.

RL on tool use can erode a model's general language modelling. To see that without any
download, we measure perplexity on the Python language reference that every CPython ships
as ``pydoc_data.topics`` (about 460k characters of English technical prose with code; the
text ``help("topics")`` shows). The text is the same on every machine with the same Python
minor version; the report records that version and the topics used.

    from ftrl_lab.agent.general_ability import perplexity
    perplexity(model, tokenizer)  # {"perplexity": ..., "tokens": ..., "windows": ...}
"""

from __future__ import annotations

import math
import platform
from typing import Any

import torch


def reference_texts(n_topics: int = 16) -> list[tuple[str, str]]:
    """``(topic, text)`` pairs: every k-th topic of ``pydoc_data.topics`` (sorted), ``n_topics`` of them."""
    from pydoc_data.topics import topics

    names = sorted(topics)
    step = max(1, len(names) // n_topics)
    return [(name, topics[name]) for name in names[::step][:n_topics]]


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    *,
    n_topics: int = 16,
    window: int = 256,
    windows_per_topic: int = 1,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Token-level perplexity of ``model`` on held-out generic text (see module doc).

    Each of ``n_topics`` topics contributes its first ``windows_per_topic`` windows of
    ``window`` tokens (topics shorter than a window are used whole); every window is scored
    on its own (no context carried over).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, count, windows, used = 0.0, 0, 0, []
    try:
        for name, text in reference_texts(n_topics):
            ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=window * windows_per_topic)[
                "input_ids"
            ]
            for w in range(windows_per_topic):
                chunk = ids[w * window : (w + 1) * window]
                if len(chunk) < 2:
                    break
                x = torch.tensor([chunk], device=device)
                out = model(input_ids=x, labels=x)
                n = len(chunk) - 1
                nll += float(out.loss) * n
                count += n
                windows += 1
            used.append(name)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no reference text could be tokenized")
    return {
        "perplexity": math.exp(nll / count),
        "nll": nll / count,
        "tokens": count,
        "windows": windows,
        "source": f"pydoc_data.topics (Python {platform.python_version()})",
        "topics": used,
    }
