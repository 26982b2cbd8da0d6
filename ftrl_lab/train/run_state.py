"""The run folder's format: ``<run>/state.json`` (finished stages) and where the trained policy is.

Light (no torch), so analysis and notebooks can read finished runs without importing training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RunState:
    """``<run>/state.json``: finished stages and what they produced (written atomically)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def done(self, stage: str) -> bool:
        return stage in self.data

    def get(self, stage: str) -> Any:
        return self.data.get(stage)

    def finish(self, stage: str, value: Any) -> None:
        self.data[stage] = value
        tmp = self.path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


def final_policy(run_dir: str | Path) -> Path | None:
    """The trained policy of a finished run (the selected iteration's ``iter_k/model``, ``control/model``
    for the continued-SFT control), or None while the run has not finished its final evaluation."""
    run_dir = Path(run_dir)
    state = RunState(run_dir)
    if not state.done("eval_final"):
        return None
    if state.done("control"):
        model = run_dir / "control" / "model"
        return model if model.exists() else None
    if state.done("selection"):  # the iteration selected on validation (or the last)
        # recorded as <run>/iter_k/model with the run's path as given then (often relative to the
        # project root): resolve it in this run folder, so any working directory (a notebook's) finds it
        model = run_dir / Path(state.get("selection")["model"]).parent.name / "model"
        return model if model.exists() else None
    last = max((int(k[5:]) for k in state.data if k.startswith("iter_") and k[5:].isdigit()), default=0)
    model = run_dir / f"iter_{last}" / "model"
    return model if last and model.exists() else None
