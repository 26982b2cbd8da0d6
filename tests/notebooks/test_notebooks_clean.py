"""Committed notebooks carry no outputs (diffs stay readable) and have a papermill parameters cell."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stripped_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{path.name} has outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "QUICK" in "".join(params[0]["source"]), f"{path.name}: no QUICK parameters cell"
    assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name} should open with its narrative"


def test_there_are_notebooks():
    assert NOTEBOOKS
