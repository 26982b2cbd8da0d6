"""The bad-file table: ~60 unusable record files, each given to ``envgen --check`` and to
``evaluate``. Every one must end with exit status 2 and exactly one line on stderr that names
the file and the line / field, and no traceback; ``--debug`` brings the traceback back."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TOY

from ftrl_lab.core.records import RecordError, load_records

DRIVER = Path(__file__).resolve().parent / "_cli_driver.py"
ROOT = Path(__file__).resolve().parents[2]
GOOD = json.loads(TOY.read_text(encoding="utf-8").splitlines()[0])


def decoded(row: dict) -> dict:
    """The good record with tools, codes and unsolved_set as Python objects."""
    out = json.loads(json.dumps(row))
    for key in ("tools", "codes", "unsolved_set"):
        out[key] = json.loads(out[key])
    return out


def encoded(rec: dict) -> dict:
    out = dict(rec)
    for key in ("tools", "codes", "unsolved_set"):
        if key in out and not isinstance(out[key], str):
            out[key] = json.dumps(out[key])
    return out


def mutated(change) -> str:
    """A good first line and, on line 2, the good record after ``change(rec)``."""
    rec = decoded(GOOD)
    change(rec)
    return json.dumps(GOOD) + "\n" + json.dumps(encoded(rec)) + "\n"


def setter(path: str, value):
    def change(rec):
        target, keys = rec, path.split(".")
        for k in keys[:-1]:
            target = target[int(k) if k.isdigit() else k]
        last = keys[-1]
        target[int(last) if last.isdigit() else last] = value

    return change


def deleter(key: str):
    return lambda rec: rec.pop(key)


PROPS = "tools.0.function.parameters"
RECORD_CASES = {  # name: (change, text that the error line must contain)
    "missing_messages": (deleter("messages"), "field 'messages'"),
    "missing_tools": (deleter("tools"), "field 'tools'"),
    "missing_codes": (deleter("codes"), "field 'codes'"),
    "missing_unsolved_set": (deleter("unsolved_set"), "field 'unsolved_set'"),
    "missing_data_source": (deleter("data_source"), "field 'data_source'"),
    "missing_split": (deleter("split"), "field 'split'"),
    "missing_answer": (deleter("answer"), "field 'answer'"),
    "messages_a_dict": (setter("messages", {"role": "user"}), "field 'messages'"),
    "messages_empty": (setter("messages", []), "field 'messages'"),
    "message_without_role": (setter("messages.0", {"content": "hi"}), "field 'messages[0]'"),
    "message_unknown_role": (setter("messages.0.role", "robot"), "field 'messages[0]'"),
    "message_a_string": (setter("messages", ["hello"]), "field 'messages[0]'"),
    "content_parts": (setter("messages.0.content", [{"type": "text", "text": "hi"}]), "messages[0].content"),
    "content_parts_odd": (setter("messages.0.content", [{"text": None}, {"text": 3}, 5]), "messages[0].content"),
    "content_an_int": (setter("messages.0.content", 42), "messages[0].content"),
    "tool_calls_a_dict": (setter("messages.0.tool_calls", {"name": "f"}), "messages[0].tool_calls"),
    "tool_call_without_function": (setter("messages.0.tool_calls", [{"id": "c"}]), "messages[0].tool_calls[0]"),
    "tools_not_json": (setter("tools", "[{not json"), "field 'tools'"),
    "tools_a_dict": (setter("tools", {"a": 1}), "field 'tools'"),
    "tool_without_name": (lambda r: r["tools"][0]["function"].pop("name"), "field 'tools[0]"),
    "tool_name_with_spaces": (setter("tools.0.function.name", "capital lookup"), "field 'tools[0]"),
    "tool_not_a_dict": (setter("tools.0", "capital_lookup"), "field 'tools[0]"),
    "parameters_an_array_schema": (setter(PROPS, {"type": "array"}), "field 'tools[0]"),
    "parameters_bad_schema": (setter(PROPS + ".properties.country.type", "strnig"), "field 'tools[0]"),
    "required_undeclared": (setter(PROPS + ".required", ["country", "planet"]), "tools[0]/function/parameters"),
    "duplicate_tool_names": (setter("tools.1.function.name", "capital_lookup"), "field 'tools'"),
    "codes_not_json": (setter("codes", "{'a': 1"), "field 'codes'"),
    "codes_a_list": (setter("codes", ["def f(): pass"]), "field 'codes'"),
    "code_an_int": (setter("codes.capital_lookup", 7), "codes[capital_lookup]"),
    "code_syntax_error": (setter("codes.capital_lookup", "def capital_lookup(:\n"), "codes[capital_lookup]"),
    "code_wrong_function": (setter("codes.capital_lookup", "def other():\n    return 1\n"), "codes[capital_lookup]"),
    "code_missing": (lambda r: r["codes"].pop("city_population"), "field 'codes'"),
    "unsolved_set_empty": (setter("unsolved_set", {}), "field 'unsolved_set'"),
    "unsolved_set_unknown_tool": (setter("unsolved_set", {"nope": ["x"]}), "unsolved_set[nope]"),
    "unsolved_set_not_lists": (setter("unsolved_set", {"capital_lookup": "Paris"}), "unsolved_set[capital_lookup]"),
    "unsolved_set_a_list": (setter("unsolved_set", ["Paris"]), "field 'unsolved_set'"),
    "unsolved_name_with_newline": (setter("unsolved_set", {"a\nb": ["x"]}), "unsolved_set[a"),
    "solve_rate_text": (setter("solve_rate", "abc"), "field 'solve_rate'"),
    "solve_rate_out_of_range": (setter("solve_rate", 2.5), "field 'solve_rate'"),
    "messages_deep_json": (setter("messages", "[" * 100_000 + "]" * 100_000), "field 'messages'"),
}

FILE_CASES = {  # name: (file name, bytes or None for a special path, expected text)
    "missing_path": ("absent.jsonl", None, "no such record file"),
    "directory": ("folder.jsonl", "DIR", "is a directory"),
    "unknown_suffix": ("records.txt", json.dumps(GOOD).encode(), "unknown record file type"),
    "empty_file": ("empty.jsonl", b"", "no records"),
    "blank_lines_only": ("blank.jsonl", b"\n\n  \n", "no records"),
    "non_utf8_byte": ("latin1.jsonl", json.dumps(GOOD).encode() + b"\n" + b'{"messages": "caf\xe9"}\n', ":2"),
    "malformed_json": ("bad.jsonl", b'{"messages": [}\n', ":1"),
    "cut_off_line": ("cut.jsonl", (json.dumps(GOOD) + "\n" + json.dumps(GOOD)[:200]).encode(), ":2"),
    "deep_nesting": ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", ":1"),
    "deep_nesting_in_field": (
        "deep_field.jsonl",
        json.dumps({**GOOD, "tools": "[" * 100_000 + "]" * 100_000}).encode(),
        "field 'tools'",
    ),
    "huge_int": ("int.jsonl", b'{"solve_rate": ' + b"9" * 5000 + b"}\n", ":1"),
    "huge_line": ("huge.jsonl", b'{"messages": "' + b"x" * 5_000_000 + b"\n", ":1"),
    "line_is_array": ("array.jsonl", b"[1, 2, 3]\n", ":1"),
    "line_is_string": ("string.jsonl", b'"a record"\n', ":1"),
    "line_is_null": ("null.jsonl", b"null\n", ":1"),
    "binary_garbage": ("image.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ":1"),
    "utf16_file": ("utf16.jsonl", json.dumps(GOOD).encode("utf-16"), ":1"),
    "pretty_printed_json": ("pretty.json", json.dumps(GOOD, indent=2).encode(), ":1"),
    "parquet_holding_jsonl": ("records.parquet", json.dumps(GOOD).encode(), "Parquet"),
    "parquet_empty": ("empty.parquet", b"", "Parquet"),
    "bom_then_bad_line": ("bom_bad.jsonl", b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n{oops\n", ":2"),
}


def build_table(folder: Path) -> list[tuple[str, Path, str]]:
    rows = []
    for name, (file_name, data, expect) in FILE_CASES.items():
        path = folder / f"{name}_{file_name}"
        if data == "DIR":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
        rows.append((name, path, expect))
    for name, (change, expect) in RECORD_CASES.items():
        path = folder / f"{name}.jsonl"
        path.write_text(mutated(change), encoding="utf-8")
        rows.append((name, path, expect))
    return rows


COMMANDS = {
    "envgen": ("ftrl_lab.envgen.__main__", lambda p, out: ["--check", str(p), "--probe-tools", "gold"]),
    # a model path that does not exist: should a bad file ever load, the run stops at once
    "evaluate": (
        "ftrl_lab.agent.evaluate",
        lambda p, out: ["ftrl", "--data", str(p), "--out", str(out), "--model", str(out / "no_such_model")],
    ),
}


def run_table(module: str, argvs: list[list[str]], tmp_path: Path) -> list[dict]:
    cases = tmp_path / f"{module}.cases.json"
    cases.write_text(json.dumps(argvs), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(DRIVER), module, str(cases)], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def check_error_line(res: dict, path: Path, expect: str) -> str | None:
    """What is wrong with one run's exit status and stderr, or None."""
    lines = res["stderr"].splitlines()
    if res["status"] != 2:
        return f"status {res['status']}"
    if "Traceback" in res["stderr"]:
        return "traceback"
    if len(lines) != 1:
        return f"{len(lines)} stderr lines"
    if str(path) not in lines[0]:
        return "file not named"
    if expect not in lines[0]:
        return f"no {expect!r}"
    if len(lines[0]) > 800:
        return "too long"
    return None


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return build_table(tmp_path_factory.mktemp("bad_files"))


def test_the_table_is_large_enough(table):
    assert len(table) >= 50


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_bad_file_gets_one_clear_line_and_status_2(command, table, tmp_path):
    module, argv = COMMANDS[command]
    results = run_table(module, [argv(path, tmp_path / "run") for _, path, _ in table], tmp_path)
    failures = []
    for (name, path, expect), res in zip(table, results):
        problem = check_error_line(res, path, expect)
        if problem:
            failures.append(f"{name}: {problem}: {res['stderr'][-300:]!r}")
    assert not failures, f"{len(failures)} of {len(table)} bad files:\n" + "\n".join(failures)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_real_command_line_and_debug_flag(command, table, tmp_path):
    """``python -m`` itself (not the forked driver), on two bad files; ``--debug`` shows the traceback."""
    module, argv = COMMANDS[command]
    cli = "ftrl_lab.envgen" if command == "envgen" else "ftrl_lab.evaluate"
    by_name = {name: path for name, path, _ in table}
    for name in ("deep_nesting", "content_parts"):
        args = argv(by_name[name], tmp_path / "run")
        proc = subprocess.run([sys.executable, "-m", cli, *args], capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr[-2000:]
        assert str(by_name[name]) in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", cli, *argv(by_name["content_parts"], tmp_path / "run"), "--debug"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "RecordError" in proc.stderr


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + TOY.read_bytes())
    assert [r.question for r in load_records(path)] == [r.question for r in load_records(TOY)]


def test_skip_invalid_keeps_going_past_undecodable_lines(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(GOOD).encode(),
        b"\xff\xfe",
        b"[" * 50_000,
        b'{"x": ' + b"1" * 5000 + b"}",
        json.dumps(GOOD).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    recs = load_records(path, skip_invalid=True)
    assert len(recs) == 2 and [e.line for e in recs.skipped] == [2, 3, 4]
    with pytest.raises(RecordError, match=r"mixed.jsonl:2: not UTF-8"):
        load_records(path)
