"""A run: the trials of one invocation, with the facts to reproduce it.

:func:`run_trials` executes trials one after another on fresh loops and
returns a :class:`Run`: the results plus a manifest (racelab, Python, OS,
loop kind and version, config, seeds, start time).  Saving a run to Parquet
is the job of :mod:`racelab.store`, which needs pandas; this module needs
only the standard library.
"""

from __future__ import annotations

import datetime
import os
import platform
import secrets
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from racelab.config import Config
from racelab.loops import LoopOptions, get_kind
from racelab.stats import CONCLUSIVE, loss_rate
from racelab.trial import TrialResult, run_trial, trial_seeds

__all__ = ["Run", "environment", "new_run_id", "run_trials"]


def new_run_id(label: str = "") -> str:
    """A sortable, unique run id: UTC time, an optional label, 4 hex."""
    now = datetime.datetime.now(datetime.timezone.utc)
    parts = [now.strftime("%Y%m%dT%H%M%SZ")]
    if label:
        parts.append("".join(c if c.isalnum() else "-" for c in label))
    parts.append(secrets.token_hex(2))
    return "-".join(parts)


def environment(loop_kinds: list[str] | tuple[str, ...] = ()) -> dict:
    """Facts about this machine that a result depends on."""
    from racelab import __version__

    loops = {}
    for name in loop_kinds:
        kind = get_kind(name)
        reason = kind.unavailable()
        loops[name] = {
            "version": kind.version() if reason is None else None,
            "describe": kind.describe,
            "network": kind.network(LoopOptions()),
            "unavailable": reason,
        }
    return {
        "racelab": __version__,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loops": loops,
    }


@dataclass
class Run:
    """The trials of one invocation and the manifest that describes them."""

    run_id: str
    config: Config
    trials_requested: int
    started_at: str
    environment: dict[str, Any]
    results: list[TrialResult] = field(default_factory=list)
    status: str = "running"
    """``running``, ``complete``, or ``interrupted`` (finished trials
    kept)."""

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.results]

    def outcomes(self) -> Counter:
        return Counter(r.outcome for r in self.results)

    def summary(self) -> dict[str, Any]:
        """Counts per outcome, loss rate with its interval, lost bytes."""
        rate = loss_rate(r.outcome for r in self.results)
        return {
            "trials": len(self.results),
            "outcomes": dict(self.outcomes()),
            "loss_rate": rate,
            # Bytes a hang or an error had not received yet are missing,
            # not lost: only trials that ended normally count.
            "lost_bytes": sum(
                r.lost_bytes for r in self.results
                if r.outcome in CONCLUSIVE
            ),
            "pauses": sum(r.pauses for r in self.results),
        }

    def manifest(self) -> dict[str, Any]:
        """Everything needed to reproduce the run, as JSON-ready values."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at,
            "trials_requested": self.trials_requested,
            "config": self.config.to_dict(),
            "seeds": self.seeds,
            "environment": self.environment,
            "summary": self.summary(),
        }

    def to_dict(self, events: bool = False) -> dict[str, Any]:
        """The manifest plus every trial's result."""
        out = self.manifest()
        out["trials"] = [r.to_dict(events=events) for r in self.results]
        return out


def run_trials(
    config: Config,
    trials: int = 1,
    *,
    record: bool = True,
    on_trial: Callable[[Run, TrialResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    run_id: str | None = None,
) -> Run:
    """Run *trials* trials of *config*, seeds ``config.seed`` upward.

    Args:
      config: the experiment; trial *i* runs with seed ``config.seed + i``.
      trials: how many, >= 1.
      record: keep each trial's event timeline.
      on_trial: called after each trial with the run so far and the result.
      should_stop: polled between trials; true ends the run early with
        status ``interrupted`` and every finished trial kept.
      run_id: reuse an id (default: a new one).

    Returns:
      The run, with status ``complete``; or ``interrupted`` when
      *should_stop* said so or Ctrl-C (KeyboardInterrupt) arrived, in which
      case the trial under way is dropped and every finished one kept.

    Raises:
      ValueError: *trials* is not an integer >= 1.
      racelab.LoopUnavailable: the loop kind cannot be built here.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1 (got {trials!r})")
    run = Run(
        run_id=run_id or new_run_id(config.loop),
        config=config,
        trials_requested=trials,
        started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        environment=environment([config.loop]),
    )
    try:
        for seed in trial_seeds(config, trials):
            if should_stop is not None and should_stop():
                run.status = "interrupted"
                return run
            result = run_trial(config.replace(seed=seed), record=record)
            run.results.append(result)
            if on_trial is not None:
                on_trial(run, result)
    except KeyboardInterrupt:
        run.status = "interrupted"
        return run
    run.status = "complete"
    return run
