"""Every notebook in colabs/ is committed clean, runs headless at a small size and shows sane
results: its plots render and its key numbers lie within physically meaningful bounds."""

import json
import pathlib
import re

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

COLABS = pathlib.Path(__file__).resolve().parents[2] / "colabs"
NOTEBOOKS = sorted(COLABS.glob("*.ipynb"))

# Injected after each notebook's "parameters" cell, as papermill does, to keep CI short. At
# these sizes the effects still show: e.g. the large-λ probe of empirical_relations runs at a
# learning rate where its accuracy peaks and declines within its run.
SMALL = {
    "autol2_quickstart.ipynb": "STEPS = 400\nEVAL_EVERY = 100\nWIDTH = 32",
    "empirical_relations.ipynb": (
        "WIDTH = 32\nLRS = (1.0, 2.0)\nL2_LRS = (3e-3, 1e-2)\nGRID_L2S = (1e-3, 3e-3)\n"
        "GRID_LR = 2.0\nGRID_STEPS = 300\nBUDGETS = (100, 300)\nPROBE_L2 = 5e-3"
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


# Appended to each notebook: prints, after SUMMARY_MARKER, one JSON object of the values that
# its checks read from the notebook's own variables (a few cheap values are recomputed).
SUMMARY_MARKER = "summary: "
SUMMARIES = {
    "autol2_quickstart.ipynb": """
summary = {
    "results": {
        name: {"steps": steps, "accuracy": accuracy, "l2": l2}
        for name, (steps, accuracy, l2) in results.items()
    },
    "fixed_l2": FIXED_L2,
    # (initial λ, learning rate of the cooldown clock) of each AutoL2 run
    "autol2": {
        "AutoL2, coupled (SGD)": (AUTOL2_INIT, LR),
        "AutoL2, decoupled (Adam)": (ADAMW_L2_INIT, ADAM_LR),
    },
}
""",
    "empirical_relations.ipynb": """
summary = {
    "slope": fit.slope,
    "c": fit.c,
    "peak_accuracies": [peak.peak_accuracy for peak in peaks],
    "probe": probe._asdict(),
    "probe_steps": probe_run.steps,
    "grid_accuracy": [curve.accuracy_at(GRID_STEPS) for curve in grid_curves],
}
""",
    "infinite_width.ipynb": """
summary_steps = np.geomspace(1, 100 / (L2S[0] * LR), NUM_TIMES)
summary_models = {
    "network": theory.l2_flow_mse(
        k_train_train, k_test_train, problem.y_train, l2=L2S[0], degree=DEPTH, lr=LR
    ),
    "linear": theory.linear_model(k_train_train, k_test_train, problem.y_train, l2=L2S[0], lr=LR),
}
summary = {
    "kernel": k_train_train,
    "zero_output_loss": problems.mse_loss(np.zeros_like(problem.y_test), problem.y_test),
    **{
        name: problems.curves(predict, summary_steps, problem)
        for name, predict in summary_models.items()
    },
    "widest_error": error,
}
""",
}
SUMMARY_PRINT = (
    f"import json\nimport numpy as np\nprint({SUMMARY_MARKER!r} + json.dumps(summary, "
    "default=lambda value: np.asarray(value).tolist()))"
)
# Ten classes everywhere: an accuracy twice this has learned something.
CHANCE = 0.1


def _check_autol2_quickstart(summary, printed):
    results = summary["results"]
    for name, run in results.items():
        assert run["accuracy"][-1] > 8 * CHANCE, name  # digits is easy for every optimizer
    assert set(results["λ = 0"]["l2"]) == {0.0}
    fixed = [name for name in results if name.startswith("fixed λ")]
    assert len(fixed) == 1
    np.testing.assert_allclose(results[fixed[0]]["l2"], summary["fixed_l2"], rtol=1e-6)
    for name, (l2_init, lr) in summary["autol2"].items():
        steps, l2 = np.array(results[name]["steps"]), np.array(results[name]["l2"])
        assert np.all(np.diff(l2) <= 0), name
        decays = np.log10(l2_init / l2)  # λ only falls by factors of 10
        np.testing.assert_allclose(decays, np.round(decays), atol=1e-4, err_msg=name)
        # No decay before the first cooldown of 0.1/(λη) steps has passed.
        np.testing.assert_allclose(l2[steps <= 0.1 / (l2_init * lr)], l2_init, rtol=1e-6)
    assert len(re.findall(r"final test accuracy", printed)) == len(results)


def _check_empirical_relations(summary, printed):
    # Relation 1: t* falls as λη grows, with a slope within a factor of 3 of the paper's −1.
    assert -3 < summary["slope"] < -1 / 3 and summary["c"] > 0
    assert min(summary["peak_accuracies"]) > 2 * CHANCE
    # The probe finds a real peak: its accuracy declines before its run ends.
    probe = summary["probe"]
    assert 0 < probe["step"] <= probe["high"] < summary["probe_steps"]
    assert max(summary["grid_accuracy"]) > 3 * CHANCE
    assert "predicted λ" in printed


def _check_infinite_width(summary, printed):
    kernel = np.array(summary["kernel"])
    np.testing.assert_allclose(kernel, kernel.T, rtol=1e-10)
    eigenvalues = np.linalg.eigvalsh(kernel)
    assert eigenvalues[0] > -1e-8 * eigenvalues[-1]  # a Gram matrix: positive semi-definite
    curves = re.findall(r"λ = \S+: peak accuracy (\S+) at λη·t = (\S+), final (\S+)\n", printed)
    assert curves
    for peak, peak_time, final in np.array(curves, dtype=float):
        # The network learns, peaks on the clock 1/(λη), then declines as its output decays.
        assert peak > 5 * CHANCE and 0.01 < peak_time < 10 and final < peak - 0.05
    slopes = re.findall(r"∝ \(λη\)\^(\S+) ±", printed)
    assert len(slopes) == 2 and all(-2 < float(slope) < -0.5 for slope in slopes)
    # By λη·t = 100 the network's output has decayed to zero; the linear model's never does:
    # it converges to kernel ridge regression and keeps its best accuracy.
    (network_accuracy, network_loss), (linear_accuracy, linear_loss) = (
        summary["network"],
        summary["linear"],
    )
    np.testing.assert_allclose(network_loss[-1], summary["zero_output_loss"], rtol=1e-3)
    assert network_accuracy[-1] < max(network_accuracy) - 0.05
    assert linear_accuracy[-1] >= max(linear_accuracy) - 0.01
    assert linear_loss[-1] < 0.5 * summary["zero_output_loss"]
    assert summary["widest_error"] < 0.5  # the widest finite network is near the limit


CHECKS = {
    "autol2_quickstart.ipynb": _check_autol2_quickstart,
    "empirical_relations.ipynb": _check_empirical_relations,
    "infinite_width.ipynb": _check_infinite_width,
}


def test_every_notebook_has_checks():
    assert sorted(SMALL) == sorted(SUMMARIES) == sorted(CHECKS)


def _stdout(cell) -> str:
    return "".join(
        output.text
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_headless_and_shows_sane_results(path):
    notebook = nbformat.read(path, as_version=4)
    index = next(
        i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(SMALL[path.name]))
    summary_cell = nbformat.v4.new_code_cell(SUMMARIES[path.name] + SUMMARY_PRINT)
    notebook.cells.append(summary_cell)
    # execute() raises CellExecutionError, with the cell and its traceback, on any error.
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": COLABS}}
    ).execute()
    code_cells = [cell for cell in notebook.cells[:-1] if cell.cell_type == "code"]
    plotting = [cell for cell in code_cells if "plt." in cell.source]
    assert plotting
    for cell in plotting:
        images = [output for output in cell.outputs if "image/png" in output.get("data", {})]
        assert len(images) == 1, cell.source[:80]
    (line,) = [
        line for line in _stdout(summary_cell).splitlines() if line.startswith(SUMMARY_MARKER)
    ]
    summary = json.loads(line.removeprefix(SUMMARY_MARKER))
    CHECKS[path.name](summary, "".join(_stdout(cell) for cell in code_cells))
