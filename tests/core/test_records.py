import copy
import json

import pytest

from ftrl_lab.core.records import (
    FTRL_INSTRUCTION,
    EnvRecord,
    RecordError,
    code_errors,
    load_records,
    save_records,
    validate_record,
)

CODE = "def lookup(city):\n    return {'mayor': 'Ana Brel'} if city == 'Qor' else 'not found'\n"
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Find a city's mayor.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def make_record(**over) -> EnvRecord:
    fields = dict(
        messages=[{"role": "user", "content": FTRL_INSTRUCTION + "Who is the mayor of Qor?"}],
        tools=[TOOL],
        codes={"lookup": CODE},
        unsolved_set={"lookup": ["Ana Brel"]},
        solve_rate=0.0,
        data_source="self/single_hop",
        split="test",
        answer="Ana Brel",
    )
    fields.update(over)
    return EnvRecord(**copy.deepcopy(fields))


def test_valid_record_views():
    rec = make_record()
    assert validate_record(rec) == []
    assert rec.question == "Who is the mayor of Qor?"
    assert rec.scenario == "single_hop" and rec.tool_names == ["lookup"] and rec.n_unsolved == 1


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip(tmp_path, suffix):
    recs = [make_record(), make_record(answer="x", extra={"env_meta": "{}"})]
    recs[1].messages.append(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Qor"}'}}
            ],
        }
    )
    path = save_records(recs, tmp_path / f"r{suffix}")
    back = load_records(path)
    assert back == recs


def test_parquet_is_datasets_compatible(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = save_records([make_record()] * 3, tmp_path / "r.parquet")
    ds = datasets.Dataset.from_parquet(str(path))
    assert ds.num_rows == 3 and json.loads(ds[0]["unsolved_set"]) == {"lookup": ["Ana Brel"]}


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.tools[0]["function"].pop("name"), "tools[0]/function"),
        (
            lambda r: r.tools[0]["function"]["parameters"]["properties"].update(x={"type": "strng"}),
            "tools[0]/function/parameters",
        ),
        (
            lambda r: r.tools[0]["function"]["parameters"].update(required=["nope"]),
            "tools[0]/function/parameters/required",
        ),
        (lambda r: r.codes.update(lookup="def other():\n    return 1\n"), "codes[lookup]"),
        (lambda r: r.codes.update(lookup="def lookup(:\n"), "codes[lookup]"),
        (lambda r: r.unsolved_set.update(ghost=["x"]), "unsolved_set[ghost]"),
        (lambda r: r.codes.pop("lookup"), "codes"),
        (lambda r: setattr(r, "solve_rate", 2.0), "solve_rate"),
        (lambda r: r.messages.append({"role": "robot", "content": "x"}), "messages[1]"),
    ],
)
def test_validation_names_field(mutate, field):
    rec = make_record()
    mutate(rec)
    errors = validate_record(rec)
    assert errors and errors[0][0] == field, errors


def test_parse_codes_false_checks_only_that_codes_are_strings():
    rec = make_record()
    rec.codes["lookup"] = "def lookup(:\n"
    assert validate_record(rec, parse_codes=False) == []
    assert (
        validate_record(rec)
        == code_errors("lookup", rec.codes["lookup"])
        == [("codes[lookup]", "does not parse: invalid syntax (line 1)")]
    )
    rec.codes["lookup"] = 42
    assert validate_record(rec, parse_codes=False) == [("codes[lookup]", "expected Python source, got int")]
    assert code_errors("lookup", "lookup = lambda city: city\n") == [
        ("codes[lookup]", "does not define function 'lookup' (defines [])")
    ]
    assert code_errors("lookup", CODE) == []


def test_property_schemas_checked_once_still_catch_bad_ones():
    rec = make_record()
    assert validate_record(rec) == [] and validate_record(rec) == []  # the second time from the cache
    props = rec.tools[0]["function"]["parameters"]["properties"]
    props["zone"] = {"type": "string", "enum": {"a", "b"}}  # not JSON: checked, never cached
    assert validate_record(rec)[0][0] == "tools[0]/function/parameters"
    props["zone"] = {"type": "string", "minLength": "two"}
    assert validate_record(rec)[0][0] == "tools[0]/function/parameters"
    props["zone"] = {"type": "string", "minLength": 2}
    assert validate_record(rec) == []


def test_bad_file_errors_name_file_line_field(tmp_path):
    good = json.dumps(make_record().to_row())
    bad_tool = make_record()
    bad_tool.unsolved_set = {"ghost": ["x"]}
    path = tmp_path / "envs.jsonl"
    path.write_text("\n".join([good, "{not json", json.dumps(bad_tool.to_row()), good]) + "\n")
    with pytest.raises(RecordError) as e:
        load_records(path)
    assert f"{path}:2" in str(e.value) and "malformed JSON" in str(e.value)
    recs = load_records(path, skip_invalid=True)
    assert len(recs) == 2  # nothing valid is lost, after the bad lines too
    assert [(s.line, s.field) for s in recs.skipped] == [(2, None), (3, "unsolved_set[ghost]")]


def test_missing_and_undecodable_fields(tmp_path):
    row = make_record().to_row()
    row.pop("codes")
    with pytest.raises(RecordError, match="field 'codes'"):
        EnvRecord.from_row(row, source="x.jsonl", line=7)
    row = make_record().to_row()
    row["tools"] = "[{"
    with pytest.raises(RecordError, match=r"x.jsonl:7: field 'tools': not valid JSON"):
        EnvRecord.from_row(row, source="x.jsonl", line=7)


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="unknown record file type"):
        save_records([make_record()], tmp_path / "r.csv")


def test_ftrl_test_set_loads_and_validates(ftrl_test_records):
    assert len(ftrl_test_records) == 200
    assert {r.scenario for r in ftrl_test_records} == {
        "single_hop",
        "parallel_single_hop",
        "multi_hop",
        "parallel_multi_hop",
    }
    assert all(validate_record(r) == [] for r in ftrl_test_records)
    assert all(r.messages[0]["content"].startswith(FTRL_INSTRUCTION) for r in ftrl_test_records)
