"""The main job: execute the numbered notebooks headless, in order, with papermill.

    python -m ftrl_lab.reproduce                   # FULL: the README's numbers (as `make reproduce`)
    python -m ftrl_lab.reproduce --profile QUICK   # CI-sized plumbing check, minutes
    python -m ftrl_lab.reproduce --profile QUICK --only 03 --out /tmp/nb   # one notebook

Each notebook receives ``QUICK`` (True for the QUICK profile) and ``FIGURES_DIR``; executed
copies land in ``runs/notebooks/`` and figures in ``figures/``. Executed copies keep their
widget state and are signed as trusted for this user (nbformat's notary, what ``jupyter trust``
does), so JupyterLab renders their widgets and progress bars instead of ``VBox(children=...``
text. A notebook that fails stops the run with its name; the ones before it keep their outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks, in order (optionally only those whose name contains a filter)."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(o in p.name for o in only)]
    return found


CELL_TIMEOUT_S = {"QUICK": 900, "FULL": 6 * 3600}
"""A cell running longer than this fails the run instead of hanging it (seconds)."""
DEFAULT_PROFILE = "FULL"
"""The main job runs the story on the default model; the Makefile's ``PROFILE ?=`` says the same."""


def trust(path: Path) -> None:
    """Sign an executed notebook as trusted for this user (``jupyter trust``), so its saved widget
    state and HTML outputs render when it is opened."""
    import nbformat
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary()
    nb = nbformat.read(path, as_version=4)
    notary.sign(nb)
    if not notary.check_signature(nb):
        raise RuntimeError(f"{path}: signing did not make the notebook trusted (notary db {notary.db_file})")


def run_notebook(path: Path, profile: str, out_dir: Path, figures_dir: Path, extra: dict | None = None) -> float:
    """Execute one notebook with papermill; returns seconds taken."""
    import papermill as pm

    # The kernel must import this checkout of ftrl_lab even when it is not pip-installed.
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in paths if p])
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"QUICK": profile == "QUICK", "FIGURES_DIR": str(figures_dir)}
    params.update(extra or {})
    start = time.time()
    # Figures are saved into the notebook as PNGs by the inline backend; a headless MPLBACKEND=Agg
    # (as CI sets for the tests) would reach the kernel and leave only their text repr.
    backend = os.environ.pop("MPLBACKEND", None)
    try:
        execute(pm, path, out_dir, params, profile)
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
    trust(out_dir / path.name)
    return time.time() - start


def execute(pm: Any, path: Path, out_dir: Path, params: dict, profile: str) -> None:
    """papermill's run of one notebook, widget state kept."""
    pm.execute_notebook(
        str(path),
        str(out_dir / path.name),
        parameters=params,
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
        execution_timeout=CELL_TIMEOUT_S[profile],
        store_widget_state=True,  # nbclient saves the widgets' state in the notebook's metadata
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=["QUICK", "FULL"], default=DEFAULT_PROFILE, help="default: %(default)s")
    ap.add_argument("--only", nargs="*", help="run only notebooks whose file name contains one of these")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "notebooks")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    todo = notebooks(args.only)
    if not todo:
        print("no notebooks matched", file=sys.stderr)
        return 2
    total = time.time()
    for path in todo:
        print(f"[reproduce:{args.profile}] {path.name} ...", flush=True)
        start = time.time()
        try:
            seconds = run_notebook(path, args.profile, args.out, args.figures.resolve())
        except Exception as e:  # papermill's error names the cell; say which notebook, and where its output is
            if (args.out / path.name).exists():
                trust(args.out / path.name)  # our own output: its traceback and widgets render too
            print(
                f"[reproduce:{args.profile}] {path.name} FAILED after {time.time() - start:.0f} s: "
                f"{type(e).__name__}: {str(e).strip()[-2000:]}\n"
                f"executed copy with the traceback: {args.out / path.name}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        print(f"[reproduce:{args.profile}] {path.name} done in {seconds:.0f} s -> {args.out / path.name}", flush=True)
    print(
        f"[reproduce:{args.profile}] {len(todo)} notebook(s) in {time.time() - total:.0f} s; figures in {args.figures}"
    )
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
