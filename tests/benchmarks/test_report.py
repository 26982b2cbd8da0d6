"""Table 2: the stored paper rows, measured rows from benchmark tables, the styled table and figure."""

import math

import pytest

from ftrl_lab.benchmarks import report, rotbench, taubench, toolhop


def test_paper_table2_file():
    df = report.paper_table2()
    assert list(report.COLUMNS) == [
        "Solve-P",
        "Solve-R",
        "Solve-F1",
        "ToolHop AC",
        "tau Pass^1",
        "TS",
        "PI",
        "CF",
        "Avg",
    ]
    assert len(df) == 14 and df.index.is_unique
    assert set(df["verified"]) == {"no"} and df["source"].notna().all()
    values = df[list(report.COLUMNS)].stack().dropna()
    assert len(values) == 16  # 14 Avg cells and 2 Solve-F1 cells were found
    assert ((values > 0) & (values < 100)).all()
    assert df.loc["Qwen3-8B / FTRL-GRPO", "Avg"] == 45.43


def _tables():
    th = toolhop.table([{"id": i, "category": m, "AC": float(i % 2)} for m in ("direct", "free") for i in range(4)])
    tau = taubench.table(
        [
            {"id": "a", "category": "airline", "pass": 1.0, "db_match": 1.0},
            {"id": "b", "category": "retail", "pass": 0.0, "db_match": 1.0},
        ]
    )
    rot = rotbench.table([{"id": "x", "category": "clean", "scenario": "TG", "TS": 1.0, "PI": 1.0, "CF": 0.0}])
    return th, tau, rot


def test_measured_row_and_avg():
    th, tau, rot = _tables()
    row = report.measured_row("tiny", {"solve_precision": 0.5, "solve_rate": 0.25, "solve_f1": 0.2}, th, tau, rot)
    assert (row["Solve-P"], row["Solve-R"], row["Solve-F1"]) == (50.0, 25.0, 20.0)
    assert (row["ToolHop AC"], row["tau Pass^1"], row["TS"], row["CF"]) == (50.0, 50.0, 100.0, 0.0)
    assert math.isclose(row["Avg"], (50 + 25 + 20 + 50 + 50 + 100 + 100 + 0) / 8)
    partial = report.measured_row("no tau", {"Solve-F1": 30.0}, th, None, rot)
    assert partial["Solve-F1"] == 30.0 and math.isnan(partial["tau Pass^1"]) and math.isnan(partial["Avg"])


def test_table_style_and_figure(tmp_path):
    th, tau, rot = _tables()
    df = report.table2([report.measured_row("tiny", {"solve_f1": 0.2}, th, tau, rot)])
    assert df.index[-1] == "tiny" and df.loc["tiny", "origin"] == "measured"
    html = report.style_table2(df).to_html()
    assert "tiny" in html and "–" in html and "45.43" in html
    out = report.plot_table2(df, tmp_path / "t2.png")
    assert out.exists() and out.stat().st_size > 10_000


def test_measured_from_run_folders(tmp_path):
    th, tau, rot = _tables()
    for name, df in (("toolhop", th), ("tau", tau), ("rot", rot)):
        (tmp_path / name).mkdir()
        df.to_csv(tmp_path / name / "table.csv")
    (tmp_path / "ftrl").mkdir()
    (tmp_path / "ftrl" / "results.csv").write_text(
        "scenario,n,solve_precision,solve_rate,solve_f1\nsingle_hop,2,0.5,0.5,0.4\nmulti_hop,2,0.7,0.1,0.2\n"
        "overall,4,0.6,0.3,0.3\n"
    )
    row = report.measured_from_runs("m", tmp_path / "ftrl", tmp_path / "toolhop", tmp_path / "tau", tmp_path / "rot")
    assert math.isclose(row["Solve-P"], 60.0) and math.isclose(row["Solve-F1"], 30.0)
    assert row["ToolHop AC"] == 50.0 and row["tau Pass^1"] == 50.0 and row["TS"] == 100.0
    assert not math.isnan(row["Avg"])


def test_oracle_tables():
    tables = report.oracle_tables(bfcl_limit=5)
    assert (tables["toolhop"]["AC"] == 100).all()
    assert (tables["rotbench"][["TS", "PI", "CF"]] == 100).all().all()
    assert tables["bfcl"].loc["non_live_ast", "accuracy"] == 100


def test_table2_from_suite_folders(tmp_path):
    import json

    from ftrl_lab.benchmarks import registry, suite

    def shrug(convs, tools):
        return ["Thought: no idea\nAction: finish\nAction Input: {}" for _ in convs]

    folder = tmp_path / "bench" / "tiny-run"
    suite.run_suite(
        shrug,
        folder,
        suite.SuiteSettings(model="shrug", limit_per_category=2),
        benchmarks=["toolhop", "rotbench"],
        show_progress=False,
    )
    ftrl = tmp_path / "eval"
    ftrl.mkdir()
    rows = [
        {"key": k, "scenario": s, "solve_precision": 1.0, "solve_rate": r, "solve_f1": r, "turns": 1, "calls": 0}
        for k, s, r in (("a", "single_hop", 0.5), ("b", "multi_hop", 0.0))
    ]
    (ftrl / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    df = report.table2_from_suites([folder, tmp_path / "missing"], ftrl={"tiny-run": ftrl})
    assert list(df.columns) == [*report.COLUMNS, "origin", "rules", "notes"] and df.index[-1] == "tiny-run"
    row = df.loc["tiny-run"]
    assert row["origin"] == "measured" and row["ToolHop AC"] == 0.0 and row["TS"] == 0.0
    assert row["Solve-F1"] == 25.0 and math.isnan(row["tau Pass^1"]) and math.isnan(row["Avg"])
    assert "first 2 per category: 6 of 30" in row["notes"] and "clean + union only" in row["notes"]
    assert "2 FTRL test episodes (partial)" in row["notes"]
    rot_rules = registry.benchmark("rotbench").default_rules
    assert row["rules"] == f"ftrl unrecorded; toolhop ftrl; rotbench {rot_rules}"
    assert "toolhop not comparable: a subsample; 2 of the paper's 995 items" in row["notes"]
    assert "without slight, medium, heavy" in row["notes"]
    assert "not comparable: a subset" not in row["notes"]
    (ftrl / "results.json").write_text(json.dumps({"n_records": 2, "source_records": 200, "rules": "official"}))
    note = report.table2_from_suites([folder], ftrl={"tiny-run": ftrl}).loc["tiny-run", "notes"]
    assert "2 of 2 FTRL test episodes, " in note
    assert "Solve-P/R/F1 not comparable: a subset, 2 of the source's 200 records" in note
    assert df.loc["GPT-4o / closed", "rules"].startswith("ftrl official; toolhop ftrl; rotbench ftrl")
    summary = suite.read_summary(folder)
    assert set(summary["rules"]) == {"ftrl", rot_rules}
    text = report.comparability_markdown(summary)
    assert text.startswith("- **toolhop** (rules `ftrl`, n=6): not comparable") and "**rotbench**" in text
    assert df.loc["GPT-4o / closed", "notes"].endswith("UNVERIFIED secondary source")
    html = report.style_table2(df).to_html()
    assert "UNVERIFIED" in html and "tiny-run" in html
    assert report.plot_table2(df, tmp_path / "t2.png").stat().st_size > 10_000

    other = tmp_path / "bench" / "other"
    suite.run_suite(
        shrug,
        other,
        suite.SuiteSettings(model="other", limit_per_category=1),
        benchmarks=["rotbench"],
        show_progress=False,
    )
    both = suite.compare({"tiny": folder, "other": other})
    assert list(both.columns) == ["tiny", "n tiny", "other", "n other"]
    assert (
        both.loc[("rotbench", "clean", "TS"), "n other"] == 1 and both.loc[("rotbench", "clean", "TS"), "n tiny"] == 2
    )
    assert math.isnan(both.loc[("toolhop", "free", "AC"), "other"])
    assert report.plot_suites(both, tmp_path / "suites.png").stat().st_size > 10_000


def test_findings_compare_trained_with_base_and_state_the_papers_gain():
    import pandas as pd

    from ftrl_lab.benchmarks.report import findings, measured_row, table2

    rows = [
        measured_row("default", {"solve_precision": 0.3, "solve_rate": 0.1, "solve_f1": 0.1}),
        measured_row("cpu-trained", {"solve_precision": 0.5, "solve_rate": 0.1, "solve_f1": 0.0}),
    ]
    t = table2(rows)
    compared = pd.DataFrame(
        {"default": [0.0], "cpu-trained": [8.0]},
        index=pd.MultiIndex.from_tuples([("bfcl", "non_live_ast", "accuracy")]),
    )
    text = findings(t, compared=compared)
    assert "FTRL-GRPO raises Table 2's Avg by +6.9 to +14.4 points over the base model (4 models" in text
    assert "Solve-P 30.0 → 50.0; Solve-R 10.0 → 10.0; Solve-F1 10.0 → 0.0; BFCL non-live AST 0.0 → 8.0" in text
    assert "higher on 2, lower on 1 and level on 1 of these 4 numbers" in text
    assert "a trained-minus-base reading needs" in findings(table2(rows[:1]))


@pytest.mark.parametrize(
    "args, comparable, why",
    [
        (("toolhop", "ftrl", 995), True, "comparable: same rules and data"),
        (("toolhop", "lenient", 995), False, "scored with rules `lenient`, the paper's numbers with `ftrl`"),
        (("toolhop", "ftrl", 10), False, "10 of the paper's 995 items"),
        (("rotbench", "ftrl", None, ["clean", "union"]), False, "without slight, medium, heavy"),
        (("rotbench", "ftrl", None, ["clean", "slight", "medium", "heavy", "union"]), True, "comparable"),
        (("taubench", "default", None, None, False, "local user simulator: tiny"), False, "(paper: gpt-4o"),
        (
            ("taubench", "default", None, None, False, "gpt-4o-2024-08-06 at https://api.openai.com/v1"),
            True,
            "comparable",
        ),
        (("bfcl", "official"), False, "not in the paper's Table 2"),
    ],
)
def test_comparability(args, comparable, why):
    ok, text = report.comparability(*args)
    assert ok is comparable and why in text
