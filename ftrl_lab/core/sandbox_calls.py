"""The call loop of one per-environment sandbox child: FTRL's exec + call, timed and captured.

Per call: the tool source (compiled once per child, cached by key) is exec'd with the namespace
semantics of the request's exec mode (:func:`ftrl_lab.core.ftrl_exec.load_tool`: FTRL's
exec-in-frame by default, or a fresh namespace) and the function called with the JSON
arguments, exactly as FTRL does; a wall-clock
timer (SIGALRM) and a CPU-time limit (RLIMIT_CPU / SIGXCPU) interrupt it; what it prints is
captured, bounded. Between the calls of one environment the interpreter state a tool may have
changed (builtins, sys.path, stdio, json/os/signal module attributes, ...) is put back. Across
environments nothing needs restoring: each environment has its own child process.

Results go to the parent as flat reply records (:mod:`ftrl_lab.core.sandbox_protocol`),
sent in batches at least every ``FLUSH_SECONDS``.

Stdlib only: imported by the worker inside the sandbox as a plain module.
"""

import binascii
import builtins
import io
import json
import marshal
import os
import signal
import sys
import time

try:  # a package module in the parent and in tests, a plain module inside the sandbox
    from ftrl_lab.core.ftrl_exec import load_tool
    from ftrl_lab.core.sandbox_protocol import encode_replies, encode_reply
except ImportError:
    from ftrl_exec import load_tool
    from sandbox_protocol import encode_replies, encode_reply

# The worker's own references to builtins a tool might overwrite during its call.
_str, _type, _dict, _list = str, type, dict, list
_dumps, _loads = json.dumps, json.loads
_a2b, _unmarshal = binascii.a2b_base64, marshal.loads

FLUSH_SECONDS = 0.005  # results are sent at least this often (and at the end)
FLUSH_COUNT = 64


class _Interrupt(BaseException):
    """Raised into tool code by the wall-clock timer or the CPU-time limit."""


class _Capture:
    """A bounded text sink standing in for sys.stdout / sys.stderr during a call."""

    __slots__ = ("parts", "n", "limit", "dropped")
    encoding = "utf-8"
    errors = "strict"

    def __init__(self, limit: int):
        self.parts, self.n, self.limit, self.dropped = [], 0, limit, 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.n
        if room >= len(s):
            self.parts.append(s)
            self.n += len(s)
        elif room > 0:
            self.parts.append(s[:room])
            self.n = self.limit
            self.dropped += len(s) - room
        else:
            self.dropped += len(s)
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def writable(self):
        return True

    def readable(self):
        return False

    def isatty(self):
        return False

    def fileno(self):
        raise io.UnsupportedOperation("fileno")

    @property
    def closed(self):
        return False

    def text(self) -> str:
        if not self.parts:
            return ""
        s = "".join(self.parts)
        if self.dropped:
            s += f"\n... [{self.dropped} more characters of printed output dropped by the sandbox]"
        return s


def truncate(content: str, limit: int) -> tuple[str, bool]:
    """Cut ``content`` to ``limit`` characters with a clear marker; (text, was_truncated)."""
    if len(content) <= limit:
        return content, False
    return (
        content[:limit] + f"\n... [output truncated by the sandbox: {len(content)} characters, the first {limit} shown]"
    ), True


def describe(e: BaseException) -> str:
    """``str(e)`` as FTRL reports it; non-Exception exits (SystemExit, ...) are named."""
    try:
        msg = _str(e)
    except _Interrupt:
        raise
    except BaseException:
        msg = f"<{type(e).__name__} whose message cannot be shown>"
    if not isinstance(e, Exception):
        msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return msg


class Pristine:
    """The interpreter state every call of a child starts from, snapshotted once in the zygote
    (after its imports and set-up) and inherited by every child it forks: a child's call loop
    compares against it and puts back what a tool changed, without copying anything itself.
    Also sets the signals a tool's timers or stray signals must not act on to "ignore"
    (inherited too)."""

    def __init__(self):
        import _signal

        self.builtins = dict(builtins.__dict__)
        self.sys_path = list(sys.path)
        self.meta_path = list(sys.meta_path)
        self.recursion = sys.getrecursionlimit()
        self.stdio = (sys.stdin, sys.stdout, sys.stderr)
        self.critical = {
            k: sys.modules[k]
            for k in ("json", "json.encoder", "json.decoder", "json.scanner", "os", "sys", "signal", "builtins", "time")
            if k in sys.modules
        }
        # the module namespaces the loop itself relies on, restored when a tool changes them
        self.namespaces = [
            (m.__dict__, dict(m.__dict__))
            for k, m in self.critical.items()
            if k.startswith("json") or k in ("os", "signal", "time")
        ]
        exec_module = sys.modules[load_tool.__module__]
        self.namespaces.append((exec_module.__dict__, dict(exec_module.__dict__)))
        self.ignored = [
            s
            for s in (
                signal.SIGVTALRM,
                signal.SIGPROF,
                signal.SIGXFSZ,
                signal.SIGPIPE,
                signal.SIGUSR1,
                signal.SIGUSR2,
                signal.SIGHUP,
            )
            if s
        ]
        for sig in self.ignored:
            _signal.signal(sig, _signal.SIG_IGN)


class CallLoop:
    """Runs the calls of one environment in this (child) process and sends the replies."""

    def __init__(self, sock, workdir: str, allow_flags: list, pristine: Pristine | None = None):
        import _signal
        import resource

        self.sock, self.workdir, self.allow = sock, workdir, allow_flags
        self.codes: dict = {}  # key -> code object or the compile error
        self.sources: dict = {}  # key -> source text not yet compiled
        self.compiled: dict = {}  # key -> base64 of the code object the parent compiled
        self.in_tool = False
        self.mode = "ftrl"  # the exec mode, set per request
        self.fired = 0
        self.cpu_soft = resource.RLIM_INFINITY
        self._resource, self._signal = resource, _signal
        self._sendall = sock.sendall
        self.pristine = pristine if pristine is not None else Pristine()
        self._handler = self._on_signal

    # signals -------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self.fired = signum
        if self.in_tool:
            raise _Interrupt(signum)

    def _arm(self, timeout: float, cpu_limit: float) -> None:
        sg = self._signal
        if sg.getsignal(signal.SIGALRM) is not self._handler:  # the tool may have replaced them
            sg.signal(signal.SIGALRM, self._handler)
        if sg.getsignal(signal.SIGXCPU) is not self._handler:
            sg.signal(signal.SIGXCPU, self._handler)
        used = time.process_time()
        if not used + cpu_limit <= self.cpu_soft < used + cpu_limit + 1:  # whole seconds only
            res = self._resource
            want = int(used + cpu_limit) + 1
            self.allow[0] = True
            try:
                res.setrlimit(res.RLIMIT_CPU, (want, res.RLIM_INFINITY))
                self.cpu_soft = want
            except (OSError, ValueError):
                pass
            finally:
                self.allow[0] = False
        self.fired = 0
        self.in_tool = True
        sg.setitimer(signal.ITIMER_REAL, timeout, 0.05)  # re-fires until disarmed

    def _disarm(self) -> None:
        self.in_tool = False
        self._signal.setitimer(signal.ITIMER_REAL, 0, 0)

    # one call ------------------------------------------------------------------------------
    def _code(self, key: str):
        code = self.codes.get(key)
        if code is None and key in self.compiled:
            code = self.codes[key] = _unmarshal(_a2b(self.compiled.pop(key)))
        if code is None:
            src = self.sources.pop(key)
            try:
                code = compile(src, "<string>", "exec", dont_inherit=True)
            except _Interrupt:
                raise
            except Exception as e:  # cached: the same error for every call, as FTRL's exec
                code = e
            self.codes[key] = code
        if isinstance(code, BaseException):
            code.__traceback__ = None
            raise code
        return code

    def _call(self, name: str, key: str, args_text: str) -> str:
        arguments = _loads(args_text)
        code = self._code(key)
        predict = load_tool(code, name, arguments, self.mode)(**arguments)
        if _type(predict) == _dict or _type(predict) == _list:  # exact types, as FTRL
            predict = _dumps(predict, ensure_ascii=False)
        elif _type(predict) != _str:
            predict = _str(predict)
        return predict

    def _guarded(self, name, key, args_text):
        """(ok, FTRL's text: the result or str(e), our error text naming the exception type)."""
        try:
            return True, self._call(name, key, args_text), None
        except _Interrupt:
            raise
        except BaseException as e:
            msg = describe(e)
            kind = _type(e).__name__
            return False, msg, msg if msg.startswith(kind) else (f"{kind}: {msg}" if msg else kind)

    def run_call(self, index: int, name: str, key: str, args_text: str, opts: dict) -> bytes:
        """Run one call; its reply record."""
        timeout, cpu_limit = opts["timeout"], opts["cpu_limit"]
        cap = _Capture(opts["max_stdout"])
        t0 = time.perf_counter()
        sys.stdout = sys.stderr = cap
        try:
            self._arm(timeout, cpu_limit)
            try:
                ok, text, error = self._guarded(name, key, args_text)
            finally:
                self._disarm()
        except _Interrupt:
            self._disarm()
            ok, text, error = False, "", None
        seconds = time.perf_counter() - t0
        if self.fired:  # timed out, even if the tool swallowed the interrupt and returned later
            ok = False
            if self.fired == signal.SIGXCPU:
                text = f"Function {name} exceeded its CPU-time limit of {cpu_limit:g} seconds."
            else:
                text = f"Function {name} timed out after {timeout:f} seconds."
            error = text
        text = "".join((text,))  # an exact str, whatever subclass the tool returned
        content = text if ok else f"an error occured when call {name}: {text}"
        limit = opts["max_output"]
        truncated = False
        if len(content) > limit:
            content, truncated = truncate(content, limit)
        if error is not None and len(error) > limit:
            error = truncate(error, limit)[0]
        self._restore()
        return encode_reply(index, ok, truncated, seconds, content, error, cap.text())

    def _restore(self) -> None:
        """Undo what a tool may have changed for the environment's later calls."""
        p = self.pristine
        sys.stdin, sys.stdout, sys.stderr = p.stdio
        bd = builtins.__dict__
        if len(bd) != len(p.builtins) or bd != p.builtins:
            bd.clear()
            bd.update(p.builtins)
        if sys.path != p.sys_path:
            sys.path[:] = p.sys_path
        if sys.meta_path != p.meta_path:
            sys.meta_path[:] = p.meta_path
        if sys.getrecursionlimit() != p.recursion:
            sys.setrecursionlimit(p.recursion)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            sys.settrace(None)
            sys.setprofile(None)
        for sig in p.ignored:
            if self._signal.getsignal(sig) != self._signal.SIG_IGN:
                self._signal.signal(sig, self._signal.SIG_IGN)
        for k, m in p.critical.items():
            if sys.modules.get(k) is not m:
                sys.modules[k] = m
        for d, snap in p.namespaces:
            if len(d) != len(snap) or d != snap:
                d.clear()
                d.update(snap)
        try:
            if os.getcwd() != self.workdir:
                os.chdir(self.workdir)
        except OSError:
            pass

    # the loop ------------------------------------------------------------------------------
    def serve(self, request: dict) -> None:
        """Run ``request["calls"]`` ([index, name, key, args_text]) and send their replies.
        ``request["sources"]``: key -> source text; ``request["compiled"]``: key -> base64 of
        the marshalled code object (the parent compiled it: the same ``compile`` call as here)."""
        self.sources.update(request.get("sources") or {})
        self.compiled.update(request.get("compiled") or {})
        opts = request["opts"]
        self.mode = opts.get("exec_mode", "ftrl")
        calls = request["calls"]
        clock, send = time.perf_counter, self._sendall
        pending: list = []
        since = clock()
        last = len(calls) - 1
        for n, (i, name, key, args_text) in enumerate(calls):
            try:
                record = self.run_call(i, name, key, args_text, opts)
            except _Interrupt:  # a late timer signal between calls: report, carry on
                self._disarm()
                sys.stdin, sys.stdout, sys.stderr = self.pristine.stdio
                text = f"Function {name} timed out after {opts['timeout']:f} seconds."
                record = encode_reply(
                    i, False, False, opts["timeout"], f"an error occured when call {name}: {text}", text, ""
                )
            pending.append(record)
            now = clock()
            if n == last or len(pending) >= FLUSH_COUNT or now - since >= FLUSH_SECONDS:
                send(encode_replies(pending))
                pending = []
                since = now
