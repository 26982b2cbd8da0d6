"""Hostile environments against the OTHER environments of a batch: each attack runs in one
environment next to an honest one (and before one in the next batch); the attack must see
nothing of the honest environment, and the honest environment's results must be exact."""

import json
import os
import uuid

import pytest

from ftrl_lab.core.sandbox import Sandbox

GOLD = f"GOLD-{uuid.uuid4().hex}"
HONEST = {
    "honest": "import json, os, signal, sys, time\n"
    f"ANSWER = {GOLD!r}\n"
    "def honest(n):\n"
    "    time.sleep(0.01)\n"
    "    return {'answer': ANSWER, 'n': n, 'json': json.dumps({'k': [1, 2]}), 'big': len(str(10 ** 4000)),\n"
    "            'files': sorted(os.listdir('.')), 'tmp_left': os.path.exists('/tmp/left-in-tmp'),\n"
    "            'alarm_blocked': signal.SIGALRM in signal.pthread_sigmask(signal.SIG_BLOCK, []),\n"
    "            'digits': sys.get_int_max_str_digits()}\n"
}


def honest_calls(k=3):
    return [{"id": f"h{i}", "function": {"name": "honest", "arguments": json.dumps({"n": i})}} for i in range(k)]


def expected(i):
    return {
        "answer": GOLD,
        "n": i,
        "json": '{"k": [1, 2]}',
        "big": 4001,
        "files": [],
        "tmp_left": False,
        "alarm_blocked": False,
        "digits": 4300,
    }


ATTACKS = {
    "frame_walk": (
        "import sys, traceback\n"
        "def t():\n"
        "    seen = []\n"
        "    f = sys._getframe()\n"
        "    while f is not None:\n"
        "        seen.append(repr(f.f_locals)[:100000])\n"
        "        seen.append(repr(f.f_globals)[:100000])\n"
        "        f = f.f_back\n"
        "    seen += [repr(s) for s in traceback.extract_stack()]\n"
        "    return '\\n'.join(seen)\n"
    ),
    "gc_objects": "import gc\ndef t():\n    return str([o for o in gc.get_objects() if isinstance(o, str)])\n",
    "forge_records": (
        "import os, struct\n"
        "def t():\n"
        "    for i in range(0, 64):\n"
        "        body = struct.pack('!IBdIII', i, 1, 0.0, 6, 0, 0) + b'forged'\n"
        "        for fd in range(3, 64):\n"
        "            try:\n"
        "                os.write(fd, struct.pack('!I', len(body)) + body)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return 'forged'\n"
    ),
    "huge_and_deep_frames": (
        "import os\n"
        "def t():\n"
        "    for fd in range(3, 64):\n"
        "        for data in (b'\\xff\\xff\\xff\\xff', b'\\x00\\x10\\x00\\x00' + b'[' * 1048576):\n"
        "            try:\n"
        "                os.write(fd, data)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return 'sent'\n"
    ),
    "patch_everything": (
        "import json, socket, _signal, signal, sys, os, faulthandler\n"
        "def t():\n"
        "    json.JSONEncoder.encode = lambda self, o: '\"pwned\"'\n"
        "    json.JSONDecoder.decode = lambda self, s: {'n': 999}\n"
        "    socket.socket.sendall = lambda self, data: None\n"
        "    _signal.setitimer = lambda *a: (0.0, 0.0)\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n"
        "    sys.set_int_max_str_digits(640)\n"
        "    for fd in range(3, 32):\n"
        "        try:\n"
        "            signal.set_wakeup_fd(fd)\n"
        "            faulthandler.enable(file=fd)\n"
        "        except (OSError, ValueError):\n"
        "            pass\n"
        "    open('left-behind', 'w').write('x')\n"
        "    open('/tmp/left-in-tmp', 'w').write('x')\n"
        "    return 'patched'\n"
    ),
    "fsdecode_then_read": (
        "import os\n"
        "def t():\n"
        "    os.fsdecode = lambda p: '/tmp/ftrl-sandbox-env/ok'\n"
        "    os.path.abspath = lambda p: '/tmp/ftrl-sandbox-env/ok'\n"
        "    out = []\n"
        "    for p in (b'/etc/passwd', b'/work/shared/benchmarks/README.md', b'/root/.bashrc'):\n"
        "        try:\n"
        "            out.append(open(p, 'rb').read(50))\n"
        "        except OSError as e:\n"
        "            out.append(type(e).__name__)\n"
        "    return str(out)\n"
    ),
    "clear_import_block": (
        "import sys\n"
        "def t():\n"
        "    for m in list(sys.modules.values()):\n"
        "        if hasattr(m, '_NO_IMPORT'):\n"
        "            m._NO_IMPORT = frozenset()\n"
        "    import _testcapi\n"
        "    return 'imported'\n"
    ),
    "dir_fd_write": (
        "import os\n"
        "def t():\n"
        "    d = os.open('/', os.O_RDONLY)\n"
        "    fd = os.open('pwned-dirfd', os.O_CREAT | os.O_WRONLY, dir_fd=d)\n"
        "    return 'wrote'\n"
    ),
    "pidfd_signal": (
        "import os, signal\n"
        "def t():\n"
        "    out = []\n"
        "    for pid in (1, 2, 3, os.getppid()):\n"
        "        try:\n"
        "            fd = os.pidfd_open(pid)\n"
        "            signal.pidfd_send_signal(fd, signal.SIGKILL)\n"
        "            out.append('killed %d' % pid)\n"
        "        except OSError as e:\n"
        "            out.append(e.errno)\n"
        "    return str(out)\n"
    ),
    "kill_siblings": (
        "import os, signal\n"
        "def t():\n"
        "    hit = []\n"
        "    for pid in range(1, 400):\n"
        "        if pid != os.getpid():\n"
        "            try:\n"
        "                signal.pthread_kill  # (present)\n"
        "                os.kill(pid, signal.SIGKILL)\n"
        "                hit.append(pid)\n"
        "            except (OSError, PermissionError):\n"
        "                pass\n"
        "    return str(hit)\n"
    ),
    "proc_mem_of_siblings": (
        "import os\n"
        "def t():\n"
        "    got = []\n"
        "    for pid in range(1, 200):\n"
        "        for name in ('mem', 'environ', 'cwd/x'):\n"
        "            try:\n"
        "                with open(f'/proc/{pid}/{name}', 'rb') as f:\n"
        "                    got.append((pid, name, f.read(10)))\n"
        "            except (OSError, PermissionError, ValueError):\n"
        "                pass\n"
        "    return str(got)\n"
    ),
}
# what the attack's own result must (not) show
MUST_NOT = {"frame_walk": GOLD, "gc_objects": GOLD, "fsdecode_then_read": "root:", "clear_import_block": "imported"}


@pytest.fixture(scope="module")
def sb():
    # exec mode "fresh": the attacks' module-level imports work (the layers are the same in both modes)
    with Sandbox(n_workers=2, timeout=2.0, grace=1.0, memory_bytes=512 << 20, exec_mode="fresh") as s:
        yield s


def check_honest(results):
    assert [json.loads(r.content) for r in results] == [expected(i) for i in range(len(results))], results[0].content


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_attack_cannot_reach_other_environments(sb, case):
    attack = ({"t": ATTACKS[case]}, [{"id": "a", "function": {"name": "t", "arguments": "{}"}}] * 2)
    honest = (HONEST, honest_calls())
    before, attacked, after = sb.run_batch([honest, attack, honest])  # honest ones run beside it
    check_honest(before)
    check_honest(after)
    check_honest(sb.run(*honest))  # and the next batch
    text = " ".join(r.content for r in attacked)
    if case in MUST_NOT:
        assert MUST_NOT[case] not in text, text[:500]
    if case == "pidfd_signal":
        assert "killed" not in text, text
    if case == "kill_siblings":
        assert all(r.content == "[]" for r in attacked), text[:300]
    if case == "proc_mem_of_siblings":
        assert "'mem'" not in text and "'environ'" not in text, text[:500]
    if case == "dir_fd_write":
        assert not os.path.exists("/pwned-dirfd")
        assert all(not r.ok for r in attacked), text
    os.kill(os.getpid(), 0)  # this process is alive


def test_parent_survives_a_deeply_nested_frame_scan():
    from ftrl_lab.core.sandbox_protocol import FrameError, FrameReader, ReplyReader, encode_frame

    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(FrameError, match="deeper"):
        FrameReader(1 << 20, max_depth=16).feed(len(deep).to_bytes(4, "big") + deep)
    tricky = {"a": [1, {"b": '[[[["]\\'}]}  # brackets, a quote and a backslash inside a string
    assert FrameReader(1 << 20).feed(encode_frame(tricky)) == [tricky]
    for junk in (b"\x00\x00\x00\x03abc", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"):
        with pytest.raises(FrameError):
            ReplyReader(1 << 20, 1 << 16).feed(junk)


LEAVE_FILES = (
    "import os\n"
    "def leave():\n"
    "    done = []\n"
    "    for d in ('/', '/var/tmp', '/var', '/dev', '/dev/shm', '/tmp', '/sandbox', '/etc', '/run', os.getcwd()):\n"
    "        try:\n"
    "            os.makedirs(d, exist_ok=True)\n"
    "            with open(os.path.join(d, 'left-by-env'), 'w') as f:\n"
    "                f.write('x')\n"
    "            done.append(d)\n"
    "        except OSError:\n"
    "            pass\n"
    "    return done\n"
)
FIND_FILES = (
    "import os\n"
    "def find():\n"
    "    hits = []\n"
    "    for top in ('/', '/var', '/dev', '/tmp', '/sandbox', '/etc', '/run'):\n"
    "        for root, dirs, files in os.walk(top):\n"
    "            if root.startswith('/proc') or root.startswith('/usr'):\n"
    "                dirs[:] = []\n"
    "            hits += [os.path.join(root, f) for f in files if f == 'left-by-env']\n"
    "    return hits\n"
)


def test_files_left_anywhere_are_not_seen_by_the_next_environment():
    """With the audit hook off (the OS layers alone): whatever a child can write, the next
    environment's child cannot see."""
    with Sandbox(n_workers=1, audit_hook=False, exec_mode="fresh") as s:
        if not s.protections()["bubblewrap"]:
            pytest.skip("needs bubblewrap")
        left = s.run({"leave": LEAVE_FILES}, [{"function": {"name": "leave", "arguments": "{}"}}])[0]
        found = s.run({"find": FIND_FILES}, [{"function": {"name": "find", "arguments": "{}"}}])[0]
    assert left.ok and "/tmp" in json.loads(left.content)  # its own /tmp is writable
    assert not set(json.loads(left.content)) - {"/tmp", "/dev/shm", "/tmp/ftrl-sandbox-env"}
    assert found.ok and json.loads(found.content) == []
