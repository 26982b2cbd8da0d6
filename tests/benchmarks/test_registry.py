"""The one benchmark dispatch: rule sets by name, and the suite recording the rule set it used."""

import pytest

from ftrl_lab.benchmarks import registry, suite, toolhop


def test_registry_knows_every_benchmark_and_its_rule_sets():
    assert list(registry.BENCHMARKS) == ["toolhop", "rotbench", "bfcl", "taubench"]
    th = registry.benchmark("toolhop")
    assert th.rules == toolhop.RULES and th.default_rules == "ftrl" and th.check_rules(None) == "ftrl"
    with pytest.raises(ValueError, match="unknown toolhop rules 'x'"):
        th.check_rules("x")
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        registry.benchmark("nope")
    with pytest.raises(ValueError, match="unknown toolhop rules"):
        suite.SuiteSettings(rules={"toolhop": "x"})


def test_suite_books_the_rule_set_per_summary_row(tmp_path):
    def knows(convs, tools):
        return ["<answer>no idea</answer>" for _ in convs]

    settings = suite.SuiteSettings(model="m", limit_per_category=1, rules={"toolhop": "official"})
    df = suite.run_suite(knows, tmp_path, settings, benchmarks=["toolhop"], show_progress=False)
    assert set(df["rules"]) == {"official"}
    results = (tmp_path / "toolhop" / "results.jsonl").read_text()
    assert '"rules": "official"' in results
    assert "| category | n | selection | rules |" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("name", sorted(registry.BENCHMARKS))
def test_each_headline_metric_is_the_category_mean_of_its_item_column(name):
    bench = registry.BENCHMARKS[name]
    columns = [bench.item_column(m) for m in bench.headline]
    rows = [
        {
            "id": f"{c}/{i}",
            "category": c,
            "scenario": "TG",
            "rules": bench.default_rules,
            "db_match": 0,  # tau-bench tables it beside pass^1
            **dict.fromkeys(columns, i % 2),
        }
        for c in bench.categories
        for i in range(4)
    ]
    table = bench.table(rows)
    for metric in bench.headline:
        assert metric in table.columns
        assert table.loc[bench.categories[0], metric] == pytest.approx(50.0)
    with pytest.raises(KeyError):
        bench.item_column("no such metric")
