"""Notebook output kept tidy: each figure shown once, long JSON folded away.

:func:`show_figure` displays a figure and closes it, so the inline backend does not draw it a
second time at the end of the cell (a cell that both shows and echoes a figure prints it twice).
:func:`collapsed_json` renders a mapping as an HTML ``<details>`` block: one summary line, the
indented JSON (HTML-escaped) one click away.
"""

from __future__ import annotations

import html
import json
from typing import Any


def show_figure(fig: Any) -> None:
    """Display ``fig`` once and close it."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)


def collapsed_json(obj: Any, summary: str, open_: bool = False) -> Any:
    """``obj`` as indented JSON inside a ``<details>`` block titled ``summary`` (both escaped)."""
    from IPython.display import HTML

    body = html.escape(json.dumps(obj, indent=1, ensure_ascii=False, default=str))
    return HTML(
        f"<details{' open' if open_ else ''}><summary>{html.escape(summary)}</summary>"
        f"<pre style='max-height: 24em; overflow: auto'>{body}</pre></details>"
    )


def shade_rows(frame: Any, mask: Any, colour: str = "#fde2e2") -> Any:
    """A Styler of ``frame`` with the rows where ``mask`` (a boolean Series on its index) is true shaded."""
    flagged = set(frame.index[list(mask)])
    return frame.style.apply(
        lambda row: [f"background-color: {colour}" if row.name in flagged else ""] * len(row), axis=1
    )
