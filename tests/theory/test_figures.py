"""theory.figures: the report states what was computed; the files are written all or none."""

import numpy as np
import pytest

from l2reg import files
from theory import figures, problems
from theory.figure_settings import FigureSettings


@pytest.fixture(scope="module")
def small_results():
    settings = FigureSettings(num_train=30, num_test=40, l2s=(1e-2, 1e-3), num_times=20)
    problem = problems.load_flat("digits", num_train=30, num_test=40)
    relation = figures.relation_1(problem, depth=3, l2s=settings.l2s, lr=0.5, num_times=20)
    widths = figures.finite_width(
        problems.load_flat("digits", num_train=8, num_test=40),
        depth=2,
        widths=(8,),
        l2=0.05,
        lr=0.5,
    )
    return settings, relation, widths


def test_results_have_the_documented_shapes(small_results):
    _, relation, widths = small_results
    assert relation.steps.shape == relation.network_accuracy.shape == (2, 20)
    np.testing.assert_allclose(relation.scaled_time[:, -1], 100.0, rtol=1e-12)
    assert widths.network_accuracy.shape == (1, len(widths.steps))
    assert widths.errors.shape == widths.late_errors.shape == (1,)


def test_the_report_states_lr_and_prints_the_computed_fits(small_results):
    settings, relation, widths = small_results
    text = figures.report(settings, relation, widths)
    assert "MSE, η = lr = 0.5)" in text and "λ = 0.05, η = 0.5" in text
    for what, fit in relation.fits().items():
        assert (
            f"At η = 0.5, λ ∈ {{0.01, 0.001}}: step of the {what} ∝ (λη)^{fit.slope:.3f} "
            f"± {fit.slope_stderr:.3f} (c = {fit.c:.3g})"
        ) in text
    assert f"| 8 | {widths.errors[0]:.4f} | {widths.late_errors[0]:.3f} |" in text


def failing_on(call_number, monkeypatch):
    """Makes the `call_number`-th figure save fail, as a full disk would."""
    calls, save = [], files.save_figure

    def save_or_fail(figure, path):
        calls.append(path)
        if len(calls) == call_number:
            raise OSError(28, "No space left on device")
        save(figure, path)

    monkeypatch.setattr(files, "save_figure", save_or_fail)


def contents():
    plt = files.pyplot()
    return {"collapse.png": plt.figure(), "finite_width.png": plt.figure(), "report.md": "new"}


def test_a_failed_write_leaves_an_existing_folder_as_it_was(tmp_path, monkeypatch):
    for name in ("collapse.png", "finite_width.png", "report.md", "notes.txt"):
        (tmp_path / name).write_text("old")
    failing_on(2, monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        figures._write_all(str(tmp_path), contents())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "collapse.png", "finite_width.png", "notes.txt", "report.md"
    ]  # fmt: skip
    assert all(path.read_text() == "old" for path in tmp_path.iterdir())


def test_a_failed_write_leaves_no_new_folder(tmp_path, monkeypatch):
    failing_on(2, monkeypatch)
    with pytest.raises(OSError):
        figures._write_all(str(tmp_path / "figures"), contents())
    assert not (tmp_path / "figures").exists()


def test_a_complete_write_replaces_the_set_and_keeps_other_files(tmp_path):
    (tmp_path / "report.md").write_text("old")
    (tmp_path / "notes.txt").write_text("kept")
    figures._write_all(str(tmp_path), contents())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "collapse.png", "finite_width.png", "notes.txt", "report.md"
    ]  # fmt: skip
    assert (tmp_path / "report.md").read_text() == "new"
    assert (tmp_path / "notes.txt").read_text() == "kept"
