"""The bubblewrap command line that wraps the sandbox's zygote: the OS boundary.

``bwrap`` (Debian package ``bubblewrap``) runs the zygote in new user, pid, network, IPC, UTS
and cgroup namespaces, with ``--die-with-parent`` and a new session, and a file system view
that holds only what the interpreter needs, all read-only:

* ``/usr`` (the C library, libffi, zoneinfo) and the usual ``/lib*``, ``/bin`` links;
* the interpreter, its shared library and its standard library, with every site-packages
  directory covered by an empty tmpfs;
* the worker's own modules (stdlib-only) at ``/sandbox/worker``, and the few third-party
  packages tool code may import (``Sandbox(site_packages=...)``) at ``/sandbox/site``;
* ``/etc/localtime`` and ``/etc/ld.so.cache``; a minimal ``/dev``; a ``/proc`` of the new pid
  namespace; an empty ``/tmp`` (each child mounts its own over it, and its own ``/dev/shm``);
  the root and ``/dev`` themselves read-only (nothing a child writes outlives it).

Nothing of the user's home, the project or the data sets is visible. The same command is used
as root and as a normal user (``--unshare-user`` in both cases), so both get one boundary.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
import sysconfig

WORKER_DIR = "/sandbox/worker"  # the worker modules inside the sandbox
SITE_DIR = "/sandbox/site"  # allowed third-party packages inside the sandbox
UID = 65534  # the user id tool code sees (nobody)


def bwrap_binary() -> str | None:
    """The bwrap executable, or None."""
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.path.exists(p)), None)


def _interpreter_paths() -> tuple[list[str], list[str]]:
    """(paths to bind read-only, site-packages directories to hide) for this interpreter."""
    exe = os.path.realpath(sys.executable)
    paths = {exe}  # the executable only, not its whole bin/
    for key in ("stdlib", "platstdlib"):
        paths.add(sysconfig.get_paths()[key])
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname:
        lib = os.path.join(libdir, soname)
        if os.path.exists(lib):
            paths.add(lib)
            paths.add(os.path.realpath(lib))
    hide = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    try:
        hide.update(site.getsitepackages())
        hide.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site.py
        pass
    bound = [p for p in sorted(paths) if not p.startswith("/usr/")]
    under = [p for p in bound if os.path.isdir(p)] + ["/usr"]
    hidden = sorted(d for d in hide if os.path.isdir(d) and any(d.startswith(b.rstrip("/") + "/") for b in under))
    return bound, hidden


def _root_links() -> list[str]:
    """/lib, /lib64, /bin, /sbin as the host has them (links into /usr, or directories)."""
    args: list[str] = []
    for name in ("lib", "lib32", "lib64", "libx32", "bin", "sbin"):
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def bwrap_args(worker_files: list[str], site_modules: dict[str, str], read_paths: list[str]) -> list[str]:
    """The bwrap options (everything before ``--``) for the zygote.

    ``worker_files``: host paths of the worker's modules, bound into ``WORKER_DIR``;
    ``site_modules``: name -> host path of a package directory or module file, bound into
    ``SITE_DIR``; ``read_paths``: extra host paths made visible read-only at the same place."""
    bound, hidden = _interpreter_paths()
    args = [
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(UID),
        "--gid",
        str(UID),
        "--hostname",
        "sandbox",
        # kept in the zygote's own namespace only, so that each child can mount its private
        # /tmp; every child drops all capabilities before tool code runs
        "--cap-add",
        "CAP_SYS_ADMIN",
        "--ro-bind",
        "/usr",
        "/usr",
        *_root_links(),
    ]
    for p in bound:
        args += ["--ro-bind", p, p]
    for d in hidden:
        args += ["--tmpfs", d, "--remount-ro", d]
    for f in ("/etc/localtime", "/etc/ld.so.cache", "/etc/timezone"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    for f in worker_files:
        args += ["--ro-bind", f, f"{WORKER_DIR}/{os.path.basename(f)}"]
    for name, path in sorted(site_modules.items()):
        target = f"{SITE_DIR}/{name}" + ("" if os.path.isdir(path) else ".py")
        args += ["--ro-bind", path, target]
    for p in read_paths:
        if os.path.exists(p):
            args += ["--ro-bind", os.path.abspath(p), os.path.abspath(p)]
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--chdir", "/tmp"]
    # bwrap's root and /dev are tmpfs that uid nobody could write: files put there would outlive
    # the child that wrote them and be seen by later environments. Read-only; each child mounts
    # its own /tmp and /dev/shm over them.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    return args


@functools.lru_cache(maxsize=4)
def probe(bwrap: str, args: tuple[str, ...]) -> str | None:
    """None when ``bwrap args -- python -c pass`` works here, else why not (e.g. no user
    namespaces). Cached per process."""
    try:
        out = subprocess.run(
            [bwrap, *args, "--", os.path.realpath(sys.executable), "-S", "-E", "-c", "pass"],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap did not run: {e}"
    if out.returncode != 0:
        return f"bwrap failed (exit {out.returncode}): {out.stderr.decode('utf-8', 'replace').strip()[-500:]}"
    return None
