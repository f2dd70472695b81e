"""The experiment description: one immutable, validated :class:`Config`.

Every knob of an echo trial lives here, with its unit in its name.  Values
are checked when a config is built, so a mistake is reported by field name
before any socket is opened::

    >>> Config(packets=0)
    Traceback (most recent call last):
    ...
    racelab.config.ConfigError: packets must be an integer >= 1 (got 0)

This module uses only the standard library.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Config", "ConfigError", "DIRECTIONS", "KERNELS", "PAUSING_SIDES"]

DIRECTIONS = ("both", "up")
PAUSING_SIDES = ("client", "server", "both")
KERNELS = ("thread", "deterministic")

# Upper bounds that keep one trial within a laptop's memory: the payload is
# generated up front (packets * packet_bytes bytes).
MAX_STREAM_BYTES = 1 << 31
MAX_SOCKBUF_BYTES = 1 << 30


class ConfigError(ValueError):
    """A config value broke its field's rule.

    The message names the field, the rule and the value received; the
    pieces are also kept as attributes for programs.
    """

    def __init__(self, field: str, rule: str, value: Any) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field} must be {rule} (got {value!r})")


def _knob(default: Any, help: str, **meta: Any) -> Any:
    # The help text travels with the field so the CLI and the widgets
    # describe a knob in the same words.
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class Config:
    """One echo experiment: loop, traffic, pause cadence, buffers, seed.

    The defaults are a short version of race.py from bpo-33694 (2,000
    packets of 16 KiB echoed both ways while the client pauses reading),
    with a faster cadence so that a trial, which lasts a fraction of a
    second on loopback, pauses many times.  :data:`RACE_PY` holds
    race.py's own cadence.
    """

    loop: str = _knob(
        "selector", "loop kind (see `racelab loops`)", cli="--loop"
    )
    kernel: str = _knob(
        "thread",
        "I/O kernel under the emulated proactor loop kinds: 'thread' (a "
        "kernel thread does the I/O) or 'deterministic' (seeded, replayable)",
        choices=KERNELS,
    )
    packets: int = _knob(2000, "packets the client sends")
    packet_bytes: int = _knob(16384, "bytes per packet")
    direction: str = _knob(
        "both",
        "'both': the server echoes (race.py); 'up': client to server only",
        choices=DIRECTIONS,
    )
    sync_completion: bool = _knob(
        False,
        "emulated proactor kinds: a receive that finds data already "
        "buffered completes at once, as WSARecv can",
    )
    tls: bool = _knob(
        False,
        "run the echo over TLS (a self-signed certificate for localhost "
        "that ships with racelab)",
    )
    pause_every_ms: float = _knob(
        10.0, "read this long between pauses; 0 never pauses"
    )
    pause_for_ms: float = _knob(10.0, "stay paused this long")
    jitter_ms: float = _knob(
        0.0, "add uniform noise in [-jitter, +jitter] to both intervals"
    )
    pausing_side: str = _knob(
        "client", "which side pauses reading", choices=PAUSING_SIDES
    )
    server_backpressure: bool = _knob(
        True,
        "the echo server pauses reading while its write buffer is above "
        "the high-water mark (as a flow-controlled server does); False "
        "echoes blindly",
    )
    client_sndbuf_bytes: int | None = _knob(
        None, "client SO_SNDBUF; None keeps the OS default"
    )
    client_rcvbuf_bytes: int | None = _knob(
        None, "client SO_RCVBUF; None keeps the OS default"
    )
    server_sndbuf_bytes: int | None = _knob(
        None, "server SO_SNDBUF; None keeps the OS default"
    )
    server_rcvbuf_bytes: int | None = _knob(
        None, "server SO_RCVBUF; None keeps the OS default"
    )
    write_high_bytes: int | None = _knob(
        None, "transport write-buffer high-water mark; None keeps asyncio's"
    )
    write_low_bytes: int | None = _knob(
        None, "transport write-buffer low-water mark; None keeps asyncio's"
    )
    seed: int = _knob(0, "seed of the payload, the jitter and the kernel")
    timeout_s: float = _knob(
        30.0, "end the trial as 'hang' after this many seconds"
    )

    def __post_init__(self) -> None:
        from racelab import loops  # the registry imports config

        try:
            loops.get_kind(self.loop)
        except ValueError:
            raise ConfigError("loop", loops.names_rule(), self.loop) from None
        _check_choice("kernel", self.kernel, KERNELS)
        for name in ("sync_completion", "server_backpressure", "tls"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, "True or False", getattr(self, name))
        _check_int("packets", self.packets, 1)
        _check_int("packet_bytes", self.packet_bytes, 1)
        if self.packets * self.packet_bytes > MAX_STREAM_BYTES:
            raise ConfigError(
                "packets * packet_bytes",
                f"<= {MAX_STREAM_BYTES}",
                self.packets * self.packet_bytes,
            )
        _check_choice("direction", self.direction, DIRECTIONS)

        _check_float("pause_every_ms", self.pause_every_ms, 0, ">= 0")
        _check_float("pause_for_ms", self.pause_for_ms, 0, ">= 0")
        if self.pause_every_ms > 0 and self.pause_for_ms <= 0:
            raise ConfigError(
                "pause_for_ms", "> 0 when pause_every_ms > 0",
                self.pause_for_ms,
            )
        _check_float("jitter_ms", self.jitter_ms, 0, ">= 0")
        if self.pause_every_ms > 0:
            shortest = min(self.pause_every_ms, self.pause_for_ms)
            if self.jitter_ms >= shortest:
                raise ConfigError(
                    "jitter_ms",
                    f"< min(pause_every_ms, pause_for_ms) = {shortest:g}",
                    self.jitter_ms,
                )
        _check_choice("pausing_side", self.pausing_side, PAUSING_SIDES)

        for name in (
            "client_sndbuf_bytes",
            "client_rcvbuf_bytes",
            "server_sndbuf_bytes",
            "server_rcvbuf_bytes",
        ):
            _check_optional_int(name, getattr(self, name), 1,
                                MAX_SOCKBUF_BYTES)
        _check_optional_int("write_high_bytes", self.write_high_bytes, 0,
                            MAX_STREAM_BYTES)
        _check_optional_int("write_low_bytes", self.write_low_bytes, 0,
                            MAX_STREAM_BYTES)
        high, low = self.write_high_bytes, self.write_low_bytes
        if high is not None and low is not None and low > high:
            raise ConfigError(
                "write_low_bytes", f"<= write_high_bytes ({high})", low
            )

        _check_int("seed", self.seed, 0)
        _check_float("timeout_s", self.timeout_s, 0, "> 0", strict=True)

    @property
    def stream_bytes(self) -> int:
        """Bytes the client sends: ``packets * packet_bytes``."""
        return self.packets * self.packet_bytes

    @property
    def pauses_enabled(self) -> bool:
        return self.pause_every_ms > 0

    def replace(self, **changes: Any) -> Config:
        """Return a copy with *changes* applied and validated."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready values, field by field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build a config from :meth:`to_dict` output or user input.

        Raises:
          ConfigError: for an unknown field or a value that breaks a rule.
        """
        _check_names(values)
        return cls(**values)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


#: race.py's own cadence: pause and resume reading every 100 ms.
RACE_PY = {"packets": 2000, "packet_bytes": 16384,
           "pause_every_ms": 100.0, "pause_for_ms": 100.0}


def _check_names(values: dict[str, Any]) -> None:
    known = Config.field_names()
    for name in values:
        if name not in known:
            raise ConfigError(
                "field name", "one of " + ", ".join(known), name
            )


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        rule = "one of " + ", ".join(repr(a) for a in allowed)
        raise ConfigError(name, rule, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", value)


def _check_optional_int(
    name: str, value: Any, minimum: int, maximum: int
) -> None:
    if value is None:
        return
    if not _is_int(value) or not minimum <= value <= maximum:
        rule = f"None or an integer from {minimum} to {maximum}"
        raise ConfigError(name, rule, value)


def _check_float(
    name: str, value: Any, bound: float, rule: str, strict: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"a number {rule}", value)
    too_small = value < bound or (strict and value == bound)
    if not math.isfinite(value) or too_small:
        raise ConfigError(name, f"a finite number {rule}", value)
