"""The audit hook of the sandbox's children: defence in depth behind the OS sandbox.

Installed in each per-environment child after its other layers (see
:mod:`ftrl_lab.core.sandbox_worker`). It refuses process creation, network access, writes
outside the child's working directory, reads outside an allow-list, ctypes, signals to other
processes and a few interpreter internals. It is NOT the boundary (bubblewrap and seccomp are):
a tool that corrupts the interpreter can get past it. To make that harder it keeps its own
references to everything it uses (patching ``os.fsdecode``, ``posixpath`` or the module's
globals changes nothing) and normalises paths with string operations only.

Stdlib only: imported by the worker inside the sandbox as a plain module.
"""

import os
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class SandboxViolation(PermissionError):
    """Raised inside the worker when tool code attempts something the sandbox refuses."""


def read_allowlist(workdir: str, extra: list) -> tuple[tuple, frozenset]:
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


def disable_spawning() -> None:
    """``_posixsubprocess.fork_exec`` raises no audit event: replace it with a refusal."""
    try:
        import _posixsubprocess
    except ImportError:
        return

    def fork_exec(*args, **kwargs):
        raise SandboxViolation("sandbox: starting processes is not allowed")

    _posixsubprocess.fork_exec = fork_exec


def normalize(path: str, cwd: str) -> str:
    """``os.path.abspath`` with string operations only (no patchable module functions)."""
    if not path.startswith("/"):
        path = cwd + "/" + path
    parts: list = []
    for part in path.split("/"):
        if part == "" or part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def make_audit_hook(
    workdir: str, read_prefixes: tuple, read_files: frozenset, protected_fds: frozenset, allow_flags: list
):
    """The audit hook installed after set-up. The worker sets ``allow_flags[0]`` while it moves
    its own CPU limit. ``protected_fds`` are the worker's channels to the parent.

    Everything the hook uses is bound here, as locals of the closure: a tool that rebinds
    module attributes (``os.fsdecode``, ``os.path.abspath``, this module's block lists) cannot
    change what the hook sees."""
    my_pid = os.getpid()
    write_prefix = workdir.rstrip("/") + "/"
    write_files = frozenset({"/dev/null"})
    code_prefixes = tuple(p for p in read_prefixes if p != write_prefix)  # where modules may come from
    deny, write_events = dict(_DENY), dict(_WRITE_EVENTS)
    no_import, no_reimport = frozenset(_NO_IMPORT), frozenset(_NO_REIMPORT)
    fspath, readlink, getcwd, norm = os.fspath, os.readlink, os.getcwd, normalize
    fs_encoding = sys.getfilesystemencoding()
    exact_str, decode, startswith = str.__str__, bytes.decode, str.startswith
    Violation, isinstance_, int_, bytes_ = SandboxViolation, isinstance, int, bytes

    def refuse(what: str):
        raise Violation(f"sandbox: {what} is not allowed")

    def resolve(path, dir_fd=None):
        if isinstance_(path, int_):
            if path in protected_fds:
                refuse("using the sandbox's own channel")
            return None
        path = fspath(path)
        if isinstance_(path, bytes_):
            path = decode(bytes_(path), fs_encoding, "surrogateescape")
        path = exact_str(path)  # an exact str: a subclass cannot fake startswith()
        if dir_fd is not None and dir_fd >= 0 and not startswith(path, "/"):
            path = readlink(f"/proc/self/fd/{dir_fd}") + "/" + path
        return norm(path, getcwd())

    def check_write(path, dir_fd=None):
        p = resolve(path, dir_fd)
        if p is not None and not startswith(p, write_prefix) and p not in write_files:
            refuse(f"writing or deleting '{p}' (outside the sandbox directory {workdir})")

    def check_read(path):
        p = resolve(path)
        if p is not None and p not in read_files and not startswith(p, read_prefixes):
            refuse(f"reading '{p}'")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance_(mode, str):
                mode = exact_str(mode)  # a str subclass could fake `in`
            if int_(flags or 0) & _WRITE_FLAGS or (mode and any(c in mode for c in "wax+")):
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
        elif startswith(event, "ctypes."):
            refuse("ctypes")
        elif event in ("resource.setrlimit", "resource.prlimit"):
            if not allow_flags[0]:
                refuse("changing resource limits")
        elif event == "import":
            if args[0] in no_reimport:
                refuse(f"importing {args[0]} again")
            if args[0] in no_import:
                refuse(f"importing {args[0]}")
            if len(args) > 1 and args[1] is not None:  # a native extension module, loaded from a file
                p = resolve(args[1])
                if p is not None and (startswith(p, write_prefix) or not startswith(p, code_prefixes)):
                    refuse(f"loading native code from '{p}'")
        elif event in ("os.listdir", "os.scandir"):
            if args and args[0] is not None:
                check_read(args[0])
        elif event == "mmap.__new__":
            if args and isinstance_(args[0], int_) and args[0] in protected_fds:
                refuse("using the sandbox's own channel")

    return hook
