"""Runs saved as Parquet plus a manifest load back unchanged."""

import json

import pandas as pd
import pytest

from racelab import Config, frames, store
from racelab.run import run_trials
from racelab.testing import DroppingEchoServer
from racelab.trial import run_trial


@pytest.fixture(scope="module")
def small_run():
    config = Config(packets=200, packet_bytes=16384, pause_every_ms=1,
                    pause_for_ms=1, client_rcvbuf_bytes=8192)
    return run_trials(config, trials=2)


def test_frames_have_a_row_per_trial_and_event(small_run):
    """trials has one row per trial, events one per recorded event."""
    trials = frames.trials_frame(small_run.results)
    events = frames.events_frame(small_run.results)

    assert list(trials["trial"]) == [0, 1]
    assert list(trials["seed"]) == [0, 1]
    assert trials["client_rcvbuf_bytes"].tolist() == [8192, 8192]
    assert trials["client_rcvbuf_actual"].min() >= 8192
    assert len(events) == sum(len(r.events) for r in small_run.results)
    assert set(events["side"]) >= {"client", "server", "harness"}


def test_saved_run_loads_back_unchanged(small_run, tmp_path):
    """Tables and manifest read from disk equal what was saved."""
    folder = store.save_run(small_run, tmp_path)

    loaded = store.load_run(small_run.run_id, tmp_path)

    pd.testing.assert_frame_equal(
        loaded.trials, frames.trials_frame(small_run.results))
    pd.testing.assert_frame_equal(
        loaded.events, frames.events_frame(small_run.results))
    pd.testing.assert_frame_equal(
        loaded.ranges, frames.ranges_frame(small_run.results))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == loaded.manifest
    assert manifest["seeds"] == [0, 1]
    assert manifest["config"]["client_rcvbuf_bytes"] == 8192
    for key in ("racelab", "python", "os", "loops"):
        assert key in manifest["environment"]
    assert not list(tmp_path.rglob("*.pkl"))
    assert not [p for p in (tmp_path / "runs").iterdir()
                if p.name.startswith(".")]


def test_ranges_frame_locates_a_loss():
    """A lost range appears in the ranges table with its offset."""
    config = Config(packets=200, packet_bytes=16384, pause_every_ms=1,
                    pause_for_ms=1)
    result = run_trial(config, server_protocol=DroppingEchoServer)

    ranges = frames.ranges_frame([result])

    missing = ranges[ranges["category"] == "missing"]
    assert missing[["direction", "offset", "length"]].values.tolist() == [
        ["down", DroppingEchoServer.drop_offset,
         DroppingEchoServer.drop_end - DroppingEchoServer.drop_offset]
    ]


def test_load_unknown_run_names_run_id(tmp_path):
    """Loading a missing run raises RunNotFound naming run_id."""
    with pytest.raises(store.RunNotFound, match="run_id must name a run"):
        store.load_run("missing", tmp_path)
