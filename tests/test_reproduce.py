"""bpo-33694 reproduced on Linux: the 2018 transport loses data, located
and attributed to the byte; today's transports lose none."""

import pytest

from racelab import Config
from racelab.config import RACE_PY
from racelab.run import run_trials

KERNELS = ["thread", "deterministic"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_default_2018_scenario_loses_in_nine_of_ten(kernel):
    """With Config's defaults, the 2018 transport loses data in at least
    9 of 10 trials, and every lost byte is a discarded completion's."""
    config = Config(loop="emulated-proactor-2018", kernel=kernel)

    run = run_trials(config, trials=10)

    lossy = [r for r in run.results if r.outcome == "loss"]
    assert len(lossy) >= 9, run.summary()
    for result in lossy:
        assert result.attribution_agrees is True
        assert result.lost_bytes == result.discarded_bytes > 0


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("cadence_ms", [1.0, 10.0, 100.0])
def test_fixed_emulated_proactor_loses_nothing(kernel, cadence_ms):
    """Today's transports on the emulated IOCP keep every byte."""
    config = Config(
        loop="emulated-proactor", kernel=kernel, packets=500,
        pause_every_ms=cadence_ms, pause_for_ms=cadence_ms,
    )

    run = run_trials(config, trials=3)

    assert run.summary()["lost_bytes"] == 0
    for result in run.results:
        assert result.outcome in ("clean", "inconclusive")
        assert result.discarded == ()
        assert all(r.complete for r in result.streams.values())


@pytest.mark.parametrize("loop", ["selector", "emulated-proactor",
                                  "emulated-proactor-2018"])
def test_race_py_settings_run_as_given(loop):
    """race.py's own settings run; a trial that never paused says
    'inconclusive', never 'clean'."""
    config = Config(loop=loop, server_backpressure=False, **RACE_PY)

    run = run_trials(config, trials=2)

    for result in run.results:
        assert result.streams["up"].expected_bytes == 2000 * 16384
        if result.pauses == 0:
            assert result.outcome == "inconclusive"
        elif loop != "emulated-proactor-2018":
            assert result.outcome == "clean"
        else:
            assert result.outcome in ("clean", "loss")
            assert result.lost_bytes == result.discarded_bytes


def test_client_only_story_loses_on_the_way_down():
    """With a blindly echoing server, only the pausing client loses, and
    its losses are in the echo (down) direction."""
    config = Config(
        loop="emulated-proactor-2018", kernel="deterministic",
        server_backpressure=False, pause_every_ms=1, pause_for_ms=1,
    )

    run = run_trials(config, trials=3)

    for result in run.results:
        assert result.outcome == "loss"
        assert result.streams["up"].complete
        assert result.lost_bytes == sum(
            r.length for r in result.lost_ranges if r.direction == "down"
        )
        assert result.attribution_agrees is True


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("cadence_ms", [1.0, 2.0, 5.0, 10.0, 50.0, 100.0])
def test_fixed_emulated_proactor_soak(kernel, cadence_ms):
    """The long version: 100 full-size trials per cadence, no loss."""
    config = Config(
        loop="emulated-proactor", kernel=kernel,
        pause_every_ms=cadence_ms, pause_for_ms=cadence_ms,
    )

    run = run_trials(config, trials=100, record=False)

    assert run.summary()["lost_bytes"] == 0
