"""The seccomp filter of the sandbox's per-environment children, compiled with libseccomp.

The filter is built here, in the parent, with libseccomp's Python bindings (Debian's
``python3-seccomp`` module ``seccomp``, or the drop-in PyPI package ``pyseccomp``), exported as
a classic BPF program and handed to the zygote. Each child loads it right after it is forked
(``sandbox_worker.load_seccomp``), before it receives its environment, so everything the tool
code does runs under it. The zygote itself stays unfiltered (it has to fork).

Refused with ``EPERM`` (the call fails, the process lives on):

* creating processes: ``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD`` (threads stay
  possible, ``RLIMIT_NPROC`` bounds them); ``clone3`` gets ``ENOSYS`` so the C library falls
  back to ``clone``, whose flags the filter can see; ``execve``/``execveat``;
* touching other processes: ``kill``/``tkill``/``tgkill``/``rt_(tg)sigqueueinfo`` to any pid
  but the child's own, ``prlimit64`` on another pid, ``ptrace``, ``process_vm_readv/writev``,
  ``process_madvise``, ``pidfd_*``, ``kcmp``;
* changing the sandbox: ``mount`` and the new mount API, ``umount2``, ``pivot_root``,
  ``chroot``, ``unshare``, ``setns``, ``seccomp``, ``personality``;
* kernel attack surface: ``bpf``, ``perf_event_open``, ``userfaultfd``, ``keyctl``,
  ``add_key``, ``request_key``, ``io_uring_*``, module loading, ``kexec_*``, ``reboot``,
  ``swapon``/``swapoff``, ``iopl``/``ioperm``, ``open_by_handle_at``, ``ioctl(TIOCSTI)``;
* sockets of any family but ``AF_UNIX`` (the network namespace is empty anyway).

The child's pid is not known here, so the program compares against ``PID_PLACEHOLDER`` and the
child patches its own pid into the comparisons (:func:`patch_pid`, also used by the worker).
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile

PID_PLACEHOLDER = 0x7E5A_C0DE  # above any pid_max (2**22): cannot be a real pid
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k

CLONE_THREAD = 0x00010000
AF_UNIX = 1
TIOCSTI = 0x5412

DENIED = (
    "fork",
    "vfork",
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "seccomp",
    "personality",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "iopl",
    "ioperm",
    "open_by_handle_at",
    "name_to_handle_at",
    "quotactl",
    "acct",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "sethostname",
    "setdomainname",
)
# syscall -> the argument that must be the child's own pid
OWN_PID_ONLY = {"kill": 0, "tkill": 0, "tgkill": 0, "rt_sigqueueinfo": 0, "rt_tgsigqueueinfo": 0}


def _bindings():
    try:
        import seccomp  # libseccomp's own bindings (Debian python3-seccomp)
    except ImportError:
        import pyseccomp as seccomp  # the same API over ctypes (PyPI)
    return seccomp


def build_filter() -> tuple[bytes | None, str]:
    """(the BPF program with ``PID_PLACEHOLDER``, "") or (None, why it is unavailable)."""
    try:
        sc = _bindings()
    except ImportError:
        return None, "no libseccomp Python bindings (pip install pyseccomp, or apt-get install python3-seccomp)"
    except OSError as e:  # pyseccomp: libseccomp.so.2 missing
        return None, f"libseccomp not loadable: {e}"
    eperm = sc.ERRNO(errno.EPERM)
    try:
        f = sc.SyscallFilter(sc.ALLOW)
        for name in DENIED:
            try:
                f.add_rule(eperm, name)
            except (ValueError, RuntimeError, OSError):  # a syscall this kernel/arch lacks
                pass
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
        for name, arg in OWN_PID_ONLY.items():
            f.add_rule(eperm, name, sc.Arg(arg, sc.NE, PID_PLACEHOLDER))
        f.add_rule(eperm, "prlimit64", sc.Arg(0, sc.NE, 0))
        f.add_rule(eperm, "socket", sc.Arg(0, sc.NE, AF_UNIX))
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
        with tempfile.TemporaryFile() as out:
            f.export_bpf(out)
            out.seek(0)
            prog = out.read()
    except Exception as e:  # the bindings raise assorted types; any failure means no filter
        return None, f"libseccomp could not build the filter: {type(e).__name__}: {e}"
    if not prog or len(prog) % _INSN.size or patch_pid(prog, os.getpid()) == prog:
        return None, "libseccomp exported an unexpected program"
    return prog, ""


def patch_pid(prog: bytes, pid: int) -> bytes:
    """``prog`` with every comparison against ``PID_PLACEHOLDER`` made against ``pid``."""
    out = bytearray(prog)
    for off in range(0, len(out) - _INSN.size + 1, _INSN.size):
        code, jt, jf, k = _INSN.unpack_from(out, off)
        if k == PID_PLACEHOLDER:
            _INSN.pack_into(out, off, code, jt, jf, pid)
    return bytes(out)
