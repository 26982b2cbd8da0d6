"""Executes notebooks/02_reward_explorer.ipynb headless (papermill) and checks its figures."""

from pathlib import Path

import pytest

from ftrl_lab.core.records import default_test_set

NB = Path(__file__).resolve().parents[2] / "notebooks" / "02_reward_explorer.ipynb"


def test_reward_explorer_notebook_runs_headless(tmp_path):
    if not default_test_set().exists():
        pytest.skip("../shared/benchmarks is absent")
    from ftrl_lab.reproduce import run_notebook

    run_notebook(NB, "QUICK", tmp_path, tmp_path / "figures")
    for name in ("reward_surfaces.png", "reward_examples.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000
