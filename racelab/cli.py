"""The ``racelab`` command line.

``racelab run``    run echo trials and summarise (or ``--json``) them
``racelab loops``  list the loop kinds and whether this machine has them
``racelab runs``   list the runs saved under the data directory
``racelab show``   summarise a saved run
``racelab sweep``  run a grid of configs x loop kinds x trials in parallel
``racelab bench``  measure the harness against a bare asyncio echo

Exit status: 0 when the command did its job, whatever the trials found;
2 for bad input (with a message naming the field); 1 when the harness
itself failed; 130 when interrupted (finished trials are kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from racelab.config import RACE_PY, Config, ConfigError
from racelab.loops import (
    LoopUnavailable,
    available_kinds,
    get_kind,
    kind_names,
)

__all__ = ["main", "build_parser"]

DEFAULT_DATA_DIR = Path(os.environ.get("RACELAB_DATA", "data"))

PRESETS = {"race.py": RACE_PY}

# Words that select the OS default for an optional size.
_DEFAULT_WORDS = ("default", "os", "none")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`Config` field, named after it.

    Values arrive as text and are converted in :func:`config_from_args`,
    so that every mistake is reported by :class:`Config` in one voice
    (field, rule, value) rather than by argparse in another.
    """
    group = parser.add_argument_group("experiment (racelab.Config fields)")
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        help_text = f.metadata.get("help", "")
        if "choices" in f.metadata:
            help_text += " (" + ", ".join(f.metadata["choices"]) + ")"
        optional = type(None) in typing.get_args(hints[f.name])
        if optional:
            help_text += "; 'default' keeps the OS/asyncio value"
        group.add_argument(
            _flag(f.name),
            dest=f.name,
            metavar=f.name.upper().rsplit("_", 1)[0]
            if f.name.endswith(("_ms", "_bytes", "_s"))
            else f.name.upper(),
            default=None,
            help=f"{help_text} [default: {f.default}]",
        )
    group.add_argument(
        "--sndbuf-bytes",
        metavar="BYTES",
        help="SO_SNDBUF for both sides (shorthand)",
    )
    group.add_argument(
        "--rcvbuf-bytes",
        metavar="BYTES",
        help="SO_RCVBUF for both sides (shorthand)",
    )
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a named setting; explicit options override it "
        "(race.py: 2000 x 16 KiB, pause and resume every 100 ms)",
    )


def field_from_text(name: str, text: str) -> Any:
    """Turn option text into the type of Config field *name*.

    Text that does not convert is returned unchanged, so that Config
    names the field and its rule when it refuses it.
    """
    hint = typing.get_type_hints(Config)[name]
    args = typing.get_args(hint) or (hint,)
    kinds = [t for t in args if t is not type(None)]
    if type(None) in typing.get_args(hint) and text.lower() in _DEFAULT_WORDS:
        return None
    kind = kinds[0]
    if kind is str:
        return text
    if kind is bool:
        words = {"true": True, "yes": True, "1": True, "on": True,
                 "false": False, "no": False, "0": False, "off": False}
        return words.get(text.lower(), text)
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return text
    if kind is int:
        return int(value) if value.is_integer() else text
    return value


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the options set (a preset, then each option),
    converted from text but not yet validated."""
    values: dict[str, Any] = dict(PRESETS.get(args.preset or "", {}))
    for side in ("client", "server"):
        for name in ("sndbuf", "rcvbuf"):
            text = getattr(args, f"{name}_bytes")
            if text is not None:
                field = f"{side}_{name}_bytes"
                values[field] = field_from_text(field, text)
    for name in Config.field_names():
        text = getattr(args, name)
        if text is not None:
            values[name] = field_from_text(name, text)
    return values


def config_from_args(args: argparse.Namespace) -> Config:
    """Build the config the options describe.

    Raises:
      ConfigError: a value breaks its field's rule.
    """
    return Config(**config_values(args))


def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < 1:
            raise argparse.ArgumentTypeError(
                f"{name} must be an integer >= 1 (got {text!r})"
            )
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"port must be an integer from 1 to 65535 (got {text!r})"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="racelab",
        description="Hunt, measure and explain races in asyncio loops.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser(
        "run",
        help="run echo trials on 127.0.0.1",
        description="Run echo trials on 127.0.0.1 and report, to the "
        "byte, what each direction lost.",
    )
    add_config_arguments(run)
    run.set_defaults(parser=run)
    run.add_argument(
        "--trials", type=_positive_int("trials"), default=1,
        help="trials to run; trial i uses seed SEED+i [default: 1]",
    )
    run.add_argument(
        "--json", action="store_true",
        help="print one JSON document on stdout instead of the summary",
    )
    run.add_argument(
        "--events", action="store_true",
        help="with --json, include every trial's timeline",
    )
    run.add_argument(
        "--no-record", action="store_true",
        help="do not record timelines (for benchmarks); results then "
        "lack what is read from them: discarded completions, their "
        "attribution, and the kernel's share of bytes while paused",
    )
    run.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR,
        help="where runs are saved [default: %(default)s]",
    )
    run.add_argument(
        "--no-save", action="store_true", help="do not save the run"
    )

    commands.add_parser("loops", help="list loop kinds and versions")

    runs = commands.add_parser("runs", help="list saved runs")
    runs.set_defaults(parser=runs)
    runs.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)

    show = commands.add_parser("show", help="summarise a saved run")
    show.add_argument("run_id")
    show.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    show.add_argument("--json", action="store_true")
    show.set_defaults(parser=show)

    bench = commands.add_parser(
        "bench",
        help="trial throughput: recording on, off, and bare asyncio",
    )
    bench.set_defaults(parser=bench)
    bench.add_argument("--loop", default="selector")
    bench.add_argument("--rounds", type=_positive_int("rounds"), default=5)
    bench.add_argument(
        "--packets", type=_positive_int("packets"), default=2000
    )
    bench.add_argument(
        "--packet-bytes", type=_positive_int("packet_bytes"), default=16384
    )

    lab = commands.add_parser(
        "lab", help="open the workbook in JupyterLab on 127.0.0.1"
    )
    lab.set_defaults(parser=lab)
    lab.add_argument("--port", type=_port, default=8888)
    lab.add_argument(
        "--browser", action="store_true",
        help="also open a web browser on this machine",
    )

    for extend in _EXTENSIONS:
        extend(commands)
    return parser


# Subcommands contributed by optional layers (for example sweeps), each a
# function that adds its parser and sets ``handler`` on it.
_EXTENSIONS: list[Any] = []


def _add_sweep(commands: Any) -> None:
    # Imported on use: the sweep module's tables need pandas at run time.
    from racelab.sweep import add_sweep_command

    add_sweep_command(commands)


_EXTENSIONS.append(_add_sweep)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None) or _HANDLERS[args.command]
    # Errors name the subcommand ("racelab run: error: ...").
    command_parser = getattr(args, "parser", None) or parser
    try:
        return handler(command_parser, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _cmd_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    reason = get_kind(config.loop).unavailable()
    if reason is not None:
        parser.error(f"loop {config.loop!r} is unavailable here: {reason}")
    if args.events and not args.json:
        parser.error("--events goes with --json")

    from racelab.run import run_trials

    out = sys.stdout
    if not args.json:
        _print_header(config, args.trials, out)

    def on_trial(run, result) -> None:
        if not args.json:
            _print_trial(len(run.results) - 1, result, out)

    try:
        run = run_trials(
            config, args.trials, record=not args.no_record,
            on_trial=on_trial,
        )
    except LoopUnavailable as exc:
        parser.error(str(exc))
    except RuntimeError as exc:
        print(f"racelab: harness failure: {exc}", file=sys.stderr)
        return 1

    saved = None
    if not args.no_save and run.results:
        saved = _save(run, args.data_dir)
    if args.json:
        doc = run.to_dict(events=args.events)
        doc["saved_to"] = str(saved) if saved else None
        json.dump(doc, out, indent=1, allow_nan=False, default=str)
        out.write("\n")
    else:
        _print_summary(run, saved, out)
    return 130 if run.status == "interrupted" else 0


def _save(run, data_dir: Path) -> Path | None:
    try:
        from racelab import store
    except ImportError as exc:
        print(
            f"racelab: run not saved ({exc}); install racelab[data]",
            file=sys.stderr,
        )
        return None
    return store.save_run(run, data_dir)


def _print_header(config: Config, trials: int, out) -> None:
    cadence = (
        f"pause every {config.pause_every_ms:g} ms for "
        f"{config.pause_for_ms:g} ms ({config.pausing_side})"
        if config.pauses_enabled
        else "no pauses"
    )
    print(
        f"racelab run: {trials} trial(s) on {config.loop}"
        + (f" (kernel {config.kernel})" if "emulated" in config.loop else "")
        + f", {config.packets} x {config.packet_bytes} B "
        f"{config.direction}, {cadence}, seed {config.seed}",
        file=out,
    )
    print(
        f"{'trial':>5} {'seed':>6} {'outcome':<12} {'lost B':>9} "
        f"{'pauses':>6} {'B@pause':>9} {'secs':>6}  lost ranges "
        "(direction@offset+length; for a hang: still missing)",
        file=out,
    )


def _print_trial(index: int, result, out) -> None:
    ranges = " ".join(
        f"{r.direction}@{r.offset}+{r.length}" for r in result.lost_ranges[:4]
    )
    if len(result.lost_ranges) > 4:
        ranges += f" (+{len(result.lost_ranges) - 4} more)"
    if result.error:
        ranges = (ranges + " " if ranges else "") + f"[{result.error[:60]}]"
    print(
        f"{index:>5} {result.seed:>6} {result.outcome:<12} "
        f"{result.lost_bytes:>9} {result.pauses:>6} "
        f"{result.bytes_while_paused:>9} {result.duration_s:>6.2f}  {ranges}",
        file=out,
        flush=True,
    )


def _print_summary(run, saved: Path | None, out) -> None:
    summary = run.summary()
    rate = summary["loss_rate"]
    counts = sorted(summary["outcomes"].items())
    outcomes = ", ".join(f"{k} {v}" for k, v in counts)
    print(f"outcomes: {outcomes}", file=out)
    if rate["conclusive"]:
        print(
            f"loss rate: {rate['lossy']}/{rate['conclusive']} conclusive "
            f"trials = {rate['rate']:.0%} "
            f"(95% CI {rate['low']:.0%}-{rate['high']:.0%}); "
            f"{summary['lost_bytes']} bytes lost",
            file=out,
        )
    else:
        print("loss rate: no conclusive trial (none paused and ended)",
              file=out)
    if "emulated" in run.config.loop:
        print("note: emulated-proactor loss rates are not Windows figures "
              "(docs/emulation.md)", file=out)
    if run.status == "interrupted":
        print(f"interrupted: {len(run.results)} of {run.trials_requested} "
              "trials kept", file=out)
    if saved is not None:
        print(f"saved: {saved} (run id {run.run_id})", file=out)


def _cmd_loops(parser, args) -> int:
    available = set(available_kinds())
    print(f"{'kind':<24} {'status':<12} version / reason")
    for name in kind_names():
        kind = get_kind(name)
        if name in available:
            print(f"{name:<24} {'available':<12} {kind.version()}"
                  f"  ({kind.describe})")
        else:
            print(f"{name:<24} {'unavailable':<12} {kind.unavailable()}")
    return 0


def _data_layer(parser):
    # Saved runs are Parquet: reading them needs the data extra.
    try:
        from racelab import store
    except ImportError as exc:
        parser.error(f"reading saved runs needs racelab[data] ({exc})")
    return store


def _cmd_runs(parser, args) -> int:
    store = _data_layer(parser)

    runs = store.list_runs(args.data_dir)
    if not runs:
        print(f"no runs under {args.data_dir}")
        return 0
    for row in runs:
        print(
            f"{row['run_id']:<44} {row['status']:<11} "
            f"{row['trials']:>5} trials  {row['loops']}"
        )
    return 0


def _cmd_show(parser, args) -> int:
    store = _data_layer(parser)

    try:
        manifest = store.load_manifest(args.run_id, args.data_dir)
    except store.RunNotFound as exc:
        parser.error(str(exc))
    if args.json:
        json.dump(manifest, sys.stdout, indent=1, default=str)
        print()
        return 0
    summary = manifest["summary"]
    print(f"run {manifest['run_id']} ({manifest['status']}), "
          f"started {manifest['started_at']}")
    env = manifest["environment"]
    print(f"racelab {env['racelab']}, Python {env['python']}, {env['os']}")
    print(f"outcomes: {summary['outcomes']}")
    if manifest.get("cell_summary"):
        # A sweep: one loss rate over different settings would mean
        # nothing, so the rates are per cell.
        from racelab.sweep import print_cells

        print_cells(manifest["cell_summary"], sys.stdout)
        return 0
    rate = summary["loss_rate"]
    if rate["conclusive"]:
        print(f"loss rate: {rate['lossy']}/{rate['conclusive']} "
              f"(95% CI {rate['low']:.0%}-{rate['high']:.0%})")
    if "emulated" in manifest["config"]["loop"]:
        print("note: emulated-proactor loss rates are not Windows figures "
              "(docs/emulation.md)")
    return 0


def _cmd_bench(parser, args) -> int:
    from racelab.bench import main as bench_main

    try:
        config = Config(loop=args.loop, packets=args.packets,
                        packet_bytes=args.packet_bytes)
    except ConfigError as exc:
        parser.error(str(exc))
    reason = get_kind(config.loop).unavailable()
    if reason is not None:
        parser.error(f"loop {config.loop!r} is unavailable here: {reason}")
    try:
        return bench_main(args.loop, args.rounds, args.packets,
                          args.packet_bytes)
    except LoopUnavailable as exc:
        parser.error(str(exc))


def _cmd_lab(parser, args) -> int:
    from racelab.lab import main as lab_main

    return lab_main(args.port, args.browser)


_HANDLERS = {
    "lab": _cmd_lab,
    "run": _cmd_run,
    "loops": _cmd_loops,
    "runs": _cmd_runs,
    "show": _cmd_show,
    "bench": _cmd_bench,
}

if __name__ == "__main__":
    sys.exit(main())
