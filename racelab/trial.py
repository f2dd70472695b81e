"""One echo trial on a fresh loop, and the verdict on what it did.

A trial opens a server and a client on 127.0.0.1 with the config's socket
options, sends the payload, lets the pause schedule toggle reading, waits
for the echo's end-of-file (or the timeout), and then asks each side's
checker what arrived.  The verdict is one of :data:`OUTCOMES`:

``clean``
    Every byte arrived once, in order, unaltered, and reading was paused
    at least once, so the race under study was exercised.
``loss``
    The session ended normally but bytes never arrived.
``corrupt``
    Nothing is missing, but bytes arrived duplicated, reordered or altered.
``hang``
    The timeout fired first; the result names the bytes still missing.
``error``
    An exception ended the trial; the result says where.
``inconclusive``
    Nothing went wrong, but reading was never paused, so nothing was
    exercised: a clean stream proves nothing about pausing.

Trials run on a loop built for them and closed after them.  Called from a
thread whose loop is already running (a Jupyter kernel), the trial runs in
a worker thread of its own: the caller's loop is neither blocked by a
nested ``run_until_complete`` nor patched.

This module uses only the standard library.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from racelab import ranges
from racelab.checker import StreamReport
from racelab.config import Config
from racelab.echo import (
    EchoClientProtocol,
    EchoServerProtocol,
    PauseSchedule,
)
from racelab.events import Event, Recorder
from racelab.loops import LoopOptions, get_kind, new_loop
from racelab.payload import Payload
from racelab.ranges import Range

__all__ = [
    "OUTCOMES",
    "LostRange",
    "TrialResult",
    "run_trial",
    "trial_seeds",
]

logger = logging.getLogger("racelab")

OUTCOMES = ("clean", "loss", "corrupt", "hang", "error", "inconclusive")

# How long closing may take after the verdict, in loop time.  Closing is
# not part of what is measured; it only must not leak.
_CLOSE_TIMEOUT_S = 5.0

_SOCKBUF_OPTIONS = (
    ("sndbuf", socket.SO_SNDBUF),
    ("rcvbuf", socket.SO_RCVBUF),
)


@dataclass(frozen=True)
class LostRange:
    """Payload bytes that one direction lost (or, in a hang, never got)."""

    direction: str
    """``"up"`` (client to server) or ``"down"`` (the echo)."""
    offset: int
    length: int


@dataclass
class TrialResult:
    """What one trial did and what it found.

    ``streams`` holds one :class:`~racelab.checker.StreamReport` per
    direction, in payload offsets.  The ``down`` report counts only what
    went wrong on the way back: a range the server never received is not
    echoed, and is reported once, under ``up``.
    """

    config: Config
    outcome: str
    streams: dict[str, StreamReport]
    pauses: int
    """pause_reading() calls, on every side, for any reason."""
    scheduled_pauses: int
    """The pauses the schedule made (the rest were back-pressure)."""
    paused_s: float
    """Time reading spent paused, summed over sides, on the loop's clock
    (virtual on a seeded kernel)."""
    bytes_while_paused: int
    """Bytes that reached a side while its reading was paused: growth of
    its socket's receive queue, plus reads its kernel completed into a
    posted buffer (proactor kinds), plus any bytes a transport delivered
    although paused."""
    duration_s: float
    """Wall time from the first write to the verdict."""
    loop_time_s: float
    """The same span on the loop's clock (virtual on a seeded kernel)."""
    network: str
    sockbufs: dict[str, int]
    """What the kernel set, e.g. ``client_rcvbuf_bytes``."""
    error: str | None = None
    closing_error: str | None = None
    """What went wrong while tearing the trial down, after its verdict."""
    discarded: tuple[LostRange, ...] = ()
    """Bytes kernel completions carried that the loop threw away."""
    attribution_agrees: bool | None = None
    """Whether lost and discarded bytes are the same ranges; None when the
    loop records no kernel events."""
    events: list[Event] = field(default_factory=list, repr=False)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def lost_ranges(self) -> tuple[LostRange, ...]:
        """Missing ranges per direction, upstream first."""
        return tuple(
            LostRange(direction, r.offset, r.length)
            for direction, report in self.streams.items()
            for r in report.missing
        )

    @property
    def lost_bytes(self) -> int:
        return sum(r.length for r in self.lost_ranges)

    @property
    def discarded_bytes(self) -> int:
        return sum(r.length for r in self.discarded)

    def ranges(self) -> Iterator[tuple[str, str, Range]]:
        """Every reported range as ``(direction, category, range)``."""
        for direction, report in self.streams.items():
            for category in ("missing", "duplicated", "reordered",
                             "corrupted"):
                for r in getattr(report, category):
                    yield direction, category, r

    def to_dict(self, events: bool = False) -> dict[str, Any]:
        """Plain JSON-ready values; *events* adds the timeline."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "outcome": self.outcome,
            "lost_bytes": self.lost_bytes,
            "lost_ranges": [
                {"direction": r.direction, "offset": r.offset,
                 "length": r.length}
                for r in self.lost_ranges
            ],
            "ranges": [
                {"direction": d, "category": c, "offset": r.offset,
                 "length": r.length}
                for d, c, r in self.ranges()
            ],
            "pauses": self.pauses,
            "scheduled_pauses": self.scheduled_pauses,
            "paused_s": self.paused_s,
            "bytes_while_paused": self.bytes_while_paused,
            "duration_s": self.duration_s,
            "loop_time_s": self.loop_time_s,
            "network": self.network,
            "sockbufs": dict(self.sockbufs),
            "error": self.error,
            "closing_error": self.closing_error,
            "discarded_bytes": self.discarded_bytes,
            "attribution_agrees": self.attribution_agrees,
            "received_bytes": {
                d: r.received_bytes for d, r in self.streams.items()
            },
        }
        if events:
            out["events"] = [e._asdict() for e in self.events]
        return out


def trial_seeds(config: Config, trials: int) -> list[int]:
    """Seeds of a run of *trials*: ``config.seed``, ``config.seed + 1``...

    Trial *i* of a run can be rerun alone with ``--seed`` set to its seed.
    """
    return [config.seed + i for i in range(trials)]


def run_trial(
    config: Config,
    *,
    record: bool = True,
    server_protocol: type[EchoServerProtocol] = EchoServerProtocol,
) -> TrialResult:
    """Run one echo trial on a fresh loop of ``config.loop``.

    Args:
      config: the experiment; its seed fixes payload, jitter and kernel.
      record: keep the event timeline (cheap; off only to measure its cost).
      server_protocol: the server's protocol class; a faulty subclass from
        :mod:`racelab.testing` checks that the harness notices faults.

    Returns:
      The verdict with its evidence.  Whatever the trial found once
      connected, an exception in a callback included, is a result, not an
      exception.

    Raises:
      racelab.LoopUnavailable: the loop kind cannot be built here.
      RuntimeError: the trial could not be set up (sockets refused, or
        the loop never connected within ``config.timeout_s``).
    """
    get_kind(config.loop)  # an unknown kind is the caller's mistake
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        caller_has_loop = False
    else:
        caller_has_loop = True
    if not caller_has_loop:
        return _run_on_fresh_loop(config, record, server_protocol)

    # This thread already runs a loop (a Jupyter kernel does): run_until_
    # complete() would refuse, and nesting would put the loop under test
    # inside someone else's callbacks.  Give the trial a thread of its own.
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(_run_on_fresh_loop(config, record, server_protocol))
        except BaseException as exc:  # re-raised in the caller's thread
            box.append(exc)

    worker = threading.Thread(target=work, name="racelab-trial")
    worker.start()
    worker.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _run_on_fresh_loop(
    config: Config,
    record: bool,
    server_protocol: type[EchoServerProtocol],
) -> TrialResult:
    recorder = Recorder(record)
    payload = Payload(config.seed, config.stream_bytes)
    options = LoopOptions(
        recorder=recorder,
        seed=config.seed,
        kernel=config.kernel,
        # Under TLS the kernel sees ciphertext: nothing to locate.
        locate=None if config.tls else payload.locate,
        sync_completion=config.sync_completion,
    )
    kind = get_kind(config.loop)
    loop = new_loop(config.loop, options)
    network = kind.network(options)
    if network == "simulated":
        # Virtual time: a 10 ms pause lasts 10 ms on the timeline, and a
        # replayed seed gives the same timestamps too.
        recorder.clock = lambda: round(loop.time() * 1e9)
    try:
        trial = _Trial(config, recorder, payload, network, server_protocol)
        return loop.run_until_complete(trial.run())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


_TLS_DIR = Path(__file__).resolve().parent / "tls"


def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    # A self-signed certificate for localhost and 127.0.0.1, valid until
    # 2126, shipped with racelab: trials need TLS, not secrecy.
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(_TLS_DIR / "cert.pem", _TLS_DIR / "key.pem")
    client = ssl.create_default_context(cafile=str(_TLS_DIR / "cert.pem"))
    return server, client


def _open_socket(loop: asyncio.AbstractEventLoop) -> socket.socket:
    # A loop kind with a simulated network hands out its own sockets.
    opener = getattr(loop, "racelab_socket", None)
    if opener is not None:
        return opener()
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


class _Trial:
    """The state of one trial while it runs on its loop."""

    def __init__(
        self,
        config: Config,
        recorder: Recorder,
        payload: Payload,
        network: str,
        server_protocol: type[EchoServerProtocol],
    ) -> None:
        self.config = config
        self.server_protocol = server_protocol
        self.recorder = recorder
        self.payload = payload
        self.network = network
        self.errors: list[str] = []
        self.sockbufs: dict[str, int] = {}

    def on_error(self, where: str, exc: BaseException | str) -> None:
        if isinstance(exc, BaseException):
            text = "".join(
                traceback.format_exception_only(type(exc), exc)
            ).strip()
        else:
            text = exc
        self.errors.append(f"{where}: {text}")
        self.recorder.record("harness", "error", 0, -1, 0, text[:200])

    def _exception_handler(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        # Exceptions raised in protocol callbacks reach the loop's handler;
        # in a trial they are results.
        exc = context.get("exception")
        where = context.get("message", "loop exception handler")
        self.on_error(where, exc if exc is not None else where)

    def _set_sockbufs(self, sock: socket.socket, side: str) -> None:
        for name, option in _SOCKBUF_OPTIONS:
            key = f"{side}_{name}_bytes"
            asked = getattr(self.config, key)
            if asked is not None:
                sock.setsockopt(socket.SOL_SOCKET, option, asked)

    def _read_sockbufs(self, sock: Any, side: str, port: int) -> None:
        for name, option in _SOCKBUF_OPTIONS:
            key = f"{side}_{name}_bytes"
            actual = sock.getsockopt(socket.SOL_SOCKET, option)
            asked = getattr(self.config, key)
            self.sockbufs[key] = actual
            detail = f"option={key} asked={asked}"
            self.recorder.record(
                "harness", "sockopt", actual, -1, port, detail
            )
            # Linux doubles what it is asked for (the bookkeeping share)
            # and clamps it to net.core.[rw]mem_max: say when it did more.
            if asked is not None and actual not in (asked, 2 * asked):
                logger.warning(
                    "%s socket: asked for %s=%d, kernel set %d",
                    side, key, asked, actual,
                )

    async def run(self) -> TrialResult:
        config = self.config
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._exception_handler)
        rng = random.Random(config.seed)

        server_made: asyncio.Future[EchoServerProtocol] = (
            loop.create_future()
        )

        def server_factory() -> EchoServerProtocol:
            protocol = self.server_protocol(
                self.payload, self.recorder, self.on_error, config
            )
            protocol.on_connection_made = _resolve_once(server_made)
            return protocol

        def client_factory() -> EchoClientProtocol:
            return EchoClientProtocol(
                self.payload, self.recorder, self.on_error, config
            )

        server_tls, client_tls = _tls_contexts() if config.tls else (None,) * 2
        listener = _open_socket(loop)
        client_sock = _open_socket(loop)
        made: dict[str, Any] = {}  # what exists so far, to undo on failure

        async def connect() -> tuple[Any, Any, Any]:
            # Buffer sizes go on before listen()/connect(): the receive
            # buffer fixes the window scale offered in the handshake, and
            # accepted sockets inherit the listener's options.
            self._set_sockbufs(listener, "server")
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.setblocking(False)
            made["server"] = await loop.create_server(
                server_factory, sock=listener, ssl=server_tls
            )
            self._set_sockbufs(client_sock, "client")
            client_sock.setblocking(False)
            await loop.sock_connect(client_sock, listener.getsockname())
            _, made["client"] = await loop.create_connection(
                client_factory,
                sock=client_sock,
                ssl=client_tls,
                server_hostname="localhost" if client_tls else None,
            )
            return made["server"], made["client"], await server_made

        try:
            server, client, server_protocol = await asyncio.wait_for(
                connect(), config.timeout_s
            )
        except Exception as exc:
            # Failing to set up is a harness failure (the machine refused
            # sockets, or a user's loop never connected), not a verdict.
            if "client" in made:
                made["client"].transport.abort()
            else:
                client_sock.close()
            if server_made.done():
                server_made.result().transport.abort()
            if "server" in made:
                made["server"].close()
            else:
                listener.close()
            reason = (
                f"not connected within timeout_s={config.timeout_s}"
                if isinstance(exc, asyncio.TimeoutError)
                else exc
            )
            raise RuntimeError(
                f"cannot set up the echo trial: {reason}"
            ) from None

        self._read_sockbufs(
            client.transport.get_extra_info("socket"), "client", client.port
        )
        self._read_sockbufs(
            server_protocol.transport.get_extra_info("socket"),
            "server",
            server_protocol.port,
        )
        sides = {"client": client, "server": server_protocol}
        schedules = []
        if config.pauses_enabled:
            pausing = (
                ("client", "server")
                if config.pausing_side == "both"
                else (config.pausing_side,)
            )
            schedules = [
                PauseSchedule(loop, sides[s].gate, config, rng)
                for s in pausing
            ]

        started = time.perf_counter()
        loop_started = loop.time()
        for schedule in schedules:
            schedule.start()
        sender = loop.create_task(client.send_all())
        sender.add_done_callback(self._sender_done)

        timed_out = False
        try:
            await asyncio.wait_for(
                asyncio.shield(client.finished), config.timeout_s
            )
        except asyncio.TimeoutError:
            timed_out = True
            self.recorder.record(
                "harness", "timeout", 0, -1, 0, f"after={config.timeout_s}s"
            )
        for schedule in schedules:
            schedule.stop()
        duration_s = time.perf_counter() - started
        loop_time_s = loop.time() - loop_started

        # In a normal ending the server got the client's EOF before sending
        # its own, so its checker has seen the whole upstream by now.
        # Raw reports: what each checker saw.  The client's still includes
        # what the server never received; _explain() takes that out.
        streams = {"up": server_protocol.checker.report()}
        if config.direction == "both":
            streams["down"] = client.checker.report()
        self.recorder.record("harness", "verdict", 0, -1, 0)
        # Errors up to the verdict decide it.  Closing comes after: a peer
        # reset while tearing down a hung trial is not what the trial found.
        verdict_errors = list(self.errors)

        await self._close(sender, client, server_protocol, server,
                          abort=timed_out)
        closing_errors = self.errors[len(verdict_errors):]

        result = TrialResult(
            config=config,
            outcome="",
            streams=streams,
            pauses=sum(p.gate.pauses for p in sides.values()),
            scheduled_pauses=sum(
                p.gate.scheduled_pauses for p in sides.values()
            ),
            paused_s=sum(p.gate.paused_s for p in sides.values()),
            bytes_while_paused=sum(
                p.gate.bytes_while_paused for p in sides.values()
            ),
            duration_s=duration_s,
            loop_time_s=loop_time_s,
            network=self.network,
            sockbufs=self.sockbufs,
            error="; ".join(verdict_errors) or None,
            closing_error="; ".join(closing_errors) or None,
            events=self.recorder.events,
        )
        _explain(result, sides, timed_out, self.payload)
        return result

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_error("client send_all", task.exception())

    async def _close(
        self,
        sender: asyncio.Task[None],
        client: EchoClientProtocol,
        server_protocol: EchoServerProtocol,
        server: asyncio.AbstractServer,
        abort: bool,
    ) -> None:
        # A trial that ended normally has flushed both ways, so close()
        # is quick.  A hung one may hold unsent data that its paused peer
        # will never read: close() would wait for it, so abort.
        sender.cancel()
        for transport in (client.transport, server_protocol.transport):
            if abort:
                transport.abort()
            else:
                transport.close()
        server.close()
        waits = [client.closed, server_protocol.closed, sender]
        _, pending = await asyncio.wait(waits, timeout=_CLOSE_TIMEOUT_S)
        for transport in (client.transport, server_protocol.transport):
            if not transport.is_closing() or pending:
                transport.abort()
        try:
            await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.on_error("closing", "server did not close in time")


def _resolve_once(
    future: asyncio.Future[Any],
) -> Callable[[Any], None]:
    def resolve(protocol: Any) -> None:
        if future.done():
            # A second connection to a one-connection server: not ours.
            protocol.transport.abort()
            return
        future.set_result(protocol)

    return resolve


def _explain(
    result: TrialResult,
    sides: dict[str, Any],
    timed_out: bool,
    payload: Payload,
) -> None:
    """Fill in the verdict, the exposure and the loss attribution."""
    events = result.events
    kernel = [e for e in events if e.side == "kernel"]
    if kernel:
        result.bytes_while_paused += _kernel_bytes_while_paused(
            events, kernel
        )
    # Under TLS discarded completions carry ciphertext: they cannot be
    # located in the payload, so lost bytes are not attributed to them.
    if kernel and not result.config.tls:
        ports = {"up": sides["server"].port, "down": sides["client"].port}
        discarded = _discarded(kernel, ports, payload.data)
        result.discarded = discarded
        # The echo carries payload offsets, so the client's raw report can
        # be pinned with the evidence of both directions.
        evidence = {
            direction: ranges.coalesce(
                Range(d.offset, d.length)
                for d in discarded
                if d.direction in directions
            )
            for direction, directions in (
                ("up", ("up",)), ("down", ("up", "down"))
            )
        }
        for direction, report in result.streams.items():
            result.streams[direction] = _pin(
                report, evidence[direction], payload.data
            )
        # Compared before the echo's report is reduced by the upstream one:
        # where the client's discarded read straddles a range the server
        # lost, the split between the two is as ambiguous as any gap edge,
        # while their union is not.
        if not timed_out:
            result.attribution_agrees = all(
                report.missing == evidence[direction]
                for direction, report in result.streams.items()
            )
    streams = result.streams
    if "down" in streams:
        # What went wrong on the way back only: a range the server never
        # received was never echoed, and is reported once, under "up".
        streams["down"] = streams["down"].minus(streams["up"])

    if result.error is not None:
        result.outcome = "error"
    elif timed_out:
        result.outcome = "hang"
    elif any(r.missing for r in result.streams.values()):
        result.outcome = "loss"
    elif not all(r.complete for r in result.streams.values()):
        result.outcome = "corrupt"
    elif result.pauses == 0:
        result.outcome = "inconclusive"
    else:
        result.outcome = "clean"


def _kernel_bytes_while_paused(
    events: list[Event], kernel: list[Event]
) -> int:
    # Reads the kernel completed into a posted buffer while the transport
    # on that port was paused: on a proactor these bytes have left the
    # socket queue, so the queue-growth measure cannot see them.
    paused_since: dict[int, int] = {}
    intervals: list[tuple[int, int, int]] = []
    for e in events:
        if e.kind == "pause_reading":
            paused_since[e.port] = e.t_ns
        elif e.kind == "resume_reading" and e.port in paused_since:
            intervals.append((e.port, paused_since.pop(e.port), e.t_ns))
    end = events[-1].t_ns if events else 0
    intervals.extend((p, t, end) for p, t in paused_since.items())
    reads = {
        _op_id(e.detail)
        for e in kernel
        if e.kind == "op_posted" and "recv" in e.detail
    }
    total = 0
    for e in kernel:
        if e.kind != "op_completed" or e.nbytes <= 0:
            continue
        if _op_id(e.detail) not in reads:
            continue
        for port, start, stop in intervals:
            if e.port == port and start <= e.t_ns <= stop:
                total += e.nbytes
                break
    return total


def _op_id(detail: str) -> str:
    # Kernel events name their operation as "op=N ..." in the detail.
    for word in detail.split():
        if word.startswith("op="):
            return word
    return ""


def _discarded(
    kernel: list[Event], ports: dict[str, int], data: bytes
) -> tuple[LostRange, ...]:
    """The payload ranges that discarded completions carried.

    A discarded read on the client can span a range the server lost (the
    echo skipped it); the kernel then records one event per contiguous
    run ("run=i/k").  Where such a run meets the next, the split is as
    ambiguous as a gap's edge, so it is moved, within what the bytes
    allow, onto the edge of the upstream discard it straddles.
    """
    by_op: dict[tuple[str, str], list[LostRange]] = {}
    for e in kernel:
        if e.kind != "completion_discarded" or e.nbytes <= 0:
            continue
        for direction, port in ports.items():
            if e.port == port:
                key = (direction, _op_id(e.detail))
                by_op.setdefault(key, []).append(
                    LostRange(direction, e.offset, e.nbytes)
                )
    upstream_edges = {
        edge
        for (direction, _), runs in by_op.items()
        if direction == "up"
        for r in runs
        for edge in (r.offset, r.offset + r.length)
    }
    out: list[LostRange] = []
    for runs in by_op.values():
        for i in range(len(runs) - 1):
            first, second = runs[i], runs[i + 1]
            shift = _junction_shift(first, second, upstream_edges, data)
            if shift:
                runs[i] = dataclasses.replace(
                    first, length=first.length - shift
                )
                runs[i + 1] = dataclasses.replace(
                    second,
                    offset=second.offset - shift,
                    length=second.length + shift,
                )
        out.extend(runs)
    return tuple(out)


def _junction_shift(
    first: LostRange, second: LostRange, edges: set[int], data: bytes
) -> int:
    # How far to move the split between two runs of one read to the left
    # (negative: right) so that it falls on an upstream discard's edge,
    # where the bytes allow it; 0 when no such move exists.
    end = first.offset + first.length
    # Neither run may shrink to nothing.
    reach = min(_MAX_SLIDE_BYTES, first.length - 1, second.length - 1)
    for shift in sorted(range(-reach, reach + 1), key=abs):
        if end - shift not in edges and second.offset - shift not in edges:
            continue
        if shift > 0 and (
            data[end - shift : end]
            == data[second.offset - shift : second.offset]
        ):
            return shift
        if shift < 0 and (
            data[end : end - shift]
            == data[second.offset : second.offset - shift]
        ):
            return shift
        if shift == 0:
            return 0
    return 0


def _pin(
    report: StreamReport, evidence: tuple[Range, ...], data: bytes
) -> StreamReport:
    """Move each lost range onto the discarded completion that names it.

    A gap's position is ambiguous by a few bytes when its edges coincide
    with the payload: if the first bytes after the gap equal the first
    bytes that went missing, the received stream cannot tell where the gap
    began.  Such a range is moved to a discarded completion of the same
    length within reach of the ambiguity: the received bytes allow both
    places, and the kernel's record says which.
    """
    pinned = ranges.coalesce(
        next(
            (
                e for e in evidence
                if e.length == lost.length
                and abs(e.offset - lost.offset) <= _MAX_SLIDE_BYTES
                and _gap_may_sit_at(data, lost, e.offset)
            ),
            lost,
        )
        for lost in report.missing
    )
    if pinned == tuple(report.missing):
        return report
    return dataclasses.replace(report, missing=pinned)


# How far a gap may be moved onto kernel evidence.  Its position is
# ambiguous only while the bytes at its edges coincide, which past the
# 4-byte tag that starts every payload block is a 1-in-256 chance per
# byte; a block's length is far beyond any such run.
_MAX_SLIDE_BYTES = 256


def _gap_may_sit_at(data: bytes, gap: Range, offset: int) -> bool:
    # Moving a gap right by s needs the s bytes received after it to equal
    # the s bytes it now leaves out at its start; moving it left, the
    # mirror image.
    shift = offset - gap.offset
    if shift > 0:
        return (
            data[gap.offset : gap.offset + shift]
            == data[gap.end : gap.end + shift]
        )
    if shift < 0:
        return (
            gap.offset + shift >= 0
            and data[gap.offset + shift : gap.offset]
            == data[gap.end + shift : gap.end]
        )
    return True
