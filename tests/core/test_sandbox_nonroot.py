"""The sandbox run by a real unprivileged user (issue 17, item 7): attacks on that user's account
and on the parent process must be contained, the next environment must get its correct result,
and the parent must be unharmed.

Researchers run notebooks as normal users, so as root this test creates a throwaway user with a
home directory, copies the sandbox's modules (stdlib-only on the parent side) into a directory
that user can read, and runs a driver script with Debian's system Python (``/usr/bin/python3``;
the project's interpreter under /root is unreachable for other users) as that user. The driver
runs each hostile tool in its own environment, then a normal one, and reports what it saw; the
test checks the user's files from outside.
"""

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
PARENT_MODULES = (
    "sandbox.py",
    "sandbox_worker.py",
    "sandbox_calls.py",
    "sandbox_audit.py",
    "sandbox_protocol.py",
    "sandbox_bwrap.py",
    "sandbox_seccomp.py",
    "ftrl_exec.py",
)
SECRET = "user-secret-0600"

DRIVER = r"""
import json, os, resource, signal, sys
from ftrl_lab.core.sandbox import Sandbox

home, userbase, secret_file, hook = sys.argv[1:5]
version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
PTH = "import os; open(os.path.expanduser('~/PWNED-by-pth'), 'w').write('x')\n"
import site
# the user's real site-packages directories, as this (parent) process sees them
targets = [f"{home}/.local/lib/{version}/site-packages", f"{userbase}/lib/{version}/site-packages"]
targets.append(site.getusersitepackages())
pid = os.getpid()
write_pth = (
    "import os, site\n"
    "def attack():\n"
    "    d = {d}\n"
    "    os.makedirs(d, exist_ok=True)\n"
    "    open(d + '/evil.pth', 'w').write({pth!r})\n"
    "    return 'wrote ' + d\n"
)
attacks = {
    "pth_site_user": write_pth.format(d="site.getusersitepackages()", pth=PTH),  # as a tool would find it
    "pth_dot_local": write_pth.format(d=repr(targets[0]), pth=PTH),
    "pth_userbase": write_pth.format(d=repr(targets[1]), pth=PTH),
}
attacks["read_0600_file"] = f"def attack():\n    return open({secret_file!r}).read()\n"
attacks["kill_parent"] = f"import os, signal\ndef attack():\n    os.kill({pid}, signal.SIGTERM)\n    return 'sent'\n"
attacks["kill_ppid"] = "import os, signal\ndef attack():\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 'sent'\n"
attacks["kill_all"] = "import os, signal\ndef attack():\n    os.kill(-1, signal.SIGKILL)\n    return 'sent'\n"
attacks["prlimit_parent"] = (
    f"import resource\ndef attack():\n    resource.prlimit({pid}, resource.RLIMIT_NOFILE, (20, 20))\n    return 'cut'\n"
)
normal = {"ok": "import json\ndef ok(x):\n    return {'double': x * 2, 'json': json.dumps([x])}\n"}
call = lambda name, args: {"id": "c", "function": {"name": name, "arguments": json.dumps(args)}}
nofile_before = resource.getrlimit(resource.RLIMIT_NOFILE)
report = {"uid": os.getuid(), "targets": targets, "cases": {}}
with Sandbox(n_workers=2, timeout=5.0, exec_mode="fresh", audit_hook=hook == "hook") as sb:
    report["protections"] = sb.protections()
    report["notes"] = sb.protection_notes()
    for name, source in attacks.items():
        items = [({"attack": source}, [call("attack", {})]), (normal, [call("ok", {"x": 21})])]
        attacked, after = sb.run_batch(items)
        report["cases"][name] = {"attack": attacked[0].content, "next": after[0].content}
    report["after_all"] = sb.run(normal, [call("ok", {"x": 5})])[0].content
report["nofile_before"], report["nofile_after"] = nofile_before, resource.getrlimit(resource.RLIMIT_NOFILE)
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(64)]  # the parent can still open files
for fd in fds:
    os.close(fd)
report["parent_alive"] = True
print("REPORT " + json.dumps(report))
"""


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a throwaway unprivileged user"
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} (a Python other users can run) is not installed"
    if not shutil.which("bwrap"):
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    return None


@pytest.fixture(scope="module")
def unprivileged():
    """(user name, home, readable copy of the parent's modules); removed afterwards."""
    why = _skip_reason()
    if why:
        pytest.skip(why)
    user = "ftrlsb" + uuid.uuid4().hex[:8]
    # outside /tmp: the sandbox has a /tmp of its own, so a path there would only land on it
    base = Path(tempfile.mkdtemp(prefix="ftrl-nonroot-", dir="/var/tmp" if os.path.isdir("/var/tmp") else "/tmp"))
    os.chmod(base, 0o755)
    home = base / "home"
    subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/usr/sbin/nologin", user], check=True)
    try:
        pkg = base / "pkg" / "ftrl_lab" / "core"
        pkg.mkdir(parents=True)
        (pkg.parent / "__init__.py").write_text("")
        (pkg / "__init__.py").write_text("")
        for name in PARENT_MODULES:
            shutil.copy(ROOT / "ftrl_lab" / "core" / name, pkg / name)
        (base / "pkg" / "driver.py").write_text(DRIVER)
        for p in [base / "pkg", *(base / "pkg").rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        secret = home / "secret.txt"
        secret.write_text(SECRET)
        shutil.chown(secret, user, user)
        os.chmod(secret, 0o600)
        yield user, home, base
    finally:
        subprocess.run(["userdel", "-r", user], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module", params=["hook", "no_hook"])
def report(unprivileged, request):
    """What the driver saw, with the audit hook and without it (the OS layers alone)."""
    user, home, base = unprivileged
    userbase = home / "userbase"
    env = [
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        f"HOME={home}",
        f"PYTHONPATH={base / 'pkg'}",
        f"PYTHONUSERBASE={userbase}",
    ]
    out = subprocess.run(
        ["runuser", "-u", user, "--", *env, SYSTEM_PYTHON, str(base / "pkg" / "driver.py"), str(home), str(userbase)]
        + [str(home / "secret.txt"), request.param],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(base),
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT ")]
    if not lines and "No module named" in out.stderr:
        pytest.skip(f"the system Python lacks a module the sandbox's parent needs: {out.stderr.strip()[-300:]}")
    assert out.returncode == 0 and lines, f"driver failed (rc {out.returncode}): {out.stderr[-2000:]}"
    data = json.loads(lines[-1][len("REPORT ") :])
    data["home"], data["userbase"], data["hook"] = str(home), str(userbase), request.param
    return data


NEXT_OK = json.dumps({"double": 42, "json": "[21]"})


def test_runs_as_the_unprivileged_user_with_every_layer(report):
    assert report["uid"] != 0
    prot = report["protections"]
    missing = {k for k, v in prot.items() if not v}
    if report["hook"] == "no_hook":
        assert missing >= {"audit_hook", "read_allowlist"}
        missing -= {"audit_hook", "read_allowlist"}
    if prot.get("seccomp") is False and "libseccomp" in report["notes"].get("seccomp", ""):
        missing.remove("seccomp")  # reported and explained: python3-seccomp not installed
    assert missing == set(), report["notes"]
    assert prot["bubblewrap"] and prot["uid_nobody"] and prot["filesystem_view"]


@pytest.mark.parametrize("case", ["pth_site_user", "pth_dot_local", "pth_userbase"])
def test_no_pth_file_reaches_the_users_site_packages(report, case):
    result = report["cases"][case]
    assert result["next"] == NEXT_OK
    # refused (audit hook, or the real home is not in the sandbox's view), or, for the path a
    # tool computes inside the sandbox (HOME=/tmp there), written into the child's own private
    # /tmp, which vanishes with it
    allowed = ("an error occured when call attack:",) + (("wrote /tmp/",) if case == "pth_site_user" else ())
    assert result["attack"].startswith(allowed), result
    for target in map(Path, report["targets"]):
        assert target.is_relative_to(report["home"]), target  # the real account's directories
        assert not (target / "evil.pth").exists()
    assert not list(Path(report["home"]).rglob("*.pth"))
    assert not (Path(report["home"]) / "PWNED-by-pth").exists()


def test_users_private_file_is_not_readable(report):
    result = report["cases"]["read_0600_file"]
    assert SECRET not in result["attack"] and result["attack"].startswith("an error occured when call attack:")
    if report["hook"] == "no_hook":  # not in the sandbox's view at all
        assert "No such file or directory" in result["attack"], result
    assert result["next"] == NEXT_OK


@pytest.mark.parametrize("case", ["kill_parent", "kill_ppid", "kill_all"])
def test_signals_do_not_reach_the_parent(report, case):
    result = report["cases"][case]
    assert result["attack"] != "sent" and result["next"] == NEXT_OK, result
    if report["hook"] == "no_hook" and report["protections"]["seccomp"]:  # refused by the filter
        assert "Operation not permitted" in result["attack"], result
    assert report["parent_alive"]


def test_parent_rlimit_is_not_cut(report):
    result = report["cases"]["prlimit_parent"]
    assert result["attack"] != "cut" and result["next"] == NEXT_OK, result
    if report["hook"] == "no_hook" and report["protections"]["seccomp"]:
        assert "Operation not permitted" in result["attack"], result
    assert report["nofile_after"] == report["nofile_before"]
    assert report["after_all"] == json.dumps({"double": 10, "json": "[5]"})
