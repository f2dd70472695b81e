"""The racelab command line: options, JSON output, errors, exit codes."""

import json
import subprocess
import sys

import pytest

from racelab.cli import main

SMALL = ["--packets", "200", "--packet-bytes", "16384", "--pause-every-ms",
         "1", "--pause-for-ms", "1"]


def racelab(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "racelab", *args],
        capture_output=True, text=True, timeout=120, **kwargs,
    )


def test_cli_run_json_is_one_document(tmp_path):
    """--json prints one JSON document with per-trial verdicts."""
    done = racelab("run", *SMALL, "--trials", "2", "--json",
                   "--data-dir", str(tmp_path))

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["config"]["packets"] == 200
    assert doc["environment"]["python"]
    assert doc["environment"]["loops"]["selector"]["version"]
    assert len(doc["trials"]) == 2
    for trial in doc["trials"]:
        assert {"outcome", "lost_bytes", "lost_ranges", "pauses",
                "duration_s"} <= set(trial)
        assert trial["lost_bytes"] == 0
    assert [t["seed"] for t in doc["trials"]] == [0, 1]
    assert doc["saved_to"].startswith(str(tmp_path))


def test_cli_run_summary_names_loss_rate(tmp_path):
    """The terminal summary has a row per trial and a loss rate with CI."""
    done = racelab("run", *SMALL, "--trials", "2",
                   "--data-dir", str(tmp_path))

    assert done.returncode == 0, done.stderr
    assert "loss rate: 0/2" in done.stdout
    assert "95% CI" in done.stdout
    assert "saved:" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--packets", "0"], "packets must be an integer >= 1 (got 0)"),
        (["--packets", "many"],
         "packets must be an integer >= 1 (got 'many')"),
        (["--pause-every-ms", "-1"],
         "pause_every_ms must be a finite number >= 0 (got -1.0)"),
        (["--loop", "iocp"], "loop must be one of 'selector'"),
        (["--direction", "sideways"],
         "direction must be one of 'both', 'up' (got 'sideways')"),
        (["--client-rcvbuf-bytes", "-5"],
         "client_rcvbuf_bytes must be None or an integer from 1 to "
         "1073741824 (got -5)"),
        (["--trials", "0"], "trials must be an integer >= 1 (got '0')"),
    ],
)
def test_cli_run_bad_input_names_the_field(args, message, capsys):
    """Bad options exit 2 with a message naming field, rule and value."""
    with pytest.raises(SystemExit) as info:
        main(["run", *args, "--no-save"])

    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_default_keyword_selects_os_buffer(tmp_path):
    """'default' for a buffer size keeps the OS default."""
    done = racelab("run", *SMALL, "--rcvbuf-bytes", "default", "--json",
                   "--no-save")

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["config"]["client_rcvbuf_bytes"] is None


def test_cli_loops_lists_selector_with_version():
    """`racelab loops` names each kind and its version."""
    done = racelab("loops")

    assert done.returncode == 0
    assert "selector" in done.stdout
    assert "available" in done.stdout


def test_cli_show_unknown_run_is_a_clear_error(tmp_path):
    """`racelab show` of a missing id names run_id and exits 2."""
    done = racelab("show", "nope", "--data-dir", str(tmp_path))

    assert done.returncode == 2
    assert "run_id must name a run under" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_saved_run_is_listed_and_shown(tmp_path):
    """A run saved by `racelab run` appears in `runs` and `show`."""
    done = racelab("run", *SMALL, "--json", "--data-dir", str(tmp_path))
    run_id = json.loads(done.stdout)["run_id"]

    listed = racelab("runs", "--data-dir", str(tmp_path))
    shown = racelab("show", run_id, "--data-dir", str(tmp_path))

    assert run_id in listed.stdout
    assert shown.returncode == 0
    assert run_id in shown.stdout
