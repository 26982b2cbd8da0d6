"""Sandbox semantics (FTRL feedback strings) and parity with FTRL's in-process executor."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ftrl_lab.core.ftrl_executor import inprocess_feedback, quiet_stdout
from ftrl_lab.core.records import default_test_set, load_records
from ftrl_lab.core.sandbox import CallResult, Sandbox, SandboxError, SandboxWarning, get_sandbox
from ftrl_lab.core.schema_args import example_tool_calls

ROOT = Path(__file__).resolve().parents[2]


def call(name, arguments, i=0):
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}


CODES = {
    "as_dict": "def as_dict(city):\n    return {'city': city, 'température': 21.5, 'ok': True}\n",
    "as_list": "def as_list(n):\n    return list(range(n))\n",
    "as_int": "def as_int(a, b=2):\n    return a * b\n",
    "as_none": "def as_none():\n    return None\n",
    "as_tuple": "def as_tuple():\n    return (1, 'x')\n",
    "as_str": "def as_str(s):\n    return s.upper()\n",
    "raises": "def raises(x):\n    raise ValueError(f'bad value {x!r}')\n",
    "key_error": "def key_error():\n    return {}['missing']\n",
    "not_json": "def not_json():\n    return {'s': {1, 2}}\n",
    "syntax": "def syntax(:\n    pass\n",
    "wrong_name": "def something_else():\n    return 1\n",
    "chatty": "import datetime\nprint('module level')\ndef chatty(x):\n    print('called with', x)\n"
    "    import sys\n    print('to stderr', file=sys.stderr)\n    return str(datetime.date(2024, 1, x))\n",
    "sleepy": "import time\ndef sleepy(s):\n    time.sleep(s)\n    return 'woke'\n",
    "big": "def big(n):\n    return 'x' * n\n",
    "die": "import os\ndef die(code):\n    os._exit(code)\n",
    "echo": "def echo(i):\n    return {'i': i}\n",
}


# The semantics tests use tool sources with module-level imports, run as standalone modules run
# them (exec mode "fresh"); FTRL's own mode (the default) is tested by test_exec_modes_* and the
# parity tests below.
FRESH = "fresh"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(n_workers=2, timeout=2.0, grace=1.0, exec_mode=FRESH) as s:
        yield s


def contents(sb, calls, codes=CODES):
    return [r.content for r in sb.run(codes, calls)]


def test_return_types_follow_ftrl(sb):
    got = sb.run(
        CODES,
        [
            call("as_dict", {"city": "Zürich"}),
            call("as_list", {"n": 3}),
            call("as_int", {"a": 4}),
            call("as_none", {}),
            call("as_tuple", {}),
            call("as_str", {"s": "abc"}),
        ],
    )
    assert [r.content for r in got] == [
        '{"city": "Zürich", "température": 21.5, "ok": true}',
        "[0, 1, 2]",
        "8",
        "None",
        "(1, 'x')",
        "ABC",
    ]
    assert all(r.ok and r.error is None for r in got)
    assert [r.name for r in got][:2] == ["as_dict", "as_list"]


def test_errors_use_ftrl_wording(sb):
    got = sb.run(
        CODES,
        [
            call("raises", {"x": 1}),
            call("key_error", {}),
            call("not_json", {}),
            call("no_such_tool", {}),
            call("as_int", "{not json"),
            call("as_int", "[1, 2]"),
            call("as_int", {}),
            call("as_int", {"a": 1, "zzz": 2}),
            call("syntax", {}),
            call("wrong_name", {}),
        ],
    )
    c = [r.content for r in got]
    assert c[0] == "an error occured when call raises: bad value 1"
    assert c[1] == "an error occured when call key_error: 'missing'"
    assert c[2] == "an error occured when call not_json: Object of type set is not JSON serializable"
    assert c[3] == "an error occured when call no_such_tool: 'no_such_tool'"
    assert c[4].startswith("an error occured when call as_int: Expecting property name")
    assert c[5] == "an error occured when call as_int: as_int() argument after ** must be a mapping, not list"
    assert c[6] == "an error occured when call as_int: as_int() missing 1 required positional argument: 'a'"
    assert c[7] == "an error occured when call as_int: as_int() got an unexpected keyword argument 'zzz'"
    assert c[8] == "an error occured when call syntax: invalid syntax (<string>, line 1)"
    assert c[9] == "an error occured when call wrong_name: name wrong_name is not defined"
    assert not any(r.ok for r in got)
    assert got[0].error == "ValueError: bad value 1"
    # identical to FTRL's in-process executor, message for message
    calls = [
        call(n, a)
        for n, a in [
            ("raises", {"x": 1}),
            ("key_error", {}),
            ("not_json", {}),
            ("no_such_tool", {}),
            ("as_int", "{not json"),
            ("as_int", "[1, 2]"),
            ("as_int", "null"),
            ("syntax", {}),
            ("wrong_name", {}),
        ]
    ]
    assert contents(sb, calls) == inprocess_feedback(CODES, calls, mode=FRESH)


def test_malformed_calls_do_not_crash(sb):
    odd = [
        {"id": "a"},
        {"id": "b", "function": {"name": "as_str"}},
        {"id": "c", "function": {"name": "as_int", "arguments": {"a": 3}}},
        {"id": "d", "function": {"name": ["x"], "arguments": "{}"}},
    ]
    got = sb.run(CODES, odd)
    assert got[0].content == "an error occured when call None: 'function'"
    assert got[1].content == "an error occured when call as_str: 'arguments'"
    assert got[2].content.startswith("an error occured when call as_int: the JSON object must be str")
    assert got[3].content == "an error occured when call ['x']: unhashable type: 'list'"


def test_prints_are_captured_not_shown(sb, capfd):
    r = sb.run(CODES, [call("chatty", {"x": 5})])[0]
    assert r.content == "2024-01-05" and r.ok
    assert r.stdout == "module level\ncalled with 5\nto stderr\n"
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_module_level_code_runs_on_every_call(sb):
    got = sb.run(CODES, [call("chatty", {"x": 1}), call("chatty", {"x": 2})])
    assert all(r.stdout.startswith("module level\n") for r in got)


def test_output_is_truncated_with_marker():
    with Sandbox(n_workers=1, max_output=1000, max_stdout=50, exec_mode=FRESH) as s:
        big, printed = s.run(
            {**CODES, "spam": "def spam():\n    print('y' * 500)\n    return 1\n"},
            [call("big", {"n": 5000}), call("spam", {})],
        )
    assert big.truncated and big.ok
    assert big.content.startswith("x" * 1000) and "output truncated by the sandbox: 5000 characters" in big.content
    assert len(big.content) < 1100
    assert printed.stdout.startswith("y" * 50) and "451 more characters" in printed.stdout  # 450 + newline
    assert not printed.truncated


def test_timeout_is_reported_and_next_call_works(sb):
    t = time.monotonic()
    got = sb.run(CODES, [call("sleepy", {"s": 30}), call("sleepy", {"s": 0})], timeout=1.0)
    assert time.monotonic() - t < 5
    assert got[0].content == "an error occured when call sleepy: Function sleepy timed out after 1.000000 seconds."
    assert not got[0].ok and 0.9 < got[0].seconds < 3
    assert got[1].content == "woke"


def test_cpu_time_limit_stops_a_tool_that_ignores_the_timer():
    code = {
        "spin": "import signal\ndef spin():\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    while True:\n        pass\n"
    }
    with Sandbox(n_workers=1, timeout=60.0, cpu_limit=1.0, exec_mode=FRESH) as s:  # 1-2 s of CPU, however busy we are
        r = s.run(code, [call("spin", {})])[0]
        assert s.restarts == 0  # the worker stopped it itself
        assert r.content == "an error occured when call spin: Function spin exceeded its CPU-time limit of 1 seconds."
        assert s.run(CODES, [call("as_int", {"a": 2})])[0].content == "4"


def test_order_is_kept_across_workers(sb):
    calls = [call("echo", {"i": i}, i) for i in range(500)]
    assert contents(sb, calls) == [json.dumps({"i": i}) for i in range(500)]


def test_workers_share_one_hash_seed(sb):
    codes = {"s": "def s():\n    return str({'alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'})\n"}
    got = contents(sb, [call("s", {}, i) for i in range(64)], codes)  # spread over both workers
    assert len(set(got)) == 1


def test_run_batch_keeps_items_apart(sb):
    other = {"echo": "def echo(i):\n    return -i\n"}
    a, b = sb.run_batch([(CODES, [call("echo", {"i": 1})]), (other, [call("echo", {"i": 1}), call("echo", {"i": 2})])])
    assert [r.content for r in a] == ['{"i": 1}'] and [r.content for r in b] == ["-1", "-2"]


def test_dead_worker_is_replaced_and_others_unaffected(sb):
    before = set(sb.worker_pids())
    calls = [call("echo", {"i": 0}), call("die", {"code": 3}), call("echo", {"i": 2}), call("echo", {"i": 3})]
    got = sb.run(CODES, calls)
    assert got[1].content == ("an error occured when call die: the tool ended its sandbox process (exit status 3)")
    assert [r.content for r in got[::2]] == ['{"i": 0}', '{"i": 2}']
    assert got[3].content == '{"i": 3}'
    assert set(sb.worker_pids()) == before  # the zygote lives on; only that child died
    assert sb.run(CODES, [call("as_int", {"a": 5})])[0].content == "10"


def test_thread_safety(sb):
    errors = []

    def worker(k):
        try:
            calls = [call("echo", {"i": k * 100 + i}) for i in range(40)]
            got = contents(sb, calls)
            assert got == [json.dumps({"i": k * 100 + i}) for i in range(40)]
        except Exception as e:  # collected: an assert in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_feedback_messages_like_ftrl(sb):
    calls = [call("as_int", {"a": 2}, 7), call("nope", {}, 8)]
    assert sb.feedback(CODES, calls) == [
        {"role": "tool", "content": "4", "tool_call_id": "call_7"},
        {"role": "tool", "content": "an error occured when call nope: 'nope'", "tool_call_id": "call_8"},
    ]


def test_each_environment_gets_a_fresh_process(sb):
    """State left by one environment (globals of imported modules, files, pid) is gone in the
    next one; within one environment the calls share their child process."""
    codes = {
        "mark": "import json, os\ndef mark():\n    json.MARK = 1\n    open('left', 'w').write('x')\n"
        "    return os.getpid()\n",
        "look": "import json, os\ndef look():\n    return [hasattr(json, 'MARK'), os.path.exists('left'), os.getpid()]\n",
    }
    (a1, a2), (b,) = sb.run_batch([(codes, [call("mark", {}), call("look", {})]), (codes, [call("look", {})])])
    assert json.loads(a2.content)[:2] == [False, True] and json.loads(a2.content)[2] == int(a1.content)
    assert json.loads(b.content)[:2] == [False, False] and json.loads(b.content)[2] != int(a1.content)


def test_close_removes_processes_and_directories():
    s = Sandbox(n_workers=2, exec_mode=FRESH)
    procs = [s._zygote.proc]
    dirs = [s._zygote.workdir]
    assert s.run(CODES, [call("as_int", {"a": 1})])[0].content == "2"
    s.close()
    s.close()
    assert all(p.poll() is not None for p in procs)
    assert not any(os.path.exists(d) for d in dirs)
    with pytest.raises(SandboxError):
        s.run(CODES, [call("as_int", {"a": 1})])


def test_shared_instance():
    a, b = get_sandbox(), get_sandbox()
    assert a is b
    r = a.run(CODES, [call("as_str", {"s": "q"})])[0]
    assert isinstance(r, CallResult)
    assert (r.name, r.arguments, r.content, r.ok, r.error, r.stdout, r.truncated) == (
        "as_str",
        '{"s": "q"}',
        "Q",
        True,
        None,
        "",
        False,
    )


def test_protections_are_reported(sb):
    prot = sb.protections()
    assert prot["audit_hook"] and prot["read_allowlist"] and prot["parent_watchdog"]
    assert prot["process_per_environment"] and prot["rlimits"] and prot["no_new_processes"]
    if prot["bubblewrap"]:  # the boundary, the same as root and as a normal user
        for layer in ("filesystem_view", "pid_namespace", "network_namespace", "private_tmpfs", "no_capabilities"):
            assert prot[layer], (layer, sb.protection_notes())
    elif shutil.which("bwrap"):
        pytest.fail(f"bwrap is installed but not used: {sb.protection_notes().get('bubblewrap')}")
    if importlib.util.find_spec("seccomp") or importlib.util.find_spec("pyseccomp"):
        assert prot["seccomp"], sb.protection_notes()


def test_fallback_without_bubblewrap_says_so():
    with pytest.warns(SandboxWarning, match="without bubblewrap"):
        s = Sandbox(n_workers=1, use_bwrap=False)
    with s:
        prot, notes = s.protections(), s.protection_notes()
        assert not prot["bubblewrap"] and not prot["filesystem_view"] and not prot["pid_namespace"]
        assert notes["bubblewrap"] == "disabled by configuration"
        assert prot["process_per_environment"] and prot["audit_hook"]
        assert s.run(CODES, [call("as_int", {"a": 6})])[0].content == "12"


MODULE_LEVEL = {
    "stamp": "from datetime import date\nBASE = 10\ndef stamp(n):\n    return str(date(2024, 1, n)) + str(BASE)\n",
    "hashed": "def hashed(s):\n    return sha256(s.encode()).hexdigest()[:8] + json.dumps([s])\n",
    "who": "def who():\n    return who.__module__\n",
    "seen": "def seen(x, _a=sorted(arguments)):\n    return _a\n",
}


@pytest.mark.parametrize("mode", ["ftrl", "fresh"])
def test_exec_modes_match_inprocess(sb, mode):
    calls = [call("stamp", {"n": 3}), call("hashed", {"s": "a"}), call("who", {}), call("seen", {"x": 1})]
    got = [r.content for r in sb.run(MODULE_LEVEL, calls, exec_mode=mode)]
    assert got == inprocess_feedback(MODULE_LEVEL, calls, mode=mode)
    if mode == "ftrl":  # module-level names invisible, FTRL's module names visible
        assert got[0] == "an error occured when call stamp: name 'date' is not defined"
        assert got[1] == 'ca978112["a"]' and got[2].endswith("name 'who' is not defined") and got[3] == '["x"]'
    else:
        assert got[0] == "2024-01-0310" and "name 'sha256' is not defined" in got[1]
        assert got[2] == "None" and got[3].endswith("name 'arguments' is not defined")


def test_exec_mode_is_checked_and_defaults_to_ftrl(sb):
    assert Sandbox.__init__.__kwdefaults__["exec_mode"] == "ftrl"
    assert sb.run(MODULE_LEVEL, [call("stamp", {"n": 3})], exec_mode="ftrl")[0].content.endswith(
        "'date' is not defined"
    )
    with Sandbox(n_workers=1) as default:
        assert default.run(MODULE_LEVEL, [call("stamp", {"n": 3})])[0].content.endswith("'date' is not defined")
    with pytest.raises(SandboxError, match="unknown exec mode"):
        sb.run(MODULE_LEVEL, [call("stamp", {"n": 3})], exec_mode="nope")


def test_worker_imports_are_light():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ftrl_lab.core.sandbox_worker"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stderr
    mods = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert "ftrl_lab" in mods
    assert not mods & {"torch", "transformers", "pandas", "numpy", "pyarrow"}


# --- parity with FTRL's own executor on the FTRL test set --------------------------------
@pytest.fixture(scope="module")
def ftrl_records():
    path = default_test_set()
    if not path.exists():
        pytest.skip(f"FTRL test set not found at {path} (../shared absent)")
    return load_records(path)


def synthesised_calls(rec) -> list[dict]:
    calls = [c for t in rec.tools for c in example_tool_calls(t)]
    first = rec.tool_names[0]
    calls += [call("no_such_tool", {}), call(first, "{not json"), call(first, "[1, 2]")]
    return calls


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning")
@pytest.mark.parametrize("mode", ["ftrl", "fresh"])
def test_parity_with_ftrl_inprocess(ftrl_records, mode):
    items = [(r.codes, synthesised_calls(r)) for r in ftrl_records]
    with quiet_stdout():
        reference = [inprocess_feedback(codes, calls, mode=mode) for codes, calls in items]
    if mode == "ftrl":  # the set's tools with module-level imports fail as in FTRL, not silently
        assert sum("is not defined" in text for ref in reference for text in ref) > 30
    with Sandbox(timeout=10.0, exec_mode=mode) as s:
        got = s.run_batch(items)
        restarts = s.restarts
    n = sum(len(c) for _, c in items)
    assert n > 10_000
    mismatched = [
        (calls[k]["function"], ref[k], res[k].content)
        for (_, calls), ref, res in zip(items, reference, got)
        for k in range(len(calls))
        if ref[k] != res[k].content
    ]
    assert mismatched == [], f"{len(mismatched)} of {n} calls differ, first: {mismatched[:3]}"
    assert restarts == 0
    assert not any("sandbox" in r.content for rr in got for r in rr)


@pytest.mark.shared
def test_every_tool_code_runs_in_the_sandbox(ftrl_records):
    probes, expected = [], []
    for r in ftrl_records:
        for name, src in r.codes.items():
            probe = f"{src}\n\ndef __probe__():\n    return callable(globals().get({name!r}))\n"
            probes.append(({"__probe__": probe}, [call("__probe__", {})]))
            expected.append(name)
    with Sandbox(exec_mode=FRESH) as s:  # the probe looks the tool up in its module's globals
        got = s.run_batch(probes)
    failed = [(name, rr[0].content) for name, rr in zip(expected, got) if rr[0].content != "True"]
    assert len(expected) > 1500 and failed == []


def test_forgotten_sandbox_is_cleaned_up():
    import gc

    s = Sandbox(n_workers=1)
    proc, workdir = s._zygote.proc, s._zygote.workdir
    del s
    gc.collect()
    assert proc.poll() is not None and not os.path.exists(workdir)


def test_forked_child_does_not_touch_the_parents_workers(sb):
    pids = sb.worker_pids()
    child = os.fork()
    if child == 0:  # the child uses the sandbox: it must start its own workers
        try:
            ok = sb.run(CODES, [call("as_int", {"a": 3})])[0].content == "6" and not set(sb.worker_pids()) & set(pids)
            sb.close()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sb.worker_pids() == pids
    assert sb.run(CODES, [call("as_int", {"a": 4})])[0].content == "8"
