"""The corruption table: gold outputs accepted, every kind of corrupted output rejected."""

import pytest

from ftrl_lab.benchmarks import bfcl, checks, rotbench, toolhop


@pytest.fixture(scope="module")
def table():
    try:
        bfcl.data_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    items = toolhop.load()[:3]  # not toolhop-009/010, whose one-character answers FTRL's rule finds anywhere
    gold = {it["id"]: toolhop.derive_gold_calls(it) for it in items}
    return checks.corruption_table(
        items, gold, rotbench.load(levels=["clean", "heavy"]), bfcl.load(bfcl.NON_LIVE_AST + bfcl.LIVE_AST, limit=8)
    )


def test_gold_accepted_corruptions_rejected(table):
    assert list(table.index.get_level_values(0).unique()) == ["toolhop", "rotbench", "bfcl"]
    for (bench, output), row in table.iterrows():
        assert row["n"] > 0, (bench, output)
        assert row["accepted %"] == row["expected %"], (bench, output)
    assert set(table.loc["bfcl"].index) == {"gold", *checks.CORRUPTIONS}
    assert table.loc[("toolhop", "gold"), "n"] == 3 and table.loc[("bfcl", "gold"), "n"] == 64


def test_rotbench_scores_are_nested(table):
    rot = table.loc["rotbench"]
    assert rot.loc["wrong_function", ["TS %", "PI %"]].tolist() == [0.0, 0.0]
    assert rot.loc["missing_required", ["TS %", "PI %"]].tolist() == [100.0, 0.0]
    assert rot.loc["wrong_value", ["TS %", "PI %"]].tolist() == [100.0, 100.0]


def test_changed_and_retyped_values():
    for v in ("Paris", 3, 2.5, True, [1, 2], {"a": 1}):
        assert checks.changed(v) != v and type(checks.retyped(v)) is not type(v)
        assert type(checks.changed(v)) is type(v) or not isinstance(v, (str, int, float))
