"""Tables and plotly figures of runs, sweeps and timelines.

Every figure function returns a :class:`plotly.graph_objects.Figure`,
usable in a notebook (display it), in a script (:func:`save_html` writes a
standalone file that opens without a network), or wrapped in a
``FigureWidget``.

Rates
    :func:`loss_table` counts outcomes and loss rates with their 95%
    Wilson intervals per group; :func:`loss_rate_figure`,
    :func:`loss_heatmap` and :func:`loss_curves` draw them, and
    :func:`trials_figure` draws a run trial by trial.
Timelines
    :func:`timeline_figure` puts a trial's events in lanes (client
    transport, the kernel under each socket, server transport) with the
    paused intervals shaded and the lost ranges marked;
    :func:`cumulative_bytes_figure` draws bytes sent, echoed and received
    against time, so that a loss shows as a gap that never closes.

Rates measured on the emulated proactor kinds describe racelab's emulated
IOCP, not Windows; every figure that shows such a rate says so.

Inputs are what racelab produces: a :class:`~racelab.trial.TrialResult`,
a :class:`~racelab.run.Run`, a sweep or saved run, or the DataFrames of
:mod:`racelab.frames`.  This module needs pandas and plotly; the trial
engine does not import it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from racelab import frames
from racelab.config import Config
from racelab.events import EVENT_FIELDS
from racelab.stats import loss_rate
from racelab.trial import OUTCOMES

__all__ = [
    "EMULATION_NOTE",
    "cumulative_bytes_figure",
    "environment_table",
    "events_table",
    "loss_curves",
    "loss_heatmap",
    "loss_rate_figure",
    "loss_table",
    "lost_moments",
    "op_life",
    "save_html",
    "settings_table",
    "timeline_figure",
    "trials_figure",
    "trials_table",
    "varying_fields",
]

#: Said wherever a figure shows a rate measured on an emulated proactor.
EMULATION_NOTE = (
    "emulated-proactor rates are of racelab's emulated IOCP on this OS, "
    "not Windows figures"
)

_INTERVAL_NOTE = "95% Wilson intervals over conclusive trials"

#: The plotly template of every figure.
TEMPLATE = "plotly_white"

OUTCOME_COLORS = {
    "clean": "#2ca02c",
    "loss": "#d62728",
    "corrupt": "#9467bd",
    "hang": "#ff7f0e",
    "error": "#7f7f7f",
    "inconclusive": "#bcbd22",
}

# Loop kinds keep their colour from figure to figure: the transports
# built to lose in reds, today's proactor in blues.
KIND_COLORS = {
    "emulated-proactor-2018": "#d62728",
    "proactor-2018": "#8c1c13",
    "emulated-proactor": "#1f77b4",
    "proactor": "#08306b",
    "selector": "#2ca02c",
    "uvloop": "#9467bd",
}

_LOOP_COLORS = (
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)


# -- trials and rates -------------------------------------------------------


def trials_table(source: Any) -> pd.DataFrame:
    """The trials table of *source*, one row per trial.

    Args:
      source: a trials DataFrame; a :class:`~racelab.run.Run`; anything
        with a ``trials`` DataFrame (a sweep result, a saved run); or an
        iterable of these, concatenated.
    """
    if isinstance(source, pd.DataFrame):
        return source
    if hasattr(source, "results") and hasattr(source, "run_id"):
        return frames.trials_frame(source.results)
    table = getattr(source, "trials", None)
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        pieces = [trials_table(s) for s in source]
        if pieces:
            return pd.concat(pieces, ignore_index=True)
    raise TypeError(
        "source must be a trials DataFrame, a Run, a sweep or saved run, "
        f"or a list of them (got {type(source).__name__})"
    )


def _value_label(field: str, value: Any) -> str:
    # How a config value reads in a table or on an axis.
    if (
        value is None
        or value is pd.NA
        or (isinstance(value, float) and math.isnan(value))
    ):
        if field.startswith("write_"):
            return "asyncio default"
        if field.endswith("_bytes"):
            return "OS default"
        return "none"
    numeric = isinstance(value, (int, float, np.integer, np.floating))
    if numeric and field.endswith("_bytes") and float(value).is_integer():
        return _size_label(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _size_label(nbytes: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size and nbytes % size == 0:
            return f"{nbytes // size} {unit}"
    return f"{nbytes:,} B"


def _sort_key(value: Any) -> tuple:
    # Defaults (None/NA) first, then numbers in order, then text.
    if (
        value is None
        or value is pd.NA
        or (isinstance(value, float) and math.isnan(value))
    ):
        return (0, 0.0, "")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def loss_table(source: Any, by: str | Sequence[str] = "loop") -> pd.DataFrame:
    """Outcome counts and loss rate with its 95% interval, per group.

    Only conclusive trials (clean, loss, corrupt) count towards the rate:
    a hang or an error did not finish, an inconclusive trial never paused.

    Args:
      source: trials, as :func:`trials_table` accepts.
      by: the column or columns to group by (config fields).

    Returns:
      One row per group: the *by* columns, ``trials``, a count per
      outcome, ``conclusive``, ``lossy``, ``loss_rate`` (NaN when no
      trial was conclusive), ``loss_low``, ``loss_high``, ``lost_bytes``.
    """
    trials = trials_table(source)
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    if len(trials):
        groups = trials.groupby(by, dropna=False, sort=False)
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            outcomes = group["outcome"].astype(str).tolist()
            rate = loss_rate(outcomes)
            row = dict(
                zip(by, (None if pd.isna(k) else k for k in key), strict=True)
            )
            row["trials"] = len(group)
            row.update({o: outcomes.count(o) for o in OUTCOMES})
            row.update(
                conclusive=rate["conclusive"],
                lossy=rate["lossy"],
                loss_rate=math.nan if rate["rate"] is None else rate["rate"],
                loss_low=rate["low"] if rate["conclusive"] else math.nan,
                loss_high=rate["high"] if rate["conclusive"] else math.nan,
                lost_bytes=int(group["lost_bytes"].sum()),
            )
            rows.append(row)
    rows.sort(key=lambda r: tuple(_sort_key(r[b]) for b in by))
    columns = [
        *by,
        "trials",
        *OUTCOMES,
        "conclusive",
        "lossy",
        "loss_rate",
        "loss_low",
        "loss_high",
        "lost_bytes",
    ]
    return pd.DataFrame(rows, columns=columns)


def _emulated(loops: Iterable[Any]) -> bool:
    return any(str(loop).startswith("emulated-") for loop in loops)


def _subtitle(trials: pd.DataFrame, note: str | None, *extra: str) -> str:
    parts = [p for p in extra if p]
    parts.append(_INTERVAL_NOTE)
    if note is None and "loop" in trials and _emulated(trials["loop"]):
        note = EMULATION_NOTE
    if note:
        parts.append(note)
    return "<br>".join(parts)


def varying_fields(source: Any) -> list[str]:
    """Config fields, seed aside, that differ between the trials."""
    trials = trials_table(source)
    return [
        name
        for name in Config.field_names()
        if name != "seed"
        and name in trials
        and trials[name].nunique(dropna=False) > 1
    ]


def _pooled(trials: pd.DataFrame, shown: Iterable[str]) -> str:
    # Config fields that vary in the table but not on the figure: their
    # trials are pooled, and the figure must say so.
    varying = [f for f in varying_fields(trials) if f not in set(shown)]
    return "pooled over " + ", ".join(varying) if varying else ""


def settings_table(source: Any) -> pd.DataFrame:
    """Each config field with its value, or the values it took.

    Returns:
      One row per :class:`~racelab.config.Config` field: ``field``,
      ``value`` (the shared value, or the distinct values joined by
      commas), ``varied`` (whether trials differ in it).
    """
    trials = trials_table(source)
    rows = []
    for name in Config.field_names():
        if name not in trials:
            continue
        values = sorted(trials[name].drop_duplicates(), key=_sort_key)
        text = ", ".join(_value_label(name, v) for v in values)
        if name == "seed" and len(values) > 2:
            text = f"{values[0]}..{values[-1]} ({len(values)} seeds)"
        rows.append({"field": name, "value": text, "varied": len(values) > 1})
    return pd.DataFrame(rows, columns=["field", "value", "varied"])


def environment_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """What a run's manifest says about the run, the machine and loops.

    Returns:
      Two columns, ``fact`` and ``value``.
    """
    env = manifest.get("environment", {})
    facts = [
        ("run id", manifest.get("run_id")),
        ("status", manifest.get("status")),
        ("started at (UTC)", manifest.get("started_at")),
        ("trials", manifest.get("summary", {}).get("trials")),
        ("trials requested", manifest.get("trials_requested")),
        ("racelab", env.get("racelab")),
        ("Python", f"{env.get('implementation')} {env.get('python')}"),
        ("OS", env.get("os")),
        ("machine", f"{env.get('machine')}, {env.get('cpu_count')} CPUs"),
    ]
    for kind, loop in env.get("loops", {}).items():
        value = f"{loop.get('version')} over {loop.get('network')}"
        if loop.get("unavailable"):
            value += f" (unavailable: {loop['unavailable']})"
        facts.append((f"loop {kind}", value))
        facts.append((f"  {kind} is", loop.get("describe")))
    return pd.DataFrame(facts, columns=["fact", "value"])


def _rate_text(row: pd.Series) -> str:
    if not row["conclusive"]:
        return "no conclusive trial"
    return (
        f"loss rate {row['loss_rate']:.0%} "
        f"(95% CI {row['loss_low']:.0%}–{row['loss_high']:.0%})<br>"
        f"{row['lossy']} of {row['conclusive']} conclusive trials lost "
        f"bytes; {row['trials']} trials"
    )


def _title(text: str, subtitle: str) -> dict:
    # The subtitle goes into the title's text, a smaller line each, not
    # into title.subtitle: a FigureWidget drew that at the top of the
    # figure, above the title.  Anchored at the top, the lines grow down
    # into the top margin, which each figure sizes for them.
    lines = [line for line in subtitle.split("<br>") if line]
    small = "".join(
        f'<br><span style="font-size:11px">{line}</span>' for line in lines
    )
    return {
        "text": f"{text}{small}",
        "x": 0.0,
        "xanchor": "left",
        "xref": "container",
        "y": 1.0,
        "yanchor": "top",
        "yref": "container",
        "pad": {"t": 14},
    }


def loss_rate_figure(
    source: Any,
    by: str = "loop",
    *,
    title: str = "Loss rate per loop kind",
    note: str | None = None,
) -> go.Figure:
    """The loss rate of each group as a point with its 95% error bars.

    Args:
      source: trials, as :func:`trials_table` accepts.
      by: the column whose values are compared (default: loop kind).
      title: the figure's title.
      note: a line for the subtitle; by default, the emulation warning
        when an emulated proactor kind is shown.
    """
    trials = trials_table(source)
    table = loss_table(trials, by)
    labels = [_value_label(by, v) for v in table[by]]
    rates = table["loss_rate"].to_numpy(dtype=float)
    low = table["loss_low"].to_numpy(dtype=float)
    high = table["loss_high"].to_numpy(dtype=float)
    text = [
        f"{r.lossy}/{r.conclusive}" if r.conclusive else "n/a"
        for r in table.itertuples()
    ]
    fig = go.Figure(
        go.Scatter(
            x=labels,
            y=rates,
            mode="markers+text",
            text=text,
            textposition="middle right",
            marker={
                "size": 12,
                "color": [_color(by, v, i) for i, v in enumerate(table[by])],
            },
            error_y={
                "type": "data",
                "symmetric": False,
                "array": high - rates,
                "arrayminus": rates - low,
                "thickness": 2,
                "width": 8,
                "color": "#444",
            },
            hovertext=[_rate_text(row) for _, row in table.iterrows()],
            hoverinfo="x+text",
            name="loss rate",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=_title(title, _subtitle(trials, note, _pooled(trials, [by]))),
        yaxis={
            "title": "loss rate (of conclusive trials)",
            "range": [-0.03, 1.03],
            "tickformat": ".0%",
        },
        xaxis={"title": by, "type": "category"},
        margin={"t": 110},
        height=420,
        showlegend=False,
    )
    return fig


def loss_heatmap(
    source: Any,
    x: str = "pause_every_ms",
    y: str = "client_sndbuf_bytes",
    facet: str = "loop",
    *,
    title: str | None = None,
    note: str | None = None,
) -> go.Figure:
    """Loss rate over two config fields, one heatmap per *facet* value.

    Each cell shows ``lossy/conclusive``; its hover gives the rate and
    its 95% interval.  Cells without a conclusive trial stay blank.

    Args:
      source: trials, as :func:`trials_table` accepts.
      x: the field across (default: the pause cadence).
      y: the field down (default: the client's SO_SNDBUF).
      facet: one panel per value of this field (default: loop kind).
    """
    trials = trials_table(source)
    table = loss_table(trials, [facet, x, y])
    xs = sorted(table[x].drop_duplicates(), key=_sort_key)
    ys = sorted(table[y].drop_duplicates(), key=_sort_key)
    facets = sorted(table[facet].drop_duplicates(), key=_sort_key)
    x_labels = [_value_label(x, v) for v in xs]
    y_labels = [_value_label(y, v) for v in ys]
    fig = make_subplots(
        rows=1,
        cols=max(1, len(facets)),
        shared_yaxes=True,
        subplot_titles=[_value_label(facet, f) for f in facets],
        horizontal_spacing=0.04,
    )
    for col, value in enumerate(facets, start=1):
        part = table[table[facet].map(lambda v, f=value: _same(v, f))]
        z = np.full((len(ys), len(xs)), np.nan)
        text = np.full((len(ys), len(xs)), "", dtype=object)
        hover = np.full((len(ys), len(xs)), "not run", dtype=object)
        for _, row in part.iterrows():
            i = next(k for k, v in enumerate(ys) if _same(v, row[y]))
            j = next(k for k, v in enumerate(xs) if _same(v, row[x]))
            z[i, j] = row["loss_rate"]
            text[i, j] = (
                f"{row['lossy']}/{row['conclusive']}"
                if row["conclusive"]
                else "n/a"
            )
            hover[i, j] = _rate_text(row)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=x_labels,
                y=y_labels,
                text=text,
                texttemplate="%{text}",
                customdata=hover,
                hovertemplate=(
                    f"{x}=%{{x}}<br>{y}=%{{y}}<br>%{{customdata}}"
                    "<extra></extra>"
                ),
                zmin=0,
                zmax=1,
                colorscale="Reds",
                showscale=col == 1,
                colorbar={
                    "title": {"text": "loss rate", "side": "right"},
                    "tickformat": ".0%",
                },
                xgap=2,
                ygap=2,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=x, type="category", row=1, col=col)
    # The first value (the OS default, for a buffer) on top.
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_yaxes(title_text=y, row=1, col=1)
    title = title or f"Loss rate over {x} × {y}"
    fig.update_layout(
        template=TEMPLATE,
        title=_title(
            title, _subtitle(trials, note, _pooled(trials, [x, y, facet]))
        ),
        margin={"t": 130},
        height=300 + 40 * len(ys),
    )
    return fig


def _same(a: Any, b: Any) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    if pd.isna(a) or pd.isna(b):
        return False
    return a == b


def _color(field: str, value: Any, index: int) -> str:
    # A loop kind's own colour, else the palette in order.
    if field == "loop" and str(value) in KIND_COLORS:
        return KIND_COLORS[str(value)]
    return _LOOP_COLORS[index % len(_LOOP_COLORS)]


def _rgba(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def loss_curves(
    source: Any,
    x: str = "pause_every_ms",
    color: str = "loop",
    dash: str | None = None,
    *,
    log_x: bool | None = None,
    title: str | None = None,
    note: str | None = None,
) -> go.Figure:
    """Loss rate against a numeric field, a line per group, 95% bands.

    Args:
      source: trials, as :func:`trials_table` accepts.
      x: the numeric field along the axis (default: the pause cadence).
      color: a line colour per value of this field (default: loop kind).
      dash: optionally, a line style per value of this field too.
      log_x: logarithmic x axis; by default when x spans 10x or more.
    """
    trials = trials_table(source)
    by = [color] + ([dash] if dash else [])
    table = loss_table(trials, [*by, x])
    table = table[table[x].notna()]
    colors = sorted(table[color].drop_duplicates(), key=_sort_key)
    dashes = (
        sorted(table[dash].drop_duplicates(), key=_sort_key) if dash else []
    )
    styles = ("solid", "dash", "dot", "dashdot", "longdash")
    fig = go.Figure()
    for key, group in table.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values(x)
        group = group[group["conclusive"] > 0]
        if group.empty:
            continue
        c = _color(
            color,
            key[0],
            next(i for i, v in enumerate(colors) if _same(v, key[0])),
        )
        style = "solid"
        name = _value_label(color, key[0])
        if dash:
            k = next(i for i, v in enumerate(dashes) if _same(v, key[1]))
            style = styles[k % len(styles)]
            name += f", {dash}={_value_label(dash, key[1])}"
        xs = group[x].astype(float).tolist()
        fig.add_trace(
            go.Scatter(
                x=xs + xs[::-1],
                y=group["loss_high"].tolist()
                + group["loss_low"].tolist()[::-1],
                fill="toself",
                mode="lines",
                fillcolor=_rgba(c, 0.12),
                line={"width": 0},
                hoverinfo="skip",
                legendgroup=name,
                showlegend=False,
                name=name + " 95% interval",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=group["loss_rate"],
                mode="lines+markers",
                line={"color": c, "dash": style},
                name=name,
                legendgroup=name,
                hovertext=[_rate_text(r) for _, r in group.iterrows()],
                hoverinfo="x+text+name",
            )
        )
    if not fig.data:
        # Say why the axes are empty rather than leave a blank figure.
        fig.add_annotation(
            text="no conclusive trial to draw (see the outcome counts)",
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            showarrow=False,
        )
    values = table[x].astype(float)
    ticks = sorted(set(values.tolist()))
    if log_x is None:
        log_x = (
            bool(len(values))
            and values.min() > 0
            and (values.max() / values.min() >= 10)
        )
    title = title or f"Loss rate against {x}"
    fig.update_layout(
        template=TEMPLATE,
        title=_title(
            title, _subtitle(trials, note, _pooled(trials, [*by, x]))
        ),
        xaxis={
            "title": x,
            "type": "log" if log_x else "linear",
            # Ticks at the values measured, not at decades.
            "tickvals": ticks,
            "ticktext": [_value_label(x, v) for v in ticks],
        },
        yaxis={
            "title": "loss rate (of conclusive trials)",
            "range": [-0.03, 1.03],
            "tickformat": ".0%",
        },
        margin={"t": 120},
        height=450,
    )
    return fig


def trials_figure(
    source: Any, *, title: str = "Trials", note: str | None = None
) -> go.Figure:
    """A run trial by trial: lost bytes per trial, then the running rate.

    The top panel has one trace per outcome (always all of
    :data:`~racelab.trial.OUTCOMES`, in that order, so that a live figure
    can update them in place); the bottom one the loss rate over the
    trials so far with its 95% band, one line per loop kind.
    """
    trials = trials_table(source)
    if len(trials):
        trials = trials.sort_values("trial", kind="stable")
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.62, 0.38],
        vertical_spacing=0.08,
    )
    outcome = trials["outcome"].astype(str) if len(trials) else pd.Series()
    for name in OUTCOMES:
        part = trials[outcome == name] if len(trials) else trials
        fig.add_trace(
            go.Scatter(
                x=part["trial"].tolist() if len(part) else [],
                y=part["lost_bytes"].tolist() if len(part) else [],
                mode="markers",
                marker={
                    "color": OUTCOME_COLORS[name],
                    "size": 9,
                    "symbol": "x" if name == "loss" else "circle",
                },
                name=name,
                showlegend=bool(len(part)),
                customdata=_hover_columns(
                    part, ("seed", "lost_ranges", "pauses")
                ),
                hovertemplate=(
                    f"trial %{{x}}: {name}<br>lost %{{y:,}} B in "
                    "%{customdata[1]} range(s)<br>seed %{customdata[0]}, "
                    "%{customdata[2]} pauses<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
    # The running rate, one line per loop kind: pooling a 2018 transport
    # with a fixed one would make a rate of neither.
    kinds = (
        sorted(trials["loop"].astype(str).unique())
        if len(trials) and "loop" in trials
        else [""]
    )
    headlines = []
    for n, kind in enumerate(kinds or [""]):
        mine = trials[trials["loop"].astype(str) == kind] if kind else trials
        color = _color("loop", kind, n) if len(kinds) > 1 else "#d62728"
        label = f"{kind}: " if len(kinds) > 1 else ""
        xs, rate, low, high = _running_rate(mine)
        fig.add_trace(
            go.Scatter(
                x=xs + xs[::-1],
                y=high + low[::-1],
                fill="toself",
                mode="lines",
                fillcolor=_rgba(color, 0.15),
                line={"width": 0},
                hoverinfo="skip",
                name=f"{label}95% interval",
                showlegend=False,
            ),
            row=2,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=rate,
                mode="lines",
                line={"color": color},
                name=f"{label}loss rate so far",
                showlegend=False,
                hovertemplate=(
                    f"{label}after trial %{{x}}: %{{y:.0%}}<extra></extra>"
                ),
            ),
            row=2,
            col=1,
        )
        summary = loss_rate(mine["outcome"].astype(str).tolist())
        if summary["conclusive"]:
            headlines.append(
                f"{label}{summary['lossy']} of {summary['conclusive']} "
                f"conclusive trials lost bytes, {summary['rate']:.0%} "
                f"(95% CI {summary['low']:.0%}–{summary['high']:.0%})"
            )
        else:
            headlines.append(f"{label}{len(mine)} trials, none conclusive")
    if len(kinds) > 1:
        headline = "by loop kind"
        extra = "<br>".join(headlines)
    else:
        headline = headlines[0]
        extra = ""
    sub = _subtitle(trials, note, extra, _pooled(trials, ["loop"]))
    fig.update_layout(
        template=TEMPLATE,
        title=_title(f"{title}: {headline}", sub),
        margin={"t": 80 + 15 * (sub.count("<br>") + 1)},
        height=380 + 15 * (sub.count("<br>") + 1),
        legend={
            "orientation": "h",
            "y": 1.02,
            "yanchor": "bottom",
            "x": 1,
            "xanchor": "right",
        },
    )
    fig.update_yaxes(title_text="lost bytes", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(
        title_text="loss rate",
        range=[-0.03, 1.03],
        tickformat=".0%",
        row=2,
        col=1,
    )
    fig.update_xaxes(title_text="trial", row=2, col=1)
    return fig


def _hover_columns(
    table: pd.DataFrame, columns: Sequence[str]
) -> np.ndarray | None:
    # Columns for hover text; a table without one (a hand-made one) shows
    # "?" there rather than failing.
    if not len(table):
        return None
    values = [
        table[c].astype(object).to_numpy()
        if c in table
        else np.full(len(table), "?", dtype=object)
        for c in columns
    ]
    return np.column_stack(values)


def _running_rate(
    trials: pd.DataFrame,
) -> tuple[list, list, list, list]:
    xs: list = []
    rate: list = []
    low: list = []
    high: list = []
    if not len(trials):
        return xs, rate, low, high
    seen: list[str] = []
    for number, outcome in zip(
        trials["trial"], trials["outcome"], strict=True
    ):
        seen.append(str(outcome))
        summary = loss_rate(seen)
        if not summary["conclusive"]:
            continue
        xs.append(int(number))
        rate.append(summary["rate"])
        low.append(summary["low"])
        high.append(summary["high"])
    return xs, rate, low, high


# -- timelines --------------------------------------------------------------

# Lanes from top to bottom: each transport sits next to the kernel under
# its own socket, so that a completion and the callback it feeds (or does
# not) line up.
LANES = (
    "client",
    "kernel-client",
    "kernel-server",
    "kernel-other",
    "server",
    "harness",
)
LANE_LABELS = {
    "client": "client transport",
    "kernel-client": "kernel, client socket",
    "kernel-server": "kernel, server socket",
    "kernel-other": "kernel, other sockets",
    "server": "server transport",
    "harness": "harness",
}
_LANE_FILLS = ("rgba(31,119,180,0.05)", "rgba(127,127,127,0.07)")

_KIND_ORDER = (
    "connection_made",
    "write",
    "write_eof",
    "pause_writing",
    "resume_writing",
    "pause_reading",
    "resume_reading",
    "data_received",
    "eof_received",
    "connection_lost",
    "op_posted",
    "op_completed",
    "cancel_requested",
    "op_dequeued",
    "completion_discarded",
    "sockopt",
    "timeout",
    "error",
    "verdict",
)

_KIND_STYLE = {
    "write": ("#7f7f7f", "line-ns-open", 7),
    "data_received": ("#1f77b4", "circle", 6),
    "pause_reading": ("#ff7f0e", "triangle-right", 9),
    "resume_reading": ("#2ca02c", "triangle-left", 9),
    "pause_writing": ("#c5b0d5", "triangle-right-open", 7),
    "resume_writing": ("#9467bd", "triangle-left-open", 7),
    "op_posted": ("#aec7e8", "line-ns-open", 7),
    "op_completed": ("#17becf", "circle", 5),
    "op_dequeued": ("#7f7f7f", "circle-open", 5),
    "cancel_requested aborted": ("#ffbb78", "square-open", 8),
    "cancel_requested already_completed": ("#ff7f0e", "square", 9),
    "completion_discarded": ("#d62728", "x", 16),
}

# The legend lists what a reader looks for first.
_LEGEND_RANK = {
    "completion_discarded": 10,
    "cancel_requested already_completed": 11,
    "cancel_requested aborted": 12,
    "pause_reading": 20,
    "resume_reading": 21,
    "data_received": 22,
    "op_completed": 30,
}

# Kinds drawn even when the timeline is decimated: rare, and the ones a
# reader is looking for.
ESSENTIAL_KINDS = frozenset(
    {
        "connection_made",
        "connection_lost",
        "eof_received",
        "write_eof",
        "pause_reading",
        "resume_reading",
        "cancel_requested",
        "completion_discarded",
        "timeout",
        "error",
        "verdict",
    }
)

#: Default for ``max_points``: at this many events a timeline still draws
#: every one of them (see tests/test_browser.py for render times).
DEFAULT_MAX_POINTS = 150_000


def _events_frame(source: Any, trial: int | None) -> pd.DataFrame:
    # One trial's events as a DataFrame in recorded order.
    if hasattr(source, "events") and hasattr(source, "outcome"):
        source = source.events
    if isinstance(source, pd.DataFrame):
        table = source
        if "trial" in table and len(table):
            numbers = table["trial"].unique()
            if trial is not None:
                table = table[table["trial"] == trial]
            elif len(numbers) > 1:
                raise ValueError(
                    "trial must name one trial of the events table (got "
                    f"None; it holds {len(numbers)} trials)"
                )
        table = table.reset_index(drop=True)
    else:
        table = pd.DataFrame(list(source), columns=list(EVENT_FIELDS))
    return table


def _ranges_frame(source: Any, ranges: Any, trial: int | None) -> pd.DataFrame:
    # The lost (missing) ranges: from a TrialResult, or a ranges table.
    columns = ["direction", "offset", "length"]
    if ranges is None and hasattr(source, "lost_ranges"):
        rows = [(r.direction, r.offset, r.length) for r in source.lost_ranges]
        return pd.DataFrame(rows, columns=columns)
    if ranges is None:
        return pd.DataFrame(columns=columns)
    if isinstance(ranges, pd.DataFrame):
        table = ranges
        if trial is not None and "trial" in table:
            table = table[table["trial"] == trial]
        if "category" in table:
            table = table[table["category"] == "missing"]
        return table[columns].reset_index(drop=True)
    rows = [(r.direction, r.offset, r.length) for r in ranges]
    return pd.DataFrame(rows, columns=columns)


def _ports(table: pd.DataFrame) -> dict[str, int]:
    # The local port of each side's socket: from connection_made, or the
    # commonest port of that side's events when the window lacks it.
    ports = {}
    for side in ("client", "server"):
        mine = table[table["side"] == side]
        made = mine[mine["kind"] == "connection_made"]
        if len(made):
            ports[side] = int(made["port"].iloc[0])
        elif len(mine):
            ports[side] = int(mine["port"].mode().iloc[0])
    return ports


def events_table(source: Any, trial: int | None = None) -> pd.DataFrame:
    """One trial's events with time in ms since its first event and lanes.

    Args:
      source: a :class:`~racelab.trial.TrialResult`, a list of events, or
        an events table (pass *trial* when it holds several trials).

    Returns:
      The event columns plus ``t_ms`` and ``lane`` (see :data:`LANES`);
      for a kernel event ``op`` is its operation kind (``recv_into``,
      ``send``...) and ``op_id`` its operation's number (-1 for other
      events); ``label`` is the kind, refined for cancels by their
      result.
    """
    table = _events_frame(source, trial).copy()
    if not len(table):
        for column in ("t_ms", "lane", "op", "op_id", "label"):
            table[column] = pd.Series(dtype="object")
        return table
    t0 = int(table["t_ns"].min())
    table["t_ms"] = (table["t_ns"].astype("int64") - t0) / 1e6
    ports = _ports(table)
    side = table["side"].astype(str)
    lane = side.copy()
    kernel = side == "kernel"
    port = table["port"]
    lane[kernel] = "kernel-other"
    for name in ("client", "server"):
        if name in ports:
            lane[kernel & (port == ports[name])] = f"kernel-{name}"
    table["lane"] = lane
    detail = table["detail"].astype(str)
    table["op"] = detail.str.extract(r"kind=(\w+)", expand=False).fillna("")
    op_id = detail.str.extract(r"\bop=(\d+)", expand=False)
    table["op_id"] = pd.to_numeric(op_id).fillna(-1).astype("int64")
    result = detail.str.extract(r"result=(\w+)", expand=False)
    kind = table["kind"].astype(str)
    label = kind.copy()
    cancels = (kind == "cancel_requested") & result.notna()
    label[cancels] = kind[cancels] + " " + result[cancels]
    table["label"] = label
    return table


def lost_moments(
    source: Any, ranges: Any = None, trial: int | None = None
) -> pd.DataFrame:
    """When each lost range was thrown away and when its gap was noticed.

    Args:
      source: as for :func:`events_table`.
      ranges: the trial's ranges table (or LostRanges); by default the
        lost ranges of a TrialResult *source*.

    Returns:
      One row per lost range: ``direction``, ``offset``, ``length``,
      ``receiver`` (the side that should have received it),
      ``discarded_ms`` (the completion_discarded event on the receiver's
      socket that carried it, or NaN), ``discarded_op`` (its operation's
      number, see :func:`events_table`), ``discarded_offset`` and
      ``discarded_bytes`` of that event, and ``gap_seen_ms``: when the
      receiver could first tell the bytes were missing, ``gap_seen_by``
      its first ``data_received`` past the range's start or, for a range
      at the end of the stream, its ``eof_received`` (NaN and "" when
      neither happened, as in a hang).
    """
    table = events_table(source, trial)
    lost = _ranges_frame(source, ranges, trial)
    rows = []
    receivers = {"up": "server", "down": "client"}
    for r in lost.itertuples():
        receiver = receivers.get(r.direction, "client")
        received = table[
            (table["side"] == receiver)
            & (table["kind"] == "data_received")
            & (table["offset"] > r.offset)
        ]
        discards = table[
            (table["lane"] == f"kernel-{receiver}")
            & (table["kind"] == "completion_discarded")
        ]
        start, end = r.offset, r.offset + r.length
        overlap = discards[
            (discards["offset"] < end)
            & (discards["offset"] + discards["nbytes"] > start)
        ]
        first = overlap.iloc[0] if len(overlap) else None
        # A range at the end of the stream has nothing after it: its
        # receiver learns of the gap only from the end of the stream.
        ends = table[
            (table["side"] == receiver)
            & table["kind"].isin(("eof_received", "connection_lost"))
        ]
        if len(received):
            seen_ms, seen_by = received["t_ms"].iloc[0], "data_received"
        elif len(ends):
            seen_ms, seen_by = ends["t_ms"].iloc[0], str(ends["kind"].iloc[0])
        else:
            seen_ms, seen_by = math.nan, ""
        rows.append(
            {
                "direction": r.direction,
                "offset": int(r.offset),
                "length": int(r.length),
                "receiver": receiver,
                "discarded_ms": first["t_ms"]
                if first is not None
                else math.nan,
                "discarded_op": (
                    int(first["op_id"]) if first is not None else pd.NA
                ),
                "discarded_offset": (
                    int(first["offset"]) if first is not None else pd.NA
                ),
                "discarded_bytes": (
                    int(first["nbytes"]) if first is not None else pd.NA
                ),
                "gap_seen_ms": seen_ms,
                "gap_seen_by": seen_by,
            }
        )
    columns = [
        "direction",
        "offset",
        "length",
        "receiver",
        "discarded_ms",
        "discarded_op",
        "discarded_offset",
        "discarded_bytes",
        "gap_seen_ms",
        "gap_seen_by",
    ]
    out = pd.DataFrame(rows, columns=columns)
    return out.astype(
        {
            "discarded_op": "Int64",
            "discarded_offset": "Int64",
            "discarded_bytes": "Int64",
        }
    )


def op_life(source: Any, op_id: int, trial: int | None = None) -> pd.DataFrame:
    """Every event of one kernel operation, with its transport's callbacks.

    Args:
      source: as for :func:`events_table`.
      op_id: the operation's number (``op_id`` in :func:`events_table`,
        ``discarded_op`` in :func:`lost_moments`).

    Returns:
      From the operation's first event to its last: its kernel events,
      and the callbacks of the transport on the same socket in between,
      as ``t_ms``, ``lane``, ``kind``, ``nbytes``, ``offset``,
      ``detail``.
    """
    table = events_table(source, trial)
    columns = ["t_ms", "lane", "kind", "nbytes", "offset", "detail"]
    op = table[table["op_id"] == int(op_id)]
    if not len(op):
        return table.loc[[], columns]
    side = str(op["lane"].iloc[0]).replace("kernel-", "")
    span = table["t_ms"].between(op["t_ms"].min(), op["t_ms"].max())
    mine = (table["op_id"] == int(op_id)) | (table["side"] == side)
    return table.loc[span & mine, columns]


def _decimate(
    table: pd.DataFrame, max_points: int | None
) -> tuple[pd.DataFrame, str]:
    # Keep every essential event; thin the frequent kinds evenly, every
    # k-th event of each (lane, kind), so their density still reads.
    if max_points is None or len(table) <= max_points:
        return table, ""
    essential = table["kind"].isin(ESSENTIAL_KINDS)
    budget = max(1, max_points - int(essential.sum()))
    common = int((~essential).sum())
    step = math.ceil(common / budget)
    rank = table.groupby(["lane", "kind"]).cumcount()
    keep = essential | (rank % step == 0)
    kept = table[keep]
    note = (
        f"drawn: {len(kept):,} of {len(table):,} events (every {step}th of "
        "the frequent kinds; every pause, resume, cancel and discard)"
    )
    return kept, note


def _rows(table: pd.DataFrame) -> list[tuple[str, str]]:
    rows = []
    present = set(zip(table["lane"], table["kind"], strict=True))
    for lane in LANES:
        kinds = {k for ln, k in present if ln == lane}
        known = [k for k in _KIND_ORDER if k in kinds]
        rows += [(lane, k) for k in known + sorted(kinds - set(known))]
    return rows


def _pause_intervals(
    table: pd.DataFrame, end_ms: float
) -> dict[str, list[tuple[float, float]]]:
    # States: READING -> PAUSED -> READING | CLOSED
    # Invariant: every pause_reading is followed by resume_reading or the
    # end of the timeline; an interval still open at the end runs to it.
    intervals: dict[str, list[tuple[float, float]]] = {}
    toggles = table[
        table["kind"].isin(("pause_reading", "resume_reading"))
        & table["side"].isin(("client", "server"))
    ]
    for side, group in toggles.groupby("side"):
        spans = []
        start = None
        for kind, t in zip(group["kind"], group["t_ms"], strict=True):
            if kind == "pause_reading" and start is None:
                start = t
            elif kind == "resume_reading" and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, end_ms))
        intervals[str(side)] = spans
    return intervals


def _rectangles(
    spans: list[tuple[float, float]], y0: float, y1: float
) -> tuple[list, list]:
    xs: list = []
    ys: list = []
    for a, b in spans:
        xs += [a, b, b, a, a, None]
        ys += [y0, y0, y1, y1, y0, None]
    return xs, ys


def _kind_style(label: str) -> tuple[str, str, int]:
    return _KIND_STYLE.get(label, ("#393b79", "diamond", 7))


def timeline_figure(
    source: Any,
    ranges: Any = None,
    *,
    trial: int | None = None,
    window_ms: tuple[float, float] | None = None,
    max_points: int | None = DEFAULT_MAX_POINTS,
    title: str | None = None,
) -> go.Figure:
    """A trial's events in lanes, paused intervals shaded, losses marked.

    Lanes from the top: client transport, the kernel under the client's
    socket, the kernel under the server's, server transport (and the
    harness).  Each lane has a row per event kind.  Grey bands are the
    intervals in which a side's reading was paused; red crosses are
    completions the loop threw away (``completion_discarded``); dashed
    red lines mark where the receiver first got data past a lost range.
    Hover on a point for its bytes, stream offset and details.

    Markers are WebGL (``Scattergl``), so a figure of 100,000 events
    still pans and hovers; past *max_points* events the frequent kinds
    are thinned (and the subtitle says by how much).

    Args:
      source: a :class:`~racelab.trial.TrialResult`, a list of events, or
        an events table (pass *trial* when it holds several trials).
      ranges: the lost ranges (a ranges table or LostRanges); by default
        those of a TrialResult *source*.
      trial: the trial to draw from tables holding several.
      window_ms: the initial x range, in ms since the trial's first
        event (all events stay in the figure: zoom out to see them).
      max_points: draw at most about this many events; None draws all.
      title: the figure's title; by default loop kind, seed and outcome
        when *source* is a TrialResult.
    """
    table = events_table(source, trial)
    lost = lost_moments(source, ranges, trial) if len(table) else None
    drawn, decimation = _decimate(table, max_points)
    rows = _rows(table)
    index = {row: i for i, row in enumerate(rows)}
    y_all = np.array(
        [
            index[(ln, k)]
            for ln, k in zip(drawn["lane"], drawn["kind"], strict=True)
        ],
        dtype=float,
    )
    end_ms = float(table["t_ms"].max()) if len(table) else 0.0
    fig = go.Figure()

    # Lane bands behind everything, with the lane's name.
    shapes = []
    annotations = []
    lane_rows: dict[str, list[int]] = {}
    for i, (lane, _) in enumerate(rows):
        lane_rows.setdefault(lane, []).append(i)
    for n, (lane, members) in enumerate(lane_rows.items()):
        shapes.append(
            {
                "type": "rect",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "yref": "y",
                "y0": members[0] - 0.5,
                "y1": members[-1] + 0.5,
                "fillcolor": _LANE_FILLS[n % 2],
                "line": {"width": 0},
                "layer": "below",
            }
        )
        annotations.append(
            {
                "xref": "paper",
                "x": 1.0,
                "xanchor": "right",
                "yref": "y",
                "y": members[0] - 0.45,
                "yanchor": "top",
                "text": f"<b>{LANE_LABELS.get(lane, lane)}</b>",
                "showarrow": False,
                "font": {"size": 11, "color": "#555"},
            }
        )

    # Paused reading: each side's transport lane and its kernel lane.
    for side, spans in _pause_intervals(table, end_ms).items():
        members = lane_rows.get(side, []) + lane_rows.get(f"kernel-{side}", [])
        if not spans or not members:
            continue
        xs, ys = _rectangles(spans, min(members) - 0.5, max(members) + 0.5)
        total = sum(b - a for a, b in spans)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                fill="toself",
                mode="lines",
                line={"width": 0},
                fillcolor="rgba(90,90,90,0.16)",
                hoverinfo="skip",
                name=f"{side} reading paused ({len(spans)}×, {total:.1f} ms)",
                legendrank=1,
            )
        )

    # The events, a WebGL trace per kind (cancels split by their result).
    for label, group in drawn.groupby("label", sort=False):
        color, symbol, size = _kind_style(str(label))
        positions = group.index.map(drawn.index.get_loc)
        numbers = group[["nbytes", "offset", "port"]].to_numpy(dtype="int64")
        fig.add_trace(
            go.Scattergl(
                x=group["t_ms"].to_numpy(),
                y=y_all[positions],
                mode="markers",
                marker={
                    "color": color,
                    "symbol": symbol,
                    "size": size,
                    "line": {"width": 1, "color": color},
                },
                name=str(label),
                legendrank=_LEGEND_RANK.get(str(label), 1000),
                customdata=numbers,
                text=group["detail"].astype(str).to_numpy(),
                hovertemplate=(
                    f"<b>{html.escape(str(label))}</b> at %{{x:.3f}} ms<br>"
                    "%{customdata[0]:,} B, stream offset "
                    "%{customdata[1]:,}<br>port %{customdata[2]} %{text}"
                    "<extra></extra>"
                ),
            )
        )

    # Lost ranges: a dashed line where the receiver first saw the gap.
    if lost is not None and len(lost):
        seen = lost[lost["gap_seen_ms"].notna()]
        xs: list = []
        ys: list = []
        hover = []
        for r in seen.itertuples():
            members = lane_rows.get(r.receiver, []) + lane_rows.get(
                f"kernel-{r.receiver}", []
            )
            if not members:
                continue
            xs += [r.gap_seen_ms, r.gap_seen_ms, None]
            ys += [min(members) - 0.5, max(members) + 0.5, None]
            hover.append(r)
        if xs:
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    hoverinfo="skip",
                    line={"color": "#d62728", "dash": "dash", "width": 1.5},
                    name=f"gap seen ({len(lost)} lost range(s))",
                    legendrank=5,
                    legendgroup="lost",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=[r.gap_seen_ms for r in hover],
                    y=[
                        index.get((r.receiver, r.gap_seen_by), 0)
                        for r in hover
                    ],
                    mode="markers",
                    marker={
                        "color": "#d62728",
                        "size": 11,
                        "symbol": "diamond-open",
                        "line": {"width": 2},
                    },
                    text=[
                        f"lost {r.direction} {r.length:,} B at offset "
                        f"{r.offset:,}; the {r.receiver} could tell here "
                        f"({r.gap_seen_by})"
                        for r in hover
                    ],
                    hovertemplate="%{text}<extra></extra>",
                    name="lost range",
                    legendgroup="lost",
                    showlegend=False,
                )
            )

    if title is None:
        title = "Event timeline"
        config = getattr(source, "config", None)
        if config is not None:
            title += (
                f": {config.loop}, seed {config.seed}, "
                f"{getattr(source, 'outcome', '')}"
            )
    lost_bytes = int(lost["length"].sum()) if lost is not None else 0
    discarded = int((table["kind"] == "completion_discarded").sum())
    if ranges is None and not hasattr(source, "lost_ranges"):
        # Bare events say nothing of what arrived: do not claim "none".
        verdict = "lost ranges not given"
    elif lost_bytes:
        verdict = f"{lost_bytes:,} bytes lost"
    else:
        verdict = "no bytes lost"
    sub = [f"{len(table):,} events over {end_ms:,.1f} ms", verdict]
    if discarded:
        sub.append(f"{discarded} completion(s) discarded")
    if decimation:
        sub.append(decimation)
    fig.update_layout(
        template=TEMPLATE,
        title=_title(title, "; ".join(sub)),
        shapes=shapes,
        annotations=annotations,
        xaxis={
            "title": "time since the trial's first event (ms)",
            "range": list(window_ms) if window_ms else None,
            "showspikes": True,
            "spikemode": "across",
        },
        yaxis={
            "tickvals": list(range(len(rows))),
            "ticktext": [k for _, k in rows],
            "autorange": "reversed",
            "zeroline": False,
            "showgrid": False,
            "range": [len(rows) - 0.5, -0.5] if rows else None,
        },
        height=max(420, 150 + 20 * len(rows)),
        margin={"t": 100, "l": 150},
        hovermode="closest",
        legend={"itemsizing": "constant"},
    )
    return fig


def _cumulative(
    table: pd.DataFrame, mask: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    part = table[mask]
    t = np.concatenate([[0.0], part["t_ms"].to_numpy()])
    total = np.concatenate([[0], part["nbytes"].to_numpy().cumsum()])
    return t, total


_SOCKET_COLORS = {"server": "#ff7f0e", "client": "#1f77b4"}


def cumulative_bytes_figure(
    source: Any,
    ranges: Any = None,
    *,
    trial: int | None = None,
    window_ms: tuple[float, float] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Bytes sent, echoed and received against time; a loss is a gap.

    Top: solid lines count what the protocols saw (the client's writes,
    the server's ``data_received``, which it echoes at once, and the
    client's ``data_received``); on proactor kinds, dashed lines count
    what the kernel completed into posted receive buffers on each socket.

    Bottom (proactor kinds): the gap itself, per socket, as bytes the
    kernel completed that the transport has not delivered yet.  It falls
    back to zero each time the transport catches up, except where the
    loop threw a completion away (red cross): from there on it never
    returns to zero, and where it ends is what that socket lost.

    Args:
      source, ranges, trial, window_ms, title: as for
        :func:`timeline_figure`.
    """
    table = events_table(source, trial)
    lost = lost_moments(source, ranges, trial)
    kind, side, lane = table["kind"], table["side"], table["lane"]
    recv_done = (kind == "op_completed") & table["op"].str.startswith("recv")
    received = kind == "data_received"
    lines = {
        "client wrote": (
            (side == "client") & (kind == "write"),
            "#7f7f7f",
            "solid",
        ),
        "kernel completed receives, server socket": (
            (lane == "kernel-server") & recv_done,
            "#ff7f0e",
            "dash",
        ),
        "server data_received (and echoed)": (
            (side == "server") & received,
            "#ff7f0e",
            "solid",
        ),
        "kernel completed receives, client socket": (
            (lane == "kernel-client") & recv_done,
            "#1f77b4",
            "dash",
        ),
        "client data_received (the echo)": (
            (side == "client") & received,
            "#1f77b4",
            "solid",
        ),
    }
    proactor = bool(recv_done.any())
    fig = make_subplots(
        rows=2 if proactor else 1,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.6, 0.4] if proactor else None,
        vertical_spacing=0.1,
    )
    finals = {}
    for name, (mask, color, dash) in lines.items():
        if not mask.any():
            continue
        t, total = _cumulative(table, mask)
        finals[name] = int(total[-1])
        fig.add_trace(
            _line(t, total, name, color, dash, "%{y:,} B"), row=1, col=1
        )

    if proactor:
        backlogs = {}
        for sock, color in _SOCKET_COLORS.items():
            inflow = (lane == f"kernel-{sock}") & recv_done
            part = table[inflow | ((side == sock) & received)]
            part = part.sort_values("t_ns", kind="stable")
            signs = np.where(inflow[part.index], 1, -1)
            t = np.concatenate([[0.0], part["t_ms"].to_numpy()])
            backlog = np.concatenate(
                [[0], (signs * part["nbytes"].to_numpy()).cumsum()]
            )
            backlogs[sock] = (t, backlog)
            name = f"{sock} socket: completed, not yet delivered"
            fig.add_trace(
                _line(t, backlog, name, color, "solid", "%{y:,} B behind"),
                row=2,
                col=1,
            )
            if backlog[-1] > 0:
                fig.add_annotation(
                    x=t[-1],
                    y=backlog[-1],
                    xanchor="left",
                    xshift=6,
                    text=f"{backlog[-1]:,} B never delivered",
                    showarrow=False,
                    font={"color": color, "size": 11},
                    row=2,
                    col=1,
                )
        _mark_discards(fig, table, backlogs)

    sent = finals.get("client wrote", 0)
    at_server = finals.get("server data_received (and echoed)", sent)
    at_client = finals.get("client data_received (the echo)", at_server)
    lost_up = int(lost.loc[lost["direction"] == "up", "length"].sum())
    lost_down = int(lost.loc[lost["direction"] == "down", "length"].sum())
    if title is None:
        title = "Cumulative bytes"
        config = getattr(source, "config", None)
        if config is not None:
            title += (
                f": {config.loop}, seed {config.seed}, "
                f"{getattr(source, 'outcome', '')}"
            )
    sub = (
        f"sent {sent:,} B; the server received {at_server:,} B, the client "
        f"{at_client:,} B back; lost: {lost_up:,} B upstream, "
        f"{lost_down:,} B on the echo"
    )
    fig.update_layout(
        template=TEMPLATE,
        title=_title(title, sub),
        height=640 if proactor else 460,
        margin={"t": 100, "r": 40},
        hovermode="closest",
        legend={"orientation": "h", "y": -0.12},
    )
    fig.update_yaxes(
        title_text="bytes",
        tickformat=",d",
        rangemode="tozero",
        row=1,
        col=1,
    )
    fig.update_xaxes(
        range=list(window_ms) if window_ms else None,
    )
    fig.update_xaxes(
        title_text="time since the trial's first event (ms)",
        row=2 if proactor else 1,
        col=1,
    )
    if proactor:
        fig.update_yaxes(
            title_text="completed, not delivered",
            tickformat=",d",
            rangemode="tozero",
            row=2,
            col=1,
        )
    return fig


def _line(
    t: np.ndarray,
    y: np.ndarray,
    name: str,
    color: str,
    dash: str,
    value: str,
) -> go.Scatter | go.Scattergl:
    trace = go.Scattergl if len(t) > 5000 else go.Scatter
    return trace(
        x=t,
        y=y,
        mode="lines",
        name=name,
        line={
            "color": color,
            "dash": dash,
            "shape": "hv",
            "width": 1.5 if dash == "dash" else 2,
        },
        hovertemplate=f"{name}<br>%{{x:.3f}} ms: {value}<extra></extra>",
    )


def _mark_discards(
    fig: go.Figure,
    table: pd.DataFrame,
    backlogs: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    # A red cross for each discarded completion, on its socket's gap line
    # just after the discard, and an arrow to the first.
    points = []
    for e in table[table["kind"] == "completion_discarded"].itertuples():
        sock = str(e.lane).replace("kernel-", "")
        t, backlog = backlogs.get(sock, (np.array([0.0]), np.array([0])))
        y = int(backlog[np.searchsorted(t, e.t_ms, "right") - 1])
        points.append((e, y, sock))
    if not points:
        return
    fig.add_trace(
        go.Scatter(
            x=[e.t_ms for e, _, _ in points],
            y=[y for _, y, _ in points],
            mode="markers",
            marker={
                "symbol": "x",
                "size": 14,
                "color": "#d62728",
                "line": {"width": 1, "color": "#d62728"},
            },
            text=[
                f"completion discarded on the {s} socket: {e.nbytes:,} B "
                f"from stream offset {e.offset:,}"
                for e, _, s in points
            ],
            hovertemplate="%{text}<br>%{x:.3f} ms<extra></extra>",
            name="completion discarded",
        ),
        row=2,
        col=1,
    )
    e, y, sock = points[0]
    more = f" (+{len(points) - 1} more)" if len(points) > 1 else ""
    fig.add_annotation(
        x=e.t_ms,
        y=y,
        ax=-40,
        ay=-40,
        showarrow=True,
        arrowhead=2,
        arrowcolor="#d62728",
        font={"color": "#d62728", "size": 11},
        text=f"{sock} socket: {e.nbytes:,} B discarded{more}",
        bgcolor="rgba(255,255,255,0.85)",
        row=2,
        col=1,
    )


# -- files ------------------------------------------------------------------


def save_html(
    fig: go.Figure, path: str | Path, *, post_script: str | None = None
) -> Path:
    """Write *fig* as one standalone HTML file, plotly.js inside.

    The file opens offline in any browser.  *post_script* is JavaScript
    run once the figure is drawn (``{plot_id}`` names its div).

    Returns:
      The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if type(fig) is not go.Figure:
        fig = go.Figure(fig)  # a FigureWidget: write its current state
    fig.write_html(
        path, include_plotlyjs=True, full_html=True, post_script=post_script
    )
    return path
