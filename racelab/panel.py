"""The workbook's control panel: set up a run, start it, watch it finish.

:class:`ControlPanel` is a set of ipywidgets for the fields of
:class:`racelab.Config` that matter when hunting bpo-33694 (loop kind,
kernel, pause cadence, traffic, socket buffers, write-buffer limits,
trials, seed), Run and Stop buttons, a progress bar, a live plotly
``FigureWidget`` (:func:`racelab.timeline.trials_figure`) and a table.

Threads.  Run starts :func:`racelab.run.run_trials` in a background
thread: each trial builds a fresh loop there and closes it, so the
kernel's own loop is never nested into, patched or blocked, and the
notebook stays responsive while a run goes on.  Widgets are updated from
that thread (ipywidgets sends the changes to the front end from any
thread).  Stop sets a flag that run_trials reads between trials: the
trial under way finishes, every finished trial is kept.

Every run started here is saved with :func:`racelab.store.save_run` under
the panel's data directory, and its id is shown.  A bad value is
reported in the panel with the config's own message, which names the
field; nothing is raised into the notebook.

In tests and scripts, ``panel.run(wait=True)`` runs synchronously and
returns the :class:`~racelab.run.Run`.
"""

from __future__ import annotations

import html
import inspect
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd
import plotly.graph_objects as go

from racelab import frames, store, timeline
from racelab.config import KERNELS, PAUSING_SIDES, Config, ConfigError
from racelab.loops import available_kinds
from racelab.run import Run, new_run_id, run_trials
from racelab.stats import loss_rate

__all__ = ["BUFFER_CHOICES", "ControlPanel", "interact_figure"]

#: Socket buffer sizes offered; 0 stands for None, the OS default (a
#: Dropdown whose value is None shows no selection at all).
BUFFER_CHOICES = (
    ("OS default", 0),
    ("2 KiB", 2048),
    ("4 KiB", 4096),
    ("16 KiB", 16384),
    ("64 KiB", 65536),
    ("256 KiB", 262144),
    ("1 MiB", 1 << 20),
)

_BUFFER_SIDES = (
    ("client and server", ("client", "server")),
    ("client only", ("client",)),
    ("server only", ("server",)),
)

# Columns of the panel's table, newest trial first.
_TABLE_COLUMNS = (
    "trial",
    "seed",
    "outcome",
    "lost_bytes",
    "lost_ranges",
    "discarded_bytes",
    "pauses",
    "bytes_while_paused",
    "duration_s",
)
_TABLE_ROWS = 12
_TABLE_STYLE = (
    "<style>.racelab-trials td, .racelab-trials th "
    "{padding: 1px 10px; text-align: right; font-family: monospace}"
    "</style>"
)

# Redraw the figure and table at most this often while trials pour in
# (a trial can last a few ms; a redraw sends the figure to the browser).
_REDRAW_S = 0.25

# A FigureWidget drawn before its output area has a width falls back to
# 700 px; a fixed width gives the timeline's legend room.
FIGURE_WIDTH = 1000

_STYLE = {"description_width": "150px"}
_WIDE = w.Layout(width="330px")


def _optional_int(text: str) -> int | None | str:
    # Blank or "default" keeps the default; anything else that is not an
    # integer goes to Config as it is, whose message names the field.
    text = text.strip().replace("_", "")
    if text.lower() in ("", "default", "none", "os"):
        return None
    try:
        return int(text)
    except ValueError:
        return text


class ControlPanel:
    """Widgets to run trials of one config and watch the results arrive.

    Args:
      config: the starting values (default: ``Config()`` on the first
        available emulated-proactor-2018 or other loop kind); fields the
        panel does not show (direction, jitter, pausing side, timeout)
        are taken from it as they are.
      trials: the starting number of trials.
      data_dir: where runs are saved (``<data_dir>/runs/<run_id>/``).

    Attributes:
      widget: the panel, to display (the panel displays itself too).
      run_result: the last run (None before the first), complete or not.
      saved_to: the folder of the last saved run.
      trials: the trials table of the last run so far.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        trials: int = 10,
        data_dir: str | Path = "data",
    ) -> None:
        kinds = available_kinds()
        if config is None:
            start = "emulated-proactor-2018"
            config = Config(loop=start if start in kinds else kinds[0])
        self.base = config
        self.data_dir = Path(data_dir)
        self.run_result: Run | None = None
        self.saved_to: Path | None = None
        self.trials = frames.trials_frame([])
        self.error: str | None = None
        self._rows: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_draw = 0.0
        self._build(config, trials, kinds)

    # -- widgets --------------------------------------------------------------

    def _build(self, config: Config, trials: int, kinds: tuple) -> None:
        def cls(widget: w.Widget, name: str) -> w.Widget:
            # A stable CSS class, for browser tests and user styles.
            widget.add_class(f"racelab-{name}")
            return widget

        def field(kind: type, name: str, **options: Any) -> w.Widget:
            # A labelled input, aligned with the others.
            return cls(kind(style=_STYLE, layout=_WIDE, **options), name)

        self.loop = field(
            w.Dropdown,
            "loop",
            options=kinds,
            value=config.loop,
            description="loop kind",
        )
        self.kernel = field(
            w.Dropdown,
            "kernel",
            options=KERNELS,
            value=config.kernel,
            description="IOCP kernel",
        )
        self.pause_every = field(
            w.FloatText,
            "pause-every",
            value=config.pause_every_ms,
            description="pause every (ms)",
        )
        self.pause_for = field(
            w.FloatText,
            "pause-for",
            value=config.pause_for_ms,
            description="pause for (ms)",
        )
        self.packets = field(
            w.IntText,
            "packets",
            value=config.packets,
            description="packets",
        )
        self.packet_bytes = field(
            w.IntText,
            "packet-bytes",
            value=config.packet_bytes,
            description="packet size (bytes)",
        )
        self.sndbuf = field(
            w.Dropdown,
            "sndbuf",
            options=_choices(config.client_sndbuf_bytes),
            value=config.client_sndbuf_bytes or 0,
            description="SO_SNDBUF",
        )
        self.rcvbuf = field(
            w.Dropdown,
            "rcvbuf",
            options=_choices(config.client_rcvbuf_bytes),
            value=config.client_rcvbuf_bytes or 0,
            description="SO_RCVBUF",
        )
        self.buffer_sides = field(
            w.Dropdown,
            "buffer-sides",
            options=[label for label, _ in _BUFFER_SIDES],
            description="buffers on",
        )
        self.write_high = field(
            w.Text,
            "write-high",
            value=_text(config.write_high_bytes),
            placeholder="asyncio default",
            description="write high-water (B)",
        )
        self.write_low = field(
            w.Text,
            "write-low",
            value=_text(config.write_low_bytes),
            placeholder="asyncio default",
            description="write low-water (B)",
        )
        self.pausing_side = field(
            w.Dropdown,
            "pausing-side",
            options=PAUSING_SIDES,
            value=config.pausing_side,
            description="who pauses",
        )
        self.backpressure = cls(
            w.Checkbox(
                value=config.server_backpressure,
                description="server back-pressure",
                indent=False,
            ),
            "backpressure",
        )
        self.sync_completion = cls(
            w.Checkbox(
                value=config.sync_completion,
                description="synchronous completion (IOCP)",
                indent=False,
            ),
            "sync-completion",
        )
        self.tls = cls(
            w.Checkbox(value=config.tls, description="TLS", indent=False),
            "tls",
        )
        self.trials_box = field(
            w.IntText, "trials", value=trials, description="trials"
        )
        self.seed = field(
            w.IntText,
            "seed",
            value=config.seed,
            description="seed (first trial)",
        )
        self.run_button = cls(
            w.Button(
                description="Run",
                button_style="primary",
                icon="play",
                tooltip="run the trials",
            ),
            "run",
        )
        self.stop_button = cls(
            w.Button(
                description="Stop",
                icon="stop",
                disabled=True,
                tooltip="stop after the trial under way",
            ),
            "stop",
        )
        self.progress = cls(
            w.IntProgress(
                value=0,
                min=0,
                max=max(1, trials),
                layout=w.Layout(width="260px"),
            ),
            "progress",
        )
        self.status = cls(w.HTML("ready"), "status")
        self.message = cls(w.HTML(""), "error")
        self.figure = cls(
            go.FigureWidget(
                timeline.trials_figure(self.trials).update_layout(
                    width=FIGURE_WIDTH
                )
            ),
            "figure",
        )
        self.table = cls(w.HTML(self._table_html()), "table")

        self.loop.observe(self._loop_changed, names="value")
        self._loop_changed()
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())

        column = w.Layout(margin="0 24px 0 0")
        controls = w.HBox(
            [
                w.VBox(
                    [
                        self.loop,
                        self.kernel,
                        self.pause_every,
                        self.pause_for,
                        self.pausing_side,
                        self.packets,
                        self.packet_bytes,
                    ],
                    layout=column,
                ),
                w.VBox(
                    [
                        self.sndbuf,
                        self.rcvbuf,
                        self.buffer_sides,
                        self.write_high,
                        self.write_low,
                        self.trials_box,
                        self.seed,
                    ]
                ),
            ]
        )
        switches = w.HBox(
            [self.backpressure, self.sync_completion, self.tls],
            layout=w.Layout(grid_gap="24px", margin="4px 0 4px 12px"),
        )
        actions = w.HBox(
            [self.run_button, self.stop_button, self.progress, self.status],
            layout=w.Layout(align_items="center"),
        )
        self.widget = cls(
            w.VBox(
                [
                    controls,
                    switches,
                    actions,
                    self.message,
                    self.figure,
                    self.table,
                ]
            ),
            "panel",
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _loop_changed(self, change: Any = None) -> None:
        # The kernel's knobs only exist under the emulated proactor.
        emulated = self.loop.value.startswith("emulated-")
        self.kernel.disabled = not emulated
        self.sync_completion.disabled = not emulated

    # -- reading the widgets --------------------------------------------------

    def config(self) -> Config:
        """The config the widgets describe.

        Raises:
          ConfigError: a value breaks its field's rule (named).
        """
        values = {
            "loop": self.loop.value,
            "kernel": self.kernel.value,
            "pause_every_ms": self.pause_every.value,
            "pause_for_ms": self.pause_for.value,
            "pausing_side": self.pausing_side.value,
            "server_backpressure": self.backpressure.value,
            "sync_completion": self.sync_completion.value,
            "tls": self.tls.value,
            "packets": self.packets.value,
            "packet_bytes": self.packet_bytes.value,
            "write_high_bytes": _optional_int(self.write_high.value),
            "write_low_bytes": _optional_int(self.write_low.value),
            "seed": self.seed.value,
        }
        sides = dict(_BUFFER_SIDES)[self.buffer_sides.value]
        for side in ("client", "server"):
            on = side in sides
            sndbuf = self.sndbuf.value if on else 0
            rcvbuf = self.rcvbuf.value if on else 0
            values[f"{side}_sndbuf_bytes"] = sndbuf or None
            values[f"{side}_rcvbuf_bytes"] = rcvbuf or None
        return self.base.replace(**values)

    def _trials(self) -> int:
        trials = self.trials_box.value
        if (
            isinstance(trials, bool)
            or not isinstance(trials, int)
            or (trials < 1)
        ):
            raise ConfigError("trials", "an integer >= 1", trials)
        return trials

    # -- running --------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run is under way."""
        return self._thread is not None and self._thread.is_alive()

    def run(self, wait: bool = False, timeout: float | None = None) -> Any:
        """Start a run of the widgets' config (what Run does).

        Args:
          wait: block until the run ends and return it.
          timeout: with *wait*, give up waiting after this many seconds
            (the run goes on).

        Returns:
          With *wait*, the :class:`~racelab.run.Run` (None when the values
          were refused, the message then shown in the panel); else None.
        """
        if self.running:
            self._say_error("a run is under way: stop it first")
            return None
        try:
            config = self.config()
            trials = self._trials()
        except ConfigError as exc:
            self._say_error(str(exc))
            return None

        self._say_error(None)
        self._stop.clear()
        self._rows = []
        self.trials = frames.trials_frame([])
        self.run_result = None
        self.saved_to = None
        self.progress.max = trials
        self.progress.value = 0
        self.progress.bar_style = ""
        self.run_button.disabled = True
        self.stop_button.disabled = False
        run_id = new_run_id(config.loop)
        self.status.value = (
            f"running {trials} trial(s) of <b>{html.escape(config.loop)}"
            f"</b> as run <code>{run_id}</code>"
        )
        self._draw()
        self._thread = threading.Thread(
            target=self._work,
            args=(config, trials, run_id),
            name="racelab-panel",
            daemon=True,
        )
        self._thread.start()
        if wait:
            return self.wait(timeout)
        return None

    def stop(self) -> None:
        """Ask the run to stop after the trial under way (what Stop does)."""
        if self.running:
            self._stop.set()
            self.stop_button.disabled = True
            self.status.value += " &mdash; stopping after this trial"

    def wait(self, timeout: float | None = None) -> Run | None:
        """Wait for the run to end; returns it (None if still running)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return None
        return self.run_result

    def _work(self, config: Config, trials: int, run_id: str) -> None:
        # The background thread.  run_trials gives every trial a fresh
        # loop of its own, in this thread.
        partial: list[Run] = []

        def on_trial(run: Run, result: Any) -> None:
            if not partial:
                partial.append(run)
            self._rows.append(frames.trial_row(len(run.results) - 1, result))
            self.progress.value = len(run.results)
            if time.monotonic() - self._last_draw >= _REDRAW_S:
                self._draw()

        run = None
        try:
            run = run_trials(
                config,
                trials,
                on_trial=on_trial,
                should_stop=self._stop.is_set,
                run_id=run_id,
            )
        except Exception as exc:  # shown in the panel, not raised
            self._say_error(_describe(exc))
            if partial:
                run = partial[0]
                run.status = "interrupted"
        self.run_result = run
        try:
            if run is not None:
                self.saved_to = store.save_run(run, self.data_dir)
        except Exception as exc:  # shown in the panel, not raised
            self._say_error(f"the run could not be saved: {_describe(exc)}")
        finally:
            self._finish(run)

    def _finish(self, run: Run | None) -> None:
        self._draw()
        self.run_button.disabled = False
        self.stop_button.disabled = True
        if run is None:
            self.status.value = "no run: see the message above"
            self.progress.bar_style = "danger"
            return
        summary = loss_rate(r.outcome for r in run.results)
        saved = (
            f"saved in <code>{html.escape(str(self.saved_to))}</code>"
            if self.saved_to is not None
            else "<b>not saved</b>"
        )
        self.status.value = (
            f"run <code>{run.run_id}</code>: {len(run.results)} of "
            f"{run.trials_requested} trial(s), {run.status}; "
            f"{summary['lossy']} lossy of {summary['conclusive']} "
            f"conclusive; {saved}"
        )
        self.progress.bar_style = (
            "success" if run.status == "complete" else "warning"
        )

    # -- drawing --------------------------------------------------------------

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        rows = list(self._rows)
        if rows:
            self.trials = pd.DataFrame(
                rows, columns=list(frames.TRIAL_DTYPES)
            ).astype(frames.TRIAL_DTYPES)
        else:
            self.trials = frames.trials_frame([])
        fresh = timeline.trials_figure(self.trials)
        # Update the traces in place: trials_figure always makes the same
        # traces in the same order, so the browser redraws, not rebuilds.
        with self.figure.batch_update():
            for mine, new in zip(self.figure.data, fresh.data, strict=True):
                mine.x = new.x
                mine.y = new.y
                mine.customdata = new.customdata
                mine.showlegend = new.showlegend
            self.figure.layout.title = fresh.layout.title
        self.table.value = self._table_html()

    def _table_html(self) -> str:
        trials = self.trials
        if not len(trials):
            return "<p><i>No trials yet.</i></p>"
        summary = loss_rate(trials["outcome"].astype(str))
        counts = trials["outcome"].astype(str).value_counts().to_dict()
        head = ", ".join(f"{k} {v}" for k, v in counts.items())
        if summary["conclusive"]:
            head += (
                f"; loss rate {summary['rate']:.0%} (95% CI "
                f"{summary['low']:.0%}–{summary['high']:.0%})"
            )
        shown = trials.loc[:, list(_TABLE_COLUMNS)].iloc[::-1]
        shown = shown.head(_TABLE_ROWS)
        body = _TABLE_STYLE + shown.to_html(
            index=False,
            classes="racelab-trials",
            float_format=lambda v: f"{v:.3f}",
            border=0,
        )
        more = len(trials) - len(shown)
        tail = f"<p><i>... and {more} earlier trial(s)</i></p>" if more else ""
        return f"<p><b>{len(trials)} trial(s):</b> {head}</p>{body}{tail}"

    def _say_error(self, text: str | None) -> None:
        self.error = text
        self.message.value = (
            ""
            if text is None
            else '<div style="color:#b00020;font-weight:bold">'
            f"{html.escape(text)}</div>"
        )


def interact_figure(make: Callable[..., go.Figure], **controls: Any) -> w.VBox:
    """The interactive version of a figure function.

    Like :func:`ipywidgets.interact`, with the same abbreviations for the
    controls (a list is a dropdown, ``(low, high)`` a slider), but each
    change puts a new ``FigureWidget`` of ``make(**values)`` under the
    controls instead of displaying the figure in an Output widget.  (A
    large figure displayed inside an Output widget kept nbclient, and so
    papermill, waiting for the cell until its timeout; and a figure
    relaid out in place drew its subtitle above its title.)

    Args:
      make: returns a figure for the controls' values, e.g.
        ``lambda trial: timeline.timeline_figure(run.results[trial])``.
      controls: keyword abbreviations, as for ``interact``.

    Returns:
      The controls (with an output area for errors), then the figure.
    """
    box = w.VBox()

    def redraw(**values: Any) -> None:
        fresh = make(**values)
        if fresh.layout.width is None:
            fresh.update_layout(width=FIGURE_WIDTH)
        view = go.FigureWidget(fresh)
        view.add_class("racelab-figure")
        old = box.children[1:]
        box.children = (ui, view) if ui is not None else (view,)
        for widget in old:
            widget.close()

    # interactive reads the defaults (the controls' first values) from
    # the signature: give redraw make's.
    redraw.__signature__ = inspect.signature(make)  # type: ignore[attr-defined]
    ui = None
    ui = w.interactive(redraw, **controls)  # draws the first figure
    box.children = (ui, *box.children[-1:])
    return box


def _choices(value: int | None) -> list[tuple[str, int]]:
    choices = list(BUFFER_CHOICES)
    if value and value not in [v for _, v in choices]:
        choices.append((f"{value:,} B", value))
    return choices


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
