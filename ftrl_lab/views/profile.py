"""One label for what a run profile's outputs are worth, on every table and figure title.

QUICK runs tiny random models on a handful of environments: its tables and figures check that
the plumbing works, and their numbers mean nothing. The notebooks pass every title and table
caption through :func:`titled` / :func:`captioned`, and every figure through :func:`label_figure`,
so a QUICK output can never be read as a result. FULL outputs are left as they are.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PLUMBING = "QUICK plumbing check (tiny budget, numbers mean nothing)"


def titled(title: str, quick: bool) -> str:
    """``title``, preceded by the plumbing-check label in QUICK."""
    if not quick:
        return title
    return f"{PLUMBING}: {title}" if title else PLUMBING


def captioned(table: pd.DataFrame | Any, caption: str, quick: bool) -> Any:
    """A DataFrame (or Styler) with ``caption`` above it, labelled by :func:`titled`."""
    styler = table.style if isinstance(table, pd.DataFrame) else table
    return styler.set_caption(titled(caption, quick)).set_table_styles(
        [{"selector": "caption", "props": "caption-side: top; font-weight: bold; text-align: left;"}], overwrite=False
    )


def label_figure(fig: Any, quick: bool) -> Any:
    """Prefix the figure's title (its suptitle, else its first axes' title) with the QUICK label."""
    if not quick:
        return fig
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_text():
        sup.set_text(titled(sup.get_text(), quick))
    elif fig.axes and fig.axes[0].get_title():
        ax = fig.axes[0]
        ax.set_title(f"{PLUMBING}\n{ax.get_title()}")
    else:
        fig.suptitle(PLUMBING)
    return fig
