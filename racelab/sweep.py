"""Sweeps: a grid of configs times loop kinds times trials, as one run.

A *sweep* crosses chosen values of any :class:`~racelab.config.Config`
fields (``loop`` among them) into *cells*, and runs the same seeds in
every cell: trial *i* of each cell has seed ``config.seed + i``, so cells
differ only in what the grid changes.  A trial is known by its
``(cell, seed)`` pair.

Trials run in worker processes, each trial on a fresh loop, the workers
reused across trials; any :class:`concurrent.futures.Executor` may run
them instead, a dask cluster's ``client.get_executor()`` included.  A
task is plain data both ways: a config dict in, row dicts and event
columns out (:func:`run_task`).

Layout of the run on disk, under ``<data_dir>/runs/<run_id>/``::

    manifest.json                 grid, cells, seeds, status, summary
    parts/trials-00000.parquet    one row per trial, with its cell
    parts/ranges-00000.parquet    reported ranges of those trials
    parts/events-00000.parquet    their timelines
    parts/trials-00001.parquet    ... one part per flush

Every file is written to a temporary name and renamed into place, and a
part's trials file goes last, so a part exists once its trials file does
(:func:`racelab.store.read_table` merges the parts).  A process killed at
any moment, SIGKILL included, leaves a run that loads, holding every
trial of every committed part; ``resume`` runs the missing trials.

The parent keeps counts and the ``(cell, seed)`` pairs done, never trial
results or timelines: rows wait in a small buffer until the next part.

pandas is imported only where tables are built, so the workers and the
command-line parser start without it until their first trial.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime
import functools
import itertools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from racelab import loops
from racelab.config import Config, ConfigError
from racelab.events import EVENT_FIELDS
from racelab.loops import get_kind
from racelab.progress import outcome_postfix, progress_bar
from racelab.run import environment, new_run_id
from racelab.stats import CONCLUSIVE, loss_rate
from racelab.trial import OUTCOMES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Cell",
    "Grid",
    "SweepResult",
    "load_sweep",
    "make_grid",
    "parse_grid_option",
    "read_sweep_file",
    "run_task",
    "run_task_bounded",
    "summarize",
    "sweep",
]

#: Trials per cell when neither the caller nor the sweep file says.
DEFAULT_TRIALS = 10

#: Seconds a trial may run past its ``timeout_s`` before its worker is
#: killed and the trial recorded as ``hang``: room for setting up, two
#: bounded closing waits of 5 s, and a worker's first imports.
DEFAULT_HANG_MARGIN_S = 15.0

# Tasks queued on one worker process: the rest wait in the pipe while the
# first runs, so a worker never idles for a round trip between trials
# that last a millisecond.  Measured with benchmarks/bench_sweep.py on 2
# cores: depth 4 beat 2 by about 5% on two workers.  Sleeping 2 ms after
# each result to collect several per wake-up halved the parent's CPU per
# trial but cost the workers 10-20% of their rate, so the parent does
# not.
_PIPELINE_DEPTH = 4

# A worker must say it is ready within this long of being started.
_WORKER_START_S = 120.0

# Give up when this many workers in a row die before they are ready: the
# interpreter or the setup hook is broken, and respawning will not help.
_MAX_START_FAILURES = 3

# A part is written when any bound is reached: rows, events, or seconds
# since the last part (the work a SIGKILL can cost).
_PART_TRIALS = 2000
_PART_EVENTS = 250_000

_SWEEP_FILE_KEYS = ("config", "grid", "trials")


# -- the grid -----------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One point of a grid: the values it sets and the config they give."""

    index: int
    params: dict[str, Any]
    """The grid's values for this cell, field by field, ``loop`` first."""
    config: Config
    """The base config with :attr:`params` applied."""

    @property
    def label(self) -> str:
        """``loop=selector pause_every_ms=1``: the cell in one line."""
        return " ".join(
            f"{k}={'default' if v is None else f'{v:g}'}"
            if isinstance(v, float) or v is None
            else f"{k}={v}"
            for k, v in self.params.items()
        )


@dataclass(frozen=True)
class Grid:
    """A validated sweep plan: base config, axes, trials per cell.

    Build one with :func:`make_grid`, which converts and checks input;
    the constructor checks it too.

    Raises:
      ConfigError: an axis names no config field, has no values or a
        repeated one, sets the seed, or gives some cell a value that
        breaks its field's rule (the message names that field).
    """

    base: Config
    axes: dict[str, tuple[Any, ...]]
    """Field name to its values, in order; ``loop``, when swept, first."""
    trials: int
    """Trials per cell; their seeds are ``base.seed`` upward."""

    def __post_init__(self) -> None:
        _check_trials(self.trials)
        known = Config.field_names()
        for name, values in self.axes.items():
            if name not in known:
                raise ConfigError(
                    "field name", "one of " + ", ".join(known), name
                )
            if name == "seed":
                raise ConfigError(
                    "seed",
                    "fixed in a sweep (trial i of every cell has seed seed+i)",
                    list(values),
                )
            if not values:
                raise ConfigError(name, "given at least one value", [])
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(
                    name, "a list of distinct values", list(values)
                )
        # Every cell is built now, so that a bad value is reported by its
        # field before any trial runs.
        self.cells  # noqa: B018

    @functools.cached_property
    def cells(self) -> list[Cell]:
        """Every cell, the last axis varying fastest."""
        names = list(self.axes)
        cells = []
        product = itertools.product(*(self.axes[n] for n in names))
        for index, values in enumerate(product):
            params = dict(zip(names, values, strict=True))
            config = self.base.replace(**params)
            cells.append(Cell(index, params, config))
        return cells

    @property
    def seeds(self) -> list[int]:
        return [self.base.seed + i for i in range(self.trials)]

    @property
    def size(self) -> int:
        """Trials in the whole sweep."""
        return len(self.cells) * self.trials

    @property
    def loops(self) -> list[str]:
        return list(dict.fromkeys(c.config.loop for c in self.cells))

    def trial_number(self, cell: int, seed: int) -> int:
        """The ``trial`` column of ``(cell, seed)``: fixed by the plan, so
        a resumed sweep numbers its trials as an uninterrupted one."""
        return cell * self.trials + (seed - self.base.seed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.base.to_dict(),
            "grid": {name: list(v) for name, v in self.axes.items()},
            "trials_per_cell": self.trials,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Grid:
        """The grid of a sweep manifest (or :meth:`to_dict` output)."""
        return cls(
            base=Config.from_dict(values["config"]),
            axes={k: tuple(v) for k, v in values["grid"].items()},
            trials=values["trials_per_cell"],
        )


def _check_trials(trials: Any) -> None:
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError("trials", "an integer >= 1", trials)


def _coerce(name: str, value: Any) -> Any:
    # Text from a command line or a TOML string ('default', '4096') takes
    # the field's type; typed values pass on, for Config to judge.
    from racelab.cli import field_from_text

    if isinstance(value, str) and name in Config.field_names():
        return field_from_text(name, value.strip())
    return value


def make_grid(
    axes: Mapping[str, Any] | None = None,
    config: Config | Mapping[str, Any] | None = None,
    trials: int = DEFAULT_TRIALS,
) -> Grid:
    """Check and convert grid input into a :class:`Grid`.

    Args:
      axes: field name to a list of values (a single value is a list of
        one); text values are converted as on the command line, so
        ``"default"`` selects None for a buffer size.
      config: the base config, or a mapping of field values for one.
      trials: trials per cell, >= 1.

    Returns:
      The grid, every cell's config built and validated.

    Raises:
      ConfigError: bad input, named by field (see :class:`Grid`).
    """
    if config is None:
        config = Config()
    elif not isinstance(config, Config):
        config = Config.from_dict(
            {k: _coerce(k, v) for k, v in config.items()}
        )
    converted: dict[str, tuple[Any, ...]] = {}
    for name, values in (axes or {}).items():
        if isinstance(values, (str, bytes)) or not isinstance(
            values, Iterable
        ):
            values = [values]
        converted[name] = tuple(_coerce(name, v) for v in values)
    # The loop axis goes first: cells of one loop kind sit together.
    if "loop" in converted:
        converted = {"loop": converted.pop("loop"), **converted}
    return Grid(base=config, axes=converted, trials=trials)


def parse_grid_option(text: str) -> tuple[str, list[str]]:
    """Split ``"FIELD=V1,V2"`` into the field and its value texts.

    Raises:
      ConfigError: the text is not of that form.
    """
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not values.strip():
        raise ConfigError("--grid", "FIELD=VALUE[,VALUE...]", text)
    return name, [v.strip() for v in values.split(",")]


def read_sweep_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a sweep file: TOML with ``trials``, ``[config]``, ``[grid]``.

    Example::

        trials = 20                  # per cell
        [config]                     # fields every cell shares
        packets = 20
        packet_bytes = 1024
        [grid]                       # fields to sweep, one list each
        loop = ["selector", "emulated-proactor"]
        pause_every_ms = [1, 10, 100]
        client_rcvbuf_bytes = ["default", 4096]

    Returns:
      ``{"config": {...}, "grid": {...}, "trials": n or None}``, not yet
      validated (see :func:`make_grid`).

    Raises:
      ConfigError: the file is missing, is not TOML, or has a key other
        than those three.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ConfigError(
                "sweep file",
                "read with tomllib (Python 3.11+) or tomli (pip install "
                "tomli)",
                str(path),
            ) from None
    try:
        with open(path, "rb") as stream:
            values = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            "sweep file", "a readable TOML file", f"{path}: {reason}"
        ) from None
    for key, value in values.items():
        if key not in _SWEEP_FILE_KEYS:
            rule = "one of " + ", ".join(map(repr, _SWEEP_FILE_KEYS))
            raise ConfigError("sweep file key", rule, key)
        if key != "trials" and not isinstance(value, dict):
            raise ConfigError(f"[{key}]", "a TOML table", value)
    return {
        "config": values.get("config", {}),
        "grid": values.get("grid", {}),
        "trials": values.get("trials"),
    }


# -- tasks: what a worker runs ------------------------------------------------


_setups_done: set[str] = set()


def _run_setup(target: str | None) -> None:
    # "module:callable", run once per process before its first trial, for
    # what workers need and a fresh interpreter lacks (a loop kind added
    # with racelab.register_factory, say).
    if not target or target in _setups_done:
        return
    try:
        setup = loops.resolve(target)
    except (ValueError, LookupError) as exc:
        raise ConfigError(
            "worker_setup", f"'module:callable' that imports ({exc})", target
        ) from None
    setup()
    _setups_done.add(target)


def _empty_events() -> dict[str, list]:
    return {name: [] for name in EVENT_FIELDS}


def _context(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += (
            f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
        )
    return text


def _failed_result(
    config: Mapping[str, Any],
    outcome: str,
    error: str,
    duration_s: float = math.nan,
) -> dict[str, Any]:
    # A trial that produced no TrialResult still gets a full row: its
    # config, the outcome, and what happened, in the error column.
    from racelab import frames

    row: dict[str, Any] = {}
    for column, dtype in frames.TRIAL_DTYPES.items():
        if column in config:
            row[column] = config[column]
        elif dtype == "int64":
            row[column] = 0
        elif dtype == "float64":
            row[column] = math.nan
        else:
            row[column] = None
    row.update(outcome=outcome, error=error, duration_s=duration_s)
    return {"row": row, "ranges": [], "events": _empty_events()}


def run_task(config: Mapping[str, Any], record: bool = True) -> dict:
    """Run one trial and return it as plain, picklable data.

    Args:
      config: a :meth:`Config.to_dict` mapping, seed included.
      record: keep the trial's timeline.

    Returns:
      ``{"row": trials-table row, "ranges": [range rows], "events":
      {field: [values]}}``, without trial numbers (the caller assigns
      them).  An exception becomes an ``error`` row naming it.
    """
    from racelab import frames
    from racelab.trial import run_trial

    try:
        result = run_trial(Config.from_dict(dict(config)), record=record)
    except Exception as exc:  # the row says what it was
        return _failed_result(config, "error", _context(exc))
    ranges = [
        {"direction": d, "category": c, "offset": r.offset, "length": r.length}
        for d, c, r in result.ranges()
    ]
    events = _empty_events()
    if result.events:
        columns = zip(*result.events, strict=True)
        for name, values in zip(EVENT_FIELDS, columns, strict=True):
            events[name] = list(values)
    return {
        "row": frames.trial_row(0, result),
        "ranges": ranges,
        "events": events,
    }


def run_task_bounded(
    config: Mapping[str, Any],
    record: bool = True,
    limit_s: float | None = None,
    setup: str | None = None,
) -> dict:
    """:func:`run_task` under a wall-clock limit, for any executor.

    The trial runs in a daemon thread of the worker; when *limit_s*
    passes first, the result is a ``hang`` row and the thread is left
    behind (an executor offers no way to kill its worker).

    Args:
      config: as for :func:`run_task`.
      record: as for :func:`run_task`.
      limit_s: seconds to wait (default: the config's ``timeout_s`` plus
        :data:`DEFAULT_HANG_MARGIN_S`).
      setup: ``"module:callable"`` run once in this process first.
    """
    _run_setup(setup)
    if limit_s is None:
        limit_s = config["timeout_s"] + DEFAULT_HANG_MARGIN_S
    box: list[dict] = []

    def work() -> None:
        try:
            box.append(run_task(config, record))
        except BaseException as exc:  # SystemExit, say
            box.append(_failed_result(config, "error", _context(exc)))

    started = time.monotonic()
    thread = threading.Thread(target=work, name="racelab-trial", daemon=True)
    thread.start()
    thread.join(limit_s)
    if box:
        return box[0]
    return _failed_result(
        config,
        "hang",
        f"no result after {limit_s:g} s wall clock; the trial thread was "
        f"abandoned in worker pid {os.getpid()}",
        time.monotonic() - started,
    )


def _worker_main(conn: Any, setup: str | None) -> None:
    # A worker process: say ready, then run (config, record) messages
    # until None or until the parent's end of the pipe closes.  Ctrl-C
    # reaches the whole process group; only the parent decides what it
    # means, so workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _run_setup(setup)
    from racelab import frames  # noqa: F401  (pandas, before the clock)

    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone: SIGKILL leaves no orphans
        if message is None:
            return
        config, record = message
        result = run_task(config, record)
        try:
            conn.send(result)
        except OSError:
            return


# -- pools: where tasks run ---------------------------------------------------


class _PoolFailure(RuntimeError):
    """The pool can run no more trials; the sweep stops, keeping all."""


@dataclass
class _Task:
    key: tuple[int, int]
    config: dict[str, Any]
    limit_s: float


class _Worker:
    # States: STARTING -> READY (0..depth tasks queued) -> EXITED
    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn
        self.ready = False
        self.broken = False
        """The pipe refused a task: the process is exiting, and the next
        poll will see it go."""
        self.born = time.monotonic()
        self.tasks: deque[_Task] = deque()
        self.head_started = 0.0
        """When the first queued task started: when it was sent to an
        idle worker, or when the task before it came back."""


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _ProcessPool:
    """racelab's own worker processes, which it can kill one by one.

    Unlike a ProcessPoolExecutor, it knows which trial each worker runs,
    so a worker that dies costs that trial alone (recorded as ``error``)
    and one that overruns its trial's hard limit is killed and replaced
    (the trial recorded as ``hang``), while the sweep goes on.
    """

    def __init__(self, workers: int, record: bool, setup: str | None):
        # spawn, not fork: a forked worker would inherit the parent's end
        # of every pipe (and miss EOF when the parent dies) and any
        # threads' locks; spawn is also what Windows and macOS have.
        self._ctx = multiprocessing.get_context("spawn")
        self._record = record
        self._setup = setup
        self._start_failures = 0
        self.requeued: list[_Task] = []
        self.failure: str | None = None
        """Why no more trials can run, once that is so."""
        self.workers = [self._spawn() for _ in range(workers)]

    def _spawn(self) -> _Worker:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_end, self._setup),
            name="racelab-sweep-worker",
            daemon=True,
        )
        process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def _open(self) -> list[_Worker]:
        return [w for w in self.workers if w.ready and not w.broken]

    def has_room(self) -> bool:
        return any(len(w.tasks) < _PIPELINE_DEPTH for w in self._open())

    def busy(self) -> bool:
        return any(w.tasks for w in self.workers)

    def submit(self, task: _Task) -> None:
        worker = min(self._open(), key=lambda w: len(w.tasks))
        try:
            worker.conn.send((task.config, self._record))
        except OSError:
            # The worker died after its last result and before we noticed
            # (BrokenPipeError): the task never reached it.
            worker.broken = True
            self.requeued.append(task)
            return
        if not worker.tasks:
            worker.head_started = time.monotonic()
        worker.tasks.append(task)

    def poll(self, timeout: float) -> list[tuple[_Task, dict]]:
        finished: list[tuple[_Task, dict]] = []
        waitables = [w.conn for w in self.workers]
        waitables += [w.process.sentinel for w in self.workers]
        ready = set(multiprocessing.connection.wait(waitables, timeout))
        for worker in list(self.workers):
            if worker.conn in ready or worker.process.sentinel in ready:
                self._service(worker, finished)
        self._check_limits(finished)
        return finished

    def _service(
        self, worker: _Worker, finished: list[tuple[_Task, dict]]
    ) -> None:
        # At most depth results and one 'ready' can be waiting.
        for _ in range(_PIPELINE_DEPTH + 1):
            try:
                if not worker.conn.poll():
                    break
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, tuple):  # ("ready", pid)
                worker.ready = True
                self._start_failures = 0
                continue
            task = worker.tasks.popleft()
            finished.append((task, message))
            worker.head_started = time.monotonic()
        if not worker.process.is_alive():
            self._lost(worker, finished)

    def _lost(
        self, worker: _Worker, finished: list[tuple[_Task, dict]]
    ) -> None:
        worker.process.join(5.0)
        how = _describe_exit(worker.process.exitcode)
        if not worker.ready:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES:
                # The usual cause: spawn re-imports the main script in
                # each worker, and a script without a main guard calls
                # sweep() again there, which multiprocessing refuses.
                self.failure = (
                    f"{self._start_failures} sweep workers in a row died "
                    f"before they were ready (last: {how}); a script that "
                    "calls sweep() must do so under "
                    "`if __name__ == '__main__':`"
                )
        if worker.tasks:
            task = worker.tasks.popleft()
            elapsed = time.monotonic() - worker.head_started
            error = (
                f"worker process pid {worker.process.pid} died during the "
                f"trial ({how})"
            )
            finished.append(
                (task, _failed_result(task.config, "error", error, elapsed))
            )
        self._replace(worker)

    def _check_limits(self, finished: list[tuple[_Task, dict]]) -> None:
        now = time.monotonic()
        for worker in list(self.workers):
            if not worker.ready and now - worker.born > _WORKER_START_S:
                worker.process.kill()
                self._lost(worker, finished)
                continue
            if not worker.tasks:
                continue
            task = worker.tasks[0]
            elapsed = now - worker.head_started
            if elapsed <= task.limit_s:
                continue
            worker.process.kill()
            worker.process.join(5.0)
            worker.tasks.popleft()
            timeout_s = task.config["timeout_s"]
            error = (
                f"no result after {elapsed:.1f} s wall clock (hard limit "
                f"{task.limit_s:g} s: timeout_s {timeout_s:g} + margin "
                f"{task.limit_s - timeout_s:g}); worker pid "
                f"{worker.process.pid} killed"
            )
            finished.append(
                (task, _failed_result(task.config, "hang", error, elapsed))
            )
            self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        # Tasks queued behind a lost one never started: run them again.
        self.requeued.extend(worker.tasks)
        worker.tasks.clear()
        worker.conn.close()
        self.workers.remove(worker)
        if self.failure is None:
            self.workers.append(self._spawn())

    def close(self) -> None:
        """Stop every worker; trials under way are dropped."""
        for worker in self.workers:
            if worker.tasks or not worker.ready:
                worker.process.kill()
                continue
            try:
                worker.conn.send(None)
            except OSError:
                worker.process.kill()
        deadline = time.monotonic() + 5.0
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            worker.conn.close()
        self.workers = []


class _ExecutorPool:
    """Trials on a caller's executor, each under :func:`run_task_bounded`.

    A worker that dies takes its trial with it (an ``error`` row with the
    executor's exception); a broken executor, one that refuses work, or
    one that returns nothing for a long time stops the sweep, keeping
    every finished trial.
    """

    def __init__(
        self,
        executor: cf.Executor,
        in_flight: int,
        record: bool,
        setup: str | None,
        stall_s: float,
    ) -> None:
        self._executor = executor
        self._in_flight = in_flight
        self._record = record
        self._setup = setup
        self._stall_s = stall_s
        self._last_progress = time.monotonic()
        self._futures: dict[cf.Future, _Task] = {}
        self.requeued: list[_Task] = []
        self.failure: str | None = None

    def has_room(self) -> bool:
        return len(self._futures) < self._in_flight

    def busy(self) -> bool:
        return bool(self._futures)

    def submit(self, task: _Task) -> None:
        if not self._futures:
            self._last_progress = time.monotonic()
        try:
            future = self._executor.submit(
                run_task_bounded,
                task.config,
                self._record,
                task.limit_s,
                self._setup,
            )
        except Exception as exc:
            raise _PoolFailure(f"the executor refused work: {exc}") from exc
        self._futures[future] = task

    def poll(self, timeout: float) -> list[tuple[_Task, dict]]:
        if not self._futures:
            return []
        done, _ = cf.wait(
            list(self._futures), timeout, return_when=cf.FIRST_COMPLETED
        )
        finished = []
        for future in done:
            task = self._futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # kept in the row
                error = f"the executor reported {_context(exc)}"
                result = _failed_result(task.config, "error", error)
            finished.append((task, result))
        now = time.monotonic()
        if finished:
            self._last_progress = now
        elif now - self._last_progress > self._stall_s:
            self.failure = (
                f"the executor returned no trial for {self._stall_s:g} s"
            )
        return finished

    def close(self) -> None:
        for future in self._futures:
            future.cancel()
        self._futures.clear()


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _executor_workers(executor: cf.Executor) -> int:
    # How many trials an executor runs at once, as far as it says.
    count = getattr(executor, "_max_workers", None)
    client = getattr(executor, "_client", None)
    if count is None and client is not None:
        with contextlib.suppress(Exception):
            count = sum(client.nthreads().values())
    return count or _default_workers()


# -- writing parts ------------------------------------------------------------


def sweep_trial_dtypes() -> dict[str, str]:
    """Column types of a sweep's trials table: a run's, plus ``cell``."""
    from racelab import frames

    dtypes = {"trial": "int64", "cell": "int64"}
    dtypes.update(
        (k, v) for k, v in frames.TRIAL_DTYPES.items() if k != "trial"
    )
    return dtypes


class _PartWriter:
    """Buffers finished trials and writes them as numbered parts."""

    def __init__(self, folder: Path, next_part: int, flush_s: float):
        self.folder = folder
        self.next_part = next_part
        self.flush_s = flush_s
        self._rows: list[dict] = []
        self._ranges: list[dict] = []
        self._events: dict[str, list] = {"trial": [], **_empty_events()}
        self._last = time.monotonic()

    def add(self, trial: int, cell: int, result: dict) -> None:
        row = result["row"]
        row["trial"] = trial
        row["cell"] = cell
        self._rows.append(row)
        for r in result["ranges"]:
            self._ranges.append({"trial": trial, **r})
        events = result["events"]
        self._events["trial"].extend([trial] * len(events["t_ns"]))
        for name in EVENT_FIELDS:
            self._events[name].extend(events[name])

    def due(self) -> bool:
        if not self._rows:
            return False
        return (
            len(self._rows) >= _PART_TRIALS
            or len(self._events["trial"]) >= _PART_EVENTS
            or time.monotonic() - self._last >= self.flush_s
        )

    def flush(self) -> int:
        """Write the buffer as the next part; returns the trials written."""
        import pandas as pd

        from racelab import frames, store

        self._last = time.monotonic()
        if not self._rows:
            return 0
        dtypes = sweep_trial_dtypes()
        tables = {
            "trials": pd.DataFrame(self._rows, columns=list(dtypes)).astype(
                dtypes
            ),
            "ranges": pd.DataFrame(
                self._ranges, columns=list(frames.RANGE_DTYPES)
            ).astype(frames.RANGE_DTYPES),
            "events": pd.DataFrame(self._events).astype(frames.EVENT_DTYPES),
        }
        store.write_part(self.folder, self.next_part, tables)
        written = len(self._rows)
        self.next_part += 1
        self._rows = []
        self._ranges = []
        self._events = {"trial": [], **_empty_events()}
        return written


# -- results ------------------------------------------------------------------


@dataclass
class SweepResult:
    """A sweep as saved: manifest, trials table and per-cell summary.

    ``trials`` has one row per finished trial, its ``cell`` and seed
    beside every config field; ``summary`` has one row per cell (see
    :func:`summarize`).  Timelines stay on disk until :meth:`events`.
    """

    run_id: str
    folder: Path
    manifest: dict[str, Any]
    trials: pd.DataFrame
    summary: pd.DataFrame

    @property
    def status(self) -> str:
        """``complete``, ``interrupted``, or ``running`` (or killed)."""
        return self.manifest["status"]

    @property
    def grid(self) -> Grid:
        return Grid.from_dict(self.manifest)

    def events(self, trials: Iterable[int] | None = None) -> pd.DataFrame:
        """The events table, read from disk (of some *trials* only)."""
        return self._table("events", trials)

    def ranges(self, trials: Iterable[int] | None = None) -> pd.DataFrame:
        """The reported ranges, read from disk."""
        return self._table("ranges", trials)

    def _table(self, name: str, trials: Iterable[int] | None) -> Any:
        from racelab import frames, store

        dtypes = {"events": frames.EVENT_DTYPES, "ranges": frames.RANGE_DTYPES}
        filters = None
        if trials is not None:
            filters = [("trial", "in", [int(t) for t in trials])]
        return store.read_table(
            self.folder, name, dtypes[name], filters=filters
        )


def summarize(trials: pd.DataFrame, cells: Iterable[Cell]) -> pd.DataFrame:
    """One row per cell: outcome counts, loss rate, lost bytes, exposure.

    Columns: ``cell``, ``label``, the grid's fields, ``trials``, a count
    per outcome, ``conclusive``, ``lossy``, ``loss_rate`` with its 95%
    Wilson interval ``loss_low``..``loss_high`` (see
    :func:`racelab.stats.loss_rate`: only conclusive trials count),
    ``lost_bytes_mean`` and ``lost_bytes_max`` over conclusive trials,
    and exposure means per trial: ``pauses_mean``,
    ``bytes_while_paused_mean`` (with ``bytes_while_paused_max``).
    A cell with no finished trial has a row of zero counts and NaN rates.
    """
    import pandas as pd

    from racelab import frames

    cells = list(cells)
    groups = dict(iter(trials.groupby("cell"))) if len(trials) else {}
    rows = []
    for cell in cells:
        group = groups.get(cell.index, trials.iloc[:0])
        counts = Counter(group["outcome"].tolist())
        rate = loss_rate(counts.elements())
        conclusive = group[group["outcome"].isin(CONCLUSIVE)]
        lost = conclusive["lost_bytes"]
        rows.append(
            {
                "cell": cell.index,
                "label": cell.label,
                **cell.params,
                "trials": len(group),
                **{o: counts.get(o, 0) for o in OUTCOMES},
                "conclusive": rate["conclusive"],
                "lossy": rate["lossy"],
                "loss_rate": rate["rate"],
                "loss_low": rate["low"] if len(conclusive) else math.nan,
                "loss_high": rate["high"] if len(conclusive) else math.nan,
                "lost_bytes_mean": lost.mean() if len(lost) else math.nan,
                "lost_bytes_max": lost.max() if len(lost) else math.nan,
                "pauses_mean": group["pauses"].mean()
                if len(group)
                else math.nan,
                "bytes_while_paused_mean": group["bytes_while_paused"].mean()
                if len(group)
                else math.nan,
                "bytes_while_paused_max": group["bytes_while_paused"].max()
                if len(group)
                else math.nan,
            }
        )
    params = list(cells[0].params) if cells else []
    dtypes = {"cell": "int64", "label": "string"}
    dtypes.update((p, frames.TRIAL_DTYPES[p]) for p in params)
    dtypes.update(
        (c, "int64") for c in ("trials", *OUTCOMES, "conclusive", "lossy")
    )
    for column in (
        "loss_rate",
        "loss_low",
        "loss_high",
        "lost_bytes_mean",
        "lost_bytes_max",
        "pauses_mean",
        "bytes_while_paused_mean",
        "bytes_while_paused_max",
    ):
        dtypes[column] = "float64"
    return pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)


def load_sweep(run_id: str, data_dir: Path | str = "data") -> SweepResult:
    """Load a saved sweep: manifest, merged trials, per-cell summary.

    Raises:
      racelab.store.RunNotFound: no run of that id.
      ConfigError: the run is not a sweep.
    """
    from racelab import store

    manifest = store.load_manifest(run_id, data_dir)
    if manifest.get("kind") != "sweep":
        raise ConfigError("run_id", "the id of a sweep run", run_id)
    folder = store.run_dir(run_id, data_dir)
    trials = store.read_table(folder, "trials", sweep_trial_dtypes())
    trials = trials.sort_values("trial", ignore_index=True)
    summary = summarize(trials, Grid.from_dict(manifest).cells)
    return SweepResult(run_id, folder, manifest, trials, summary)


# -- running a sweep ----------------------------------------------------------


class _Tally:
    """What the parent keeps of finished trials: counts, not results.

    Which trials are done is one byte per trial of the plan, indexed by
    trial number: a million-trial sweep costs a megabyte.
    """

    def __init__(self, plan: Grid) -> None:
        self.plan = plan
        self.done = bytearray(plan.size)
        self.count = 0
        self.outcomes: Counter = Counter()
        self.lost_bytes = 0
        self.pauses = 0

    def is_done(self, cell: int, seed: int) -> bool:
        return bool(self.done[self.plan.trial_number(cell, seed)])

    def add(self, cell: int, seed: int, row: Mapping[str, Any]) -> None:
        trial = self.plan.trial_number(cell, seed)
        if self.done[trial]:
            return
        self.done[trial] = 1
        self.count += 1
        self.outcomes[row["outcome"]] += 1
        if row["outcome"] in CONCLUSIVE:  # a hang's bytes are missing
            self.lost_bytes += int(row["lost_bytes"])
        self.pauses += int(row["pauses"])

    def summary(self) -> dict[str, Any]:
        return {
            "trials": self.count,
            "outcomes": dict(self.outcomes),
            "loss_rate": loss_rate(self.outcomes.elements()),
            "lost_bytes": self.lost_bytes,
            "pauses": self.pauses,
        }


@contextlib.contextmanager
def _sigint_sets(flag: threading.Event) -> Iterator[None]:
    # The first Ctrl-C only sets a flag that the sweep loop polls, so it
    # can never land inside a part write; a second one interrupts at
    # once.  Signals reach only the main thread, so elsewhere this does
    # nothing (and no KeyboardInterrupt can reach the sweep either).
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous or signal.default_int_handler)


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    # Two processes appending to one run would duplicate trials; an
    # advisory lock (released by the kernel when its holder dies, even by
    # SIGKILL) keeps a resume from racing a sweep still alive.
    try:
        import fcntl
    except ImportError:  # Windows: no lock, one process per run assumed
        yield
        return
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                "run_id",
                "a sweep no other process is running",
                folder.name,
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def sweep(
    grid: Grid | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    config: Config | Mapping[str, Any] | None = None,
    trials: int | None = None,
    workers: int | None = None,
    executor: cf.Executor | None = None,
    record: bool = True,
    progress: bool | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    data_dir: Path | str = "data",
    run_id: str | None = None,
    resume: str | None = None,
    hang_margin_s: float = DEFAULT_HANG_MARGIN_S,
    worker_setup: str | None = None,
    flush_s: float = 2.0,
) -> SweepResult:
    """Run a grid of configs, trials per cell, as one saved run.

    Args:
      grid: a :class:`Grid`; or field name to values (e.g.
        ``{"loop": ["selector", "emulated-proactor"],
        "pause_every_ms": [1, 10, 100]}``); or the path of a sweep file
        (:func:`read_sweep_file`), whose ``[config]`` and ``trials``
        *config* and *trials* override.
      config: the base config (or its field values) every cell starts
        from; its seed is the first seed of every cell.
      trials: trials per cell (default: the file's, else 10).
      workers: worker processes (default: one per core this process may
        use); with *executor*, how many trials to keep in flight per
        worker-slot estimate (default: the executor's own count).
      executor: run trials here instead of racelab's processes, e.g. a
        ``ProcessPoolExecutor`` or a dask ``client.get_executor()``.
      record: keep timelines (written to disk, never kept in memory).
      progress: show a bar (True), never (False), or only on a terminal
        or in Jupyter (None).
      should_stop: polled several times a second; true stops the sweep,
        keeping every finished trial (status ``interrupted``).
      on_trial: called in this process with each finished trial's row.
      data_dir: where ``runs/<run_id>/`` goes.
      run_id: the new run's id (default: a fresh one).
      resume: the id of an interrupted sweep to complete; its grid,
        config and trials come from its manifest, and the trials already
        on disk (by cell and seed) are not run again.
      hang_margin_s: a trial still running ``timeout_s + hang_margin_s``
        seconds after it started is recorded as ``hang`` and its worker
        killed.
      worker_setup: ``"module:callable"`` each worker runs once before
        its first trial (and this process, before checking the grid),
        e.g. to register a user loop kind.
      flush_s: write finished trials to disk at least this often; the
        most a SIGKILL can cost.

    Returns:
      The run as saved, status ``complete`` or ``interrupted``.  Ctrl-C
      (once) and *should_stop* stop it cleanly; trials under way are
      dropped and every finished one kept.

    Raises:
      ConfigError: bad grid input, before anything runs; or *resume*
        given with a grid, or naming a sweep another process runs.
      racelab.LoopUnavailable: a swept loop kind cannot run here.
      racelab.store.RunNotFound: *resume* names no saved run.
      RuntimeError: the workers or the executor could run no more trials
        (workers dying before they start, an executor that refuses work
        or returns nothing); the finished trials are saved first, and
        the run's status is ``interrupted``.
    """
    from racelab import store
    from racelab.loops import LoopUnavailable

    _run_setup(worker_setup)
    if not (isinstance(hang_margin_s, (int, float)) and hang_margin_s > 0):
        raise ConfigError("hang_margin_s", "a number > 0", hang_margin_s)
    if not (isinstance(flush_s, (int, float)) and flush_s > 0):
        raise ConfigError("flush_s", "a number > 0", flush_s)
    if workers is not None:
        _check_trials_like("workers", workers)

    if resume is not None:
        if grid is not None or config is not None or trials is not None:
            raise ConfigError(
                "resume",
                "given without grid, config or trials (the run has them)",
                resume,
            )
        manifest = store.load_manifest(resume, data_dir)
        if manifest.get("kind") != "sweep":
            raise ConfigError("run_id", "the id of a sweep run", resume)
        plan = Grid.from_dict(manifest)
        run_id = resume
    else:
        plan = _plan(grid, config, trials)
        manifest = None
        run_id = run_id or new_run_id("sweep")
    for loop in plan.loops:
        reason = get_kind(loop).unavailable()
        if reason is not None:
            raise LoopUnavailable(
                f"loop kind {loop!r} is unavailable here: {reason}"
            )

    folder = store.run_dir(run_id, data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):
        return _execute(
            plan,
            folder,
            manifest,
            workers,
            executor,
            record,
            progress,
            should_stop,
            on_trial,
            hang_margin_s,
            worker_setup,
            flush_s,
        )


def _check_trials_like(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, "an integer >= 1", value)


def _plan(
    grid: Grid | Mapping[str, Any] | str | os.PathLike[str] | None,
    config: Config | Mapping[str, Any] | None,
    trials: int | None,
) -> Grid:
    if isinstance(grid, Grid):
        if config is not None or trials is not None:
            raise ConfigError(
                "grid",
                "a mapping or a file when config or trials is "
                "given (a Grid has its own)",
                "Grid(...)",
            )
        return grid
    if isinstance(grid, (str, os.PathLike)):
        spec = read_sweep_file(grid)
        base = dict(spec["config"])
        if isinstance(config, Config):
            base = config.to_dict()
        elif config is not None:
            base.update(config)
        if trials is None:
            trials = spec["trials"]
        grid = spec["grid"]
    else:
        base = config
    return make_grid(
        grid or {}, base, DEFAULT_TRIALS if trials is None else trials
    )


def _execute(
    plan: Grid,
    folder: Path,
    manifest: dict[str, Any] | None,
    workers: int | None,
    executor: cf.Executor | None,
    record: bool,
    progress: bool | None,
    should_stop: Callable[[], bool] | None,
    on_trial: Callable[[dict[str, Any]], None] | None,
    hang_margin_s: float,
    worker_setup: str | None,
    flush_s: float,
) -> SweepResult:
    from racelab import store

    tally = _Tally(plan)
    if manifest is None:
        manifest = {
            "run_id": folder.name,
            "kind": "sweep",
            "status": "running",
            "started_at": _now(),
            "resumed_at": [],
            **plan.to_dict(),
            "loops": plan.loops,
            "cells": [
                {"cell": c.index, "label": c.label, "params": c.params}
                for c in plan.cells
            ],
            "seeds": plan.seeds,
            "trials_requested": plan.size,
            "record": record,
            "hang_margin_s": hang_margin_s,
            "environment": environment(plan.loops),
        }
        next_part = 0
    else:
        store.clean_parts(folder)
        done = store.read_table(
            folder,
            "trials",
            sweep_trial_dtypes(),
            columns=["cell", "seed", "outcome", "lost_bytes", "pauses"],
        )
        for row in done.to_dict("records"):
            tally.add(int(row["cell"]), int(row["seed"]), row)
        manifest["resumed_at"].append(_now())
        manifest["status"] = "running"
        next_part = max(store.part_numbers(folder), default=-1) + 1

    def save_manifest(status: str, **extra: Any) -> None:
        manifest.update(
            status=status,
            updated_at=_now(),
            summary=tally.summary(),
            parts=writer.next_part,
            **extra,
        )
        store.write_json_atomic(folder / "manifest.json", manifest)

    writer = _PartWriter(folder, next_part, flush_s)
    save_manifest("running", stopped_because=None)

    queue = _Pending(_tasks(plan, tally, hang_margin_s))
    max_limit = max(c.config.timeout_s for c in plan.cells) + hang_margin_s
    stop = threading.Event()
    stopped_because = None
    bar = progress_bar(plan.size, initial=tally.count, enabled=progress)
    pool: _ProcessPool | _ExecutorPool | None = None
    failure = None
    try:
        with _sigint_sets(stop):
            if queue and executor is None:
                pool = _ProcessPool(
                    min(workers or _default_workers(), plan.size),
                    record,
                    worker_setup,
                )
            elif queue:
                slots = workers or _executor_workers(executor)
                pool = _ExecutorPool(
                    executor,
                    2 * slots,
                    record,
                    worker_setup,
                    stall_s=3 * max_limit + 60,
                )
            stopped_because = _drive(
                pool,
                queue,
                plan,
                writer,
                tally,
                bar,
                stop,
                should_stop,
                on_trial,
                save_manifest,
            )
    except KeyboardInterrupt:  # a second Ctrl-C
        stopped_because = "interrupted (Ctrl-C)"
    except _PoolFailure as exc:
        stopped_because = f"harness failure: {exc}"
        failure = exc
    except BaseException as exc:
        stopped_because = f"failed: {_context(exc)}"
        raise
    finally:
        if pool is not None:
            pool.close()
        bar.close()
        writer.flush()
        complete = tally.count == plan.size
        save_manifest(
            "complete" if complete else "interrupted",
            stopped_because=None if complete else stopped_because,
        )

    if failure is not None:
        raise RuntimeError(
            f"{failure}; the {tally.count} finished trials are saved in "
            f"{folder} (resume={folder.name!r} completes the sweep)"
        ) from failure

    trials = store.read_table(folder, "trials", sweep_trial_dtypes())
    trials = trials.sort_values("trial", ignore_index=True)
    summary = summarize(trials, plan.cells)
    manifest["cell_summary"] = json.loads(summary.to_json(orient="records"))
    store.write_json_atomic(folder / "manifest.json", manifest)
    return SweepResult(folder.name, folder, manifest, trials, summary)


def _tasks(plan: Grid, tally: _Tally, hang_margin_s: float) -> Iterator[_Task]:
    # Made as they are submitted, so that the parent holds no list of a
    # million configs.  Seed-major order: a sweep stopped early has every
    # cell at about the same number of trials, so its partial summary
    # compares like with like.
    configs = [c.config.to_dict() for c in plan.cells]
    limits = [c.config.timeout_s + hang_margin_s for c in plan.cells]
    for seed in plan.seeds:
        for cell in range(len(configs)):
            if not tally.is_done(cell, seed):
                config = {**configs[cell], "seed": seed}
                yield _Task((cell, seed), config, limits[cell])


class _Pending:
    """Tasks not yet submitted: requeued ones first, then the plan's."""

    def __init__(self, tasks: Iterator[_Task]) -> None:
        self._front: deque[_Task] = deque()
        self._tasks = tasks
        self._next = next(tasks, None)

    def __bool__(self) -> bool:
        return bool(self._front) or self._next is not None

    def pop(self) -> _Task:
        if self._front:
            return self._front.popleft()
        task = self._next
        assert task is not None, "pop() from no pending task"
        self._next = next(self._tasks, None)
        return task

    def push_front(self, tasks: list[_Task]) -> None:
        self._front.extendleft(reversed(tasks))


def _drive(
    pool: Any,
    queue: _Pending,
    plan: Grid,
    writer: _PartWriter,
    tally: _Tally,
    bar: Any,
    stop: threading.Event,
    should_stop: Callable[[], bool] | None,
    on_trial: Callable[[dict[str, Any]], None] | None,
    save_manifest: Callable[..., None],
) -> str | None:
    # Submit while there is room, collect what finished, write parts;
    # each pass waits at most 0.1 s, so a stop request is seen quickly.
    # Invariant: every task is in the queue, in the pool, or in the tally.
    while queue or (pool is not None and pool.busy()):
        if stop.is_set():
            return "interrupted (Ctrl-C)"
        if should_stop is not None and should_stop():
            return "should_stop"
        while queue and pool.has_room():
            pool.submit(queue.pop())
        finished = pool.poll(0.1)
        queue.push_front(pool.requeued)
        pool.requeued.clear()
        for task, result in finished:
            cell, seed = task.key
            writer.add(plan.trial_number(cell, seed), cell, result)
            tally.add(cell, seed, result["row"])
            bar.update(1)
            if on_trial is not None:
                on_trial(dict(result["row"]))
        if finished:
            bar.set_postfix_str(outcome_postfix(tally.outcomes), False)
        if writer.due():
            writer.flush()
            save_manifest("running")
        # Raised only now, so that the results of this pass are kept.
        if pool.failure is not None:
            raise _PoolFailure(pool.failure)
    return None


# -- command line -------------------------------------------------------------


def add_sweep_command(commands: Any) -> None:
    """Add ``racelab sweep`` to the CLI's subcommands."""
    from racelab.cli import DEFAULT_DATA_DIR, add_config_arguments

    parser = commands.add_parser(
        "sweep",
        help="run a grid of configs x loop kinds x trials, in parallel",
        description="Run every combination of the --grid values (and a "
        "sweep file's [grid]) with the same seeds in each cell, in worker "
        "processes, saved as one run.  Config options set what all cells "
        "share.",
    )
    add_config_arguments(parser)
    group = parser.add_argument_group("sweep")
    group.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="sweep a config field over values, e.g. pause_every_ms=1,10 "
        "or client_rcvbuf_bytes=default,4096; repeat for more fields",
    )
    group.add_argument(
        "--loops",
        metavar="KIND,KIND",
        help="loop kinds to sweep (shorthand for --grid loop=...)",
    )
    group.add_argument(
        "--file",
        type=Path,
        metavar="SWEEP.toml",
        help="a sweep file: trials, [config] and [grid] (options given "
        "here override it)",
    )
    group.add_argument(
        "--trials",
        default=None,
        metavar="N",
        help=f"trials per cell [default: the file's, else {DEFAULT_TRIALS}]",
    )
    group.add_argument(
        "--workers",
        default=None,
        metavar="N",
        help="worker processes [default: one per core]",
    )
    group.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="complete an interrupted sweep; finished trials are kept",
    )
    group.add_argument("--run-id", help="id of the new run")
    group.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (manifest and per-cell summary)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar [default: only on a terminal, never "
        "with --json]",
    )
    group.add_argument(
        "--no-record", action="store_true", help="do not record timelines"
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="where runs are saved [default: %(default)s]",
    )
    group.add_argument(
        "--hang-margin-s",
        default=None,
        metavar="S",
        help="kill a trial this long past its timeout_s and record a hang "
        f"[default: {DEFAULT_HANG_MARGIN_S:g}]",
    )
    group.add_argument(
        "--flush-s",
        default=None,
        metavar="S",
        help="write finished trials at least this often [default: 2]",
    )
    group.add_argument(
        "--worker-setup",
        metavar="MODULE:CALLABLE",
        help="run this in each worker before its first trial",
    )
    parser.set_defaults(handler=_cmd_sweep, parser=parser)


def _number(name: str, text: str | None, kind: type) -> Any:
    # Options are converted here rather than by argparse, so that their
    # messages have the same shape as the config's.
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = None
    if (
        value is None
        or not value > 0
        or (kind is float and not math.isfinite(value))
    ):
        rule = "an integer >= 1" if kind is int else "a number > 0"
        raise ConfigError(name, rule, text)
    return value


def _grid_from_args(args: argparse.Namespace) -> Grid:
    axes: dict[str, Any] = {}
    base: dict[str, Any] = {}
    trials = None
    if args.file is not None:
        spec = read_sweep_file(args.file)
        axes.update(spec["grid"])
        base.update(spec["config"])
        trials = spec["trials"]
    given: set[str] = set()
    options = list(args.grid)
    if args.loops:
        options.insert(0, f"loop={args.loops}")
    for text in options:
        name, values = parse_grid_option(text)
        if name in given:
            raise ConfigError("--grid", "given once per field", name)
        given.add(name)
        axes[name] = values
    # Only the options given, so that a sweep file's [config] is
    # overridden by what the command line says and by nothing else.
    from racelab.cli import config_values

    base.update(config_values(args))
    trials = _number("trials", args.trials, int) or trials
    return make_grid(axes, base, DEFAULT_TRIALS if trials is None else trials)


def _cmd_sweep(parser: argparse.ArgumentParser, args: Any) -> int:
    from racelab import store
    from racelab.loops import LoopUnavailable

    out = sys.stdout
    try:
        workers = _number("workers", args.workers, int)
        margin = _number("hang_margin_s", args.hang_margin_s, float)
        flush_s = _number("flush_s", args.flush_s, float)
        _run_setup(args.worker_setup)
        if args.resume is not None:
            given = [
                o
                for o, v in (
                    ("--grid", args.grid),
                    ("--loops", args.loops),
                    ("--file", args.file),
                    ("--trials", args.trials),
                )
                if v
            ]
            given += [
                "--" + n.replace("_", "-")
                for n in Config.field_names()
                if getattr(args, n) is not None
            ]
            if given:
                raise ConfigError(
                    "--resume",
                    "given alone (the run has its grid, config and trials)",
                    " ".join(given),
                )
            plan = None
        else:
            plan = _grid_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))

    if not args.json:
        if plan is None:
            print(f"racelab sweep: resuming {args.resume}", file=out)
        else:
            print(
                f"racelab sweep: {len(plan.cells)} cell(s) x {plan.trials} "
                f"trial(s) = {plan.size} trials",
                file=out,
                flush=True,
            )
    try:
        result = sweep(
            plan,
            workers=workers,
            record=not args.no_record,
            progress=False if args.json else args.progress,
            data_dir=args.data_dir,
            run_id=args.run_id,
            resume=args.resume,
            hang_margin_s=margin or DEFAULT_HANG_MARGIN_S,
            worker_setup=args.worker_setup,
            flush_s=flush_s or 2.0,
        )
    except (ConfigError, LoopUnavailable, store.RunNotFound) as exc:
        parser.error(str(exc))
    except RuntimeError as exc:
        print(f"racelab: harness failure: {exc}", file=sys.stderr)
        return 1

    if args.json:
        doc = dict(result.manifest)
        doc["saved_to"] = str(result.folder)
        json.dump(doc, out, indent=1, default=str)
        out.write("\n")
    else:
        _print_summary(result, out)
    return 130 if result.status == "interrupted" else 0


def print_cells(rows: list[dict[str, Any]], out: Any) -> None:
    """Print the per-cell summary table (rows of :func:`summarize`)."""
    print(
        f"{'cell':>4} {'trials':>6} {'loss rate (95% CI)':<22} "
        f"{'lost B mean/max':>16} {'pauses':>7} {'B@pause':>9}  "
        "outcomes | cell",
        file=out,
    )
    for row in rows:
        if row["conclusive"]:
            rate = (
                f"{row['lossy']}/{row['conclusive']} "
                f"({row['loss_low']:.0%}-{row['loss_high']:.0%})"
            )
            lost = f"{row['lost_bytes_mean']:.0f}/{row['lost_bytes_max']:.0f}"
        else:
            rate, lost = "-", "-"
        outcomes = (
            " ".join(f"{o} {row[o]}" for o in OUTCOMES if row[o]) or "none yet"
        )
        pauses = "-" if not row["trials"] else f"{row['pauses_mean']:.1f}"
        paused = (
            "-"
            if not row["trials"]
            else f"{row['bytes_while_paused_mean']:.0f}"
        )
        print(
            f"{row['cell']:>4} {row['trials']:>6} {rate:<22} {lost:>16} "
            f"{pauses:>7} {paused:>9}  {outcomes} | {row['label']}",
            file=out,
        )
    if any("emulated" in str(row.get("loop", "")) for row in rows):
        print(
            "note: loss rates of emulated-proactor kinds are not Windows "
            "figures (docs/emulation.md)",
            file=out,
        )


def _print_summary(result: SweepResult, out: Any) -> None:
    print_cells(result.summary.to_dict("records"), out)
    manifest = result.manifest
    print(
        f"{manifest['summary']['trials']} of {manifest['trials_requested']} "
        f"trials, status {result.status}; saved: {result.folder} "
        f"(run id {result.run_id})",
        file=out,
    )
    if manifest.get("stopped_because"):
        print(
            f"stopped: {manifest['stopped_because']}; finish with "
            f"--resume {result.run_id}",
            file=out,
        )
