"""Hostile tool code: every case is contained, leaves no file outside the sandbox, does not
harm this process, and the next ordinary call on the same Sandbox still works."""

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from ftrl_lab.core.records import default_test_set
from ftrl_lab.core.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
TAG = uuid.uuid4().hex[:12]
PWNED = f"/tmp/pwned-{TAG}"  # outside every worker directory
REPO_PWNED = str(ROOT / f"pwned-{TAG}")  # inside the project
VICTIM = f"/tmp/victim-{TAG}"  # an existing file that must survive
TIMEOUT = 1.0

# name -> (source of a tool `t` taking no arguments, substrings the feedback must contain)
CASES = {
    "infinite_loop": ("def t():\n    while True:\n        pass\n", ["timed out"]),
    "swallows_timeout": (
        "def t():\n    while True:\n        try:\n            while True:\n                pass\n"
        "        except BaseException:\n            pass\n",
        ["timed out"],
    ),
    "sleep_past_timeout": ("import time\ndef t():\n    time.sleep(60)\n", ["timed out after 1.000000"]),
    "ignores_alarm": (
        "import signal\ndef t():\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n    while True:\n        pass\n",
        ["timed out"],
    ),
    "str_never_returns": (
        "class X:\n    def __str__(self):\n        while True:\n            pass\ndef t():\n    return X()\n",
        ["timed out"],
    ),
    "memory_bomb": (
        "def t():\n    chunks = []\n    while True:\n        chunks.append(bytearray(50 << 20))\n",
        ["an error occured when call t"],
    ),
    "string_bomb": ("def t():\n    return 'x' * (1 << 40)\n", ["an error occured when call t"]),
    "abort": ("import os\ndef t():\n    os.abort()\n", ["killed by signal SIGABRT"]),
    "fork_bomb": ("import os\ndef t():\n    while True:\n        os.fork()\n", ["forking is not allowed"]),
    "posixsubprocess": (
        "import _posixsubprocess, os\ndef t():\n    return _posixsubprocess.fork_exec(\n"
        "        [b'/bin/true'], [b'/bin/true'], True, (), None, None, -1, -1, -1, -1, -1, -1,\n"
        "        *os.pipe(), False, False, -1, None, None, None, -1, None, False)\n",
        ["an error occured when call t"],
    ),
    "posixsubprocess_reimport": (
        "import sys\ndef t():\n    sys.modules.pop('_posixsubprocess', None)\n"
        "    import _posixsubprocess\n    return str(_posixsubprocess.fork_exec)\n",
        ["is not allowed"],
    ),
    "native_code_from_workdir": (
        "import glob, shutil, sysconfig, os, importlib.util\ndef t():\n"
        "    lib = os.path.join(sysconfig.get_paths()['platstdlib'], 'lib-dynload')\n"
        "    src = glob.glob(lib + '/_bisect*.so')[0]\n"
        "    dst = os.path.join(os.getcwd(), os.path.basename(src))\n"
        "    shutil.copyfile(src, dst)\n"
        "    spec = importlib.util.spec_from_file_location('_bisect', dst)\n"
        "    return str(importlib.util.module_from_spec(spec))\n",
        ["loading native code from"],
    ),
    "subprocess": (
        "import subprocess\ndef t():\n    return subprocess.run(['id'], capture_output=True).stdout\n",
        ["starting processes is not allowed"],
    ),
    "os_system": (
        f"import os\ndef t():\n    return os.system('touch {PWNED}')\n",
        ["running shell commands is not allowed"],
    ),
    "connect_localhost": (
        "import socket\ndef t():\n    s = socket.socket()\n    s.connect(('127.0.0.1', 22))\n",
        ["network access is not allowed"],
    ),
    "connect_public": (
        "import socket\ndef t():\n    return socket.create_connection(('8.8.8.8', 53), timeout=5)\n",
        ["network access is not allowed"],
    ),
    "raw_socket_module": (
        "import _socket\ndef t():\n    s = _socket.socket()\n    s.connect(('1.1.1.1', 80))\n",
        ["network access is not allowed"],
    ),
    "urllib": (
        "import urllib.request\ndef t():\n    return urllib.request.urlopen('http://example.com').read()\n",
        ["network access is not allowed"],
    ),
    "write_tmp": (f"def t():\n    open('{PWNED}', 'w').write('x')\n", ["writing or deleting", "is not allowed"]),
    "write_repo": (f"def t():\n    open('{REPO_PWNED}', 'w').write('x')\n", ["is not allowed"]),
    "write_via_chdir": (
        f"import os\ndef t():\n    os.chdir('/tmp')\n    open('pwned-{TAG}', 'w').write('x')\n",
        ["is not allowed"],
    ),
    "os_open_write": (f"import os\ndef t():\n    os.open('{PWNED}', os.O_CREAT | os.O_WRONLY)\n", ["is not allowed"]),
    "delete_file": (f"import os\ndef t():\n    os.remove('{VICTIM}')\n", ["is not allowed"]),
    "rename_file": (f"import os\ndef t():\n    os.rename('{VICTIM}', '{PWNED}')\n", ["is not allowed"]),
    "rmtree_project": (f"import shutil\ndef t():\n    shutil.rmtree('{ROOT}')\n", ["is not allowed"]),
    "symlink_escape": ("import os\ndef t():\n    os.symlink('/tmp', 'out')\n", ["creating links is not allowed"]),
    "read_shadow": ("def t():\n    return open('/etc/shadow').read()\n", ["reading '/etc/shadow'"]),
    "read_test_set": (f"def t():\n    return open('{default_test_set()}', 'rb').read(100)\n", ["is not allowed"]),
    "read_via_proc_root": (
        "def t():\n    return open('/proc/self/root/etc/passwd').read()\n",
        ["reading '/proc/self/root/etc/passwd'"],
    ),
    "list_directories": ("import os\ndef t():\n    return os.listdir('/')\n", ["reading '/'"]),
    "crafted_bytecode": (
        "def t():\n    c = (lambda: 0).__code__\n    return c.replace(co_code=b'\\x00' * 4)\n",
        ["is not allowed"],
    ),
    "test_capi": ("def t():\n    import _testcapi\n    return 'imported'\n", ["is not allowed"]),
    "read_project": (f"def t():\n    return open('{ROOT / 'README.md'}').read()\n", ["is not allowed"]),
    "huge_output": ("def t():\n    return 'z' * 5_000_000\n", ["output truncated by the sandbox"]),
    "huge_print": ("def t():\n    for _ in range(200_000):\n        print('spam' * 10)\n    return 'done'\n", ["done"]),
    "recursion": ("def t():\n    return t()\n", ["maximum recursion depth exceeded"]),
    "unbounded_recursion": (
        "import sys\ndef f(n):\n    return f(n + 1) + 1\ndef t():\n    sys.setrecursionlimit(10**7)\n    return f(0)\n",
        ["an error occured when call t"],
    ),
    "c_stack_overflow": (
        "import sys, functools\ndef t():\n    sys.setrecursionlimit(10**7)\n"
        "    f = functools.lru_cache(None)(lambda n: f(n + 1) if n < 10**6 else n)\n    return f(0)\n",
        ["an error occured when call t"],
    ),
    "sys_exit": ("import sys\ndef t():\n    sys.exit(3)\n", ["SystemExit: 3"]),
    "os_exit": ("import os\ndef t():\n    os._exit(0)\n", ["ended its sandbox process"]),
    "kill_parent": (
        "import os, signal\ndef t():\n    os.kill(os.getppid(), signal.SIGKILL)\n",
        ["signalling other processes is not allowed"],
    ),
    "kill_group": ("import os, signal\ndef t():\n    os.killpg(0, signal.SIGKILL)\n", ["is not allowed"]),
    "segfault_ctypes": ("import ctypes\ndef t():\n    return ctypes.string_at(0)\n", ["ctypes is not allowed"]),
    "segfault_signal": (
        "import os, signal\ndef t():\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
        ["killed by signal SIGSEGV"],
    ),
    "thread_spam": (
        "import threading, time\ndef t():\n    for _ in range(1000):\n"
        "        threading.Thread(target=time.sleep, args=(100,)).start()\n",
        ["can't start new thread"],
    ),
    "forge_replies": (
        "import os\ndef t():\n    for fd in range(3, 64):\n        try:\n"
        "            os.write(fd, b'\\x00\\x00\\x00\\x05hello')\n        except OSError:\n"
        "            pass\n    return 'forged'\n",
        ["an error occured when call t"],
    ),
    "close_all_fds": (
        "import os\ndef t():\n    os.closerange(0, 1024)\n    return 'closed'\n",
        ["an error occured when call t"],
    ),
    "interpreter_introspection": ("import gc\ndef t():\n    return len(gc.get_objects())\n", ["is not allowed"]),
    "environment_secrets": ("import os\ndef t():\n    return sorted(os.environ)\n", ["HOME"]),
    "fill_disk": (
        "def t():\n    with open('big', 'wb') as f:\n        while True:\n            f.write(b'0' * (1 << 20))\n",
        ["an error occured when call t"],
    ),
    "raise_rlimit": (
        "import resource\ndef t():\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n",
        ["is not allowed"],
    ),
}

# Calls that poison the interpreter; the call after each must still behave normally.
POISON = {
    "chdir": "import os\ndef t():\n    os.chdir('/')\n    return os.getcwd()\n",
    "builtins": (
        "import builtins\ndef t():\n    builtins.len = lambda x: 42\n"
        "    __builtins__['str'] = None\n    return 'poisoned'\n"
    ),
    "stdout": "import sys\ndef t():\n    sys.stdout = None\n    sys.stderr = None\n    return 'poisoned'\n",
    "json_module": (
        "import json, sys\ndef t():\n    json.dumps = None\n    sys.modules['json'] = None\n    return 'poisoned'\n"
    ),
    "sys_path": (
        "import sys\ndef t():\n    sys.path.insert(0, '/tmp')\n    sys.setrecursionlimit(50)\n    return 'poisoned'\n"
    ),
    "signals": (
        "import signal\ndef t():\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    signal.setitimer(signal.ITIMER_VIRTUAL, 0.01)\n    return 'poisoned'\n"
    ),
}

NORMAL = (
    "import json\nprint('normal')\ndef normal(x):\n    return {'len': len(x), 'str': str(x), "
    "'json': json.dumps(x), 'cwd_ok': __import__('os').getcwd().startswith('/tmp/ftrl-sandbox-')}\n"
)


@pytest.fixture(scope="module")
def sb():
    Path(VICTIM).write_text("keep me")
    os.environ["FTRL_TEST_SECRET"] = "s3cret"
    try:
        with (
            Sandbox(  # exec mode "fresh": the attacks' module-level imports work (the layers are the same in both modes)
                n_workers=2,
                timeout=TIMEOUT,
                grace=1.0,
                memory_bytes=256 << 20,
                file_bytes=4 << 20,
                tmpfs_bytes=32 << 20,
                exec_mode="fresh",
            ) as s
        ):
            yield s
    finally:
        os.environ.pop("FTRL_TEST_SECRET", None)
        Path(VICTIM).unlink(missing_ok=True)


def run_normal(sb):
    r = sb.run({"normal": NORMAL}, [{"id": "n", "function": {"name": "normal", "arguments": '{"x": "abc"}'}}])[0]
    assert r.ok, r.content
    assert json.loads(r.content) == {"len": 3, "str": "abc", "json": '"abc"', "cwd_ok": True}
    assert r.stdout == "normal\n"


def run_tool(sb, source):
    t = time.monotonic()
    r = sb.run({"t": source}, [{"id": "h", "function": {"name": "t", "arguments": "{}"}}])[0]
    return r, time.monotonic() - t


def assert_nothing_escaped():
    assert not os.path.exists(PWNED)
    assert not os.path.exists(REPO_PWNED)
    assert Path(VICTIM).read_text() == "keep me"
    assert (ROOT / "README.md").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_case_is_contained(sb, case):
    source, expected = CASES[case]
    r, took = run_tool(sb, source)
    for text in expected:
        assert text in r.content, (case, r.content[:300])
    if case in ("memory_bomb", "string_bomb"):  # FTRL's content shows str(MemoryError()) == ""
        assert r.error == "MemoryError" or "timed out" in r.error, r.error  # slow on a busy machine
    if case == "environment_secrets":
        assert "FTRL_TEST_SECRET" not in r.content
    elif case == "huge_print":
        assert r.ok and len(r.stdout) < 11_000 and "dropped by the sandbox" in r.stdout
    elif case == "huge_output":
        assert r.truncated and len(r.content) < 101_000
    else:
        assert not r.ok
    assert took < TIMEOUT + 6, (case, took)  # timeout + grace + a respawn
    assert_nothing_escaped()
    os.kill(os.getpid(), 0)  # we are alive and signalable
    run_normal(sb)


@pytest.mark.parametrize("case", sorted(POISON))
def test_poisoning_does_not_reach_the_next_call(sb, case):
    r, _ = run_tool(sb, POISON[case])
    assert r.ok, r.content
    for _ in range(3):  # same worker or the other: both must be clean
        run_normal(sb)


def test_network_namespace_makes_connect_fail_locally(sb):
    """Even with the audit hook out of the way (a layer a determined tool might defeat), the
    worker's network namespace has no route anywhere: connect fails at once, nothing is sent."""
    if not sb.protections().get("network_namespace"):
        pytest.skip(f"no network namespace here: {sb.protection_notes().get('network_namespace')}")
    probe = "import socket\ndef t():\n    return [name for _, name in socket.if_nameindex()]\n"
    r, _ = run_tool(sb, probe)
    if sb.protections().get("seccomp"):  # the filter refuses the netlink socket outright
        assert r.content == "an error occured when call t: [Errno 1] Operation not permitted", r.content
    else:
        assert r.ok and json.loads(r.content) == ["lo"], r.content  # only a loopback, and it is down


def test_parent_survives_and_workers_are_ours(sb):
    pids = sb.worker_pids()
    for pid in pids:
        assert os.getpgid(pid) == pid  # own session: terminal signals do not reach them
    assert os.getpid() not in pids
    signal.getsignal(signal.SIGINT)  # our own handlers untouched
    run_normal(sb)
