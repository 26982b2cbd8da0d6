"""Executes notebooks/05_parameter_change.ipynb headless (papermill) on the tiny synthetic pair."""

from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[2] / "notebooks" / "05_parameter_change.ipynb"


@pytest.mark.slow
def test_parameter_change_notebook_runs_headless(tmp_path):
    import nbformat

    from ftrl_lab.analysis.transplant import load_results
    from ftrl_lab.reproduce import run_notebook

    run_notebook(
        NB,
        "QUICK",
        tmp_path,
        tmp_path / "figures",
        extra={"SYNTHETIC": True, "OUT_DIR": str(tmp_path / "analysis"), "RUNS_DIR": str(tmp_path / "none")},
    )
    for name in ("param_change_heatmap", "param_change_depth", "transplant_recovery"):
        assert (tmp_path / "figures" / f"{name}_synthetic.png").stat().st_size > 5_000, name
    results = load_results(next((tmp_path / "analysis" / "transplant").iterdir()))
    assert [r["name"] for r in results] == ["base", "trained", "lower_third_mlp", "upper_third_mlp", "all_attention"]
    nb = nbformat.read(tmp_path / NB.name, as_version=4)
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "SYNTHETIC PAIR" in text and "the change is **concentrated in the lower-third MLPs" in text
    assert "**Where the weights moved**" in text  # the synthetic pair's tiny model gains nothing to attribute:
    assert "**What carries the gain**" in text or "**Transplant**: no gain to attribute" in text
