"""The control panel, driven in-process through its own API."""

import asyncio

import pytest

from racelab import Config, available_kinds, store
from racelab import panel as panel_module
from racelab.panel import ControlPanel, interact_figure
from racelab.testing import wait_until

SMALL = Config(
    loop="emulated-proactor-2018",
    packets=50,
    packet_bytes=16384,
    pause_every_ms=1.0,
    pause_for_ms=1.0,
)


def points(panel):
    """Trials drawn in the panel's figure (all outcome traces)."""
    return sum(len(t.x) for t in panel.figure.data[:6])


@pytest.fixture
def panel(tmp_path):
    made = ControlPanel(SMALL, trials=3, data_dir=tmp_path)
    yield made
    made.stop()
    made.wait(60)


def test_panel_offers_only_loop_kinds_available_here(panel):
    """The loop dropdown lists exactly the kinds this machine can build."""
    assert tuple(panel.loop.options) == available_kinds()


def test_panel_buffer_default_is_shown_as_os_default(panel):
    """The OS default is a visible choice, not an empty dropdown."""
    assert panel.sndbuf.label == "OS default"
    assert panel.rcvbuf.label == "OS default"


def test_panel_run_updates_figure_table_and_saves(panel, tmp_path):
    """A run fills the figure and the table and is saved under data/."""
    run = panel.run(wait=True, timeout=120)

    assert run.status == "complete"
    assert len(run.results) == 3
    assert points(panel) == 3
    assert "3 trial(s)" in panel.table.value
    assert panel.saved_to == tmp_path / "runs" / run.run_id
    assert run.run_id in panel.status.value
    saved = store.load_run(run.run_id, tmp_path)
    assert len(saved.trials) == 3


def test_panel_run_button_starts_a_run_in_the_background(panel):
    """Clicking Run returns at once; the trials run in another thread."""
    panel.trials_box.value = 200
    panel.packets.value = 200

    panel.run_button.click()
    started = panel.running
    wait_until(lambda: panel.progress.value >= 1)
    panel.stop()
    run = panel.wait(120)

    assert started
    assert panel.run_button.disabled is False
    assert run.status == "interrupted"
    assert 1 <= len(run.results) < 200
    assert points(panel) == len(run.results)
    assert panel.saved_to is not None


def test_panel_bad_value_shows_the_config_message(panel):
    """A bad value is reported in the panel by field, and nothing runs."""
    panel.packets.value = 0

    result = panel.run(wait=True)

    assert result is None
    assert panel.error == "packets must be an integer >= 1 (got 0)"
    assert "packets must be an integer &gt;= 1 (got 0)" in (
        panel.message.value
    )
    assert panel.run_result is None
    assert not panel.running


def test_panel_bad_write_limit_text_is_named(panel):
    """Text that is not a byte count is refused by its field's rule."""
    panel.write_high.value = "lots"

    panel.run(wait=True)

    assert panel.error == (
        "write_high_bytes must be None or an integer from 0 to 2147483648 "
        "(got 'lots')"
    )


def test_panel_bad_trials_is_named(panel):
    """Zero trials is refused with the rule, before any thread starts."""
    panel.trials_box.value = 0

    panel.run(wait=True)

    assert panel.error == "trials must be an integer >= 1 (got 0)"


def test_panel_buffers_apply_to_the_chosen_sides(panel):
    """SO_SNDBUF/SO_RCVBUF go to both sides, or one, or keep defaults."""
    default = panel.config()
    panel.sndbuf.value = 4096
    panel.rcvbuf.value = 16384
    panel.buffer_sides.value = "client only"

    config = panel.config()

    assert panel.sndbuf.label == "4 KiB"
    assert default.client_sndbuf_bytes is None
    assert default.server_rcvbuf_bytes is None
    assert config.client_sndbuf_bytes == 4096
    assert config.client_rcvbuf_bytes == 16384
    assert config.server_sndbuf_bytes is None
    assert config.server_rcvbuf_bytes is None


def test_panel_kernel_choice_only_for_emulated_kinds(panel):
    """The IOCP kernel is only offered under the emulated proactor."""
    panel.loop.value = "selector"
    disabled_for_selector = panel.kernel.disabled
    panel.loop.value = "emulated-proactor"

    assert disabled_for_selector
    assert not panel.kernel.disabled


def test_panel_failure_inside_the_run_is_shown(panel, monkeypatch):
    """An exception in the worker thread ends up in the panel."""

    def broken(*args, **kwargs):
        raise RuntimeError("cannot set up the echo trial: no sockets")

    monkeypatch.setattr(panel_module, "run_trials", broken)

    result = panel.run(wait=True, timeout=60)

    assert result is None
    assert panel.error == (
        "RuntimeError: cannot set up the echo trial: no sockets"
    )
    assert panel.run_button.disabled is False


def test_panel_never_patches_asyncio(panel):
    """Running trials from the panel leaves asyncio as it was."""
    before = (asyncio.run, asyncio.get_event_loop_policy())

    panel.run(wait=True, timeout=120)

    assert (asyncio.run, asyncio.get_event_loop_policy()) == before
    assert asyncio.run.__module__ == "asyncio.runners"


def test_interact_figure_redraws_one_figure_widget():
    """The figure follows the controls, one FigureWidget at a time."""
    import plotly.graph_objects as go

    def make(n=2):
        return go.Figure(go.Scatter(x=list(range(n)), y=list(range(n))))

    box = interact_figure(make, n=(1, 10))
    ui, first = box.children
    slider = ui.children[0]
    slider.value = 7
    _, view = box.children

    assert len(first.data[0].x) == 2  # make's default, not the middle
    assert len(view.data[0].x) == 7
    assert len(box.children) == 2
    assert "racelab-figure" in view._dom_classes


def test_panel_story_knobs_reach_the_config(panel):
    """Who pauses, server back-pressure, synchronous completion and TLS
    set the config fields of the same names."""
    panel.loop.value = "emulated-proactor-2018"
    panel.pausing_side.value = "server"
    panel.backpressure.value = False
    panel.sync_completion.value = True
    panel.tls.value = True

    config = panel.config()

    assert config.pausing_side == "server"
    assert config.server_backpressure is False
    assert config.sync_completion is True
    assert config.tls is True
    panel.loop.value = "selector"
    assert panel.sync_completion.disabled
