"""The command line: generate, resume, --check and --stats."""

import json

from ftrl_lab.core.records import load_records
from ftrl_lab.envgen.__main__ import main


def test_cli_generates_checks_and_prints_stats(tmp_path, capsys):
    out = tmp_path / "envs" / "train.jsonl"
    args = [
        "--n",
        "8",
        "--seed",
        "2",
        "--scenarios",
        "single_hop,multi_hop",
        "--complexity",
        "0-3",
        "--out",
        str(out),
        "--no-progress",
        "--chunk-size",
        "4",
    ]
    assert main(args) == 0
    recs = load_records(out)
    assert len(recs) == 8 and {r.scenario for r in recs} == {"single_hop", "multi_hop"}
    report = json.loads((tmp_path / "envs" / "train.report.json").read_text())
    assert report["config"]["complexity"] == "0-3" and report["gate"]["pass_rate"] == 1.0
    assert "gate pass rate 1.0000" in capsys.readouterr().err
    assert main(args) == 0  # nothing left to do: resumes and writes nothing
    assert len(load_records(out)) == 8
    assert main(["--check", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] == 8
    assert main(["--stats", str(out)]) == 0
    assert "tools (ours)" in capsys.readouterr().out
