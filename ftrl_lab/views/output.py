"""Notebook output kept tidy: each figure shown once, long JSON folded away.

:func:`show_figure` displays a figure and closes it, so the inline backend does not draw it a
second time at the end of the cell (a cell that both shows and echoes a figure prints it twice).
:func:`collapsed_json` renders a mapping as an HTML ``<details>`` block: one summary line, the
indented JSON (HTML-escaped) one click away. Inside a notebook kernel, warnings that the package
itself logs about your data (e.g. very short gold answers in a record file) are shown as a
Markdown note in the cell (:class:`NotebookNotes`, installed when :mod:`ftrl_lab.views` is
imported) instead of raw stderr text.
"""

from __future__ import annotations

import html
import json
import logging
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


class NotebookNotes(logging.Handler):
    """Shows the package's own logged warnings as an escaped Markdown note in the running cell."""

    def emit(self, record: logging.LogRecord) -> None:
        from IPython.display import Markdown, display

        try:
            text = html.escape(self.format(record))
            display(Markdown(f"> **Note ({record.levelname.lower()}, `{record.name}`)**: {text}"))
        except Exception:  # noqa: BLE001 - a note must never break a cell
            self.handleError(record)


def install_notebook_notes(logger_name: str = "ftrl_lab") -> bool:
    """Route ``logger_name``'s warnings to :class:`NotebookNotes` when running in a kernel (once)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    logger = logging.getLogger(logger_name)
    if not any(isinstance(h, NotebookNotes) for h in logger.handlers):
        handler = NotebookNotes(level=logging.WARNING)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return True
