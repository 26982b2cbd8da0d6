"""Executes notebooks/04_evaluate.ipynb headless (papermill) on the toy environments."""

from pathlib import Path

NB = Path(__file__).resolve().parent.parent / "notebooks" / "04_evaluate.ipynb"
TOY = Path(__file__).resolve().parent / "fixtures" / "rollout" / "toy_envs.jsonl"


def test_evaluate_notebook_runs_headless(tmp_path):
    from ftrl_lab.evaluate import load_transcripts
    from ftrl_lab.reproduce import run_notebook

    run_notebook(NB, "QUICK", tmp_path, tmp_path / "figures",
                 extra={"DATA": str(TOY), "RUNS_DIR": str(tmp_path / "runs"), "RUN_NAME": "toy"})
    assert (tmp_path / "figures" / "eval_toy.png").stat().st_size > 5_000
    assert len(load_transcripts(tmp_path / "runs" / "toy")) == 3
    assert "TranscriptBrowser" in (tmp_path / NB.name).read_text()
