"""The workbook: each notebook runs headless; committed ones stay clean.

Notebooks are executed with nbclient in a fresh kernel, with small
parameters injected after the cell tagged ``parameters`` (as papermill
does), from the notebooks folder so that their relative paths hold.
"""

import json
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from racelab.lab import FIRST_NOTEBOOK

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))

PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"

# Committed notebooks are source, not results: a few KB each.
MAX_NOTEBOOK_BYTES = 20_000


def small_parameters(name, data_dir):
    """Parameters that keep each notebook to a few seconds."""
    return {
        "01-reproduce-bpo-33694": {
            "TRIALS": 4,
            "PACKETS": 100,
            "DATA_DIR": str(data_dir),
        },
        "02-pause-cadence-and-buffers": {
            "PAUSE_EVERY_MS": [1.0, 4.0],
            "TRIALS": 2,
            "PACKETS": 50,
            "DATA_DIR": str(data_dir),
        },
        "03-anatomy-of-a-loss": {"PACKETS": 150, "MAX_TRIALS": 40},
        "04-postmortem": {
            "RUN_ID": "example-bpo-33694",
            "DATA_DIR": str(ROOT / "data"),
        },
    }[name]


# How many figures each notebook draws, at least.
FIGURES = {
    "01-reproduce-bpo-33694": 2,
    "02-pause-cadence-and-buffers": 4,
    "03-anatomy-of-a-loss": 2,
    "04-postmortem": 5,
}


def execute(name, parameters, extra_cells=()):
    """Run a notebook with *parameters*; returns it and the seconds taken."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    index = next(
        i
        for i, cell in enumerate(nb.cells)
        if "parameters" in cell.metadata.get("tags", [])
    )
    lines = [f"{key} = {value!r}" for key, value in parameters.items()]
    injected = nbformat.v4.new_code_cell(
        "# Parameters injected by tests/test_notebooks.py\n" + "\n".join(lines)
    )
    nb.cells.insert(index + 1, injected)
    nb.cells.extend(nbformat.v4.new_code_cell(s) for s in extra_cells)
    client = NotebookClient(
        nb,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.monotonic()
    client.execute()
    return nb, time.monotonic() - started


def outputs(nb):
    return [
        o
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    ]


def cell_outputs(nb, text):
    """Outputs of the first code cell whose source contains *text*."""
    cell = next(
        c for c in nb.cells if c.cell_type == "code" and text in c.source
    )
    return cell.outputs


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_headless(name, tmp_path):
    """Top to bottom, no error output, its figures and widgets present."""
    nb, seconds = execute(name, small_parameters(name, tmp_path))
    print(f"\n{name}: executed in {seconds:.1f} s")

    everything = outputs(nb)
    errors = [o for o in everything if o.output_type == "error"]
    stderr = [
        o
        for o in everything
        if o.output_type == "stream" and o.name == "stderr"
    ]
    figures = [o for o in everything if PLOTLY in o.get("data", {})]
    widgets = [o for o in everything if WIDGET in o.get("data", {})]
    assert not errors, errors
    assert not stderr, [o.text for o in stderr]
    assert len(figures) >= FIGURES[name]
    assert widgets, "the interactive figure is missing"
    for figure in figures:
        assert figure["data"][PLOTLY]["data"], "an empty figure"


def test_notebook_01_panel_run_updates_figure_and_table(tmp_path):
    """Driven inside the kernel, Run fills the panel's figure and table
    and saves the run."""
    drive = """
import json
panel.loop.value = "emulated-proactor-2018"
panel.trials_box.value = 3
panel.run_button.click()
run = panel.wait(120)
print(json.dumps({
    "status": run.status,
    "trials": len(run.results),
    "points": sum(len(t.x) for t in panel.figure.data[:6]),
    "table": "3 trial(s)" in panel.table.value,
    "saved": str(panel.saved_to),
    "run_id": run.run_id,
    "error": panel.error,
}))
"""
    name = "01-reproduce-bpo-33694"
    nb, _ = execute(name, small_parameters(name, tmp_path), [drive])

    panel_view = [
        o
        for o in cell_outputs(nb, "ControlPanel(")
        if WIDGET in o.get("data", {})
    ]
    printed = nb.cells[-1].outputs[-1].text
    report = json.loads(printed)
    assert panel_view, "the panel is not displayed"
    assert report["status"] == "complete"
    assert report["trials"] == 3
    assert report["points"] == 3
    assert report["table"]
    assert report["error"] is None
    assert Path(report["saved"]) == tmp_path / "runs" / report["run_id"]
    assert (Path(report["saved"]) / "manifest.json").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name):
    """Committed notebooks carry no outputs, counts or widget state."""
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)

    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] for c in code)
    assert all(c.execution_count is None for c in code)
    assert "widgets" not in nb.metadata
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_title_imports_and_parameters(name):
    """First a title with its question, then imports, then parameters
    with a SEED or a run id."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)

    first, imports, parameters = nb.cells[:3]
    assert first.cell_type == "markdown"
    assert first.source.startswith("# ")
    assert "**Question:**" in first.source
    assert imports.source.lstrip().startswith(("import", "from"))
    assert parameters.metadata.get("tags") == ["parameters"]
    assert "SEED" in parameters.source or "RUN_ID" in parameters.source
    for cell in nb.cells:
        for line in cell.source.splitlines():
            assert len(line) <= 79, f"{name}: {line!r}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_its_jupytext_pair(name):
    """The .py percent file and the .ipynb hold the same cells."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    paired = jupytext.read(NOTEBOOKS / f"{name}.py")

    def cells(nb):
        return [
            (c.cell_type, c.source.strip(), c.metadata.get("tags", []))
            for c in nb.cells
        ]

    assert cells(paired) == cells(notebook)


def test_lab_opens_a_notebook_that_exists():
    """racelab lab starts at a notebook of the workbook."""
    assert (NOTEBOOKS / FIRST_NOTEBOOK).is_file()
