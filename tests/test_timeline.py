"""Figures and tables of racelab.timeline: rates, timelines, files."""

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from racelab import Config, frames, timeline
from racelab.run import run_trials
from racelab.stats import loss_rate
from racelab.trial import run_trial

LOSSY = Config(
    loop="emulated-proactor-2018",
    packets=200,
    packet_bytes=16384,
    pause_every_ms=1.0,
    pause_for_ms=1.0,
)


def trials_of(rows):
    """A minimal trials table: loop, outcome, lost_bytes (+ extras)."""
    table = pd.DataFrame(rows)
    table.insert(0, "trial", range(len(table)))
    table["seed"] = table["trial"]
    return table


@pytest.fixture(scope="module")
def lossy_trial():
    """A trial of the 2018 transport that lost bytes (seeds searched)."""
    for seed in range(40):
        result = run_trial(LOSSY.replace(seed=seed))
        if result.outcome == "loss":
            return result
    pytest.fail("no lossy trial of the 2018 transport in 40 seeds")


def big_trial_events(count):
    """The first *count* events of one long 2018 trial."""
    config = LOSSY.replace(packets=90_000, packet_bytes=1024)
    events = run_trial(config).events
    assert len(events) >= count, f"only {len(events)} events"
    return events[:count]


def subtitle(fig):
    return fig.layout.title.text.split("<br>", 1)[1]


# -- rates --------------------------------------------------------------------


def test_loss_table_counts_conclusive_trials_only():
    """Hangs, errors and inconclusive trials do not enter the rate."""
    trials = trials_of(
        [
            {"loop": "a", "outcome": o, "lost_bytes": 10 if o == "loss" else 0}
            for o in ["loss", "loss", "clean", "hang", "error", "inconclusive"]
        ]
        + [{"loop": "b", "outcome": "clean", "lost_bytes": 0}] * 3
    )

    table = timeline.loss_table(trials).set_index("loop")

    expected = loss_rate(["loss", "loss", "clean"])
    assert table.loc["a", "conclusive"] == 3
    assert table.loc["a", "lossy"] == 2
    assert table.loc["a", "loss_rate"] == pytest.approx(expected["rate"])
    assert table.loc["a", "loss_low"] == pytest.approx(expected["low"])
    assert table.loc["a", "loss_high"] == pytest.approx(expected["high"])
    assert table.loc["a", "hang"] == 1
    assert table.loc["a", "lost_bytes"] == 20
    assert table.loc["b", "loss_rate"] == 0.0


def test_loss_table_groups_os_default_buffers_with_none():
    """A buffer size of None (the OS default) is a group of its own."""
    trials = trials_of(
        [
            {
                "loop": "a",
                "client_sndbuf_bytes": v,
                "outcome": "clean",
                "lost_bytes": 0,
            }
            for v in (None, 4096, None)
        ]
    )
    trials["client_sndbuf_bytes"] = trials["client_sndbuf_bytes"].astype(
        "Int64"
    )

    table = timeline.loss_table(trials, ["loop", "client_sndbuf_bytes"])

    assert table["trials"].tolist() == [2, 1]
    assert table["client_sndbuf_bytes"].isna().tolist() == [True, False]


def test_loss_rate_figure_error_bars_are_wilson_intervals():
    """Each point's error bar spans its 95% Wilson interval."""
    trials = trials_of(
        [
            {
                "loop": "emulated-proactor-2018",
                "outcome": "loss",
                "lost_bytes": 1,
            }
        ]
        * 3
        + [{"loop": "emulated-proactor", "outcome": "clean", "lost_bytes": 0}]
        * 5
    )

    fig = timeline.loss_rate_figure(trials)

    point = fig.data[0]
    by_loop = dict(zip(point.x, range(len(point.x)), strict=True))
    i = by_loop["emulated-proactor"]
    fixed = loss_rate(["clean"] * 5)
    assert point.y[i] == 0.0
    assert point.error_y.array[i] == pytest.approx(fixed["high"])
    assert point.text[by_loop["emulated-proactor-2018"]] == "3/3"


def test_rate_figures_say_emulated_rates_are_not_windows_figures():
    """Every figure that shows an emulated-proactor rate says so."""
    trials = trials_of(
        [
            {
                "loop": "emulated-proactor-2018",
                "pause_every_ms": p,
                "client_sndbuf_bytes": None,
                "outcome": "loss",
                "lost_bytes": 1,
            }
            for p in (1.0, 4.0)
        ]
    )
    figures = [
        timeline.loss_rate_figure(trials),
        timeline.loss_heatmap(trials),
        timeline.loss_curves(trials),
        timeline.trials_figure(trials),
    ]

    for fig in figures:
        assert "not Windows figures" in subtitle(fig)
        assert "95% Wilson intervals" in subtitle(fig)


def test_rate_figures_of_selector_only_carry_no_emulation_note():
    """The note is about the emulation: a selector run does not get it."""
    trials = trials_of(
        [{"loop": "selector", "outcome": "clean", "lost_bytes": 0}]
    )

    fig = timeline.loss_rate_figure(trials)

    assert "Windows" not in subtitle(fig)


def test_loss_heatmap_cells_and_pooling_note():
    """Cells hold rates by (x, y); other varying fields are named."""
    rows = []
    for cadence, outcome in ((1.0, "loss"), (4.0, "clean")):
        for rcvbuf in (None, 4096):
            rows.append(
                {
                    "loop": "emulated-proactor-2018",
                    "pause_every_ms": cadence,
                    "client_sndbuf_bytes": None,
                    "client_rcvbuf_bytes": rcvbuf,
                    "outcome": outcome,
                    "lost_bytes": 0,
                }
            )
    trials = trials_of(rows)

    fig = timeline.loss_heatmap(trials, y="client_sndbuf_bytes")

    heat = fig.data[0]
    assert list(heat.x) == ["1", "4"]
    assert list(heat.y) == ["OS default"]
    assert np.array(heat.z).tolist() == [[1.0, 0.0]]
    assert "pooled over client_rcvbuf_bytes" in subtitle(fig)


def test_loss_curves_draw_a_band_and_a_line_per_group():
    """Each loop kind gets its interval band and its rate line."""
    trials = trials_of(
        [
            {
                "loop": loop,
                "pause_every_ms": p,
                "outcome": "clean",
                "lost_bytes": 0,
            }
            for loop in ("emulated-proactor", "selector")
            for p in (0.5, 2.0, 8.0)
        ]
    )

    fig = timeline.loss_curves(trials)

    fills = [t for t in fig.data if t.fill == "toself"]
    lines = [t for t in fig.data if t.fill != "toself"]
    assert [t.name for t in lines] == ["emulated-proactor", "selector"]
    assert len(fills) == 2
    assert fig.layout.xaxis.type == "log"


def test_loss_curves_without_conclusive_trials_say_so():
    """A figure with nothing to draw says why instead of staying blank."""
    trials = trials_of(
        [
            {
                "loop": "selector",
                "pause_every_ms": 1.0,
                "outcome": "error",
                "lost_bytes": 0,
            }
        ]
    )

    fig = timeline.loss_curves(trials)

    assert not fig.data
    assert "no conclusive trial" in fig.layout.annotations[0].text


def test_trials_figure_keeps_one_trace_per_outcome():
    """Empty or not, the trials figure has the same traces in order."""
    empty = timeline.trials_figure(frames.trials_frame([]))
    run = run_trials(LOSSY.replace(packets=20), 2)
    full = timeline.trials_figure(run)

    names = [t.name for t in empty.data]
    assert names == [t.name for t in full.data]
    assert names[:6] == [
        "clean",
        "loss",
        "corrupt",
        "hang",
        "error",
        "inconclusive",
    ]
    assert sum(len(t.x) for t in full.data[:6]) == 2


def test_trials_table_refuses_other_things():
    """A wrong source is named in the message."""
    with pytest.raises(TypeError) as info:
        timeline.trials_table(42)

    assert str(info.value) == (
        "source must be a trials DataFrame, a Run, a sweep or saved run, "
        "or a list of them (got int)"
    )


# -- timelines ----------------------------------------------------------------


def test_events_table_puts_kernel_events_under_their_socket(lossy_trial):
    """Kernel events land in the lane of the socket they name."""
    table = timeline.events_table(lossy_trial)

    assert table["t_ms"].iloc[0] == 0.0
    assert set(table["lane"]) >= {
        "client",
        "server",
        "kernel-client",
        "kernel-server",
        "harness",
    }
    client_port = table.loc[table["side"] == "client", "port"].iloc[0]
    kernel = table[table["lane"] == "kernel-client"]
    assert (kernel["port"] == client_port).all()


def test_lost_moments_find_the_discarded_completion(lossy_trial):
    """Every lost range is matched to a discarded completion before the
    receiver notices the gap."""
    moments = timeline.lost_moments(lossy_trial)

    assert len(moments) == len(lossy_trial.lost_ranges)
    assert moments["discarded_ms"].notna().all()
    assert moments["gap_seen_ms"].notna().all()
    assert (moments["discarded_ms"] <= moments["gap_seen_ms"]).all()
    assert set(moments["gap_seen_by"]) <= {"data_received", "eof_received"}
    assert moments["discarded_bytes"].sum() >= lossy_trial.lost_bytes


def test_op_life_follows_the_discarded_operation(lossy_trial):
    """The discarded operation's life ends in completion_discarded."""
    first = timeline.lost_moments(lossy_trial).iloc[0]

    life = timeline.op_life(lossy_trial, first["discarded_op"])

    kernel = life[life["lane"].str.startswith("kernel")]
    kinds = kernel["kind"].tolist()
    assert kinds[0] == "op_posted"
    assert kinds[-1] == "completion_discarded"
    assert "cancel_requested" in kinds
    cancel = kernel[kernel["kind"] == "cancel_requested"].iloc[0]
    assert "result=already_completed" in cancel["detail"]


def test_timeline_figure_marks_discards_pauses_and_gaps(lossy_trial):
    """The lossy timeline has its discards, paused bands and gap lines."""
    fig = timeline.timeline_figure(lossy_trial)

    names = [t.name for t in fig.data]
    discards = next(t for t in fig.data if t.name == "completion_discarded")
    assert isinstance(discards, go.Scattergl)
    assert len(discards.x) >= 1
    assert any(n.startswith("client reading paused") for n in names)
    assert any(n.startswith("gap seen") for n in names)
    drawn = sum(len(t.x) for t in fig.data if isinstance(t, go.Scattergl))
    assert drawn == len(lossy_trial.events)
    assert "bytes lost" in subtitle(fig)


def test_timeline_figure_decimation_keeps_every_essential_event(
    lossy_trial,
):
    """Thinned timelines say so and keep every pause, cancel, discard."""
    events = timeline.events_table(lossy_trial)
    essential = events["kind"].isin(timeline.ESSENTIAL_KINDS).sum()

    fig = timeline.timeline_figure(lossy_trial, max_points=essential + 50)

    drawn = [t for t in fig.data if isinstance(t, go.Scattergl)]
    kept = {t.name: len(t.x) for t in drawn}
    assert sum(kept.values()) < len(events)
    assert kept["completion_discarded"] == (
        (events["kind"] == "completion_discarded").sum()
    )
    assert kept["pause_reading"] == (events["kind"] == "pause_reading").sum()
    assert f"of {len(events):,} events" in subtitle(fig)


def test_timeline_figure_builds_100k_events_quickly():
    """A 100,000-event timeline is built in seconds, all points drawn."""
    events = big_trial_events(100_000)

    started = time.perf_counter()
    fig = timeline.timeline_figure(events)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    size = len(fig.to_json())
    json_s = time.perf_counter() - started

    print(
        f"\n100k-event timeline: built in {build_s:.2f} s, JSON "
        f"{size / 1e6:.1f} MB in {json_s:.2f} s"
    )
    drawn = sum(len(t.x) for t in fig.data if isinstance(t, go.Scattergl))
    assert drawn == 100_000
    assert build_s < 20
    assert "lost ranges not given" in subtitle(fig)


def test_cumulative_bytes_figure_measures_the_gap(lossy_trial):
    """Each socket's undelivered bytes end at what its direction lost."""
    fig = timeline.cumulative_bytes_figure(lossy_trial)

    by_name = {t.name: t for t in fig.data}
    sent = by_name["client wrote"]
    assert sent.y[-1] == lossy_trial.config.stream_bytes
    assert len(by_name["completion discarded"].x) >= 1
    for direction, sock in (("up", "server"), ("down", "client")):
        lost = sum(
            r.length
            for r in lossy_trial.lost_ranges
            if r.direction == direction
        )
        gap = by_name[f"{sock} socket: completed, not yet delivered"]
        assert gap.y[-1] == lost
        assert min(gap.y) >= 0


def test_timeline_of_a_table_needs_a_trial_when_it_holds_several():
    """An events table of many trials must say which one to draw."""
    run = run_trials(LOSSY.replace(packets=20), 2)
    events = frames.events_frame(run.results)

    with pytest.raises(ValueError) as info:
        timeline.timeline_figure(events)
    fig = timeline.timeline_figure(events, trial=1)

    assert str(info.value) == (
        "trial must name one trial of the events table (got None; it "
        "holds 2 trials)"
    )
    drawn = sum(len(t.x) for t in fig.data if isinstance(t, go.Scattergl))
    assert drawn == len(run.results[1].events)


# -- files --------------------------------------------------------------------


def test_save_html_writes_a_standalone_file(tmp_path, lossy_trial):
    """The HTML file carries plotly.js itself: it opens offline."""
    path = timeline.save_html(
        timeline.cumulative_bytes_figure(lossy_trial), tmp_path / "a.html"
    )

    text = path.read_text()
    assert path.stat().st_size > 1_000_000
    assert '<script src="http' not in text
    assert "completion discarded" in text
