"""The workbook in a real browser: JupyterLab driven in Debian's chromium.

JupyterLab runs on 127.0.0.1 with a random free port and a token, over a
copy of the notebooks (so that runs the panel saves land in the test's
temporary folder); Playwright drives /usr/bin/chromium headless.  Both
are stopped whatever happens.  Screenshots go to artifacts/.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from racelab import timeline
from racelab.config import Config
from racelab.lab import FIRST_NOTEBOOK, lab_command
from racelab.testing import wait_until
from racelab.trial import run_trial

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"

# Flags that keep chromium quiet and working in a container, offline.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium "
        "(scripts/setup-system) to run the browser tests",
        allow_module_level=True,
    )

sync_api = pytest.importorskip("playwright.sync_api")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab over a copy of the notebooks; yields its base URL and
    token, and is terminated (its whole process group) in all cases."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    port = free_port()
    token = os.urandom(16).hex()
    # racelab lab's own command line, rooted at the copy.
    command = [
        f"--ServerApp.root_dir={root}"
        if arg.startswith("--ServerApp.root_dir=")
        else arg
        for arg in lab_command(port, token)
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    # Fresh workspace and settings: no tabs from an earlier run, and no
    # "get notified about Jupyter news?" toast over the screenshots.
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false"}'
    )
    env = dict(
        os.environ,
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    log = open(tmp_path / "lab.log", "wb")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up():
            if process.poll() is not None:
                pytest.fail(
                    f"jupyter lab exited with {process.returncode}:\n"
                    + (tmp_path / "lab.log").read_text()[-3000:]
                )
            url = f"{base}/api/status?token={token}"
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    return reply.status == 200
            except OSError:
                return False  # not listening yet

        started = time.monotonic()
        wait_until(up, 60, 0.2, "JupyterLab answering")
        print(f"\nJupyterLab up in {time.monotonic() - started:.1f} s")
        yield base, token, tmp_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        log.close()


@pytest.fixture
def browser(tmp_path):
    """A headless chromium page; the browser is closed in all cases."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(60_000)
            yield context.new_page()
        finally:
            context.close()


# JavaScript run in the page.
ALL_CELLS_RUN = """() => {
    const prompts = [...document.querySelectorAll(
        '.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
    return prompts.length > 0
        && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""
# The panel's FigureWidget is itself the .js-plotly-plot element.
PANEL_PLOT = ".racelab-panel .js-plotly-plot.racelab-figure"
PANEL_TRACES = """sel => {
    const plot = document.querySelector(sel);
    if (!plot || !plot.data) return null;
    return plot.data.map(t => ({name: t.name, x: Array.from(t.x || []),
                                y: Array.from(t.y || [])}));
}"""


def panel_points(page):
    traces = page.evaluate(PANEL_TRACES, PANEL_PLOT) or []
    return {t["name"]: t for t in traces[:6]}


def test_notebook_01_panel_shows_the_loss(lab, browser):
    """Run all of 01 in JupyterLab, pick the 2018 transport, press Run:
    the panel's plotly figure shows lossy trials."""
    base, token, tmp_path = lab
    page = browser
    started = time.monotonic()

    page.goto(f"{base}/lab/tree/{FIRST_NOTEBOOK}?token={token}")
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
    idle_s = time.monotonic() - started
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator('li[data-command="runmenu:run-all"]').click()
    page.wait_for_function(ALL_CELLS_RUN, timeout=180_000)
    page.locator(PANEL_PLOT).wait_for(timeout=60_000)
    all_run_s = time.monotonic() - started

    before = panel_points(page)
    page.locator(".racelab-loop select").select_option(
        "emulated-proactor-2018"
    )
    clicked = time.monotonic()
    page.locator("button.racelab-run").click()
    page.get_by_text("complete;").wait_for(timeout=120_000)
    page.wait_for_function(
        """sel => {
            const plot = document.querySelector(sel);
            const loss = plot && plot.data.find(t => t.name === 'loss');
            return loss && loss.x && loss.x.length > 0;
        }""",
        arg=PANEL_PLOT,
        timeout=30_000,
    )
    run_s = time.monotonic() - clicked
    after = panel_points(page)

    # A tall window, so that the whole panel fits in the screenshot.
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 1900})
    page.locator(".racelab-panel").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "01-panel-after-run.png")
    print(
        f"page to idle kernel {idle_s:.1f} s, run all {all_run_s:.1f} s, "
        f"Run click to loss shown {run_s:.1f} s"
    )

    status = page.locator(".racelab-status").inner_text()
    assert sum(len(t["x"]) for t in before.values()) == 0
    assert after["loss"]["x"], "no lossy trial drawn"
    assert all(y > 0 for y in after["loss"]["y"])
    assert sum(len(t["x"]) for t in after.values()) == 10
    run_id = status.split("run ")[1].split(":")[0].strip()
    assert (tmp_path / "data" / "runs" / run_id / "manifest.json").is_file()


def test_timeline_of_100k_events_renders(browser, tmp_path):
    """A 100,000-event timeline, saved as standalone HTML, renders in
    chromium; print how long each step took."""
    config = Config(
        loop="emulated-proactor-2018",
        packets=90_000,
        packet_bytes=1024,
        pause_every_ms=1.0,
        pause_for_ms=1.0,
    )
    events = run_trial(config).events[:100_000]
    assert len(events) == 100_000
    page = browser
    timings = {}
    for label, max_points in (("all points", None), ("decimated", 20_000)):
        started = time.perf_counter()
        fig = timeline.timeline_figure(events, max_points=max_points)
        build_s = time.perf_counter() - started
        path = timeline.save_html(
            fig,
            tmp_path / f"timeline-{max_points}.html",
            post_script="window.racelabDrawn = performance.now();",
        )

        started = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function("() => window.racelabDrawn", timeout=120_000)
        load_s = time.perf_counter() - started
        drawn_ms = page.evaluate("() => window.racelabDrawn")
        zoom_ms = page.evaluate(
            """async () => {
                const plot = document.querySelector('.js-plotly-plot');
                const t0 = performance.now();
                await Plotly.relayout(plot, {'xaxis.range': [10, 20]});
                return performance.now() - t0;
            }"""
        )
        # _fullData holds x as drawn (data may hold it base64-encoded).
        points = page.evaluate(
            """() => document.querySelector('.js-plotly-plot')._fullData
                .filter(t => t.type === 'scattergl')
                .reduce((n, t) => n + t._length, 0)"""
        )
        timings[label] = (build_s, load_s, drawn_ms, zoom_ms, points)
        print(
            f"\n100k-event timeline, {label}: figure built in "
            f"{build_s:.2f} s, {path.stat().st_size / 1e6:.1f} MB HTML, "
            f"drawn {drawn_ms / 1000:.2f} s after navigation "
            f"({load_s:.2f} s wall), zoom redraw {zoom_ms:.0f} ms, "
            f"{points:,} points"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"timeline-100k-{label[:3]}.png")

    assert timings["all points"][4] == 100_000
    assert timings["decimated"][4] < 100_000
    assert timings["all points"][1] < 60
