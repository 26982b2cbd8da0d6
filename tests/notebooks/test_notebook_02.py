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
    import nbformat

    nb = nbformat.read(tmp_path / NB.name, as_version=4)
    pngs = [sum("image/png" in o.get("data", {}) for o in c.get("outputs", [])) for c in nb.cells]
    assert max(pngs) == 1, f"a figure shown twice: {pngs}"
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "best example response" in text and "**solve_f1** pays" in text  # the computed findings
