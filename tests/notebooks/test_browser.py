"""notebooks/02_reward_explorer.ipynb in a real JupyterLab, driven in headless Chromium.

Starts JupyterLab on a free localhost port (token, settings and a copy of the notebook in a
temp dir), opens the notebook with Playwright in Debian's `chromium` (no browser download),
runs all cells from the Run menu, waits for the ipywidgets to render, moves the "p calls"
slider with the keyboard and checks that the displayed reward changes to the value
`ftrl_lab.core.reward` gives for the new setting. Screenshots: `figures/browser_reward_explorer.png`
and, with the server log, `runs/browser/`.

Skipped (with the reason) when chromium or playwright is missing, except under CI=true or
FTRL_REQUIRE_BROWSER=1 (set by `.ci/run`, which installs both), where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NB = ROOT / "notebooks" / "02_reward_explorer.ipynb"
SCREENSHOT = ROOT / "figures" / "browser_reward_explorer.png"
ARTIFACTS = ROOT / "runs" / "browser"
TIMEOUT_MS = 300_000  # kernel start, imports, the sandbox and 20 environments on a busy 2-core machine


def chromium_path() -> str | None:
    """Debian's chromium (or $FTRL_CHROMIUM)."""
    for candidate in (os.environ.get("FTRL_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def missing_requirement() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install playwright)"
    if chromium_path() is None:
        return "no chromium binary (apt-get install chromium, or set FTRL_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser_ready():
    reason = missing_requirement()
    required = os.environ.get("CI", "").lower() == "true" or os.environ.get("FTRL_REQUIRE_BROWSER") == "1"
    if reason and required:
        pytest.fail(
            f"the browser test is required here (CI=true or FTRL_REQUIRE_BROWSER=1) but cannot run: "
            f"{reason}; .ci/run installs both"
        )
    if reason:
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab_settings(settings_dir: Path) -> None:
    """No news or update prompts (they would ask to reach the internet); no cell windowing."""
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Every cell in the DOM: JupyterLab 4 otherwise renders only the cells near the viewport, so
    # off-screen widgets (and the cell count) would not be there to check.
    tracker = settings_dir / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))


@pytest.fixture(scope="module")
def lab(browser_ready, tmp_path_factory):
    """A JupyterLab server on localhost serving a temp copy of notebooks/; yields (url, token, log)."""
    home = tmp_path_factory.mktemp("lab")
    (home / "notebooks").mkdir()
    shutil.copy(NB, home / "notebooks" / NB.name)
    write_lab_settings(home / "settings")
    port, token = free_port(), os.urandom(16).hex()
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel must use the inline backend
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
    )
    log_path = home / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={home}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ] + (["--allow-root"] if os.geteuid() == 0 else [])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"JupyterLab did not start (exit {proc.poll()}):\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token, log_path
    finally:
        stop_server(proc, url, token)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / "jupyterlab.log")


def stop_server(proc: subprocess.Popen, url: str, token: str) -> None:
    """Shut JupyterLab down through its API (kernels included), then by signal if it lingers."""
    try:
        req = urllib.request.Request(f"{url}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"})
        urllib.request.urlopen(req, timeout=10).close()
        proc.wait(30)
    except (OSError, subprocess.TimeoutExpired):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def control(scope, kind: str, label: str):
    """The ipywidgets control of a kind (".widget-slider", ".widget-dropdown") with this label."""
    return scope.locator(kind, has=scope.page.locator(".widget-label", has_text=re.compile(f"^{re.escape(label)}$")))


def reward_text(page) -> str:
    return page.locator("#reward-value").inner_text().strip()


def wait_until(predicate, timeout_s: float, what: str, page=None) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            if page is not None:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (see {ARTIFACTS})")
        time.sleep(0.25)


@pytest.mark.slow
def test_reward_explorer_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    from ftrl_lab.core.records import default_test_set
    from ftrl_lab.core.reward import variant_value

    url, token, log_path = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{url}/lab/tree/notebooks/{NB.name}?token={token}")
            # Loaded: every cell of the file is in the notebook, and the kernel reports Idle.
            n_cells = len(json.loads(NB.read_text())["cells"])
            cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
            wait_until(lambda: cells.count() == n_cells, 120, f"the notebook's {n_cells} cells", page)
            page.get_by_text(re.compile(r"\| Idle$")).wait_for()
            page.keyboard.press("Control+b")  # hide the file browser: more room for the notebook

            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()

            value = page.locator("#reward-value")
            value.wait_for()
            # Every cell ran (all prompts numbered) or one failed; text_content also reads off-screen cells.
            prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")
            errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
            wait_until(
                lambda: all(re.search(r"\[\d+\]", t) for t in prompts.all_text_contents()) or errors.count(),
                TIMEOUT_MS / 1000,
                "all cells to run",
                page,
            )
            page.get_by_text(re.compile(r"\| Idle$")).wait_for()
            if default_test_set().exists():  # without ../shared the real-environment cells fail by design
                assert errors.count() == 0, f"a cell failed in JupyterLab:\n{errors.first.text_content()[:2000]}"

            explorer = page.locator(".jp-OutputArea-output", has=value)  # the RewardExplorer's widget
            slider = control(explorer, ".widget-slider", "p calls")
            readout = slider.locator(".widget-readout")
            p_before, before = int(readout.inner_text()), reward_text(page)
            q, t = (
                int(control(explorer, ".widget-slider", name).locator(".widget-readout").inner_text())
                for name in ("q solved", "t unsolved")
            )
            variant = control(explorer, ".widget-dropdown", "variant").locator("select").input_value()
            assert before == f"{variant_value(variant, min(q, p_before, t), p_before):.4f}"
            # A widget-wide screenshot before the move, as a test artefact.
            explorer.screenshot(path=str(ARTIFACTS / "reward_explorer_before.png"))

            surface = explorer.locator("img").first  # the heatmap with the marked cell (a fixed-size PNG widget)
            surface_before = surface.get_attribute("src")

            handle = slider.locator(".noUi-handle")
            handle.focus()
            handle.press("ArrowRight")
            wait_until(lambda: reward_text(page) != before, 60, "the reward readout to change", page)
            p_after = int(readout.inner_text())
            after = reward_text(page)
            assert p_after == p_before + 1
            assert after == f"{variant_value(variant, min(q, p_after, t), p_after):.4f}", (before, after)

            # The surface is redrawn with the new cell marked.
            wait_until(lambda: surface.get_attribute("src") != surface_before, 60, "the surface to be redrawn", page)
            page.wait_for_timeout(500)
            explorer.screenshot(path=str(ARTIFACTS / "reward_explorer_after.png"))
            page.locator(".jp-CodeCell", has=value).evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            shutil.copy(SCREENSHOT, ARTIFACTS / SCREENSHOT.name)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 20_000


WIDGET_AS_TEXT = re.compile(r"\b(?:VBox|HBox|GridBox|Box)\(children=\(|\b\w+(?:Slider|Dropdown|Buttons|Progress)\(")
"""How a widget reads when JupyterLab shows its text/plain fallback instead of rendering it."""


@pytest.mark.slow
def test_an_executed_copy_renders_its_saved_widgets(lab):
    """`reproduce` writes a trusted copy with its widget state: opened without running anything, its
    widgets render from the saved state and none shows as `VBox(children=(...` text."""
    from playwright.sync_api import sync_playwright

    from ftrl_lab.reproduce import run_notebook

    url, token, log_path = lab
    executed = log_path.parent / "executed"
    run_notebook(NB, "QUICK", executed, executed / "figures")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            # A workspace of its own, reset: JupyterLab would otherwise restore the first test's
            # layout (notebooks/02 open too) and two notebook panels would be counted.
            page.goto(f"{url}/lab/workspaces/executed-copy/tree/executed/{NB.name}?reset&token={token}")
            n_cells = len(json.loads((executed / NB.name).read_text())["cells"])
            panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            cells = panel.locator(".jp-Notebook .jp-Cell")
            wait_until(
                lambda: cells.count() == n_cells,
                TIMEOUT_MS / 1000,
                f"the executed notebook's {n_cells} cells",
                page,
            )
            rendered = panel.locator(".widget-slider, .widget-dropdown")
            wait_until(lambda: rendered.count() > 0, 120, "the saved widgets to render", page)
            outputs = panel.locator(".jp-OutputArea-output").all_text_contents()
            as_text = [t.strip()[:120] for t in outputs if WIDGET_AS_TEXT.search(t)]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "executed_copy.png"), full_page=True)
            assert not as_text, f"widgets shown as text in the executed copy (not trusted, or no state): {as_text}"
        finally:
            browser.close()
