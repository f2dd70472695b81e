"""Trials, ranges and events as pandas DataFrames.

Three tidy tables describe a run:

trials
    One row per trial: its config fields, seed, outcome, lost bytes,
    exposure (pauses, time and bytes while paused), duration, socket
    buffers the kernel set, and loss attribution.
ranges
    One row per reported range: trial, direction, category (``missing``,
    ``duplicated``, ``reordered``, ``corrupted``), offset, length.
events
    One row per event: trial and the :class:`~racelab.events.Event`
    fields.

Column types are fixed here, so that a table saved to Parquet loads back
equal to the one that was saved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pandas as pd

from racelab.config import Config
from racelab.events import EVENT_FIELDS
from racelab.trial import TrialResult

__all__ = [
    "EVENT_DTYPES",
    "RANGE_DTYPES",
    "events_frame",
    "ranges_frame",
    "trial_row",
    "trials_frame",
]

_CONFIG_DTYPES = {
    f.name: (
        "string"
        if f.type in ("str",)
        else "boolean"
        if f.type == "bool"
        else "Int64"
        if "None" in str(f.type) or f.type == "int"
        else "float64"
    )
    for f in dataclasses.fields(Config)
}

TRIAL_DTYPES = {
    "trial": "int64",
    **_CONFIG_DTYPES,
    "outcome": "string",
    "lost_bytes": "int64",
    "lost_ranges": "int64",
    "duplicated_bytes": "int64",
    "reordered_bytes": "int64",
    "corrupted_bytes": "int64",
    "pauses": "int64",
    "scheduled_pauses": "int64",
    "paused_s": "float64",
    "bytes_while_paused": "int64",
    "duration_s": "float64",
    "loop_time_s": "float64",
    "up_received_bytes": "Int64",
    "down_received_bytes": "Int64",
    "client_sndbuf_actual": "Int64",
    "client_rcvbuf_actual": "Int64",
    "server_sndbuf_actual": "Int64",
    "server_rcvbuf_actual": "Int64",
    "discarded_bytes": "int64",
    "attribution_agrees": "boolean",
    "network": "string",
    "error": "string",
    "events": "int64",
}

RANGE_DTYPES = {
    "trial": "int64",
    "direction": "string",
    "category": "string",
    "offset": "int64",
    "length": "int64",
}

EVENT_DTYPES = {
    "trial": "int64",
    "t_ns": "int64",
    "side": "string",
    "kind": "string",
    "nbytes": "int64",
    "offset": "int64",
    "port": "int64",
    "detail": "string",
}
assert tuple(EVENT_DTYPES)[1:] == EVENT_FIELDS


def _category_bytes(result: TrialResult, category: str) -> int:
    return sum(
        r.length for report in result.streams.values()
        for r in getattr(report, category)
    )


def trial_row(index: int, result: TrialResult) -> dict:
    """The trials-table row of *result*, trial number *index*."""
    row = {"trial": index, **result.config.to_dict()}
    streams = result.streams
    row.update(
        outcome=result.outcome,
        lost_bytes=result.lost_bytes,
        lost_ranges=len(result.lost_ranges),
        duplicated_bytes=_category_bytes(result, "duplicated"),
        reordered_bytes=_category_bytes(result, "reordered"),
        corrupted_bytes=_category_bytes(result, "corrupted"),
        pauses=result.pauses,
        scheduled_pauses=result.scheduled_pauses,
        paused_s=result.paused_s,
        bytes_while_paused=result.bytes_while_paused,
        duration_s=result.duration_s,
        loop_time_s=result.loop_time_s,
        up_received_bytes=streams["up"].received_bytes
        if "up" in streams else None,
        down_received_bytes=streams["down"].received_bytes
        if "down" in streams else None,
        discarded_bytes=result.discarded_bytes,
        attribution_agrees=result.attribution_agrees,
        network=result.network,
        error=result.error,
        events=len(result.events),
    )
    for side in ("client", "server"):
        for name in ("sndbuf", "rcvbuf"):
            row[f"{side}_{name}_actual"] = result.sockbufs.get(
                f"{side}_{name}_bytes"
            )
    return row


def _typed(rows: list[dict], dtypes: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(dtypes))
    return frame.astype(dtypes)


def trials_frame(
    results: Iterable[TrialResult], start: int = 0
) -> pd.DataFrame:
    """One row per trial, numbered from *start*."""
    rows = [trial_row(i, r) for i, r in enumerate(results, start)]
    return _typed(rows, TRIAL_DTYPES)


def ranges_frame(
    results: Iterable[TrialResult], start: int = 0
) -> pd.DataFrame:
    """One row per reported range of every trial."""
    rows = [
        {"trial": i, "direction": d, "category": c,
         "offset": r.offset, "length": r.length}
        for i, result in enumerate(results, start)
        for d, c, r in result.ranges()
    ]
    return _typed(rows, RANGE_DTYPES)


def events_frame(
    results: Iterable[TrialResult], start: int = 0
) -> pd.DataFrame:
    """One row per event of every trial, in recorded order."""
    columns: dict[str, list] = {name: [] for name in EVENT_DTYPES}
    for i, result in enumerate(results, start):
        events = result.events
        columns["trial"].extend([i] * len(events))
        rows = zip(*events, strict=True)
        for name, values in zip(EVENT_FIELDS, rows, strict=False):
            columns[name].extend(values)
    frame = pd.DataFrame(columns)
    return frame.astype(EVENT_DTYPES)
