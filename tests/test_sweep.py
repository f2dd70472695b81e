"""Sweeps: grids, parallel trials, parts on disk, stops, kills, resumes."""

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import threading

import pandas as pd
import pytest

from racelab import Config, ConfigError, register_factory, store
from racelab.cli import main
from racelab.sweep import (
    load_sweep,
    make_grid,
    read_sweep_file,
    sweep,
)
from racelab.testing import wait_until

# Small trials whose outcome does not depend on timing: a cadence of
# 0.01 ms pauses before the first echo arrives (clean), and no cadence
# never pauses (inconclusive).
BASE = {"packets": 20, "packet_bytes": 1024, "pause_for_ms": 0.01}
AXES = {"pause_every_ms": [0, 0.01], "client_rcvbuf_bytes": [None, 4096]}
EXPECTED = {0: "inconclusive", 1: "inconclusive", 2: "clean", 3: "clean"}
# Trials per cell: enough that a sweep on one worker outlives the first
# few parts, so a kill or a stop lands mid-run.
N = 50

CLI_SMALL = [
    "--packets",
    "20",
    "--packet-bytes",
    "1024",
    "--pause-for-ms",
    "0.01",
    "--grid",
    "pause_every_ms=0,0.01",
    "--grid",
    "client_rcvbuf_bytes=default,4096",
]


def racelab_process(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "racelab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def outcomes_by_trial(result):
    table = result.trials[["cell", "seed", "outcome"]]
    return {(c, s): o for c, s, o in table.itertuples(index=False)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep of the test grid on the local pool."""
    data_dir = tmp_path_factory.mktemp("reference")
    return sweep(
        AXES,
        config=BASE,
        trials=N,
        workers=2,
        data_dir=data_dir,
        run_id="reference",
        progress=False,
    )


# -- the grid --------------------------------------------------------------


def test_make_grid_crosses_axes_loop_first():
    """Cells are the product of the axes, loop first, last axis fastest."""
    grid = make_grid(
        {
            "pause_every_ms": ["1", "10"],
            "loop": ["selector"],
            "client_rcvbuf_bytes": ["default", "4096"],
        },
        BASE,
        trials=3,
    )

    assert [c.params for c in grid.cells] == [
        {
            "loop": "selector",
            "pause_every_ms": 1.0,
            "client_rcvbuf_bytes": None,
        },
        {
            "loop": "selector",
            "pause_every_ms": 1.0,
            "client_rcvbuf_bytes": 4096,
        },
        {
            "loop": "selector",
            "pause_every_ms": 10.0,
            "client_rcvbuf_bytes": None,
        },
        {
            "loop": "selector",
            "pause_every_ms": 10.0,
            "client_rcvbuf_bytes": 4096,
        },
    ]
    assert grid.cells[1].label == (
        "loop=selector pause_every_ms=1 client_rcvbuf_bytes=4096"
    )
    assert grid.cells[3].config.packets == 20
    assert grid.seeds == [0, 1, 2]
    assert grid.size == 12


@pytest.mark.parametrize(
    "axes, message",
    [
        (
            {"pause_evry_ms": [1]},
            "field name must be one of "
            + ", ".join(Config.field_names())
            + " (got 'pause_evry_ms')",
        ),
        (
            {"pause_every_ms": ["1", "-1"]},
            "pause_every_ms must be a finite number >= 0 (got -1.0)",
        ),
        (
            {"client_rcvbuf_bytes": ["default", "small"]},
            "client_rcvbuf_bytes must be None or an integer from 1 to "
            "1073741824 (got 'small')",
        ),
        ({"packets": []}, "packets must be given at least one value (got [])"),
        (
            {"packets": [10, 10]},
            "packets must be a list of distinct values (got [10, 10])",
        ),
        (
            {"seed": [1, 2]},
            "seed must be fixed in a sweep (trial i of every cell has seed "
            "seed+i) (got [1, 2])",
        ),
    ],
)
def test_make_grid_bad_input_names_the_field(axes, message):
    """Bad grid input raises ConfigError naming field, rule and value."""
    with pytest.raises(ConfigError) as info:
        make_grid(axes, BASE)

    assert str(info.value) == message


def test_cli_sweep_bad_grid_exits_2_before_running(tmp_path, capsys):
    """A bad --grid value exits 2 with the field's message; nothing runs."""
    with pytest.raises(SystemExit) as info:
        main(
            ["sweep", "--grid", "packets=10,zero", "--data-dir", str(tmp_path)]
        )

    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "racelab sweep: error: packets must be an integer >= 1 (got 'zero')"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--grid", "packets"],
            "--grid must be FIELD=VALUE[,VALUE...] (got 'packets')",
        ),
        (
            ["--grid", "packets=1", "--grid", "packets=2"],
            "--grid must be given once per field (got 'packets')",
        ),
        (["--trials", "0"], "trials must be an integer >= 1 (got '0')"),
        (["--workers", "two"], "workers must be an integer >= 1 (got 'two')"),
        (
            ["--resume", "x", "--grid", "packets=1"],
            "--resume must be given alone (the run has its grid, config and "
            "trials) (got '--grid')",
        ),
    ],
)
def test_cli_sweep_bad_options_name_the_option(
    args, message, tmp_path, capsys
):
    """Malformed sweep options exit 2 with a message naming them."""
    with pytest.raises(SystemExit) as info:
        main(["sweep", *args, "--data-dir", str(tmp_path)])

    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"racelab sweep: error: {message}"
    )


def test_read_sweep_file_rejects_unknown_key(tmp_path):
    """A sweep file with a stray top-level key names that key."""
    path = tmp_path / "sweep.toml"
    path.write_text("trials = 2\nworkers = 3\n")

    with pytest.raises(ConfigError) as info:
        read_sweep_file(path)

    assert str(info.value) == (
        "sweep file key must be one of 'config', 'grid', 'trials' "
        "(got 'workers')"
    )


def test_sweep_file_runs_with_default_keyword(tmp_path):
    """A TOML sweep file runs; 'default' selects the OS buffer size."""
    path = tmp_path / "sweep.toml"
    path.write_text(
        "trials = 2\n"
        "[config]\npackets = 20\npacket_bytes = 1024\n"
        "pause_for_ms = 0.01\n"
        "[grid]\npause_every_ms = [0.01]\n"
        'client_rcvbuf_bytes = ["default", 4096]\n'
    )

    result = sweep(path, workers=1, data_dir=tmp_path, progress=False)

    assert result.status == "complete"
    assert result.summary["client_rcvbuf_bytes"].tolist() == [pd.NA, 4096]
    assert result.summary["clean"].tolist() == [2, 2]
    assert result.manifest["grid"]["client_rcvbuf_bytes"] == [None, 4096]


# -- running ---------------------------------------------------------------


def test_sweep_tables_have_cells_and_summary(reference):
    """The trials table has a cell per row; the summary a row per cell."""
    trials, summary = reference.trials, reference.summary

    assert len(trials) == 4 * N
    assert trials["trial"].tolist() == list(range(4 * N))
    assert trials.groupby("cell")["seed"].apply(list).tolist() == (
        [list(range(N))] * 4
    )
    assert {
        c: trials[trials.cell == c].outcome.unique().tolist() for c in range(4)
    } == {c: [o] for c, o in EXPECTED.items()}
    assert summary["trials"].tolist() == [N] * 4
    assert summary["conclusive"].tolist() == [0, 0, N, N]
    assert summary["loss_rate"].tolist()[2:] == [0.0, 0.0]
    assert summary["loss_high"].iloc[2] == pytest.approx(0.0713, abs=1e-3)
    assert (summary["pauses_mean"].iloc[2:] >= 1).all()
    assert reference.manifest["status"] == "complete"
    assert len(reference.manifest["cell_summary"]) == 4
    assert len(reference.events()) == trials["events"].sum()
    some = reference.events(trials=[0, 150])
    assert some["trial"].unique().tolist() == [0, 150]
    assert len(some) == trials["events"][[0, 150]].sum()


def test_store_load_run_merges_sweep_parts(reference):
    """racelab.store.load_run reads a sweep's parts as one run."""
    run = store.load_run("reference", reference.folder.parent.parent)

    assert len(run.trials) == 4 * N
    assert len(run.events) == reference.trials["events"].sum()
    assert sorted(run.trials["cell"].unique()) == [0, 1, 2, 3]


def test_sweep_should_stop_keeps_finished_trials_then_resumes(
    tmp_path, reference
):
    """should_stop, from a sweep in a background thread as a notebook's
    Stop button has it, ends the run 'interrupted' with every finished
    trial kept; resume completes it to the uninterrupted outcomes."""
    seen = []
    box = []

    def run():
        box.append(
            sweep(
                AXES,
                config=BASE,
                trials=N,
                workers=1,
                data_dir=tmp_path,
                progress=False,
                on_trial=seen.append,
                should_stop=lambda: len(seen) >= 10,
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    stopped = box[0]
    on_disk = load_sweep(stopped.run_id, tmp_path)
    resumed = sweep(
        resume=stopped.run_id, data_dir=tmp_path, workers=1, progress=False
    )

    assert stopped.status == "interrupted"
    assert stopped.manifest["stopped_because"] == "should_stop"
    assert 10 <= len(on_disk.trials) < 4 * N
    assert len(on_disk.trials) == len(seen)
    assert resumed.status == "complete"
    assert len(resumed.manifest["resumed_at"]) == 1
    assert outcomes_by_trial(resumed) == outcomes_by_trial(reference)
    pd.testing.assert_frame_equal(
        resumed.summary.drop(
            columns=[
                "pauses_mean",
                "bytes_while_paused_mean",
                "bytes_while_paused_max",
            ]
        ),
        reference.summary.drop(
            columns=[
                "pauses_mean",
                "bytes_while_paused_mean",
                "bytes_while_paused_max",
            ]
        ),
    )


def test_sweep_sigkill_then_resume_matches_uninterrupted(tmp_path, reference):
    """A sweep killed by SIGKILL leaves a loadable run, its workers exit,
    and --resume completes it with the uninterrupted outcomes."""
    psutil = pytest.importorskip("psutil")
    folder = tmp_path / "runs" / "killed"
    proc = racelab_process(
        "sweep",
        *CLI_SMALL,
        "--trials",
        str(N),
        "--workers",
        "1",
        "--flush-s",
        "0.02",
        "--run-id",
        "killed",
        "--data-dir",
        str(tmp_path),
        "--no-progress",
    )
    try:
        wait_until(lambda: len(store.part_numbers(folder)) >= 2)
        workers = psutil.Process(proc.pid).children()
        running = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=30)
    killed = load_sweep("killed", tmp_path)

    resume = racelab_process(
        "sweep",
        "--resume",
        "killed",
        "--workers",
        "1",
        "--data-dir",
        str(tmp_path),
    )
    out, err = resume.communicate(timeout=120)
    resumed = load_sweep("killed", tmp_path)

    assert running, "the sweep ended before it could be killed"
    assert not alive
    assert killed.status == "running"
    assert 0 < len(killed.trials) < 4 * N
    assert resume.returncode == 0, err
    assert "status complete" in out
    assert resumed.status == "complete"
    assert not resumed.trials.duplicated(["cell", "seed"]).any()
    assert resumed.summary["trials"].tolist() == [N] * 4
    assert outcomes_by_trial(resumed) == outcomes_by_trial(reference)
    assert not list((folder / "parts").glob(".tmp-*"))


def test_cli_sweep_ctrl_c_keeps_finished_trials(tmp_path):
    """SIGINT stops a CLI sweep with exit 130, status 'interrupted', and
    every trial written so far loadable."""
    folder = tmp_path / "runs" / "stopped"
    proc = racelab_process(
        "sweep",
        *CLI_SMALL,
        "--trials",
        str(N),
        "--workers",
        "1",
        "--flush-s",
        "0.02",
        "--run-id",
        "stopped",
        "--data-dir",
        str(tmp_path),
        "--no-progress",
    )
    try:
        wait_until(lambda: store.part_numbers(folder))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    result = load_sweep("stopped", tmp_path)

    assert proc.returncode == 130, err
    assert "stopped: interrupted (Ctrl-C); finish with --resume stopped" in out
    assert result.status == "interrupted"
    assert 0 < len(result.trials) < 4 * N
    assert result.manifest["summary"]["trials"] == len(result.trials)


def test_cli_sweep_json_is_one_document(tmp_path):
    """--json prints the manifest with per-cell summaries and no bar."""
    proc = racelab_process(
        "sweep",
        *CLI_SMALL,
        "--trials",
        "2",
        "--workers",
        "1",
        "--json",
        "--progress",
        "--data-dir",
        str(tmp_path),
    )
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["status"] == "complete"
    assert [c["trials"] for c in doc["cell_summary"]] == [2, 2, 2, 2]
    assert doc["grid"] == {
        "pause_every_ms": [0.0, 0.01],
        "client_rcvbuf_bytes": [None, 4096],
    }
    assert "trial/s" not in err


def test_sweep_on_dask_local_cluster_matches_local_pool(tmp_path, reference):
    """A dask LocalCluster's executor gives the local pool's table shape
    and outcomes."""
    distributed = pytest.importorskip("distributed")
    # processes=False talks inproc; the two dashboards, which listen even
    # with dashboard_address=None (on 0.0.0.0), are kept on 127.0.0.1.
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
    )
    with cluster, distributed.Client(cluster) as client:
        result = sweep(
            AXES,
            config=BASE,
            trials=N,
            executor=client.get_executor(),
            data_dir=tmp_path,
            progress=False,
        )

    assert result.status == "complete"
    assert result.trials.shape == reference.trials.shape
    assert list(result.trials.columns) == list(reference.trials.columns)
    assert outcomes_by_trial(result) == outcomes_by_trial(reference)


# -- faults: a worker that dies, a trial that never returns ----------------

RELEASE = threading.Event()


def _crashing_loop():
    os._exit(3)


def _stalling_loop():
    # Never returns within any trial's hard limit, but ends by itself.
    RELEASE.wait(30)
    raise RuntimeError("stalling loop released")


def _raising_loop():
    raise RuntimeError("this loop kind always fails")


def register_faulty_loops():
    """Loop kinds that crash their process, stall, or raise (for tests)."""
    for name in ("crashing", "stalling", "raising"):
        register_factory(
            f"test-{name}", f"test_sweep:_{name}_loop", replace=True
        )


def test_sweep_records_worker_death_and_hang_and_goes_on(tmp_path):
    """A worker that dies gives 'error', one past the hard limit 'hang',
    each with context, and every other trial still runs."""
    register_faulty_loops()

    result = sweep(
        {"loop": ["selector", "test-crashing", "test-stalling"]},
        config={**BASE, "pause_every_ms": 0.01, "timeout_s": 0.5},
        trials=2,
        workers=2,
        hang_margin_s=1.0,
        data_dir=tmp_path,
        worker_setup="test_sweep:register_faulty_loops",
        progress=False,
    )

    by_cell = result.trials.groupby("cell")
    assert result.status == "complete"
    assert by_cell["outcome"].apply(list).tolist() == [
        ["clean", "clean"],
        ["error", "error"],
        ["hang", "hang"],
    ]
    errors = result.trials["error"].tolist()
    assert all("died during the trial (exit code 3)" in e for e in errors[2:4])
    assert all(
        "no result after" in e and "hard limit 1.5 s" in e for e in errors[4:]
    )


def test_sweep_on_thread_executor_records_raise_and_hang(tmp_path):
    """On a plain executor, an exception and an overrun become rows."""
    register_faulty_loops()
    try:
        with cf.ThreadPoolExecutor(2) as executor:
            result = sweep(
                {"loop": ["selector", "test-raising", "test-stalling"]},
                config={**BASE, "pause_every_ms": 0.01, "timeout_s": 0.2},
                trials=1,
                executor=executor,
                hang_margin_s=0.5,
                data_dir=tmp_path,
                progress=False,
            )
    finally:
        RELEASE.set()

    assert result.trials["outcome"].tolist() == ["clean", "error", "hang"]
    assert "this loop kind always fails" in result.trials["error"][1]
    assert "no result after 0.7 s" in result.trials["error"][2]


def test_sweep_executor_refusing_work_is_a_harness_failure(tmp_path):
    """An executor that refuses work raises RuntimeError, and the run is
    left 'interrupted' with the reason in its manifest."""
    executor = cf.ThreadPoolExecutor(1)
    executor.shutdown()

    with pytest.raises(RuntimeError) as info:
        sweep(
            AXES,
            config=BASE,
            trials=1,
            executor=executor,
            data_dir=tmp_path,
            run_id="refused",
            progress=False,
        )
    manifest = store.load_manifest("refused", tmp_path)

    assert str(info.value).startswith(
        "the executor refused work: cannot schedule new futures after "
        "shutdown; the 0 finished trials are saved in "
    )
    assert manifest["status"] == "interrupted"
    assert manifest["stopped_because"].startswith(
        "harness failure: the executor refused work"
    )


def test_process_pool_requeues_a_task_sent_to_a_dead_worker():
    """A task sent to a worker that died unnoticed is requeued, not lost,
    and the worker is replaced."""
    from racelab.sweep import _ProcessPool, _Task

    pool = _ProcessPool(1, record=False, setup=None)
    try:
        wait_until(lambda: pool.poll(0.05) == [] and pool.has_room())
        first = pool.workers[0]
        first.process.kill()
        first.process.join(10)
        config = {**Config(**BASE).to_dict(), "pause_every_ms": 0.01}
        task = _Task((0, 0), config, 10.0)

        pool.submit(task)
        requeued = list(pool.requeued)
        room_after_send = pool.has_room()
        wait_until(lambda: pool.poll(0.05) == [] and pool.has_room())
        replaced = pool.workers[0] is not first
    finally:
        pool.close()

    assert requeued == [task]
    assert not room_after_send
    assert replaced
    assert first.process.exitcode == -signal.SIGKILL
