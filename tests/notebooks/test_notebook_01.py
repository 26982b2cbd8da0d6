"""Executes notebooks/01_build_environments.ipynb headless (papermill) and checks its outputs."""

from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[2] / "notebooks" / "01_build_environments.ipynb"


@pytest.mark.slow
def test_build_environments_notebook_runs_headless(tmp_path):
    from ftrl_lab.core.records import load_records
    from ftrl_lab.reproduce import run_notebook

    envs = tmp_path / "envs"
    run_notebook(NB, "QUICK", tmp_path, tmp_path / "figures", extra={"ENVS_DIR": str(envs)})
    for name in ("envgen_decomposition.png", "scenario_examples.png", "envgen_levels.png", "envgen_vs_ftrl.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000
    import pandas as pd

    stats = pd.read_csv(tmp_path / "figures" / "envgen_stats.csv", index_col="scenario")
    assert {"parallel_multi_hop", "all"} <= set(stats.index) and stats.loc["all", "n (ours)"] == 200
    pipeline = pd.read_csv(tmp_path / "figures" / "envgen_pipeline.csv", index_col="split")
    assert list(pipeline.index) == ["train", "test"] and (pipeline["records"] == [100, 200]).all()
    train, test = load_records(envs / "quick" / "train.jsonl"), load_records(envs / "quick" / "test.jsonl")
    assert len(train) == 100 and len(test) == 200
    assert not {r.question for r in train} & {r.question for r in test}
    executed = (tmp_path / NB.name).read_text()
    assert "Gate:** passed" in executed and "every per-scenario range lies inside FTRL" in executed


def test_notebook_is_committed_without_outputs():
    import json

    nb = json.loads(NB.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert "QUICK" in "".join(code[0]["source"])
