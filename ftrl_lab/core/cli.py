"""Command-line entry points: a user error is one line on stderr and exit status 2.

Every ``python -m ftrl_lab.<tool>`` runs its ``main`` through :func:`run_cli`. A bad input
(a record file that cannot be used, a missing or unreadable path, a bad option value) prints
``error: <file>:<line>: field '<f>': <what>`` on one line and exits with status 2; ``--debug``
(anywhere on the command line) lets the exception through, with its traceback. Anything else
is a bug and keeps its traceback. A tool's own ``raise SystemExit("message")`` also becomes
``error: message`` and status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from ftrl_lab.core.records import RecordError

USER_ERROR_STATUS = 2
DEBUG_FLAG = "--debug"
MAX_MESSAGE_CHARS = 600


class UserError(Exception):
    """An error in what the user asked for (not a bug): reported in one line, no traceback."""


USER_ERRORS: tuple[type[BaseException], ...] = (RecordError, UserError, OSError, UnicodeError, ValueError)
"""What counts as the user's error: RecordError and UserError; OSError (a path that is missing,
a directory, unreadable); UnicodeError and ValueError (an input or option value that cannot be
used: the modules raise ValueError with a message naming what is wrong)."""


def one_line(error: BaseException, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The error as one printable line: line breaks escaped, long messages cut in the middle."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]} ... {text[-half:]}"
    return text


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a user error becomes one line on stderr and status 2 (unless ``--debug``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        return main(args) or 0
    except SystemExit as e:  # ``raise SystemExit("message")``: a user error said by the tool itself
        if not isinstance(e.code, str):
            raise
        print(f"error: {one_line(Exception(e.code))}", file=sys.stderr, flush=True)
        return USER_ERROR_STATUS
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"error: {one_line(e)} (rerun with {DEBUG_FLAG} for the traceback)", file=sys.stderr, flush=True)
        return USER_ERROR_STATUS
    except RecursionError as e:  # nesting that a reader did not bound: still the input's fault
        if debug:
            raise
        print(f"error: input nested too deeply ({one_line(e)})", file=sys.stderr, flush=True)
        return USER_ERROR_STATUS
