"""HumanEval through the Engine and the sandbox: the problems, the code-extraction protocol
(proved on the canonical solutions written as a chat model would answer), resumable rows and
the command line (a tiny random model: it fails every problem, which is fine for the plumbing)."""

import json
import math
import re

import pytest

from ftrl_lab.agent import humaneval as he
from ftrl_lab.agent.general_ability import main as general_ability_main
from ftrl_lab.agent.humaneval import (
    HUMANEVAL_PROBLEMS,
    PROTOCOL,
    completion_from_response,
    extract_code,
    humaneval,
    humaneval_problems,
    load_rows,
    summarize,
)
from ftrl_lab.agent.models import tiny_model
from ftrl_lab.core.code_exec import check_program, run_programs
from ftrl_lab.core.records import RecordError
from ftrl_lab.core.sandbox import Sandbox


@pytest.fixture(scope="module")
def sb():
    with Sandbox(n_workers=2, timeout=5.0, grace=1.0) as s:
        yield s


def test_problems_are_the_164_in_task_id_order():
    problems = humaneval_problems()
    assert len(problems) == HUMANEVAL_PROBLEMS
    assert [p["task_id"] for p in problems[:12]] == [f"HumanEval/{i}" for i in range(12)]
    assert humaneval_problems(3) == problems[:3]
    assert {"prompt", "entry_point", "test", "canonical_solution"} <= set(problems[0])
    for bad in (0, 165):
        with pytest.raises(ValueError, match="between 1 and 164"):
            humaneval_problems(bad)


def passes(replies: list[str], problems: list[dict], sandbox) -> list[str]:
    programs = [
        check_program(p["prompt"], completion_from_response(r, p), p["test"], p["entry_point"])
        for r, p in zip(replies, problems)
    ]
    return [v.result for v in run_programs(programs, timeout=10.0, sandbox=sandbox)]


def test_canonical_solutions_written_as_chat_replies_pass(sb):
    """Every answer shape the protocol accepts, built from the canonical solutions: all 164 pass."""
    problems = humaneval_problems()
    shapes = {
        # the whole function (prompt + body) in a fenced block, with prose, a demo call and a main block
        "full function": lambda p: (
            "Sure! Here it is:\n```python\n" + p["prompt"] + p["canonical_solution"] + "\n"
            f"print({p['entry_point']}(*[]))\n"
            "if __name__ == '__main__':\n    raise SystemExit(1)\n```\nThis works because..."
        ),
        # only the body, in a block
        "body": lambda p: "```python\n" + p["canonical_solution"] + "```",
        # no fence at all: the body continues the prompt, cut at a top-level print
        "raw body": lambda p: p["canonical_solution"] + "\nprint('demo')\n",
        # a reasoning part first (thinking models)
        "after think": lambda p: (
            "<think>```python\nraise SystemExit\n```</think>```python\n" + p["prompt"] + p["canonical_solution"] + "```"
        ),
    }
    for name, make in shapes.items():
        results = passes([make(p) for p in problems], problems, sb)
        failed = [(p["task_id"], r) for p, r in zip(problems, results) if r != "passed"]
        assert failed == [], name


def test_wrong_or_unusable_replies_fail(sb):
    p = humaneval_problems(1)[0]
    replies = [
        "I cannot help with that.",
        "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```",
        "```python\ndef has_close_elements(numbers, threshold):\n    for x in numbers:\n        if x",  # cut off
        "",
    ]
    results = passes(replies, [p] * len(replies), sb)
    assert all(r.startswith("failed: ") for r in results), results
    assert results[1] == "failed: AssertionError" and "SyntaxError" in results[2]


def test_extraction_prefers_the_block_defining_the_entry_point():
    reply = "```\nfoo()\n```\ntext\n```python\ndef f(x):\n    return x\n```"
    assert extract_code(reply, "f") == "def f(x):\n    return x\n"
    assert extract_code("```py\nx = 1\n```", "f") == "x = 1\n"
    assert extract_code("no code", "f") == "no code"
    # definitions keep imports, helpers and decorated functions, and drop the rest
    problem = {"entry_point": "f", "prompt": ""}
    code = "import math\nprint(1)\n@staticmethod\ndef g():\n    pass\ndef f(x):\n    return g()\nf(2)\n"
    assert completion_from_response(code, problem) == (
        "\nimport math\n\n@staticmethod\ndef g():\n    pass\n\ndef f(x):\n    return g()\n"
    )
    assert completion_from_response("    return 1\nprint(2)", problem) == "    return 1\n"  # cut at a stop
    assert completion_from_response("x = 1\nreturn x", problem) == "    x = 1\n    return x\n"  # indented


def test_tiny_model_runs_every_stage_and_resumes(tmp_path, sb, monkeypatch):
    model, tok = tiny_model()
    path = tmp_path / "rows.jsonl"
    first = humaneval(model, tok, limit=3, max_new_tokens=8, batch_size=2, rows_path=path, sandbox=sb)
    assert first["n"] == 3 and first["reused"] == 0 and 0.0 <= first["pass_at_1"] <= 1.0
    assert [r["task_id"] for r in first["rows"]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(r["result"] == "passed" or r["result"].startswith(("failed", "timed out")) for r in first["rows"])
    assert all(r["protocol"] == PROTOCOL and r["completion_tokens"] <= 8 for r in first["rows"])
    assert first["prompt_format"]["protocol"] == PROTOCOL and first["prompt_format"]["max_new_tokens"] == 8
    assert len(path.read_text().splitlines()) == 3
    # complete: nothing is generated again; one more problem: only that one
    calls = []
    original = he.run_programs
    monkeypatch.setattr(
        he, "run_programs", lambda programs, **kw: calls.append(len(programs)) or original(programs, **kw)
    )
    again = humaneval(model, tok, limit=3, max_new_tokens=8, rows_path=path, sandbox=sb)
    assert again["reused"] == 3 and again["rows"] == first["rows"] and calls == []
    more = humaneval(model, tok, limit=4, max_new_tokens=8, rows_path=path, sandbox=sb)
    assert more["reused"] == 3 and calls == [1] and more["n"] == 4
    # rows of other settings are not reused
    other = humaneval(model, tok, limit=1, max_new_tokens=4, rows_path=path, sandbox=sb)
    assert other["reused"] == 0 and len(load_rows(path)) == 4 and len(load_rows(path, protocol=None)) == 4
    assert len(load_rows(path, max_new_tokens=4)) == 1


def test_rows_file_errors_name_the_line_and_field(tmp_path, caplog):
    path = tmp_path / "rows.jsonl"
    good = {"task_id": "HumanEval/0", "passed": True, "result": "passed", "protocol": PROTOCOL, "max_new_tokens": 8}
    path.write_text(json.dumps(good) + "\n" + '{"task_id": "HumanEval/1", "pass')  # cut off by an interruption
    assert load_rows(path) == [good] and "malformed JSON" in caplog.text
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "passed": "yes"}) + "\n")
    with pytest.raises(RecordError, match=r"rows.jsonl:2: field 'passed': expected bool"):
        load_rows(path)
    assert math.isnan(summarize([])["pass_at_1"]) and summarize([good])["pass_at_1"] == 1.0


def test_command_line_prints_pass_at_1_and_perplexity(tmp_path, capsys):
    model, tok = tiny_model()
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    argv = ["--model", str(tmp_path / "tiny"), "--humaneval", "2", "--max-new-tokens", "4", "--topics", "1"]
    assert general_ability_main([*argv, "--threads", "1", "--rows", str(tmp_path / "rows.jsonl")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^HumanEval pass@1: [01]\.\d{3} \([0-2]/2, [\d.]+ s\)$", out, re.M), out
    assert re.search(r"^perplexity: [\d.]+ \(\d+ tokens, 1 windows, ", out, re.M), out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["humaneval"]["n"] == 2 and math.isfinite(summary["perplexity"]["perplexity"])
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 2
