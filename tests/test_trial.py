"""Functional echo trials on 127.0.0.1, on every available loop kind."""

import asyncio
import threading

import pytest

from racelab import Config
from racelab.run import run_trials
from racelab.testing import DroppingEchoServer, StallingEchoServer
from racelab.trial import run_trial

SMALL = dict(packets=200, packet_bytes=16384, timeout_s=20.0)


@pytest.mark.parametrize("cadence_ms", [1.0, 5.0])
def test_fixed_loops_lose_nothing_with_fast_cadence(
    loop_kind, cadence_ms, no_leaks
):
    """Aggressive pausing with small buffers loses no byte on fixed loops."""
    config = Config(
        loop=loop_kind,
        pause_every_ms=cadence_ms,
        pause_for_ms=cadence_ms,
        pausing_side="both",
        client_sndbuf_bytes=4096,
        client_rcvbuf_bytes=4096,
        server_sndbuf_bytes=4096,
        server_rcvbuf_bytes=4096,
        write_high_bytes=32768,
        **SMALL,
    )

    run = run_trials(config, trials=3)

    for result in run.results:
        assert result.outcome in ("clean", "inconclusive"), result
        assert result.lost_bytes == 0
        assert all(report.complete for report in result.streams.values())
        assert result.streams["up"].received_bytes == config.stream_bytes
        assert result.streams["down"].received_bytes == config.stream_bytes
    assert sum(r.pauses for r in run.results) > 0


def test_trial_records_kernel_socket_buffers(loop_kind):
    """The result keeps what the kernel set, not what was asked."""
    config = Config(loop=loop_kind, client_rcvbuf_bytes=8192, **SMALL)

    result = run_trial(config)

    assert result.sockbufs["client_rcvbuf_bytes"] >= 8192
    assert set(result.sockbufs) == {
        "client_sndbuf_bytes", "client_rcvbuf_bytes",
        "server_sndbuf_bytes", "server_rcvbuf_bytes",
    }


def test_stalled_peer_ends_as_hang_naming_missing_bytes(loop_kind, no_leaks):
    """A server that stops echoing gives 'hang' with the missing tail."""
    config = Config(loop=loop_kind, timeout_s=1.0, **{
        k: v for k, v in SMALL.items() if k != "timeout_s"
    })

    result = run_trial(config, server_protocol=StallingEchoServer)

    assert result.outcome == "hang"
    assert result.duration_s < 1.0 + 2.0
    down = [r for r in result.lost_ranges if r.direction == "down"]
    assert [(r.offset, r.length) for r in down] == [
        (StallingEchoServer.echo_limit,
         config.stream_bytes - StallingEchoServer.echo_limit)
    ]
    assert result.streams["up"].complete
    kinds = [e.kind for e in result.events]
    assert "timeout" in kinds


def test_dropped_echo_range_is_located_to_the_byte(loop_kind):
    """Bytes left out of the echo are reported at their exact offsets."""
    config = Config(loop=loop_kind, pause_every_ms=2, pause_for_ms=2,
                    **SMALL)

    result = run_trial(config, server_protocol=DroppingEchoServer)

    assert result.outcome == "loss"
    drop = DroppingEchoServer
    assert [(r.direction, r.offset, r.length)
            for r in result.lost_ranges] == [
        ("down", drop.drop_offset, drop.drop_end - drop.drop_offset)
    ]
    assert result.lost_bytes == drop.drop_end - drop.drop_offset


def test_trial_without_pauses_is_inconclusive(loop_kind):
    """A clean stream that never paused is not reported as clean."""
    # One way, so the server has no echo to apply back-pressure with.
    config = Config(loop=loop_kind, pause_every_ms=0, direction="up",
                    **SMALL)

    result = run_trial(config)

    assert result.outcome == "inconclusive"
    assert result.pauses == 0
    assert result.streams["up"].complete


def test_one_way_trial_checks_upstream_only(loop_kind):
    """direction='up' checks the server's stream and has no echo."""
    config = Config(loop=loop_kind, direction="up", pause_every_ms=1,
                    pause_for_ms=1, pausing_side="server", **SMALL)

    result = run_trial(config)

    assert set(result.streams) == {"up"}
    assert result.streams["up"].complete
    assert result.outcome in ("clean", "inconclusive")


def test_timeline_has_the_callbacks_in_order(loop_kind):
    """Every trial records connection_made first and connection_lost last
    for each side, with data_received offsets that add up."""
    config = Config(loop=loop_kind, pause_every_ms=1, pause_for_ms=1,
                    **SMALL)

    result = run_trial(config)

    for side in ("client", "server"):
        kinds = [e.kind for e in result.events if e.side == side]
        assert kinds[0] == "connection_made"
        assert kinds[-1] == "connection_lost"
        received = [e for e in result.events
                    if e.side == side and e.kind == "data_received"]
        position = 0
        for event in received:
            assert event.offset == position
            position += event.nbytes
        assert position == config.stream_bytes
    stamps = [e.t_ns for e in result.events if e.side != "kernel"]
    assert stamps == sorted(stamps)
    # Invariant: every pause_reading is followed by a resume_reading or
    # connection_lost on the same side.
    for side in ("client", "server"):
        state = None
        for e in result.events:
            if e.side != side:
                continue
            if e.kind == "pause_reading":
                assert state != "paused"
                state = "paused"
            elif e.kind in ("resume_reading", "connection_lost"):
                state = None


def test_trial_inside_a_running_loop_uses_its_own_loop():
    """Called from a running loop (as in Jupyter), a trial neither blocks
    on nor touches that loop, and leaves no thread behind."""
    config = Config(packets=50, packet_bytes=4096, pause_every_ms=1,
                    pause_for_ms=1)
    threads = threading.active_count()

    async def caller():
        outer = asyncio.get_running_loop()
        result = run_trial(config)
        return outer, asyncio.get_running_loop(), result

    outer, still, result = asyncio.run(caller())

    assert outer is still
    assert result.outcome in ("clean", "inconclusive")
    assert result.streams["down"].complete
    assert threading.active_count() == threads


def test_run_trials_uses_consecutive_seeds_and_can_stop():
    """Trial i uses seed+i; should_stop keeps finished trials."""
    config = Config(packets=20, packet_bytes=1024, seed=40)
    calls = []

    run = run_trials(
        config, trials=5, should_stop=lambda: len(calls) >= 2,
        on_trial=lambda run, result: calls.append(result.seed),
    )

    assert run.status == "interrupted"
    assert run.seeds == [40, 41]
    assert calls == [40, 41]


def test_run_trials_rejects_bad_trial_count():
    """trials must be a positive integer, named in the error."""
    with pytest.raises(ValueError, match=r"trials must be an integer >= 1 "
                       r"\(got 0\)"):
        run_trials(Config(), trials=0)


def test_user_loop_factory_by_module_callable_name():
    """A 'module:callable' loop kind builds its loop from that factory."""
    config = Config(loop="asyncio:new_event_loop", **SMALL)

    result = run_trial(config)

    assert result.streams["down"].complete


def test_core_needs_only_the_standard_library():
    """The trial engine imports without pandas, plotly or widgets."""
    import subprocess
    import sys

    code = (
        "import sys, racelab.trial, racelab.run, racelab.cli;"
        "bad = {'pandas', 'pyarrow', 'plotly', 'ipywidgets'}"
        " & set(sys.modules); assert not bad, bad"
    )

    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("cadence_ms", [1.0, 2.0, 5.0, 10.0, 50.0, 100.0])
def test_fixed_loops_soak_lose_nothing(loop_kind, cadence_ms):
    """The long version: 100 full-size trials per cadence lose no byte."""
    config = Config(
        loop=loop_kind, pause_every_ms=cadence_ms, pause_for_ms=cadence_ms,
        client_rcvbuf_bytes=4096, server_sndbuf_bytes=4096,
    )

    run = run_trials(config, trials=100, record=False)

    assert run.summary()["lost_bytes"] == 0
    assert {r.outcome for r in run.results} <= {"clean", "inconclusive"}


@pytest.mark.parametrize("timeout_s", [0.02, 0.05])
def test_hang_stays_hang_when_closing_resets(timeout_s):
    """A reset while tearing down a hung trial is a closing error, not
    the verdict: the trial is still a hang."""
    config = Config(packets=2000, timeout_s=timeout_s)

    results = [run_trial(config.replace(seed=s)) for s in range(3)]

    for result in results:
        assert result.outcome == "hang", (result.error, result.closing_error)
        assert result.error is None
        kinds = [e.kind for e in result.events]
        assert kinds.index("timeout") < kinds.index("verdict")


def test_summary_counts_lost_bytes_of_ended_trials_only():
    """Bytes a hang had not received yet are not added to bytes lost."""
    from racelab.run import Run

    hang = run_trial(Config(packets=2000, timeout_s=0.02))
    run = Run(run_id="x", config=hang.config, trials_requested=1,
              started_at="", environment={}, results=[hang])

    summary = run.summary()

    assert hang.outcome == "hang" and hang.lost_bytes > 0
    assert summary["lost_bytes"] == 0
    assert summary["loss_rate"]["conclusive"] == 0


def test_read_gate_ignores_pause_on_a_closing_transport():
    """Asking to pause a closing transport neither pauses nor counts."""
    from racelab.echo import ReadGate
    from racelab.events import Recorder

    class Closing:
        def get_extra_info(self, name):
            return None

        def is_closing(self):
            return True

        def pause_reading(self):
            raise AssertionError("paused a closing transport")

        def resume_reading(self):
            raise AssertionError("resumed a closing transport")

    recorder = Recorder()
    gate = ReadGate("server", recorder)

    async def exercise():
        gate.attach(Closing())  # inside a loop, as connection_made is
        gate.pause("schedule")
        gate.resume("schedule")
        gate.close()

    asyncio.run(exercise())

    assert gate.pauses == 0
    assert gate.paused_s == 0.0
    assert not gate.paused
    assert len(recorder) == 0


def test_data_received_offset_is_the_first_byte_of_a_chunk_over_a_gap():
    """A chunk that spans a gap is recorded at its first byte's offset."""
    from racelab.checker import StreamChecker
    from racelab.payload import Payload

    payload = Payload(3, 50_000)
    data = payload.data
    checker = StreamChecker(payload)

    checker.feed(data[:10_000])
    checker.feed(data[10_000:20_000] + data[30_000:40_000])

    assert checker.offset_at(0) == 0
    assert checker.offset_at(10_000) == 10_000
    assert checker.offset_at(19_999) == 19_999
    assert checker.offset_at(20_000) == 30_000
    assert checker.offset_at(29_999) == 39_999


def test_tls_trial_checks_every_byte(loop_kind):
    """Over TLS the echo ends at the payload's last byte (TLS has no
    half-close), and every byte is checked as in plain TCP."""
    config = Config(loop=loop_kind, tls=True, pause_every_ms=1,
                    pause_for_ms=1, **SMALL)

    result = run_trial(config)

    assert result.outcome in ("clean", "inconclusive"), result.error
    assert result.streams["up"].complete
    assert result.streams["down"].complete
    assert result.streams["down"].received_bytes == config.stream_bytes
    assert "end_of_payload" in [e.kind for e in result.events]
