"""Runs on disk: Parquet tables plus a JSON manifest, one folder a run.

Layout under the data directory (``data/`` by default)::

    runs/<run_id>/manifest.json   racelab, Python, OS, loops, config, seeds
    runs/<run_id>/trials.parquet  one row per trial   (racelab.frames)
    runs/<run_id>/ranges.parquet  one row per reported range
    runs/<run_id>/events.parquet  one row per event

A run is written into a hidden temporary folder and renamed into place,
so a reader never sees half a run and a killed process leaves none.
Nothing is pickled.

A run that grows while it runs (a sweep, :mod:`racelab.sweep`) appends
its tables in numbered parts instead, ``runs/<run_id>/parts/
trials-00000.parquet`` and so on, each written to a temporary name and
renamed; :func:`read_table` merges a table's parts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from racelab import frames

__all__ = [
    "RunNotFound",
    "SavedRun",
    "list_runs",
    "load_manifest",
    "load_run",
    "part_numbers",
    "read_table",
    "run_dir",
    "save_run",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_part",
]

TABLES = ("trials", "ranges", "events")

PARTS_DIR = "parts"


class RunNotFound(LookupError):
    """No saved run has that id."""


@dataclass
class SavedRun:
    """A run as loaded from disk: its manifest and its three tables."""

    manifest: dict[str, Any]
    trials: pd.DataFrame
    ranges: pd.DataFrame
    events: pd.DataFrame

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def run_dir(run_id: str, data_dir: Path | str = "data") -> Path:
    """The folder of run *run_id* under *data_dir*.

    Raises:
      RunNotFound: *run_id* is not a plain name (letters, digits, ``.``,
        ``_``, ``-``; no leading dot), so it cannot name a folder of
        ``runs/`` and nothing outside it.
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise RunNotFound(
            "run_id must be letters, digits, '.', '_' or '-', not starting "
            f"with '.' (got {run_id!r})"
        )
    return Path(data_dir) / "runs" / run_id


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to *path* through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(value, out, indent=1, allow_nan=True, default=str)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_tables(
    folder: Path,
    manifest: dict[str, Any],
    tables: dict[str, pd.DataFrame],
) -> Path:
    """Write *tables* and *manifest* as a run folder, atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-")
    )
    try:
        for name, table in tables.items():
            table.to_parquet(staging / f"{name}.parquet", index=False)
        write_json_atomic(staging / "manifest.json", manifest)
        if folder.exists():
            # Replacing a run: move the old one aside first, because a
            # directory rename cannot overwrite a non-empty directory.
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def save_run(run: Any, data_dir: Path | str = "data") -> Path:
    """Save a :class:`racelab.run.Run`; returns its folder."""
    tables = {
        "trials": frames.trials_frame(run.results),
        "ranges": frames.ranges_frame(run.results),
        "events": frames.events_frame(run.results),
    }
    return save_tables(run_dir(run.run_id, data_dir), run.manifest(), tables)


def load_manifest(run_id: str, data_dir: Path | str = "data") -> dict:
    """The manifest of a saved run.

    Raises:
      RunNotFound: no run of that id under *data_dir*; the message lists
        the latest ids.
    """
    path = run_dir(run_id, data_dir) / "manifest.json"
    if not path.is_file():
        known = [r["run_id"] for r in list_runs(data_dir)]
        hint = ", ".join(known[-5:]) if known else "none saved"
        raise RunNotFound(
            f"run_id must name a run under {Path(data_dir) / 'runs'} "
            f"(got {run_id!r}; latest: {hint})"
        )
    return json.loads(path.read_text())


def load_run(run_id: str, data_dir: Path | str = "data") -> SavedRun:
    """Load a saved run: manifest and tables, as they were saved."""
    manifest = load_manifest(run_id, data_dir)
    folder = run_dir(run_id, data_dir)
    dtypes = {
        "trials": frames.TRIAL_DTYPES,
        "ranges": frames.RANGE_DTYPES,
        "events": frames.EVENT_DTYPES,
    }
    tables = {}
    for name in TABLES:
        tables[name] = read_table(folder, name, dtypes[name])
    return SavedRun(manifest=manifest, **tables)


def write_parquet_atomic(table: pd.DataFrame, path: Path) -> None:
    """Write *table* to *path* through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=".tmp-", suffix=".parquet"
    )
    os.close(fd)
    try:
        table.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _part_path(folder: Path, name: str, number: int) -> Path:
    return Path(folder) / PARTS_DIR / f"{name}-{number:05d}.parquet"


def write_part(
    folder: Path, number: int, tables: dict[str, pd.DataFrame]
) -> None:
    """Append part *number* of a run's tables, each file atomically.

    The trials file is renamed into place last: a part counts once its
    trials file exists, so a process killed mid-part leaves at most
    orphan ranges or events files, which readers ignore and the next
    write of that part number replaces.
    """
    (Path(folder) / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    order = sorted(tables, key=lambda name: name == "trials")
    for name in order:
        write_parquet_atomic(tables[name], _part_path(folder, name, number))


def part_numbers(folder: Path) -> list[int]:
    """Numbers of a run's committed parts (those with a trials file)."""
    parts = Path(folder) / PARTS_DIR
    if not parts.is_dir():
        return []
    return sorted(
        int(p.stem.rsplit("-", 1)[1]) for p in parts.glob("trials-*.parquet")
    )


def clean_parts(folder: Path) -> None:
    """Remove temporary files a killed writer left among the parts."""
    parts = Path(folder) / PARTS_DIR
    if parts.is_dir():
        for tmp in parts.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)


def read_table(
    folder: Path,
    name: str,
    dtypes: dict[str, str],
    columns: list[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
) -> pd.DataFrame:
    """One table of a run folder: the whole file, then its parts merged.

    Args:
      folder: the run folder.
      name: ``"trials"``, ``"ranges"`` or ``"events"``.
      dtypes: the table's column types (see :mod:`racelab.frames`).
      columns: read only these columns.
      filters: read only matching rows, in pyarrow's form, e.g.
        ``[("trial", "in", [3, 4])]``; files are skipped by their
        statistics, so a few trials' events load without the rest.
    """
    folder = Path(folder)
    paths = [folder / f"{name}.parquet"]
    paths += [_part_path(folder, name, n) for n in part_numbers(folder)]
    pieces = [
        pd.read_parquet(p, columns=columns, filters=filters)
        for p in paths
        if p.exists()
    ]
    pieces = [p for p in pieces if len(p)] or pieces[:1]
    if not pieces:
        table = pd.DataFrame()
    elif len(pieces) == 1:
        table = pieces[0]
    else:
        table = pd.concat(pieces, ignore_index=True)
    if columns is not None:
        dtypes = {c: d for c, d in dtypes.items() if c in columns}
    return _restore(table, dtypes)


def _restore(table: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    # Parquet keeps the pandas dtypes we wrote; an older or empty table
    # may lack columns, which come back empty rather than as KeyErrors.
    for column, dtype in dtypes.items():
        if column not in table:
            table[column] = pd.Series(dtype=dtype, index=table.index)
    return table.astype({c: d for c, d in dtypes.items() if c in table})


def list_runs(data_dir: Path | str = "data") -> list[dict[str, Any]]:
    """Saved runs, oldest first: id, status, trials, loops, start time."""
    root = Path(data_dir) / "runs"
    rows = []
    if not root.is_dir():
        return rows
    for folder in sorted(root.iterdir()):
        path = folder / "manifest.json"
        if folder.name.startswith(".") or not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        loops = manifest.get("loops") or [manifest["config"]["loop"]]
        rows.append({
            "run_id": manifest["run_id"],
            "status": manifest.get("status", "?"),
            "trials": manifest.get("summary", {}).get("trials", 0),
            "loops": ",".join(loops),
            "started_at": manifest.get("started_at", ""),
        })
    return rows
