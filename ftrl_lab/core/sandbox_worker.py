"""The sandbox's zygote and its per-environment children (runs inside the OS sandbox).

Started by the parent (:mod:`ftrl_lab.core.sandbox`) as a script,
``python -E -s -S -B sandbox_worker.py <control-fd> <config-json>``, inside bubblewrap
(:mod:`ftrl_lab.core.sandbox_bwrap`) or, where the machine cannot run it, directly (the
fallback; see ``Sandbox.protections()``). It imports only the standard library.

**The zygote** imports the modules tool code commonly needs, then waits on its control socket
(``SOCK_SEQPACKET``) for ``{"op": "fork", "id": n}`` messages, each carrying one end of a fresh
socket pair. For each it forks a child and closes its copy of that socket; it reports each
child's exit status (``{"op": "exit", "id": n, "rc": rc}``) and kills a child on request. It
never receives an environment's sources or calls and never runs tool code.

**Each child** serves exactly one environment. Before it reads anything from its socket it
closes every other descriptor and locks itself down: a private mount namespace with its own
size-capped tmpfs over ``/tmp`` and ``/dev/shm`` (so no environment sees another's files),
resource limits, no capabilities, no-new-privileges, non-dumpable (other processes cannot
read its memory), parent-death signal, the seccomp filter of
:mod:`ftrl_lab.core.sandbox_seccomp`, and the audit hook of :mod:`ftrl_lab.core.sandbox_audit`.
Then it reads its environment (sources, calls, options), runs the calls
(:mod:`ftrl_lab.core.sandbox_calls`), sends the replies and exits. Which layers took effect
is measured once at start-up in a probe child and reported in the zygote's hello message.
"""

import base64
import gc
import json
import os
import selectors
import signal
import socket
import struct
import sys

try:  # a package module in the parent and in tests, a plain module inside the sandbox
    from ftrl_lab.core.ftrl_exec import ftrl_module_globals
    from ftrl_lab.core.sandbox_audit import disable_spawning, make_audit_hook, read_allowlist
    from ftrl_lab.core.sandbox_calls import CallLoop, Pristine
    from ftrl_lab.core.sandbox_protocol import FrameReader
except ImportError:
    from ftrl_exec import ftrl_module_globals
    from sandbox_audit import disable_spawning, make_audit_hook, read_allowlist
    from sandbox_calls import CallLoop, Pristine
    from sandbox_protocol import FrameReader

NOBODY = 65534
MAX_REQUEST_BYTES = 256 << 20  # an environment's sources and calls
CHILD_DIR = "/tmp/ftrl-sandbox-env"  # a child's working directory on its private tmpfs
PID_PLACEHOLDER = 0x7E5A_C0DE  # as in sandbox_seccomp (which this script cannot import)

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER = 0x00020000, 0x40000000, 0x10000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
SECCOMP_MODE_FILTER = 2


class Native:
    """The few system calls Python's stdlib lacks (unshare, mount, prctl, capset), via ctypes.
    Built by the zygote, with every ctypes object a child needs made in advance (a child then
    only fills in its pid), so a child's set-up allocates and touches little."""

    def __init__(self, seccomp_prog: bytes | None = None):
        import ctypes

        ct = self.ct = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)

        class Header(ct.Structure):
            _fields_ = [("version", ct.c_uint32), ("pid", ct.c_int)]

        class Fprog(ct.Structure):
            _fields_ = [("len", ct.c_ushort), ("filter", ct.c_void_p)]

        self.cap_header = ct.byref(Header(0x20080522, 0))
        self.cap_data = (ct.c_uint32 * 6)()  # two (effective, permitted, inheritable) sets, all zero
        self.seccomp_buf = self.fprog = None
        self.pid_offsets: list[int] = []
        if seccomp_prog is not None:
            self.seccomp_buf = ct.create_string_buffer(seccomp_prog, len(seccomp_prog))
            self.fprog = ct.byref(Fprog(len(seccomp_prog) // 8, ct.cast(self.seccomp_buf, ct.c_void_p)))
            self.pid_offsets = pid_offsets(seccomp_prog)

    def call(self, fn: str, *args) -> str | None:
        """None on success, else the error text."""
        if getattr(self.libc, fn)(*args) != 0:
            return os.strerror(self.ct.get_errno())
        return None

    def drop_capabilities(self) -> str | None:
        return self.call("capset", self.cap_header, self.cap_data)

    def load_seccomp(self, pid: int) -> str | None:
        """Load the zygote's filter with ``pid`` as the process's own pid (a child's copy of
        the program buffer is patched in place)."""
        buf = self.seccomp_buf
        for off in self.pid_offsets:
            struct.pack_into("=I", buf, off + 4, pid)
        return self.call("prctl", PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self.fprog, 0, 0)


def pid_offsets(prog: bytes) -> list[int]:
    """Byte offsets of the instructions of ``prog`` that compare against the placeholder pid."""
    insn = struct.Struct("=HBBI")
    return [off for off in range(0, len(prog) - 7, 8) if insn.unpack_from(prog, off)[3] == PID_PLACEHOLDER]


# --- the fallback's zygote set-up (no bubblewrap) ---------------------------------------------
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
        native = Native()
        ctypes, libc = native.ct, native.libc
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
        uid, gid = os.getuid(), os.getgid()
        err = call(libc.unshare, CLONE_NEWUSER | CLONE_NEWNET)
        prot["network_namespace"] = err is None
        if err:
            notes["network_namespace"] = f"unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: {err}"
        else:  # map ourselves, so that children may mount their private /tmp in this namespace
            try:
                for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            except OSError as e:
                notes["private_tmpfs"] = f"user namespace id maps: {e}"
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


# --- a child's lock-down -----------------------------------------------------------------------
def _cap_rlimit(resource, which, value) -> None:
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def lock_down(native: Native, cfg: dict, zygote_pid: int, prot: dict, notes: dict) -> str:
    """Apply the per-child layers in order; returns the child's working directory."""
    import resource

    # 1. its own files: a private mount namespace and an empty, size-capped /tmp and /dev/shm
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC  # nothing written there can be run or dlopen'ed
    size = int(cfg.get("tmpfs_bytes", 64 << 20))
    err = native.call("unshare", CLONE_NEWNS)
    if err is None:
        err = native.call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    if err is None:
        err = native.call("mount", b"tmpfs", b"/tmp", b"tmpfs", flags, f"size={size},mode=1777".encode())
    if err is None:
        for small in (b"/dev/shm", b"/var/tmp", b"/run/lock"):
            if os.path.isdir(small):
                native.call("mount", b"tmpfs", small, b"tmpfs", flags, b"size=1m,mode=1777")
        workdir = CHILD_DIR
        prot["private_tmpfs"] = True
    else:  # the fallback without namespaces: a directory of our own under the zygote's
        workdir = f"{cfg['workdir']}/env-{os.getpid()}"
        prot["private_tmpfs"] = False
        notes["private_tmpfs"] = f"per-environment mount namespace failed: {err}"
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    # 2. an unprivileged user (the fallback as root; inside bubblewrap we are nobody already)
    prot["uid_nobody"] = os.getuid() == NOBODY
    if os.geteuid() == 0 and cfg.get("drop_privileges", True):
        os.chown(workdir, NOBODY, NOBODY)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        prot["uid_nobody"] = True
    elif not prot["uid_nobody"]:
        notes["uid_nobody"] = "not root: tool code runs as the calling user (inside the sandbox's namespaces)"
    os.chdir(workdir)
    # 3. resource limits; no new processes or threads
    try:
        _cap_rlimit(resource, resource.RLIMIT_AS, int(cfg.get("memory_bytes", 1 << 30)))
        _cap_rlimit(resource, resource.RLIMIT_FSIZE, int(cfg.get("file_bytes", 16 << 20)))
        _cap_rlimit(resource, resource.RLIMIT_CORE, 0)
        _cap_rlimit(resource, resource.RLIMIT_NOFILE, 256)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
        prot["rlimits"] = True
    except (OSError, ValueError) as e:
        prot["rlimits"] = False
        notes["rlimits"] = f"setrlimit failed: {e}"
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        prot["no_new_processes"] = True
    except (OSError, ValueError) as e:
        prot["no_new_processes"] = False
        notes["no_new_processes"] = f"RLIMIT_NPROC: {e}"
    # 4. no capabilities, no new privileges, not dumpable, dies with the zygote
    err = native.drop_capabilities()
    prot["no_capabilities"] = err is None
    if err:
        notes["no_capabilities"] = f"capset: {err}"
    prot["no_new_privs"] = native.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) is None
    prot["not_dumpable"] = native.call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0) is None
    native.call("prctl", PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != zygote_pid:  # the zygote died before the death signal was armed
        os._exit(1)
    # 5. the seccomp filter
    prot["seccomp"] = False
    if native.fprog is None:
        notes["seccomp"] = cfg.get("seccomp_note") or "no filter"
    else:
        err = native.load_seccomp(os.getpid())
        prot["seccomp"] = err is None
        if err:
            notes["seccomp"] = f"loading the filter failed: {err}"
    return workdir


def _forget_setup_modules() -> None:
    """Done in the zygote, before any child is forked: tool code finds no ctypes module (the
    zygote's Native keeps its own references; a re-import needs dlopen, which the audit hook
    refuses) and no working ``_posixsubprocess.fork_exec``."""
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith("ctypes.")]:
        del sys.modules[name]
    disable_spawning()


def child_main(sock: socket.socket, native: Native, cfg: dict, zygote_pid: int, allowed, pristine) -> None:
    """One environment: lock down, read the request, run its calls, reply, exit.
    ``allowed``: the zygote's read allow-list (prefixes, files), computed once; ``pristine``:
    the zygote's :class:`Pristine` snapshot of the interpreter state."""
    prot: dict = {}
    workdir = lock_down(native, cfg, zygote_pid, prot, {})
    prefixes, files = allowed
    prefixes = (*prefixes, workdir.rstrip("/") + "/")
    sock.setblocking(True)
    reader = FrameReader(MAX_REQUEST_BYTES, max_depth=None)  # from the parent: trusted
    request = None
    while request is None:
        data = sock.recv(1 << 20)
        if not data:
            os._exit(0)  # the parent gave up on us
        frames = reader.feed(data)
        request = frames[0] if frames else None
    allow = [False]
    loop = CallLoop(sock, workdir, allow, pristine)
    if cfg.get("audit_hook", True):
        sys.addaudithook(make_audit_hook(workdir, prefixes, files, frozenset({sock.fileno()}), allow))
    del reader, data, frames
    loop.serve(request)


# --- the zygote --------------------------------------------------------------------------------
class Zygote:
    """Forks one child per environment on request; reports their exits."""

    def __init__(self, ctl: socket.socket, cfg: dict):
        self.ctl, self.cfg = ctl, cfg
        self.native = Native(base64.b64decode(cfg["seccomp"]) if cfg.get("seccomp") else None)
        self.pristine = None  # the interpreter snapshot children restore to, taken last
        self.children: dict[int, int] = {}  # pid -> request id
        self.pids: dict[int, int] = {}  # request id -> pid
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.sel = selectors.DefaultSelector()
        self.sel.register(ctl, selectors.EVENT_READ)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self.pid = os.getpid()
        self.allowed = read_allowlist(CHILD_DIR, cfg.get("read_paths", []) + cfg.get("site_dirs", []))

    def _fork(self, fd: int):
        pid = os.fork()
        if pid:
            return pid
        code = 70
        try:  # the child: nothing of the zygote's machinery survives
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.closerange(3, fd)
            os.closerange(fd + 1, 1 << 20)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
            self.sel = self.ctl = None
            child_main(sock, self.native, self.cfg, self.pid, self.allowed, self.pristine)
            code = 0
        finally:
            os._exit(code)  # never run atexit handlers a tool may have registered

    def probe(self) -> tuple[dict, dict]:
        """Apply the child layers in a throw-away child; (protections, notes) it reports."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                prot, notes = {}, {}
                lock_down(self.native, self.cfg, self.pid, prot, notes)
                prot["audit_hook"] = prot["read_allowlist"] = bool(self.cfg.get("audit_hook", True))
                if not prot["audit_hook"]:
                    notes["audit_hook"] = notes["read_allowlist"] = "disabled by configuration"
                os.write(w, json.dumps([prot, notes]).encode())
            finally:
                os._exit(0)
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        self.children.pop(pid, None)
        try:
            prot, notes = json.loads(data)
        except ValueError:
            prot, notes = {}, {"probe": "the probe child reported nothing"}
        return prot, notes

    def send(self, msg: dict) -> None:
        self.ctl.send(json.dumps(msg).encode())

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            rid = self.children.pop(pid, None)
            if rid is not None:
                self.pids.pop(rid, None)
                self.send({"op": "exit", "id": rid, "rc": os.waitstatus_to_exitcode(status)})

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select():
                if key.fileobj == self.wake_r:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                    continue
                data, fds, _, _ = socket.recv_fds(self.ctl, 1 << 16, 4)
                if not data:  # the parent is gone
                    return
                msg = json.loads(data)
                op = msg.get("op")
                if op == "fork" and len(fds) == 1:
                    pid = self._fork(fds[0])
                    os.close(fds[0])
                    self.children[pid] = msg["id"]
                    self.pids[msg["id"]] = pid
                elif op == "kill":
                    for fd in fds:
                        os.close(fd)
                    pid = self.pids.get(msg.get("id"))
                    if pid is not None:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                elif op == "exit":
                    return
                else:
                    for fd in fds:
                        os.close(fd)


def warm_strptime(formats) -> None:
    """Compile (and cache) ``_strptime``'s regexes for ``formats`` once, for every child."""
    if "_strptime" not in sys.modules:
        return
    import time

    for fmt in formats:
        try:
            sys.modules["_strptime"]._strptime(time.strftime(fmt, time.gmtime(946684800)), fmt)
        except ValueError:
            pass


def main(argv: list) -> None:
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=int(argv[1]))
    ctl.setblocking(True)
    cfg = json.loads(argv[2])
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and p != here]  # tool code must not import the worker
    sys.path += cfg.get("site_dirs", [])
    prot: dict = {"bubblewrap": bool(cfg.get("bwrap"))}
    notes: dict = {}
    if not cfg.get("bwrap"):
        os.umask(0o022)  # the directories made for the bind mounts must be traversable
        _setup_namespaces(cfg, cfg["workdir"], prot, notes)
    os.umask(0o077)
    import resource  # noqa: F401  (children use them: import once)

    for mod in cfg.get("preimport", ()):
        try:
            __import__(mod)
        except ImportError:
            pass
    warm_strptime(cfg.get("strptime_formats", ()))
    ftrl_module_globals()  # finds FTRL's optional module names once, for every child
    zygote = Zygote(ctl, cfg)
    zygote.native.call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)
    child_prot, child_notes = zygote.probe()
    prot.update(child_prot)
    notes.update(child_notes)
    _forget_setup_modules()
    zygote.pristine = Pristine()  # after every import and patch: what each child starts from
    gc.collect()
    gc.freeze()  # children's garbage collections then do not touch (copy) the zygote's pages
    zygote.send({"op": "hello", "pid": os.getpid(), "protections": prot, "notes": notes})
    try:
        zygote.serve()
    finally:
        for pid in list(zygote.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
