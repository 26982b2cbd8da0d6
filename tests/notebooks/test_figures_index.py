"""figures/README.md lists exactly the figures and tables the code writes, so the index cannot rot.

The code is read statically (no notebook runs): every string literal or f-string in the
notebooks' code cells, in ftrl_lab/ and in tests/notebooks/test_browser.py that names an image
(.png/.svg/.pdf/.jpg), and every path of any kind built on FIGURES_DIR or a "figures" folder.
Placeholders (`{run_name}` in code, `{...}` or `<...>` in the index) match anything.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / "figures" / "README.md"
IMAGE_EXT = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
OUTPUT_EXT = IMAGE_EXT + (".csv", ".md", ".json", ".jsonl", ".txt", ".html")
FIGURES_BASE = re.compile(r"FIGURES_DIR|figures_dir|['\"]figures['\"]")
ELSEWHERE_HEADING = "written elsewhere"


def normalise(name: str) -> str:
    """`train_curves_{cfg.run_name}.png`, `train_curves_<run>.png` -> `train_curves_*.png`."""
    return re.sub(r"\{[^{}]*\}|<[^<>]*>", "*", name)


def code_sources() -> dict[str, str]:
    """Relative path -> Python source: notebook code cells (magics dropped), ftrl_lab, the browser test."""
    out = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        lines = [line for cell in code for line in cell.splitlines() if not line.lstrip().startswith(("%", "!"))]
        out[str(nb.relative_to(ROOT))] = "\n".join(lines)
    for py in sorted((ROOT / "ftrl_lab").rglob("*.py")) + [ROOT / "tests" / "notebooks" / "test_browser.py"]:
        out[str(py.relative_to(ROOT))] = py.read_text()
    return out


def _pattern(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's text with each {expression} kept as written."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}" for v in node.values
        )
    return None


def written_names(source: str, where: str = "<code>") -> list[tuple[str, bool]]:
    """(file name, goes to figures/) for every output-looking string in `source`."""
    tree = ast.parse(source, filename=where)
    inside_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    figures_right = {
        id(n.right)
        for n in ast.walk(tree)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and FIGURES_BASE.search(ast.unparse(n.left))
    }
    found = []
    for node in ast.walk(tree):
        text = _pattern(node)
        if text is None or id(node) in inside_fstring or not text.lower().endswith(OUTPUT_EXT):
            continue
        name = text.rsplit("/", 1)[-1]
        if not re.fullmatch(r"[\w.*\-]+", normalise(name)):
            continue  # prose (a docstring or help text), not a file name
        to_figures = (
            id(node) in figures_right
            or text.startswith(("{FIGURES_DIR}/", "{figures_dir}/", "figures/"))
            or bool(re.match(r"\{[^}]*(FIGURES_DIR|figures_dir)[^}]*\}/", text))
        )
        if to_figures or text.lower().endswith(IMAGE_EXT):
            found.append((name, to_figures))
    return found


def code_outputs() -> dict[str, dict]:
    """Normalised name -> {"to_figures": bool, "where": [files]} over all code sources."""
    out: dict[str, dict] = {}
    for where, source in code_sources().items():
        for name, to_figures in written_names(source, where):
            entry = out.setdefault(normalise(name), {"to_figures": False, "where": []})
            entry["to_figures"] |= to_figures
            if where not in entry["where"]:
                entry["where"].append(where)
    return out


def index_rows(text: str) -> list[dict]:
    """Table rows whose first cell is a `file name`, with their section ('figures' or 'elsewhere')."""
    rows, section = [], "figures"
    for line in text.splitlines():
        if line.startswith("#"):
            section = "elsewhere" if ELSEWHERE_HEADING in line.lower() else "figures"
        m = re.match(r"\|\s*`([^`]+)`\s*\|(.*)", line)
        if m:
            cells = [c.strip() for c in m.group(2).split("|")]
            rows.append({"name": m.group(1), "key": normalise(m.group(1)), "section": section, "cells": cells})
    return rows


@pytest.fixture(scope="module")
def index():
    assert INDEX.exists(), f"{INDEX} is missing"
    return index_rows(INDEX.read_text())


@pytest.fixture(scope="module")
def outputs():
    return code_outputs()


def test_parser_finds_figure_writes():
    src = (
        'fig.savefig(f"{FIGURES_DIR}/a.png")\nplot(t, Path(FIGURES_DIR) / f"b_{run.name}.png")\n'
        'df.to_csv(f"{FIGURES_DIR}/c.csv")\nx = run_dir / "d.png"\ny = run_dir / "e.csv"\n'
        'def f(out="figures/g.png"):\n    """Writes the figure to some place.png"""\n'
    )
    assert sorted(written_names(src)) == [
        ("a.png", True),
        ("b_{run.name}.png", True),
        ("c.csv", True),
        ("d.png", False),
        ("g.png", True),
    ]
    assert index_rows("## In figures/\n| `a_{x}.png` | 01 |\n## Written elsewhere\n| `d.png` | x |") == [
        {"name": "a_{x}.png", "key": "a_*.png", "section": "figures", "cells": ["01", ""]},
        {"name": "d.png", "key": "d.png", "section": "elsewhere", "cells": ["x", ""]},
    ]


def test_every_written_figure_is_in_the_index(index, outputs):
    listed = {r["key"] for r in index}
    missing = {k: v["where"] for k, v in outputs.items() if k not in listed}
    assert not missing, f"add these to {INDEX.relative_to(ROOT)} (name: written in): {missing}"


def test_every_indexed_figure_is_written_by_the_code(index, outputs):
    stale = [r["name"] for r in index if r["key"] not in outputs]
    assert not stale, f"{INDEX.relative_to(ROOT)} lists files no code writes any more: {stale}"


def test_figures_dir_outputs_are_in_the_figures_section(index, outputs):
    section = {r["key"]: r["section"] for r in index}
    wrong = [k for k, v in outputs.items() if v["to_figures"] and section.get(k) == "elsewhere"]
    assert not wrong, f"written to figures/ but indexed under 'Written elsewhere': {wrong}"


def test_index_rows_are_complete_and_name_existing_files(index):
    assert len({r["key"] for r in index}) == len(index), "a file is listed twice"
    for r in index:
        if r["section"] == "figures":
            assert len(r["cells"]) >= 4 and all(r["cells"][:3]), (
                f"{r['name']}: needs written by, what, paper counterpart"
            )
        for path in re.findall(r"`([\w./\-]+\.(?:ipynb|py))`", " ".join(r["cells"])):
            found = (ROOT / path).exists() or (ROOT / "notebooks" / path).exists()
            assert found, f"{r['name']}: {path} does not exist"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_generated_figures_stay_out_of_git():
    def ignored(rel: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=ROOT).returncode == 0

    assert ignored("figures/reward_surfaces.png") and ignored("figures/envgen_stats.csv")
    assert not ignored("figures/README.md") and not ignored("figures/.gitkeep")
