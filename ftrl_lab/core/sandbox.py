"""Isolated execution of FTRL tool calls: one fresh, locked-down process per environment.

``Sandbox.run(codes, calls)`` gives, per OpenAI-style tool call, the feedback string FTRL's
``get_feedback`` would give (the return value; dict/list -> ``json.dumps(ensure_ascii=False)``,
other -> ``str``; an error -> ``"an error occured when call <name>: <str(e)>"``), but the tool
code never runs in this process.

Layout: one **zygote** per Sandbox (:mod:`ftrl_lab.core.sandbox_worker`), a pre-imported
interpreter started inside bubblewrap (:mod:`ftrl_lab.core.sandbox_bwrap`: no network, a
read-only view of only the interpreter, private /tmp, own pid namespace), forks one **child
per environment** of a batch. The child gets a fresh socket pair from us (passed through the
zygote), locks itself down (private tmpfs, rlimits, no capabilities, seccomp filter of
:mod:`ftrl_lab.core.sandbox_seccomp`, audit hook), and only then receives that environment's
sources and calls; it runs them, replies and exits. So no state of one environment (code,
globals, patched modules, signal state, limits, files) can be seen or changed by another, and
the zygote never runs tool code. Up to ``n_workers`` children run at once.

This parent trusts nothing a child sends: replies are flat length-prefixed records
(:mod:`ftrl_lab.core.sandbox_protocol`), bounded in size, decoded without recursion, and
matched to the calls sent to that child, in order. A child that crashes, sends a bad reply or
stops answering is killed; its unanswered calls are re-run one per fresh child, so that only
the call that caused it gets the error. Where bubblewrap cannot run (not installed, no user
namespaces) the zygote runs without it (``protections()["bubblewrap"]`` is False and a
``SandboxWarning`` says what is then left).

Core module: no torch or transformers imports.
"""

from __future__ import annotations

import base64
import binascii
import collections
import functools
import hashlib
import importlib.util
import itertools
import json
import logging
import marshal
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftrl_lab.core import sandbox_bwrap, sandbox_seccomp
from ftrl_lab.core.ftrl_exec import EXEC_MODES
from ftrl_lab.core.sandbox_calls import FLUSH_COUNT, FLUSH_SECONDS
from ftrl_lab.core.sandbox_protocol import REPLY, FrameError, ReplyReader, encode_frame

log = logging.getLogger(__name__)

DEFAULT_PREIMPORT = (
    "datetime",
    "re",
    "json",
    "math",
    "cmath",
    "calendar",
    "decimal",
    "fractions",
    "collections",
    "random",
    "string",
    "time",
    "itertools",
    "functools",
    "operator",
    "statistics",
    "copy",
    "typing",
    "enum",
    "dataclasses",
    "_strptime",  # datetime.strptime imports it on first use (and builds its regexes)
    "unicodedata",
)
# datetime.strptime formats whose regexes the zygote compiles once for every child
DEFAULT_STRPTIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d/%m/%Y", "%m/%d/%Y", "%Y")


class SandboxError(RuntimeError):
    """The sandbox itself cannot work (a worker does not start, bad configuration)."""


@dataclass
class CallResult:
    """The outcome of one tool call."""

    name: str | None
    arguments: str
    content: str  # FTRL's feedback string (what the model sees)
    ok: bool  # the tool returned without an exception
    error: str | None  # the error text when not ok
    stdout: str = ""  # what the tool printed (stdout and stderr), bounded
    seconds: float = 0.0  # wall-clock time of the call
    truncated: bool = False  # content was cut to max_output characters

    def to_message(self, call_id: str | None) -> dict:
        """FTRL's tool message for this result."""
        return {"role": "tool", "content": self.content, "tool_call_id": call_id}

    def to_dict(self) -> dict:
        return asdict(self)


def _error(name, arguments: str, message: str, seconds: float = 0.0) -> CallResult:
    return CallResult(name, arguments, f"an error occured when call {name}: {message}", False, message, seconds=seconds)


class SandboxWarning(UserWarning):
    """The machine cannot provide the full sandbox (no bubblewrap or no user namespaces)."""


FALLBACK_LEFT = (
    "without bubblewrap the tool code sees the host's file system with this user's rights "
    "(uid nobody when root) behind the audit hook only, and shares the pid namespace; still "
    "active: one fresh process per environment, seccomp (when libseccomp is there), rlimits, "
    "network namespace and private /tmp (when namespaces are permitted), no-new-privs, the "
    "audit hook and this untrusting parent"
)
WORKER_MODULES = ("sandbox_worker.py", "sandbox_calls.py", "sandbox_audit.py", "sandbox_protocol.py", "ftrl_exec.py")
CORE_DIR = Path(__file__).resolve().parent
DEFAULT_SITE_PACKAGES = ("dateutil", "pytz", "six")  # imported by a few FTRL tool codes


@functools.cache
def _seccomp_program() -> tuple[bytes | None, str]:
    return sandbox_seccomp.build_filter()


class _Zygote:
    """Parent-side handle of the zygote process (bwrap, or the bare interpreter)."""

    def __init__(self, proc: subprocess.Popen, ctl: socket.socket, workdir: str, site_dir: str | None):
        self.proc, self.ctl, self.workdir, self.site_dir = proc, ctl, workdir, site_dir
        self.hello: dict = {}

    def send(self, msg: dict, fds: tuple = ()) -> None:
        socket.send_fds(self.ctl, [json.dumps(msg).encode()], list(fds))

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass

    def close(self, graceful: bool = True) -> None:
        if graceful and self.proc.poll() is None:
            try:
                self.ctl.settimeout(0.5)
                self.send({"op": "exit"})
                self.proc.wait(timeout=2.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.kill()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log.warning("sandbox zygote %d did not exit after SIGKILL", self.proc.pid)
        self.ctl.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.site_dir:
            shutil.rmtree(self.site_dir, ignore_errors=True)


@dataclass(eq=False)
class _Env:
    """One environment's calls in flight in one child: jobs are (flat index, name, key, args)."""

    jobs: list
    careful: bool = False  # re-run of one call after its child failed
    id: int = 0
    sock: socket.socket | None = None
    reader: ReplyReader | None = None
    pos: int = 0
    deadline: float = 0.0
    started: float = 0.0
    rc: int | None = None
    eof_at: float | None = None
    failure: str | None = None  # our reason to kill it (timeout, bad reply)
    keys: set = field(default_factory=set)


class Sandbox:
    """Runs FTRL tool calls in one fresh, isolated child process per environment.
    Thread-safe; a context manager.

    Args:
        n_workers: environments run at once (default: ``os.cpu_count()``).
        timeout: wall-clock seconds per call (FTRL: 10).
        cpu_limit: CPU seconds per call (default: ``timeout``).
        memory_bytes: RLIMIT_AS of each child (default 1 GiB).
        max_output: feedback strings are cut to this many characters, with a marker.
        max_stdout: printed output kept per call, in characters.
        file_bytes: RLIMIT_FSIZE, the largest file a tool may write.
        tmpfs_bytes: size of each child's private /tmp.
        recycle_after: kept for compatibility; unused (every environment gets a new process).
        grace: extra seconds the parent waits past ``timeout`` before killing a silent child.
        namespaces: in the fallback without bubblewrap, try network / mount namespaces.
        drop_privileges: in the fallback as root, run tool code as uid/gid nobody.
        read_paths: extra files or directories tool code may read (bound read-only).
        preimport: modules the zygote imports before forking (children start with them).
        hash_seed: PYTHONHASHSEED of the zygote (and so of every child), so that e.g.
            ``str(set(...))`` gives the same text in every child (None: random).
        use_bwrap: True: require bubblewrap; False: never use it; None (default): use it when
            it works here, else fall back with a ``SandboxWarning``.
        site_packages: third-party top-level packages tool code may import (made visible
            read-only, alone; the rest of site-packages stays hidden).
        exec_mode: the namespace semantics of the tool exec
            (:func:`ftrl_lab.core.ftrl_exec.load_tool`): "ftrl" (default, FTRL's exec inside
            its calling function: module-level names of a source invisible to its function)
            or "fresh" (one fresh namespace per source); ``run``/``run_batch`` may override it.
        audit_hook: install the audit hook in each child (defence in depth; False only to test
            that the OS layers contain an attack on their own).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        timeout: float = 10.0,
        *,
        cpu_limit: float | None = None,
        memory_bytes: int = 1 << 30,
        max_output: int = 100_000,
        max_stdout: int = 10_000,
        file_bytes: int = 16 << 20,
        tmpfs_bytes: int = 64 << 20,
        recycle_after: int = 20_000,
        grace: float = 2.0,
        namespaces: bool = True,
        drop_privileges: bool = True,
        read_paths: Iterable[str] = (),
        preimport: Iterable[str] = DEFAULT_PREIMPORT,
        hash_seed: int | None = 0,
        startup_timeout: float = 30.0,
        use_bwrap: bool | None = None,
        site_packages: Iterable[str] = DEFAULT_SITE_PACKAGES,
        exec_mode: str = "ftrl",
        audit_hook: bool = True,
    ):
        if timeout <= 0:
            raise SandboxError(f"timeout must be positive, got {timeout}")
        self.exec_mode = _check_mode(exec_mode)
        self.n_workers = max(1, int(n_workers or os.cpu_count() or 1))
        self.timeout = float(timeout)
        self.cpu_limit = float(cpu_limit if cpu_limit is not None else timeout)
        self.max_output, self.max_stdout = int(max_output), int(max_stdout)
        self.recycle_after, self.grace = int(recycle_after), float(grace)
        self.startup_timeout = float(startup_timeout)
        self.hash_seed = hash_seed
        self.use_bwrap = use_bwrap
        self.site_packages = tuple(site_packages)
        self._cfg = {
            "memory_bytes": int(memory_bytes),
            "file_bytes": int(file_bytes),
            "tmpfs_bytes": int(tmpfs_bytes),
            "namespaces": bool(namespaces),
            "drop_privileges": bool(drop_privileges),
            "read_paths": [os.path.abspath(str(p)) for p in read_paths],
            "preimport": list(preimport),
            "audit_hook": bool(audit_hook),
            "strptime_formats": list(DEFAULT_STRPTIME_FORMATS),
        }
        # A reply text holds at most max_output (+ a marker) characters, 4 UTF-8 bytes each.
        self._max_text = 4 * max(self.max_output, self.max_stdout) + (64 << 10)
        self._max_frame = FLUSH_COUNT * (REPLY.size + 3 * self._max_text)
        self._lock = threading.RLock()
        self._holder: list[_Zygote] = []  # changed in place: the finalizer holds this list
        self._keys: dict[str, str] = {}
        self._compiled: dict[str, str | None] = {}  # key -> base64 marshal of its code, None: ship source
        self._ids = itertools.count(1)
        self._pid = os.getpid()
        self._closed = False
        self._buf = bytearray(1 << 18)
        self._view = memoryview(self._buf)
        self.started_in = 0.0  # seconds the last start of the zygote took
        self.restarts = 0  # children killed or crashed (not counting clean exits)
        self.children = 0  # children started so far
        self._spares: collections.deque = collections.deque()  # (id, socket) of waiting children
        self._owner = [self._pid]  # the process whose zygote this is (not a fork of it)
        self._finalizer = weakref.finalize(self, _close_zygotes, self._holder, self._owner)
        self._start()

    # --- life cycle ------------------------------------------------------------------------
    def _site_modules(self) -> dict[str, str]:
        out = {}
        for name in self.site_packages:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
                continue
            path = spec.origin
            out[name] = os.path.dirname(path) if os.path.basename(path) == "__init__.py" else path
        return out

    def _command(self, fd: int, workdir: str) -> tuple[list[str], str | None, dict, str | None]:
        """(argv, bwrap failure or None, config additions, fallback site dir)."""
        site = self._site_modules()
        bwrap = sandbox_bwrap.bwrap_binary() if self.use_bwrap is not False else None
        why = "disabled by configuration" if self.use_bwrap is False else "bwrap is not installed"
        if bwrap:
            args = sandbox_bwrap.bwrap_args([str(CORE_DIR / m) for m in WORKER_MODULES], site, self._cfg["read_paths"])
            why = sandbox_bwrap.probe(bwrap, tuple(args))
            if why is None:
                script = f"{sandbox_bwrap.WORKER_DIR}/sandbox_worker.py"
                extra = {"bwrap": True, "workdir": "/tmp", "site_dirs": [sandbox_bwrap.SITE_DIR] if site else []}
                argv = [bwrap, *args, "--", os.path.realpath(sys.executable), "-s", "-S", "-B", script]
                return argv, None, extra, None
        if self.use_bwrap:
            raise SandboxError(f"bubblewrap was required but cannot run here: {why}")
        site_dir = None
        if site:  # only the allowed packages, through links in a directory of their own
            site_dir = tempfile.mkdtemp(prefix="ftrl-sandbox-site-")
            os.chmod(site_dir, 0o755)
            for name, path in site.items():
                os.symlink(path, os.path.join(site_dir, name + ("" if os.path.isdir(path) else ".py")))
        extra = {"bwrap": False, "workdir": workdir, "site_dirs": [site_dir] if site_dir else []}
        return [sys.executable, "-s", "-S", "-B", str(CORE_DIR / "sandbox_worker.py")], why, extra, site_dir

    def _start(self) -> None:
        t0 = time.perf_counter()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        workdir = tempfile.mkdtemp(prefix="ftrl-sandbox-")
        os.chmod(workdir, 0o755)
        prog, prog_note = _seccomp_program()
        try:
            argv, bwrap_why, extra, site_dir = self._command(child.fileno(), workdir)
        except BaseException:
            parent.close()
            child.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        cfg = dict(
            self._cfg, **extra, seccomp=base64.b64encode(prog).decode() if prog else None, seccomp_note=prog_note
        )
        env = {  # a scrubbed environment: no secrets of ours reach tool code
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
        }
        for var in ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "LC_TIME", "LC_NUMERIC"):
            if os.environ.get(var):
                env[var] = os.environ[var]
        if self.hash_seed is not None:
            env["PYTHONHASHSEED"] = str(int(self.hash_seed))
        try:
            with open(os.path.join(workdir, "zygote.stderr"), "wb") as err:
                proc = subprocess.Popen(
                    [*argv, str(child.fileno()), json.dumps(cfg)],
                    pass_fds=(child.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    cwd=workdir,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as e:
            parent.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise SandboxError(f"cannot start the sandbox zygote: {e}") from e
        finally:
            child.close()
        z = _Zygote(proc, parent, workdir, site_dir)
        try:
            parent.settimeout(self.startup_timeout)
            try:
                data = parent.recv(1 << 16)
            except TimeoutError:
                raise SandboxError(f"the sandbox zygote did not start within {self.startup_timeout:g} s") from None
            if not data:
                raise SandboxError(
                    "the sandbox zygote exited during start-up: " + _tail(Path(workdir) / "zygote.stderr")
                )
            z.hello = json.loads(data)
            parent.setblocking(False)
        except BaseException:
            z.close(graceful=False)
            raise
        if bwrap_why is not None:
            z.hello.setdefault("notes", {})["bubblewrap"] = bwrap_why
        self._holder[:] = [z]
        self.started_in = time.perf_counter() - t0
        missing = [k for k, v in self.protections().items() if not v]
        if bwrap_why is not None:
            msg = f"sandbox without bubblewrap ({bwrap_why}): {FALLBACK_LEFT}"
            warnings.warn(msg, SandboxWarning, stacklevel=3)
            log.warning(msg)
        if missing:
            notes = self.protection_notes()
            log.info("sandbox layers not active: %s", "; ".join(f"{k} ({notes.get(k, 'n/a')})" for k in missing))

    def _fork_spare(self) -> None:
        """Ask the zygote for one more child, forked and locked down before it is given an
        environment (it waits for its request on its own socket pair)."""
        rid = next(self._ids)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._zygote.send({"op": "fork", "id": rid}, (theirs.fileno(),))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.children += 1
        self._spares.append((rid, ours))

    def _drop_spares(self) -> None:
        while self._spares:
            self._spares.popleft()[1].close()  # the child sees end-of-file and exits

    @property
    def _zygote(self) -> _Zygote:
        return self._holder[0]

    def _restart(self) -> None:
        self._drop_spares()
        self._zygote.close(graceful=False)
        self._start()

    def close(self) -> None:
        """Stop the zygote and its children, remove their directories. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop_spares()
            self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def protections(self) -> dict[str, bool]:
        """Which isolation layers are active (name -> active), as measured in a probe child."""
        with self._lock:
            self._check_usable()
            hello = self._zygote.hello
        prot = dict(hello.get("protections", {}))
        if prot.get("bubblewrap"):
            prot.update(filesystem_view=True, pid_namespace=True, network_namespace=True, user_namespace=True)
        else:
            prot.update(filesystem_view=False, pid_namespace=False)
        prot.update(process_per_environment=True, scrubbed_environment=True, parent_watchdog=True)
        return prot

    def protection_notes(self) -> dict[str, str]:
        """Why a layer is not active (layer -> reason)."""
        with self._lock:
            self._check_usable()
            notes = dict(self._zygote.hello.get("notes", {}))
        if not self._zygote.hello.get("protections", {}).get("bubblewrap"):
            for k in ("filesystem_view", "pid_namespace"):
                notes.setdefault(k, "needs bubblewrap")
        return notes

    def worker_pids(self) -> list[int]:
        """The pid of the zygote process (bwrap's, when it is used)."""
        with self._lock:
            return [self._zygote.proc.pid]

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if os.getpid() != self._pid:  # we are a fork: the zygote belongs to the parent process
            self._zygote.ctl.close()
            self._drop_spares()
            self._pid = self._owner[0] = os.getpid()
            self._start()

    # --- running calls ---------------------------------------------------------------------
    def feedback(self, codes: dict[str, str], tool_calls: list[dict], exec_mode: str | None = None) -> list[dict]:
        """FTRL's ``get_feedback``: one ``{"role": "tool", "content", "tool_call_id"}`` per call."""
        results = self.run(codes, tool_calls, exec_mode=exec_mode)
        return [r.to_message(c.get("id") if isinstance(c, dict) else None) for r, c in zip(results, tool_calls)]

    def run(
        self, codes: dict[str, str], calls: list[dict], timeout: float | None = None, exec_mode: str | None = None
    ) -> list[CallResult]:
        """Run the tool calls of one environment; results in call order."""
        return self.run_batch([(codes, calls)], timeout=timeout, exec_mode=exec_mode)[0]

    def run_batch(
        self,
        items: list[tuple[dict[str, str], list[dict]]],
        timeout: float | None = None,
        exec_mode: str | None = None,
    ) -> list[list[CallResult]]:
        """Run the calls of many environments (``[(codes, calls), ...]``), each environment in
        its own fresh child, up to ``n_workers`` at once; one list of results per item, each in
        call order. ``exec_mode`` (default: the sandbox's) applies to the whole batch."""
        timeout = self.timeout if timeout is None else float(timeout)
        mode = self.exec_mode if exec_mode is None else _check_mode(exec_mode)
        flat: list[CallResult | None] = []
        envs: list[_Env] = []
        sources: dict[str, str] = {}
        for codes, calls in items:
            env = _Env([])
            for call in calls:
                job = self._prepare(codes, call, sources)
                if isinstance(job, CallResult):
                    flat.append(job)
                else:
                    env.jobs.append((len(flat),) + job)
                    flat.append(None)
            if env.jobs:
                envs.append(env)
        if envs:
            with self._lock:
                self._check_usable()
                self._execute(envs, sources, flat, timeout, mode)
        out, k = [], 0
        for _, calls in items:
            out.append(flat[k : k + len(calls)])
            k += len(calls)
        return out

    def _key(self, source: str) -> str:
        key = self._keys.get(source)
        if key is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            key = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
            self._keys[source] = key
        return key

    def _compiled_code(self, key: str, source: str) -> str | None:
        """base64 of the marshalled code object of ``source``, compiled here once (as the child
        would: ``compile(source, "<string>", "exec", dont_inherit=True)``) and cached, so that
        children skip the compiler; None when it does not compile (the child then compiles it
        and reports FTRL's error). Compiling never runs the code; warnings are not shown."""
        if key in self._compiled:
            return self._compiled[key]
        if len(self._compiled) > 4096:
            self._compiled.clear()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                blob = marshal.dumps(compile(source, "<string>", "exec", dont_inherit=True))
            code = binascii.b2a_base64(blob, newline=False).decode("ascii")
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, OverflowError):
            code = None
        self._compiled[key] = code
        return code

    def _prepare(self, codes: dict, call: Any, sources: dict) -> tuple | CallResult:
        """(name, key, args_text) to send, or the error FTRL would report without running code."""
        name = None
        raw: Any = ""
        try:  # the same steps, in the same order, as FTRL's get_feedback
            name = call["function"]["name"]
            raw = call["function"]["arguments"]
            if not isinstance(raw, str):
                raw = json.dumps(json.loads(raw))  # bytes are accepted; others raise TypeError
            if not isinstance(name, str) or name not in codes:
                json.loads(raw)
                codes[name]  # raises FTRL's KeyError (or TypeError for an unhashable name)
            source = codes[name]
            if isinstance(source, (bytes, bytearray)):
                source = bytes(source).decode("utf-8")
            if not isinstance(source, str):
                json.loads(raw)
                raise TypeError("exec() arg 1 must be a string, bytes or code object")
        except Exception as e:
            return _error(name, raw if isinstance(raw, str) else repr(raw), str(e))
        key = self._key(source)
        sources[key] = source
        return name, key, raw

    def _execute(self, envs: list[_Env], sources: dict, flat: list, timeout: float, mode: str) -> None:
        """Run each environment in its own child, ``n_workers`` at a time; fill ``flat[index]``
        with each call's CallResult. Handles children that die, stall or misbehave."""
        queue = collections.deque(envs)
        cpu = self.cpu_limit if timeout == self.timeout else timeout
        opts = {
            "timeout": timeout,
            "cpu_limit": max(cpu, 1.0),
            "max_output": self.max_output,
            "max_stdout": self.max_stdout,
            "exec_mode": mode,
        }
        # A child sends results at least every FLUSH_SECONDS and each call ends within
        # `timeout` (its own timer): silence beyond `limit` means it is stuck.
        limit = timeout + self.grace + FLUSH_SECONDS
        sel = selectors.DefaultSelector()
        active: dict[int, _Env] = {}  # id -> env whose child has not been settled
        buf, view = self._buf, self._view
        zygote = self._zygote
        sel.register(zygote.ctl, selectors.EVENT_READ, None)

        def start(env: _Env) -> None:
            if not self._spares:
                self._fork_spare()
            env.id, ours = self._spares.popleft()
            env.sock, env.reader, env.pos, env.rc, env.eof_at, env.failure = ours, None, 0, None, None, None
            env.reader = ReplyReader(self._max_frame, self._max_text)
            active[env.id] = env
            now = time.monotonic()
            env.started, env.deadline = now, now + limit + self.grace  # the child is forked already
            plain, compiled = {}, {}
            for j in env.jobs:
                code = self._compiled_code(j[2], sources[j[2]])
                if code is None:
                    plain[j[2]] = sources[j[2]]
                else:
                    compiled[j[2]] = code
            request = {
                "sources": plain,
                "compiled": compiled,
                "opts": opts,
                "calls": [list(j[:1]) + list(j[1:]) for j in env.jobs],
            }
            ours.settimeout(limit + self.startup_timeout)
            try:
                ours.sendall(encode_frame(request))
            except OSError:  # the child is already gone: its exit status will tell why
                pass
            ours.setblocking(False)
            sel.register(ours, selectors.EVENT_READ, env)
            while len(self._spares) < self.n_workers:  # the next children fork while this one runs
                self._fork_spare()

        def settle(env: _Env, reason: str | None) -> None:
            """The child is done; a reason means it failed: re-run or report what is left."""
            active.pop(env.id, None)
            if env.sock is not None:
                try:
                    sel.unregister(env.sock)
                except (KeyError, ValueError):
                    pass
                env.sock.close()
                env.sock = None
            rest = env.jobs[env.pos :]
            if not rest:
                return
            if reason is None:
                reason = "the sandbox process ended without answering"
            self.restarts += 1
            if env.careful or len(rest) == 1:
                j = rest[0]
                flat[j[0]] = _error(j[1], j[3], reason.format(name=j[1]), time.monotonic() - env.started)
                log.info("sandbox child for call %s failed: %s", j[1], reason.format(name=j[1]))
                return
            for j in reversed(rest):  # one call per fresh child: only the culprit gets the error
                queue.appendleft(_Env([j], careful=True))

        def kill(env: _Env, reason: str) -> None:
            if env.failure is None:
                env.failure = reason
                try:
                    zygote.send({"op": "kill", "id": env.id})
                except OSError:
                    pass
                env.deadline = time.monotonic() + 5.0  # to hear of its exit
            if env.sock is not None:
                sel.unregister(env.sock)
                env.sock.close()
                env.sock = None
                env.eof_at = time.monotonic()

        def drain(env: _Env) -> None:
            try:
                k = env.sock.recv_into(buf)
            except (BlockingIOError, InterruptedError, TimeoutError):
                return
            except OSError:
                k = 0
            if not k:
                sel.unregister(env.sock)
                env.sock.close()
                env.sock = None
                env.eof_at = time.monotonic()
                env.deadline = env.eof_at + 2.0  # to hear of its exit status
                return
            try:
                records = env.reader.feed(view[:k])
            except FrameError as e:
                kill(env, f"the sandbox process sent a bad reply ({e})")
                return
            now = time.monotonic()
            for index, ok, truncated, seconds, content, error, stdout in records:
                if env.pos >= len(env.jobs) or index != env.jobs[env.pos][0]:
                    kill(env, "the sandbox process sent an unexpected reply")
                    return
                j = env.jobs[env.pos]
                flat[j[0]] = CallResult(j[1], j[3], content, ok, error, stdout, seconds, truncated)
                env.pos += 1
                env.deadline = now + limit
            if env.pos == len(env.jobs):
                settle(env, None)  # all answered: its exit is of no interest

        def on_control() -> bool:
            """Messages from the zygote; False when it is gone."""
            while True:
                try:
                    data = zygote.ctl.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    return True
                except OSError:
                    data = b""
                if not data:
                    return False
                try:
                    msg = json.loads(data)
                    env = active.get(msg["id"]) if msg.get("op") == "exit" else None
                except (ValueError, KeyError, TypeError):
                    continue
                if env is not None:
                    env.rc = int(msg["rc"])

        def settle_finished() -> None:
            now = time.monotonic()
            for env in list(active.values()):
                if env.sock is None and (env.rc is not None or now >= env.deadline):
                    reason = env.failure or (_death_reason(env.rc) if env.rc is not None else None)
                    settle(env, reason)

        try:
            while queue or active:
                while queue and len(active) < self.n_workers:
                    start(queue.popleft())
                wait = max(0.0, min(e.deadline for e in active.values()) - time.monotonic()) if active else 0
                for key, _ in sel.select(wait):
                    if key.data is None:
                        if not on_control():  # the zygote died: every child died with it
                            for env in list(active.values()):
                                env.failure = env.failure or "the sandbox stopped (its zygote died)"
                                if env.sock is not None:
                                    kill(env, env.failure)
                                settle(env, env.failure)
                            sel.unregister(zygote.ctl)
                            self._restart()
                            zygote = self._zygote
                            sel.register(zygote.ctl, selectors.EVENT_READ, None)
                            break
                    elif key.data.id in active and key.data.sock is not None:
                        drain(key.data)
                now = time.monotonic()
                for env in list(active.values()):
                    if env.sock is not None and env.deadline <= now:
                        drain(env)  # results may have arrived while we were busy elsewhere
                        if env.id in active and env.sock is not None and env.deadline <= time.monotonic():
                            kill(
                                env,
                                f"Function {{name}} timed out after {timeout:f} seconds. The tool did"
                                " not stop, so its sandbox process was killed.",
                            )
                settle_finished()
        finally:
            for env in list(active.values()):  # interrupted (KeyboardInterrupt): leave no child
                try:
                    zygote.send({"op": "kill", "id": env.id})
                except OSError:
                    pass
                if env.sock is not None:
                    env.sock.close()
            sel.close()


def _check_mode(mode: str) -> str:
    if mode not in EXEC_MODES:
        raise SandboxError(f"unknown exec mode {mode!r} (choose from {EXEC_MODES})")
    return mode


def _death_reason(rc: int) -> str:
    """Why a child ended, for the error message."""
    if rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = str(-rc)
        extra = " (out of memory?)" if -rc == signal.SIGKILL else ""
        return f"the tool crashed its sandbox process (killed by signal {sig}{extra})"
    return f"the tool ended its sandbox process (exit status {rc})"


def _tail(path: Path, n: int = 2000) -> str:
    try:
        data = path.read_bytes()[-n:].decode("utf-8", "replace").strip()
    except OSError:
        return "(no error output)"
    return data or "(no error output)"


def _close_zygotes(holder: list[_Zygote], owner: list[int]) -> None:
    """Stop the zygote (at close, garbage collection or exit) in the process that owns it."""
    if os.getpid() == owner[0]:
        for z in holder:
            z.close()
    holder.clear()


# --- the shared instance -------------------------------------------------------------------
_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def get_sandbox(**kwargs) -> Sandbox:
    """A process-wide shared ``Sandbox``, created on first use with ``kwargs`` (later calls
    return the same instance and ignore ``kwargs``) and closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = Sandbox(**kwargs)  # closed at exit by its finalizer
        return _shared
