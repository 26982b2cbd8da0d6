"""The worker process of :mod:`ftrl_lab.core.sandbox`: runs untrusted tool code, one call at a time.

Started by the parent as ``python -m ftrl_lab.core.sandbox_worker <socket-fd> <config-json>``
(a fresh interpreter, never a fork of the parent). It talks to the parent over a Unix socket
with length-prefixed JSON frames (4-byte big-endian length, then UTF-8 JSON), never pickle.

Set-up, in order, before any tool code runs: new network (and mount) namespace when permitted,
a private size-capped tmpfs over /tmp, /var/tmp and /dev/shm, resource limits, uid/gid
``nobody`` when root, no-new-privileges and parent-death signal, then an audit hook that refuses
process creation, network access, writes outside the working directory, reads outside an
allow-list, ctypes and signals to other processes. Which layers took effect is reported to the
parent in the first frame ("hello").

Per call: the tool source (compiled once, cached by key) is exec'd in a fresh namespace and the
function called with the JSON arguments, exactly as FTRL does; a wall-clock timer (SIGALRM) and
a CPU-time limit (RLIMIT_CPU / SIGXCPU) interrupt it; what it prints is captured, bounded. The
parent kills the whole process if it does not answer in time.

This module imports only the standard library (no torch, no numpy): it must start fast.
"""

import builtins
import io
import json
import os
import signal
import socket
import struct
import sys
import time

HEADER = struct.Struct("!I")
# The worker's own references to builtins a tool might overwrite during its call.
_str, _type, _dict, _list = str, type, dict, list
_dumps, _loads = json.dumps, json.loads
MAX_REQUEST_BYTES = 256 << 20  # frames from the parent (batches with sources)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
NOBODY = 65534


# --- framing (also used by the parent) ------------------------------------------------------
def encode_frame(obj) -> bytes:
    """One frame: length prefix + JSON (ASCII, so lone surrogates survive the round trip)."""
    data = _dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return HEADER.pack(len(data)) + data


class FrameError(Exception):
    """A frame that is too large or not valid JSON."""


class FrameReader:
    """Accumulates bytes and yields complete decoded frames; refuses frames over ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.buf = bytearray()

    def feed(self, data: bytes) -> list:
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            (n,) = HEADER.unpack_from(self.buf)
            if n > self.max_bytes:
                raise FrameError(f"frame of {n} bytes exceeds the limit of {self.max_bytes}")
            if len(self.buf) < 4 + n:
                break
            body = self.buf[4 : 4 + n]
            del self.buf[: 4 + n]
            try:
                out.append(json.loads(body.decode("ascii")))
            except ValueError as e:
                raise FrameError(f"malformed frame: {e}") from None
        return out


def _recv_frame(sock: socket.socket, max_bytes: int):
    """Blocking read of one frame; None at end of stream."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = HEADER.unpack(head)
    if n > max_bytes:
        raise FrameError(f"request frame of {n} bytes exceeds {max_bytes}")
    body = _recv_exact(sock, n)
    if body is None:
        return None
    return _loads(body)


def _recv_exact(sock: socket.socket, n: int):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return bytes(buf)


# --- set-up layers ---------------------------------------------------------------------------
class SandboxViolation(PermissionError):
    """Raised inside the worker when tool code attempts something the sandbox refuses."""


class _Interrupt(BaseException):
    """Raised into tool code by the wall-clock timer or the CPU-time limit."""


def _libc():
    import ctypes  # only during set-up; removed from sys.modules before tool code runs

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _setup_namespaces(cfg: dict, workdir: str, prot: dict, notes: dict) -> str:
    """Network (+ mount) namespace and private tmpfs; returns the working directory to use."""
    CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER = 0x00020000, 0x40000000, 0x10000000
    MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
    tmpfs_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC  # nothing written there can be run or dlopen'ed
    prot["network_namespace"] = prot["private_tmpfs"] = False
    if not cfg.get("namespaces", True):
        notes["network_namespace"] = notes["private_tmpfs"] = "disabled by configuration"
        return workdir
    try:
        ctypes, libc = _libc()
    except (ImportError, OSError) as e:
        notes["network_namespace"] = notes["private_tmpfs"] = f"ctypes unavailable: {e}"
        return workdir

    def call(fn, *args) -> str | None:
        if fn(*args) != 0:
            return os.strerror(ctypes.get_errno())
        return None

    if os.geteuid() == 0:
        err = call(libc.unshare, CLONE_NEWNET)
        prot["network_namespace"] = err is None
        if err:
            notes["network_namespace"] = f"unshare(CLONE_NEWNET) failed: {err}"
        err = call(libc.unshare, CLONE_NEWNS)
        if err is None:
            err = call(libc.mount, b"none", b"/", None, MS_REC | MS_PRIVATE, None)
        if err is None:
            size = int(cfg.get("tmpfs_bytes", 64 << 20))
            err = call(libc.mount, b"tmpfs", b"/tmp", b"tmpfs", tmpfs_flags, f"size={size},mode=1777".encode())
        if err is None:
            for small in ("/var/tmp", "/dev/shm", "/run/lock"):
                if os.path.isdir(small):
                    call(libc.mount, b"tmpfs", small.encode(), b"tmpfs", tmpfs_flags, b"size=1m,mode=1777")
            # Same path as the parent's directory, but on the private tmpfs.
            os.makedirs(workdir, mode=0o700, exist_ok=True)
            prot["private_tmpfs"] = True
            err = _expose_python(ctypes, libc, call)
            if err:
                notes["python_exposed"] = err
        else:
            notes["private_tmpfs"] = f"mount namespace / tmpfs failed: {err}"
    else:  # unprivileged: a user namespace may still give us an empty network namespace
        err = call(libc.unshare, CLONE_NEWUSER | CLONE_NEWNET)
        prot["network_namespace"] = err is None
        if err:
            notes["network_namespace"] = f"unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: {err}"
        notes["private_tmpfs"] = "needs root"
    return workdir


def python_dirs() -> list[str]:
    """Directories the interpreter imports from (stdlib, site-packages, other sys.path dirs)."""
    import sysconfig

    dirs = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(p for p in sys.path if p and os.path.isdir(p))
    out: list[str] = []
    for d in sorted(os.path.abspath(d) for d in dirs):
        if not any(d == o or d.startswith(o + "/") for o in out):
            out.append(d)
    return out


def blocked_ancestor(path: str) -> str | None:
    """The outermost directory on ``path`` that others (uid nobody) cannot traverse."""
    cur = "/"
    for part in path.strip("/").split("/"):
        cur = os.path.join(cur, part)
        try:
            if not os.stat(cur).st_mode & 0o001:
                return cur
        except OSError:
            return None
    return None


def _expose_python(ctypes, libc, call) -> str | None:
    """In our private mount namespace, make the interpreter's directories reachable by uid
    nobody when an ancestor (e.g. /root, mode 700) is not: that ancestor is covered by an
    empty tmpfs and only the Python directories are bind-mounted back into it."""
    MS_BIND, MS_REC, MS_MOVE, MS_NOSUID, MS_NODEV = 4096, 16384, 8192, 2, 4
    groups: dict[str, list[str]] = {}
    for d in python_dirs():
        a = blocked_ancestor(d)
        if a and a != d:
            groups.setdefault(a, []).append(d)
        elif a == d:
            return f"{d} is not readable by others"
    for k, (anc, dirs) in enumerate(sorted(groups.items())):
        stage = f"/tmp/.stage{k}"
        for j, d in enumerate(dirs):
            os.makedirs(f"{stage}/{j}")
            err = call(libc.mount, d.encode(), f"{stage}/{j}".encode(), None, MS_BIND | MS_REC, None)
            if err:
                return f"bind mount of {d} failed: {err}"
        err = call(libc.mount, b"tmpfs", anc.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
        if err:
            return f"tmpfs over {anc} failed: {err}"
        for j, d in enumerate(dirs):
            os.makedirs(d, mode=0o755, exist_ok=True)
            err = call(libc.mount, f"{stage}/{j}".encode(), d.encode(), None, MS_MOVE, None)
            if err:
                return f"moving the bind mount of {d} failed: {err}"
            os.rmdir(f"{stage}/{j}")
        os.rmdir(stage)
    return None


def _setup_rlimits(cfg: dict, prot: dict, notes: dict) -> None:
    import resource

    def cap(which, value):
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    try:
        cap(resource.RLIMIT_AS, int(cfg.get("memory_bytes", 1 << 30)))
        cap(resource.RLIMIT_FSIZE, int(cfg.get("file_bytes", 16 << 20)))
        cap(resource.RLIMIT_CORE, 0)
        cap(resource.RLIMIT_NOFILE, 256)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
        prot["rlimits"] = True
    except (OSError, ValueError) as e:
        prot["rlimits"] = False
        notes["rlimits"] = f"setrlimit failed: {e}"


def _drop_privileges(cfg: dict, workdir: str, prot: dict, notes: dict) -> None:
    import resource

    prot["uid_nobody"] = False
    unreadable = [d for d in python_dirs() if blocked_ancestor(d)]
    if os.geteuid() == 0 and cfg.get("drop_privileges", True) and unreadable:
        notes["uid_nobody"] = f"skipped: uid nobody could not import from {unreadable[0]}"
    elif os.geteuid() == 0 and cfg.get("drop_privileges", True):
        os.chown(workdir, NOBODY, NOBODY)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        prot["uid_nobody"] = True
    else:
        notes["uid_nobody"] = "not root" if os.geteuid() != 0 else "disabled by configuration"
    try:  # after the uid change: no new processes or threads for this user at all
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        prot["no_new_processes"] = True
    except (OSError, ValueError) as e:
        prot["no_new_processes"] = False
        notes["no_new_processes"] = f"RLIMIT_NPROC: {e}"


def _prctl(parent_pid: int, prot: dict, notes: dict) -> None:
    PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
    try:
        ctypes, libc = _libc()
        ok = libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)  # set after setuid (it clears it)
        prot["no_new_privs"] = ok
    except (ImportError, OSError, AttributeError) as e:
        prot["no_new_privs"] = False
        notes["no_new_privs"] = str(e)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)


def _read_allowlist(workdir: str, extra: list) -> tuple[tuple, frozenset]:
    """(directory prefixes, exact files) that tool code may open for reading."""
    import sysconfig

    dirs = {workdir}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(p)
    for p in sys.path:  # site-packages and friends; the project directory itself is left out
        if p and ("site-packages" in p or "dist-packages" in p or p.startswith(sys.base_prefix)):
            dirs.add(p)
    tz = sysconfig.get_config_var("TZPATH") or ""
    dirs.update(p for p in tz.split(os.pathsep) if p)
    dirs.add("/usr/share/zoneinfo")
    # Exact /proc/self files only: /proc/self/root and /proc/self/cwd lead anywhere.
    files = {
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/dev/random",
        "/etc/localtime",
        "/etc/timezone",
        "/etc/mime.types",
        "/proc/self/status",
        "/proc/self/stat",
        "/proc/self/statm",
        "/proc/self/limits",
        "/proc/self/mounts",
        "/proc/self/cgroup",
    }
    for p in extra:
        (dirs if os.path.isdir(p) else files).add(os.path.abspath(p))
    prefixes = tuple(sorted({os.path.abspath(d).rstrip("/") + "/" for d in dirs}))
    return prefixes, frozenset(os.path.abspath(f) for f in files | {d.rstrip("/") for d in dirs})


# --- the audit hook --------------------------------------------------------------------------
_DENY = {
    "os.system": "running shell commands",
    "subprocess.Popen": "starting processes",
    "os.exec": "starting programs",
    "os.spawn": "starting processes",
    "os.posix_spawn": "starting processes",
    "os.fork": "forking",
    "os.forkpty": "forking",
    "os.startfile": "starting programs",
    "pty.spawn": "starting processes",
    "socket.__new__": "network access",
    "socket.connect": "network access",
    "socket.bind": "network access",
    "socket.sendto": "network access",
    "socket.sendmsg": "network access",
    "socket.getaddrinfo": "network access",
    "socket.gethostbyname": "network access",
    "socket.gethostbyname_ex": "network access",
    "socket.gethostbyaddr": "network access",
    "socket.getnameinfo": "network access",
    "socket.sethostname": "network access",
    "urllib.Request": "network access",
    "http.client.connect": "network access",
    "ftplib.connect": "network access",
    "smtplib.connect": "network access",
    "webbrowser.open": "starting programs",
    "sys.addaudithook": "adding audit hooks",
    "gc.get_objects": "inspecting the interpreter",
    "gc.get_referrers": "inspecting the interpreter",
    "gc.get_referents": "inspecting the interpreter",
    "os.symlink": "creating links",
    "os.link": "creating links",
    "os.chown": "changing file owners",
    "os.setxattr": "changing file attributes",
    "os.removexattr": "changing file attributes",
    "os.killpg": "signalling other processes",
    "code.__new__": "building code objects from raw bytecode",
}
_WRITE_EVENTS = {  # event -> (index of the path argument, index of its dir_fd or None)
    "os.remove": (0, 1),
    "os.rmdir": (0, 1),
    "os.mkdir": (0, 2),
    "os.chmod": (0, 2),
    "os.lchmod": (0, None),
    "os.chflags": (0, None),
    "os.lchflags": (0, None),
    "os.utime": (0, 3),
    "os.truncate": (0, None),
    "os.mkfifo": (0, 2),
    "os.mknod": (0, 3),
    "shutil.rmtree": (0, 1),
    "tempfile.mkstemp": (0, None),
    "tempfile.mkdtemp": (0, None),
    "shutil.copyfile": (1, None),
    "shutil.copymode": (1, None),
    "shutil.copystat": (1, None),
    "shutil.copytree": (1, None),
    "shutil.move": (1, None),
    "shutil.chown": (0, None),
}


# Modules patched at set-up (their process-spawning entry points replaced by refusals); a fresh
# import would bring the originals back, so the hook refuses it.
_NO_REIMPORT = frozenset({"_posixsubprocess"})
# CPython's internal test modules can corrupt memory on purpose.
_NO_IMPORT = frozenset(
    {
        "_testcapi",
        "_testinternalcapi",
        "_testbuffer",
        "_testmultiphase",
        "_testimportmultiple",
        "_testclinic",
        "_ctypes_test",
        "_xxtestfuzz",
    }
)


def _disable_spawning() -> None:
    """``_posixsubprocess.fork_exec`` raises no audit event: replace it with a refusal."""
    try:
        import _posixsubprocess
    except ImportError:
        return

    def fork_exec(*args, **kwargs):
        raise SandboxViolation("sandbox: starting processes is not allowed")

    _posixsubprocess.fork_exec = fork_exec


def make_audit_hook(
    workdir: str, read_prefixes: tuple, read_files: frozenset, protected_fds: frozenset, allow_flags: list
):
    """The audit hook installed after set-up. The worker sets ``allow_flags[0]`` while it moves
    its own CPU limit. ``protected_fds`` are the worker's channels to the parent."""
    my_pid = os.getpid()
    write_prefix = workdir.rstrip("/") + "/"
    write_files = frozenset({"/dev/null"})
    code_prefixes = tuple(p for p in read_prefixes if p != write_prefix)  # where modules may come from
    deny, write_events = dict(_DENY), dict(_WRITE_EVENTS)
    abspath, fspath, readlink = os.path.abspath, os.fspath, os.readlink

    def refuse(what: str):
        raise SandboxViolation(f"sandbox: {what} is not allowed")

    def resolve(path, dir_fd=None) -> str | None:
        if isinstance(path, int):
            if path in protected_fds:
                refuse("using the sandbox's own channel")
            return None
        path = fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if dir_fd is not None and dir_fd >= 0 and not path.startswith("/"):
            path = readlink(f"/proc/self/fd/{dir_fd}") + "/" + path
        return abspath(path)

    def check_write(path, dir_fd=None):
        p = resolve(path, dir_fd)
        if p is not None and not p.startswith(write_prefix) and p not in write_files:
            refuse(f"writing or deleting '{p}' (outside the sandbox directory {workdir})")

    def check_read(path):
        p = resolve(path)
        if p is not None and p not in read_files and not p.startswith(read_prefixes):
            refuse(f"reading '{p}'")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if (flags or 0) & _WRITE_FLAGS or (mode and any(c in mode for c in "wax+")):
                check_write(path)
            else:
                check_read(path)
        elif event in deny:
            refuse(deny[event])
        elif event in write_events:
            i, j = write_events[event]
            check_write(args[i], args[j] if j is not None and j < len(args) else None)
        elif event == "os.rename":
            check_write(args[0], args[2])
            check_write(args[1], args[3])
        elif event == "os.kill":
            if args[0] != my_pid:
                refuse("signalling other processes")
        elif event.startswith("ctypes."):
            refuse("ctypes")
        elif event in ("resource.setrlimit", "resource.prlimit"):
            if not allow_flags[0]:
                refuse("changing resource limits")
        elif event == "import":
            if args[0] in _NO_REIMPORT:
                refuse(f"importing {args[0]} again")
            if args[0] in _NO_IMPORT:
                refuse(f"importing {args[0]}")
            if len(args) > 1 and args[1] is not None:  # a native extension module, loaded from a file
                p = resolve(args[1])
                if p is not None and (p.startswith(write_prefix) or not p.startswith(code_prefixes)):
                    refuse(f"loading native code from '{p}'")
        elif event in ("os.listdir", "os.scandir"):
            if args and args[0] is not None:
                check_read(args[0])
        elif event == "mmap.__new__":
            if args and isinstance(args[0], int) and args[0] in protected_fds:
                refuse("using the sandbox's own channel")

    return hook


# --- running calls ---------------------------------------------------------------------------
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


FLUSH_SECONDS = 0.005  # results are sent at least this often (and at the end of each batch)
FLUSH_COUNT = 64


class Worker:
    """The call loop. One instance per worker process."""

    def __init__(self, sock: socket.socket, workdir: str, allow_flags: list, progress=None):
        import _signal
        import _thread
        import resource

        self.sock, self.workdir, self.allow = sock, workdir, allow_flags
        self.progress = progress  # shared int64: index of the call being run (crash attribution)
        self.codes: dict = {}  # key -> code object or the compile error
        self.sources: dict = {}  # key -> source text not yet compiled
        self.in_tool = False
        self.fired = 0
        self.cpu_soft = resource.RLIM_INFINITY
        self._resource, self._signal = resource, _signal
        self._builtins = dict(builtins.__dict__)
        self._sys_path = list(sys.path)
        self._meta_path = list(sys.meta_path)
        self._recursion = sys.getrecursionlimit()
        self._stdio = (sys.stdin, sys.stdout, sys.stderr)
        self._critical = {
            k: sys.modules[k]
            for k in (
                "json",
                "json.encoder",
                "json.decoder",
                "json.scanner",
                "os",
                "sys",
                "signal",
                "socket",
                "builtins",
                "time",
            )
        }
        # the module namespaces the worker itself relies on, restored when a tool changes them
        self._namespaces = [
            (m.__dict__, dict(m.__dict__))
            for k, m in self._critical.items()
            if k.startswith("json") or k in ("os", "signal", "socket", "time")
        ]
        self._thread_count = _thread._count
        self._handler = self._on_signal
        self._ignored = [
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
        for sig in self._ignored:  # a tool's timers or stray signals must not kill a later call
            _signal.signal(sig, _signal.SIG_IGN)

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
        namespace = {}
        exec(code, namespace, namespace)
        if name in namespace:
            predict = namespace[name](**arguments)
        else:
            raise NameError(f"name {name} is not defined")
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

    def run_call(self, name: str, key: str, args_text: str, opts: dict) -> dict:
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
        taint = self._restore()
        out = {"c": content, "ok": ok, "e": error, "o": cap.text(), "s": seconds, "t": truncated}
        if taint:
            out["r"] = taint
        return out

    def _restore(self) -> str | None:
        """Undo what a tool may have changed for later calls; a reason to recycle if we cannot."""
        sys.stdin, sys.stdout, sys.stderr = self._stdio
        bd = builtins.__dict__
        if len(bd) != len(self._builtins) or bd != self._builtins:
            bd.clear()
            bd.update(self._builtins)
        if sys.path != self._sys_path:
            sys.path[:] = self._sys_path
        if sys.meta_path != self._meta_path:
            sys.meta_path[:] = self._meta_path
        if sys.getrecursionlimit() != self._recursion:
            sys.setrecursionlimit(self._recursion)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            sys.settrace(None)
            sys.setprofile(None)
        for sig in self._ignored:
            if self._signal.getsignal(sig) != self._signal.SIG_IGN:
                self._signal.signal(sig, self._signal.SIG_IGN)
        for k, m in self._critical.items():
            if sys.modules.get(k) is not m:
                sys.modules[k] = m
        for d, snap in self._namespaces:
            if len(d) != len(snap) or d != snap:
                d.clear()
                d.update(snap)
        try:
            if os.getcwd() != self.workdir:
                os.chdir(self.workdir)
        except OSError:
            try:
                os.makedirs(self.workdir, exist_ok=True)
                os.chdir(self.workdir)
            except OSError:
                return "working directory lost"
        if self._thread_count():
            return "tool left threads running"
        return None

    # the loop ------------------------------------------------------------------------------
    def serve(self) -> None:
        clock = time.perf_counter
        while True:
            msg = _recv_frame(self.sock, MAX_REQUEST_BYTES)
            if msg is None or msg.get("op") == "exit":
                return
            self.sources.update(msg.get("sources") or {})
            opts = msg["opts"]
            calls = msg["calls"]
            pending: list = []
            since = clock()
            for n, (i, name, key, args_text) in enumerate(calls):
                if self.progress is not None:
                    self.progress[0] = i
                try:
                    out = self.run_call(name, key, args_text, opts)
                except _Interrupt:  # a late timer signal between calls: report, carry on
                    self._disarm()
                    sys.stdin, sys.stdout, sys.stderr = self._stdio
                    out = {
                        "c": f"an error occured when call {name}: Function {name} timed out"
                        f" after {opts['timeout']:f} seconds.",
                        "ok": False,
                        "e": "timed out",
                        "o": "",
                        "s": opts["timeout"],
                        "t": False,
                    }
                out["i"] = i
                pending.append(out)
                now = clock()
                if n == len(calls) - 1 or len(pending) >= FLUSH_COUNT or now - since >= FLUSH_SECONDS or "r" in out:
                    self.sock.sendall(encode_frame(pending))
                    pending = []
                    since = now


def main(argv: list) -> None:
    fd, cfg = int(argv[1]), json.loads(argv[2])
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    workdir = cfg["workdir"]
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != workdir]  # `-m` added the cwd
    prot: dict = {"audit_hook": False}
    notes: dict = {}
    os.umask(0o022)  # the directories made for the bind mounts must be traversable
    workdir = _setup_namespaces(cfg, workdir, prot, notes)
    os.umask(0o077)
    os.chdir(workdir)
    _setup_rlimits(cfg, prot, notes)
    _drop_privileges(cfg, workdir, prot, notes)
    _prctl(int(cfg["parent_pid"]), prot, notes)
    for mod in cfg.get("preimport", ()):
        try:
            __import__(mod)
        except ImportError:
            pass
    prefixes, files = _read_allowlist(workdir, cfg.get("read_paths", []))
    prot["read_allowlist"] = True
    project = cfg.get("project_root")
    if project in sys.path:  # tool code must not import or read the project's own modules
        sys.path.remove(project)
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith("ctypes.")]:
        del sys.modules[name]  # a re-import needs dlopen, which the hook refuses
    _disable_spawning()
    allow = [False]
    progress = None
    if cfg.get("progress_fd") is not None:
        import mmap

        progress = memoryview(mmap.mmap(int(cfg["progress_fd"]), 8)).cast("q")
    worker = Worker(sock, workdir, allow, progress)
    protected = {fd} | ({int(cfg["progress_fd"])} if cfg.get("progress_fd") is not None else set())
    sys.addaudithook(make_audit_hook(workdir, prefixes, files, frozenset(protected), allow))
    prot["audit_hook"] = True
    sock.sendall(
        encode_frame(
            {
                "op": "hello",
                "pid": os.getpid(),
                "uid": os.getuid(),
                "workdir": workdir,
                "protections": prot,
                "notes": notes,
            }
        )
    )
    try:
        worker.serve()
    except BaseException:  # the worker's own machinery broke (a tool wrecked it): say why, exit
        import traceback

        try:
            os.write(2, traceback.format_exc().encode("utf-8", "replace")[-4000:])
        finally:
            os._exit(70)
    os._exit(0)  # never run atexit handlers a tool may have registered


if __name__ == "__main__":
    main(sys.argv)
