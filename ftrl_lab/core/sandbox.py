"""Isolated execution of FTRL tool calls in reused worker processes.

``Sandbox.run(codes, calls)`` gives, per OpenAI-style tool call, the feedback string FTRL's
``get_feedback`` would give (the return value; dict/list -> ``json.dumps(ensure_ascii=False)``,
other -> ``str``; an error -> ``"an error occured when call <name>: <str(e)>"``), but the tool
code runs in separate, locked-down worker processes (see :mod:`ftrl_lab.core.sandbox_worker` and
``Sandbox.protections()``), never in this one.

Workers are fresh interpreters (``python -m ftrl_lab.core.sandbox_worker``, not forks of this
process), reused across calls, talking length-prefixed JSON over a socket pair. Each source is
sent to a worker once and compiled once there. The calls of a ``run`` are spread over the
workers in chunks; results come back in call order. A worker that does not answer in
``timeout + grace`` seconds, or dies, is killed and replaced; only the call it was running gets
an error.

Core module: no torch or transformers imports.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import mmap
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
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ftrl_lab.core.sandbox_worker import FLUSH_SECONDS, FrameError, FrameReader, encode_frame

log = logging.getLogger(__name__)

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
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
)


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


class _Worker:
    """Parent-side handle of one worker process."""

    def __init__(
        self, proc: subprocess.Popen, sock: socket.socket, workdir: str, max_frame: int, progress_map: mmap.mmap
    ):
        self.proc, self.sock, self.workdir = proc, sock, workdir
        self.reader = FrameReader(max_frame)
        self._map = progress_map
        self.progress = memoryview(progress_map).cast("q")  # index of the call the worker runs
        self.known: set[str] = set()  # source keys this worker has received
        self.calls = 0
        self.hello: dict | None = None
        self.chunk: list | None = None  # calls in flight: [(index, name, key, args_text)]
        self.pos = 0
        self.deadline = 0.0
        self.started = 0.0  # when the worker last made progress
        self.recycle = False

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
                self.sock.settimeout(0.5)
                self.sock.sendall(encode_frame({"op": "exit"}))
                self.proc.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.kill()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log.warning("sandbox worker %d did not exit after SIGKILL", self.proc.pid)
        self.sock.close()
        self.progress.release()
        self._map.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def death_reason(self) -> str:
        """Why the process ended, for the error message."""
        try:
            rc = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return "the worker stopped answering"
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = str(-rc)
            extra = " (out of memory?)" if -rc == signal.SIGKILL else ""
            return f"the tool crashed its sandbox process (killed by signal {sig}{extra})"
        return f"the tool ended its sandbox process (exit status {rc})"


class Sandbox:
    """Runs FTRL tool calls in isolated, reused worker processes. Thread-safe; a context manager.

    Args:
        n_workers: parallel worker processes (default: ``os.cpu_count()``).
        timeout: wall-clock seconds per call (FTRL: 10).
        cpu_limit: CPU seconds per call (default: ``timeout``).
        memory_bytes: RLIMIT_AS of each worker (default 1 GiB).
        max_output: feedback strings are cut to this many characters, with a marker.
        max_stdout: printed output kept per call, in characters.
        file_bytes: RLIMIT_FSIZE, the largest file a tool may write.
        tmpfs_bytes: size of the worker's private /tmp (when mount namespaces are permitted).
        recycle_after: a worker is replaced after this many calls.
        grace: extra seconds the parent waits past ``timeout`` before killing a silent worker.
        namespaces: try network / mount namespaces (off: only the other layers).
        drop_privileges: when root, run tool code as uid/gid nobody.
        read_paths: extra files or directories tool code may read.
        preimport: modules imported in each worker before tool code runs (start-up cost, speed).
        hash_seed: PYTHONHASHSEED of every worker, so that e.g. ``str(set(...))`` gives the same
            text whichever worker runs the call (None: random per worker).
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
    ):
        if timeout <= 0:
            raise SandboxError(f"timeout must be positive, got {timeout}")
        self.n_workers = max(1, int(n_workers or os.cpu_count() or 1))
        self.timeout = float(timeout)
        self.cpu_limit = float(cpu_limit if cpu_limit is not None else timeout)
        self.max_output, self.max_stdout = int(max_output), int(max_stdout)
        self.recycle_after, self.grace = int(recycle_after), float(grace)
        self.startup_timeout = float(startup_timeout)
        self.hash_seed = hash_seed
        self._cfg = {
            "memory_bytes": int(memory_bytes),
            "file_bytes": int(file_bytes),
            "tmpfs_bytes": int(tmpfs_bytes),
            "namespaces": bool(namespaces),
            "drop_privileges": bool(drop_privileges),
            "read_paths": [str(p) for p in read_paths],
            "preimport": list(preimport),
            "project_root": PROJECT_ROOT,
        }
        # A reply holds at most max_output + max_stdout characters plus a short error text;
        # JSON with ensure_ascii may spend 12 bytes on one character (a surrogate pair).
        self._max_frame = 12 * (2 * self.max_output + self.max_stdout) + (1 << 20)
        self._lock = threading.RLock()
        self._workers: list[_Worker] = []  # changed in place: the finalizer holds this list
        self._keys: dict[str, str] = {}
        self._pid = os.getpid()
        self._closed = False
        self._selector = selectors.DefaultSelector()  # reused by every run (under the lock)
        self._buf = bytearray(1 << 18)
        self._view = memoryview(self._buf)
        self.started_in = 0.0  # seconds the last start of all workers took
        self.restarts = 0  # workers killed and replaced so far
        self._owner = [self._pid]  # the process whose workers these are (not a fork of it)
        self._finalizer = weakref.finalize(self, _close_workers, self._workers, self._owner)
        self._start_all()

    # --- life cycle ------------------------------------------------------------------------
    def _spawn_many(self, n: int) -> list[_Worker]:
        """Start ``n`` workers concurrently and wait for each one's hello frame."""
        pending = [self._launch() for _ in range(n)]
        sel = selectors.DefaultSelector()
        for w in pending:
            sel.register(w.sock, selectors.EVENT_READ, w)
        end = time.monotonic() + self.startup_timeout
        try:
            waiting = len(pending)
            while waiting:
                left = end - time.monotonic()
                if left <= 0:
                    raise SandboxError(f"sandbox worker did not start within {self.startup_timeout:g} s")
                for key, _ in sel.select(left):
                    w = key.data
                    data = w.sock.recv(1 << 16)
                    if not data:
                        raise SandboxError(
                            "sandbox worker exited during start-up: " + _tail(Path(w.workdir) / "worker.stderr")
                        )
                    frames = w.reader.feed(data)
                    if frames:
                        w.hello = frames[0]
                        sel.unregister(w.sock)
                        waiting -= 1
        except BaseException:
            for w in pending:
                w.close(graceful=False)
            raise
        finally:
            sel.close()
        return pending

    def _launch(self) -> _Worker:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        workdir = tempfile.mkdtemp(prefix="ftrl-sandbox-")
        progress_fd = os.memfd_create("ftrl-sandbox-progress", 0)
        os.ftruncate(progress_fd, 8)
        progress_map = mmap.mmap(progress_fd, 8)
        cfg = dict(self._cfg, workdir=workdir, parent_pid=os.getpid(), progress_fd=progress_fd)
        # A scrubbed environment: no secrets of ours reach tool code.
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join(
                [PROJECT_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            ),
        }
        for var in ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "LC_TIME", "LC_NUMERIC"):
            if os.environ.get(var):
                env[var] = os.environ[var]
        if self.hash_seed is not None:
            env["PYTHONHASHSEED"] = str(int(self.hash_seed))
        try:
            with open(os.path.join(workdir, "worker.stderr"), "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-s", "-m", "ftrl_lab.core.sandbox_worker", str(child.fileno()), json.dumps(cfg)],
                    pass_fds=(child.fileno(), progress_fd),
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
            progress_map.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise SandboxError(f"cannot start a sandbox worker: {e}") from e
        finally:
            child.close()
            os.close(progress_fd)
        return _Worker(proc, parent, workdir, self._max_frame, progress_map)

    def _start_all(self) -> None:
        t0 = time.perf_counter()
        self._workers[:] = self._spawn_many(self.n_workers)
        self.started_in = time.perf_counter() - t0
        missing = [k for k, v in self.protections().items() if not v]
        if missing:
            notes = self._workers[0].hello.get("notes", {})
            log.info("sandbox layers not active: %s", "; ".join(f"{k} ({notes.get(k, 'n/a')})" for k in missing))

    def _replace(self, w: _Worker, graceful: bool) -> _Worker:
        w.close(graceful=graceful)
        new = self._spawn_many(1)[0]
        self._workers[self._workers.index(w)] = new
        return new

    def close(self) -> None:
        """Stop all workers and remove their directories. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finalizer()
            self._selector.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def protections(self) -> dict[str, bool]:
        """Which isolation layers are active in the workers (name -> active)."""
        with self._lock:
            self._check_usable()
            hello = self._workers[0].hello or {}
        prot = dict(hello.get("protections", {}))
        prot["scrubbed_environment"] = True
        prot["parent_watchdog"] = True
        return prot

    def protection_notes(self) -> dict[str, str]:
        """Why a layer is not active (layer -> reason), as the worker reported it."""
        with self._lock:
            self._check_usable()
            return dict((self._workers[0].hello or {}).get("notes", {}))

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers]

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if os.getpid() != self._pid:  # we are a fork: the workers belong to the parent process
            for w in self._workers:
                w.sock.close()
            self._selector = selectors.DefaultSelector()
            self._pid = self._owner[0] = os.getpid()
            self._start_all()

    # --- running calls ---------------------------------------------------------------------
    def feedback(self, codes: dict[str, str], tool_calls: list[dict]) -> list[dict]:
        """FTRL's ``get_feedback``: one ``{"role": "tool", "content", "tool_call_id"}`` per call."""
        results = self.run(codes, tool_calls)
        return [r.to_message(c.get("id") if isinstance(c, dict) else None) for r, c in zip(results, tool_calls)]

    def run(self, codes: dict[str, str], calls: list[dict], timeout: float | None = None) -> list[CallResult]:
        """Run the tool calls of one environment; results in call order."""
        return self.run_batch([(codes, calls)], timeout=timeout)[0]

    def run_batch(
        self, items: list[tuple[dict[str, str], list[dict]]], timeout: float | None = None
    ) -> list[list[CallResult]]:
        """Run the calls of many environments at once (``[(codes, calls), ...]``), spread over
        all workers; one list of results per item, each in call order."""
        timeout = self.timeout if timeout is None else float(timeout)
        flat: list[CallResult | None] = []
        jobs: list[tuple] = []
        sources: dict[str, str] = {}
        for codes, calls in items:
            for call in calls:
                job = self._prepare(codes, call, sources)
                if isinstance(job, CallResult):
                    flat.append(job)
                else:
                    jobs.append((len(flat),) + job)
                    flat.append(None)
        if jobs:
            with self._lock:
                self._check_usable()
                self._execute(jobs, sources, flat, timeout)
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

    def _execute(self, jobs: list[tuple], sources: dict, flat: list, timeout: float) -> None:
        """Spread ``jobs`` [(index, name, key, args_text)] over the workers in chunks; fill
        ``flat[index]`` with each CallResult. Handles dead, silent and misbehaving workers."""
        n = len(jobs)
        # Chunks: enough to keep every worker busy, big enough that small runs stay on one
        # worker (a round trip costs more than a typical FTRL tool call).
        size = max(8, min(64, -(-n // (4 * len(self._workers)))))
        queue = collections.deque(jobs[i : i + size] for i in range(0, n, size))
        cpu = self.cpu_limit if timeout == self.timeout else timeout
        opts = {
            "timeout": timeout,
            "cpu_limit": max(cpu, 1.0),
            "max_output": self.max_output,
            "max_stdout": self.max_stdout,
        }
        # A worker sends results at least every FLUSH_SECONDS and each call ends within
        # `timeout` (its own timer): silence beyond `limit` means it is stuck.
        limit = timeout + self.grace + FLUSH_SECONDS
        sel = self._selector
        busy: dict[socket.socket, _Worker] = {}
        buf, view = self._buf, self._view

        def send(w: _Worker, chunk: list) -> None:
            new = {j[2]: sources[j[2]] for j in chunk if j[2] not in w.known}
            w.sock.settimeout(limit)
            w.progress[0] = -1
            w.sock.sendall(encode_frame({"op": "run", "sources": new, "opts": opts, "calls": [list(j) for j in chunk]}))
            w.known.update(new)

        def dispatch(w: _Worker) -> None:
            chunk = queue.popleft()
            if w.recycle or w.calls >= self.recycle_after or len(w.known) > 50_000:
                w = self._replace(w, graceful=True)
            try:
                send(w, chunk)
            except OSError:  # the worker is gone; start another and send it there
                w = self._replace(w, graceful=False)
                send(w, chunk)
            w.chunk, w.pos, w.started = chunk, 0, time.monotonic()
            w.deadline = w.started + limit
            busy[w.sock] = w
            sel.register(w.sock, selectors.EVENT_READ, w)

        def fail(w: _Worker, reason: str) -> None:
            """The worker broke: the call it was running (per its progress counter) gets the
            error; results it had not sent yet are run again; the rest goes back in the queue."""
            w.kill()
            sel.unregister(w.sock)
            del busy[w.sock]
            rest = w.chunk[w.pos :]
            at = w.progress[0]
            k = next((x for x, j in enumerate(rest) if j[0] == at), 0)
            j = rest[k]
            flat[j[0]] = _error(j[1], j[3], reason, time.monotonic() - w.started)
            if rest[k + 1 :]:
                queue.appendleft(rest[k + 1 :])
            if rest[:k]:
                queue.appendleft(rest[:k])
            w.chunk = None
            self.restarts += 1
            log.info("sandbox worker %d replaced after call %s: %s", w.proc.pid, j[1], reason)
            self._replace(w, graceful=False)

        def drain(w: _Worker) -> None:
            try:
                k = w.sock.recv_into(buf)
            except (TimeoutError, BlockingIOError, InterruptedError):
                return
            except OSError:
                k = 0
            if not k:
                fail(w, w.death_reason())
                return
            try:
                frames = w.reader.feed(view[:k])
            except FrameError as e:
                fail(w, f"the sandbox process sent a bad reply ({e})")
                return
            now = time.monotonic()
            for frame in frames:
                for fr in frame if isinstance(frame, list) else [None]:
                    if not isinstance(fr, dict) or w.pos >= len(w.chunk) or fr.get("i") != w.chunk[w.pos][0]:
                        fail(w, "the sandbox process sent an unexpected reply")
                        return
                    j = w.chunk[w.pos]
                    try:
                        flat[j[0]] = CallResult(
                            j[1],
                            j[3],
                            str(fr["c"]),
                            bool(fr["ok"]),
                            fr.get("e"),
                            str(fr.get("o", "")),
                            float(fr.get("s", 0.0)),
                            bool(fr.get("t", False)),
                        )
                    except (KeyError, TypeError, ValueError):
                        fail(w, "the sandbox process sent an unexpected reply")
                        return
                    if fr.get("r"):
                        w.recycle = True
                        log.info("sandbox worker %d will be replaced: %s", w.proc.pid, fr["r"])
                    w.calls += 1
                    w.pos += 1
                    w.started, w.deadline = now, now + limit
            if w.pos == len(w.chunk):
                sel.unregister(w.sock)
                del busy[w.sock]
                w.chunk = None

        try:
            idle = list(self._workers)
            while queue or busy:
                while queue and idle:
                    dispatch(idle.pop())
                if not busy:
                    idle = [w for w in self._workers if w.chunk is None]
                    continue
                wait = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
                for key, _ in sel.select(wait):
                    w = key.data
                    if w.sock in busy:
                        drain(w)
                now = time.monotonic()
                for w in [w for w in busy.values() if w.deadline <= now]:
                    w.sock.setblocking(False)
                    drain(w)  # results may have arrived while we were busy elsewhere
                    if w.sock in busy and w.deadline <= time.monotonic():
                        at = w.progress[0]
                        name = next((j[1] for j in w.chunk[w.pos :] if j[0] == at), w.chunk[w.pos][1])
                        fail(
                            w,
                            f"Function {name} timed out after {timeout:f} seconds. The tool did"
                            " not stop, so its sandbox process was killed.",
                        )
                idle = [w for w in self._workers if w.chunk is None]
        finally:
            for w in list(busy.values()):  # interrupted (KeyboardInterrupt): leave no half-run worker
                sel.unregister(w.sock)
                w.chunk = None
                w.kill()
                self._replace(w, graceful=False)


def _close_workers(workers: list[_Worker], owner: list[int]) -> None:
    """Stop the workers (at close, garbage collection or exit) in the process that owns them."""
    if os.getpid() == owner[0]:
        for w in workers:
            w.close()
    workers.clear()


def _tail(path: Path, n: int = 2000) -> str:
    try:
        data = path.read_bytes()[-n:].decode("utf-8", "replace").strip()
    except OSError:
        return "(no error output)"
    return data or "(no error output)"


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
