"""The one place where library warnings we cannot fix in our own calls are silenced.

Every warning our code caused is fixed at its call (``cache=`` instead of ``past_key_values=``,
``activation_checkpointing`` instead of ``gradient_checkpointing``: the names of the installed
transformers, :func:`ftrl_lab.agent.models.cache_keyword` and ``checkpointing_option``; truncating a long text to
the tokens we use). What is left is raised inside a library by the library itself; each entry
says where, so it can be dropped when that library is upgraded. Filters match the exact message
and category, nothing broader.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownWarning:
    """A warning raised inside a library, not by how we call it."""

    message: str  # a regular expression matched at the start of the warning's text
    category: type[Warning]
    raised_by: str  # the library code that raises it, and why we cannot avoid it


KNOWN_WARNINGS = (
    KnownWarning(
        message=r"`is_gradient_checkpointing` is deprecated",
        category=FutureWarning,
        raised_by="trl.models.utils (TRL 1.16) reads model.is_gradient_checkpointing around every generation "
        "and in disable_gradient_checkpointing; transformers 5.24 renamed it is_activation_checkpointing",
    ),
)


def silence_known_warnings() -> None:
    """Install one ``ignore`` filter per entry of :data:`KNOWN_WARNINGS` (idempotent)."""
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=known.message, category=known.category)
