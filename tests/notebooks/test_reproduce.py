"""The main job's runner: notebook selection, papermill parameters, and a failing notebook."""

import json

import pytest

from ftrl_lab import reproduce


def _notebook(path, code: str) -> None:
    """A two-cell notebook: a tagged parameters cell, then ``code``."""
    cells = [
        {
            "id": "params",
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "execution_count": None,
            "outputs": [],
            "source": 'QUICK = True\nFIGURES_DIR = "unset"\n',
        },
        {"id": "work", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": code},
    ]
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


def test_notebooks_are_the_numbered_ones_in_order():
    names = [p.name for p in reproduce.notebooks()]
    assert names == sorted(names) and names[0].startswith("01_") and len(names) >= 5
    assert [p.name for p in reproduce.notebooks(["03", "05"])] == [n for n in names if n[:2] in ("03", "05")]


@pytest.mark.slow
def test_profile_and_figures_dir_reach_the_notebook(tmp_path, monkeypatch, capsys):
    books = tmp_path / "notebooks"
    books.mkdir()
    _notebook(
        books / "01_write.ipynb",
        "import pathlib\npathlib.Path(FIGURES_DIR, 'profile.txt').write_text('QUICK' if QUICK else 'FULL')\n",
    )
    monkeypatch.setattr(reproduce, "NOTEBOOKS", books)
    rc = reproduce.main(["--profile", "FULL", "--out", str(tmp_path / "out"), "--figures", str(tmp_path / "fig")])
    assert rc == 0
    assert (tmp_path / "fig" / "profile.txt").read_text() == "FULL"
    assert (tmp_path / "out" / "01_write.ipynb").exists()
    assert "1 notebook(s)" in capsys.readouterr().out
    assert is_trusted(tmp_path / "out" / "01_write.ipynb")
    assert not is_trusted(books / "01_write.ipynb")  # the source notebook is left as it is


def is_trusted(path) -> bool:
    import nbformat
    from nbformat.sign import NotebookNotary

    return NotebookNotary().check_signature(nbformat.read(path, as_version=4))


def test_the_default_profile_is_the_makefiles():
    makefile = (reproduce.ROOT / "Makefile").read_text()
    assert f"PROFILE ?= {reproduce.DEFAULT_PROFILE}\n" in makefile


@pytest.mark.slow
def test_a_failing_notebook_stops_the_run_with_its_name(tmp_path, monkeypatch, capsys):
    books = tmp_path / "notebooks"
    books.mkdir()
    _notebook(books / "01_ok.ipynb", "x = 1\n")
    _notebook(books / "02_broken.ipynb", "raise RuntimeError('no such table')\n")
    _notebook(books / "03_never.ipynb", "x = 3\n")
    monkeypatch.setattr(reproduce, "NOTEBOOKS", books)
    rc = reproduce.main(["--out", str(tmp_path / "out"), "--figures", str(tmp_path / "fig")])
    err = capsys.readouterr().err
    assert rc == 1 and "02_broken.ipynb FAILED" in err and "no such table" in err
    assert (tmp_path / "out" / "01_ok.ipynb").exists() and (tmp_path / "out" / "02_broken.ipynb").exists()
    assert not (tmp_path / "out" / "03_never.ipynb").exists()
    assert is_trusted(tmp_path / "out" / "02_broken.ipynb")


def test_no_matching_notebook_is_an_error(capsys):
    assert reproduce.main(["--only", "no-such-notebook"]) == 2
    assert "no notebooks matched" in capsys.readouterr().err
