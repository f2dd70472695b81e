"""Config validation: every bad value is named with its rule."""

import pytest

from racelab import Config, ConfigError


def test_config_defaults_are_valid():
    """The default config builds and describes race.py's traffic."""
    config = Config()

    assert config.packets == 2000
    assert config.packet_bytes == 16384
    assert config.stream_bytes == 2000 * 16384


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"packets": 0}, "packets must be an integer >= 1 (got 0)"),
        ({"packets": 2.5}, "packets must be an integer >= 1 (got 2.5)"),
        ({"packets": True}, "packets must be an integer >= 1 (got True)"),
        ({"packet_bytes": -1},
         "packet_bytes must be an integer >= 1 (got -1)"),
        ({"loop": "iocp"}, "loop must be one of "),
        ({"direction": "down"},
         "direction must be one of 'both', 'up' (got 'down')"),
        ({"pause_every_ms": -0.5},
         "pause_every_ms must be a finite number >= 0 (got -0.5)"),
        ({"pause_for_ms": 0},
         "pause_for_ms must be > 0 when pause_every_ms > 0 (got 0)"),
        ({"jitter_ms": 10.0},
         "jitter_ms must be < min(pause_every_ms, pause_for_ms) = 10 "
         "(got 10.0)"),
        ({"pausing_side": "neither"},
         "pausing_side must be one of 'client', 'server', 'both' "
         "(got 'neither')"),
        ({"client_rcvbuf_bytes": 0},
         "client_rcvbuf_bytes must be None or an integer from 1 to "
         "1073741824 (got 0)"),
        ({"write_high_bytes": 10, "write_low_bytes": 20},
         "write_low_bytes must be <= write_high_bytes (10) (got 20)"),
        ({"timeout_s": 0}, "timeout_s must be a finite number > 0 (got 0)"),
        ({"timeout_s": float("nan")},
         "timeout_s must be a finite number > 0 (got nan)"),
        ({"seed": -1}, "seed must be an integer >= 0 (got -1)"),
        ({"kernel": "fast"},
         "kernel must be one of 'thread', 'deterministic' (got 'fast')"),
        ({"packets": 1 << 20, "packet_bytes": 1 << 12},
         "packets * packet_bytes must be <= 2147483648 (got 4294967296)"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    """A bad value raises ConfigError naming field, rule and value."""
    with pytest.raises(ConfigError) as info:
        Config(**changes)

    assert str(info.value).startswith(message)
    if message.endswith(")"):
        assert str(info.value) == message


def test_config_error_keeps_its_parts():
    """Programs can read the field, rule and value of a ConfigError."""
    with pytest.raises(ConfigError) as info:
        Config(packets=-3)

    assert info.value.field == "packets"
    assert info.value.rule == "an integer >= 1"
    assert info.value.value == -3


def test_config_unknown_field_from_dict():
    """from_dict names an unknown field and lists the real ones."""
    with pytest.raises(ConfigError, match="field name must be one of loop"):
        Config.from_dict({"pakets": 3})


def test_config_round_trips_through_dict():
    """to_dict and from_dict are inverse."""
    config = Config(packets=7, client_rcvbuf_bytes=4096, seed=9)

    assert Config.from_dict(config.to_dict()) == config


def test_config_is_immutable_and_replace_validates():
    """Configs are frozen; replace() builds a validated copy."""
    config = Config()

    with pytest.raises(AttributeError):
        config.packets = 3
    with pytest.raises(ConfigError):
        config.replace(packets=0)
    assert config.replace(packets=3).packets == 3
