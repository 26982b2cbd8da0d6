"""Executes notebooks/03_train_grpo.ipynb headless in QUICK mode (tiny model) and checks its outputs."""

from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[2] / "notebooks" / "03_train_grpo.ipynb"


@pytest.mark.slow
def test_train_notebook_runs_headless(tmp_path):
    import nbformat

    from ftrl_lab.reproduce import run_notebook

    run_notebook(NB, "QUICK", tmp_path, tmp_path / "figures")
    assert (tmp_path / "figures" / "train_curves_quick_solve_f1_grpo.png").stat().st_size > 5_000
    nb = nbformat.read(tmp_path / NB.name, as_version=4)
    text = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "Solve-F1 on the generated test split moved by" in text
    assert "**Solve-F1 on the generated test split**:" in text and "these bullets exercise the reading" in text
    assert "What this does not show: one seed, a 0." in text and "`quick` preset" in text  # computed, not "135M"
    assert "solve-F1 is best" not in text  # QUICK's all-zero ablation is a tie
    assert "Validation split (checkpoint selection: best validation Solve-F1)" in text
    assert "Warm start: SFT on" in text and "against the gold plans" in text
    # section 5: both algorithms and the control from the main run's start, two seeds
    assert "grpo − continued_sft" in text and "reinforce_pp" in text and "Plumbing check" in text
    stderr = [o for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"library output reached the notebook: {[o['text'][:200] for o in stderr]}"
