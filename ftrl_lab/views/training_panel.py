"""Notebook 03's live training panel: a status line and curves redrawn at every TRL log row."""

from __future__ import annotations

import html
import time

import pandas as pd

from ftrl_lab.train.report import plot_curves
from ftrl_lab.views.profile import titled


class LiveTrainingPanel:
    """Pass :meth:`on_log` and :meth:`on_stage` to :func:`ftrl_lab.train.loop.run`; display :attr:`widget`."""

    def __init__(self, run_name: str, quick: bool = False) -> None:
        import ipywidgets as widgets

        self.run_name, self.quick, self.rows = run_name, quick, []
        self.status = widgets.HTML("starting ...")
        self.panel = widgets.Output()
        self.widget = widgets.VBox([self.status, self.panel])

    def on_log(self, row: dict) -> None:
        """Keep a log row and redraw the curves."""
        import matplotlib.pyplot as plt

        self.rows.append(row)
        title = titled(f"{self.run_name}: iteration {row.get('iteration')}", self.quick)
        with self.panel:
            self.panel.clear_output(wait=True)
            fig = plot_curves(pd.DataFrame(self.rows), title=title, close=False)
            plt.show(fig)
            plt.close(fig)

    def on_stage(self, stage: str, value: object = None) -> None:
        """Say which stage finished, and when."""
        self.status.value = f"<b>{html.escape(str(stage))}</b> done at {time.strftime('%H:%M:%S')}"
