"""Every notebook in colabs/ is committed clean and runs headless at a small size."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

COLABS = pathlib.Path(__file__).resolve().parents[2] / "colabs"
NOTEBOOKS = sorted(COLABS.glob("*.ipynb"))

# Injected after each notebook's "parameters" cell, as papermill does, to keep CI short.
SMALL = {
    "autol2_quickstart.ipynb": "STEPS = 400\nEVAL_EVERY = 100\nWIDTH = 32",
    "empirical_relations.ipynb": (
        "WIDTH = 32\nLRS = (1.0, 2.0)\nL2_LRS = (3e-3, 1e-2)\nGRID_L2S = (1e-3, 3e-3)\n"
        "GRID_STEPS = 300\nBUDGETS = (100, 300)\nPROBE_L2 = 3e-2"
    ),
    "infinite_width.ipynb": (
        "NUM_TRAIN = 64\nL2S = (1e-3, 1e-4)\nNUM_TIMES = 60\nWIDTHS = (64, 128)\n"
        "FINITE_NUM_TRAIN = 16"
    ),
}


def test_every_notebook_has_small_parameters():
    assert sorted(notebook.name for notebook in NOTEBOOKS) == sorted(SMALL)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs_and_installs_first(path):
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells)
    assert "pip" in code_cells[0].source and "find_spec" in code_cells[0].source
    assert [cell for cell in code_cells if "parameters" in cell.metadata.get("tags", [])]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_headless(path):
    notebook = nbformat.read(path, as_version=4)
    index = next(
        i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(SMALL[path.name]))
    # execute() raises CellExecutionError, with the cell and its traceback, on any error.
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": COLABS}}
    ).execute()
