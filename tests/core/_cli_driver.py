"""Run one CLI's ``main`` through ``run_cli`` on many argument lists, each in a forked child.

``python tests/core/_cli_driver.py MODULE CASES.json`` imports ``MODULE.main`` once, then for
each argument list forks a child whose stderr goes to its own file, exactly as ``python -m
MODULE ARGS`` would run (an exception that ``run_cli`` lets through prints its traceback and
exits 1). Prints ``[{"status": ..., "stderr": ...}, ...]`` as JSON. The import is paid once, so
a table of bad files is affordable on a small machine.
"""

import importlib
import json
import os
import sys
import tempfile
import traceback

from ftrl_lab.core.cli import run_cli


def run_child(main, argv: list[str], err_path: str) -> None:
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    status = 1
    try:
        status = run_cli(main, argv)
    except SystemExit as e:  # argparse
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    sys.stderr.flush()
    os._exit(status)


def main() -> None:
    module, cases_path = sys.argv[1], sys.argv[2]
    cli_main = importlib.import_module(module).main
    results = []
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    for argv in cases:
        err = tempfile.NamedTemporaryFile(delete=False, suffix=".stderr").name
        pid = os.fork()
        if pid == 0:
            run_child(cli_main, argv, err)
        _, wait_status = os.waitpid(pid, 0)
        with open(err, encoding="utf-8", errors="backslashreplace") as f:
            results.append({"status": os.waitstatus_to_exitcode(wait_status), "stderr": f.read()})
        os.unlink(err)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
