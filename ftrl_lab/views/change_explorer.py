"""Notebook 05's explorer: pick a pair, a metric and a module group; the heatmap and its table follow."""

from __future__ import annotations

import pandas as pd

from ftrl_lab.agent.anatomy import GROUP_MODULES, MODULE_ORDER
from ftrl_lab.analysis.change_map import METRICS, grid_style, layer_module_grid, plot_heatmap

MODULE_CHOICES: dict[str, tuple[str, ...] | None] = {
    "all modules": None,
    "MLP": GROUP_MODULES["mlp"],
    "attention": GROUP_MODULES["attention"],
    "norms": tuple(m for m in MODULE_ORDER if "norm" in m),
}
"""The module filter's choices, from the one definition in :mod:`ftrl_lab.agent.anatomy`."""


class ChangeMapExplorer:
    """Dropdowns for pair and metric, toggle buttons for the module group; :attr:`widget` to display."""

    def __init__(self, maps: dict[str, pd.DataFrame], main_label: str, title_prefix: str = "") -> None:
        import ipywidgets as widgets

        self.maps, self.title_prefix = maps, title_prefix
        self.pair = widgets.Dropdown(
            options=list(maps), value=main_label, description="pair", layout={"width": "480px"}
        )
        self.metric = widgets.Dropdown(
            options=[(v, k) for k, v in METRICS.items()], value="rel_change", description="metric",
            layout={"width": "480px"},
        )  # fmt: skip
        self.modules = widgets.ToggleButtons(options=list(MODULE_CHOICES), description="modules")
        self.out = widgets.Output()
        for w in (self.pair, self.metric, self.modules):
            w.observe(self.redraw, names="value")
        self.widget = widgets.VBox([self.pair, self.metric, self.modules, self.out])
        self.redraw()

    def redraw(self, _change: object = None) -> None:
        """Draw the heatmap and the grid behind it for the current choices."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        df, metric = self.maps[self.pair.value], self.metric.value
        modules = MODULE_CHOICES[self.modules.value]
        modules = list(modules) if modules else None
        with self.out:
            self.out.clear_output(wait=True)
            plot_heatmap(df, metric, modules=modules, title=f"{self.title_prefix}{self.pair.value}: {METRICS[metric]}")
            plt.show()
            grid, _ = layer_module_grid(df, metric, modules)
            display(grid_style(grid))
