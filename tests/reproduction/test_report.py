"""The reproduction's report: the version record, its time as first measured when a rerun reuses
the cache, the parts' progress, a caption under each figure; on a world of curves that a fake
sweep makes up (nothing trains)."""

import json

import numpy as np
import pytest

from l2reg import reproduction, training, versions
from l2reg.reproduction import L2Grid, Preset, TStarGrid
from l2reg.training import Curves, sweep

C = 5.0  # the world's t*·λ·η


def run_config():
    config = training.default_config()
    config.optimizer = "sgd"
    return config


SETTINGS = Preset(
    t_star=TStarGrid(config=run_config(), lrs=(0.5, 1.0), l2_lrs=(1e-2, 3e-2), run_length=6 * C),
    l2=L2Grid(
        config=run_config(),
        lrs=(0.5,),
        l2s=(0.0, 1e-2, 1e-1),
        num_steps=1000,
        budgets=(500, 1000),
        scaled_length=C,
        probe_l2=0.2,
        probe_length=6 * C,
        autol2_l2=0.1,
    ),
    seeds=2,
)


def world_sweep(calls):
    """A stand-in for `sweep.run`: accuracy peaks at λ·η·t = C, rising before (λ = 0: rising
    throughout); each call's progress label recorded in `calls`."""

    def run(config, runs, *, evals_per_decade, eval_at, progress):
        calls.append(progress)
        curves = []
        for member in runs:
            extra = np.asarray(eval_at, dtype=float)
            steps = np.union1d(
                np.unique(np.round(np.geomspace(1, member.steps, 40))),
                extra[extra <= member.steps],
            )
            time = member.l2 * member.lr * steps / C if member.l2 else steps / member.steps
            accuracy = 0.5 + 0.4 * time * np.exp(1 - time) + 0.001 * member.seed
            ones = np.ones_like(steps)
            curves.append(
                Curves(
                    steps,
                    1 - accuracy,
                    accuracy,
                    1 - accuracy,
                    accuracy,
                    member.l2 * ones,
                    member.lr * ones,
                    ones,
                )
            )
        return curves

    return run


@pytest.fixture(scope="module")
def first_and_rerun(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("world")
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep, "run", world_sweep(calls))
        first = reproduction.reproduce(str(workdir), SETTINGS, name="world", seeds=range(2))
        first_report = (workdir / "report.md").read_text()
        trained = list(calls)
        rerun = reproduction.reproduce(str(workdir), SETTINGS, name="world", seeds=range(2))
    return workdir, first, first_report, rerun, trained, calls[len(trained) :]


def test_report_and_results_carry_the_version_record(first_and_rerun):
    workdir, _, first_report, *_ = first_and_rerun
    stored = json.loads((workdir / "results.json").read_text())
    environment = stored["environment"]
    assert environment["versions"] == versions.package_versions()
    for package in ("python", "jax", "jaxlib", "flax", "optax", "numpy", "ml_collections"):
        assert package in environment["versions"]
    assert environment["cpu_count"] >= 1 and environment["devices"]
    assert "xla_flags" in environment and environment["platform"]
    version_line, machine_line = versions.markdown(environment)
    assert f"jax {environment['versions']['jax']}" in version_line
    assert version_line in first_report and machine_line in first_report
    assert f"XLA_FLAGS: {environment['xla_flags']}" in machine_line  # tests/conftest.py sets it


def test_the_parts_are_labelled_one_to_four(first_and_rerun):
    *_, trained, rerun_calls = first_and_rerun
    assert trained == [
        "part 1 of 4: t* grid",
        "part 2 of 4: λ grid",
        "part 3 of 4: probe",
        "part 4 of 4: AutoL2",
    ]
    assert rerun_calls == []  # the rerun trained nothing


def test_a_cached_rerun_keeps_the_first_training_time_and_says_what_it_reused(first_and_rerun):
    workdir, first, _, rerun, *_ = first_and_rerun
    assert first["reused_parts"] == []
    assert [p["member_steps"] for p in first["parts"]] == [
        2 * sum(round(6 * C / l2_lr) for l2_lr in (1e-2, 3e-2)) * 2,  # 2 η × 2 seeds
        3 * 1000 * 2,
        2 * round(6 * C / (0.2 * 0.5)),
        4 * 1000 * 2,
    ]
    assert rerun["reused_parts"] == [p["part"] for p in first["parts"]]
    assert rerun["training_seconds"] == pytest.approx(first["training_seconds"])
    assert [p["training_seconds"] for p in rerun["parts"]] == pytest.approx(
        [p["training_seconds"] for p in first["parts"]]
    )
    report = (workdir / "report.md").read_text()
    assert (
        f"Time: training {first['training_seconds']:.0f} s (measured when first trained), this "
        f"run {rerun['elapsed_seconds']:.0f} s; every part reused from the cache, nothing trained."
    ) in report


def test_every_figure_has_a_caption_saying_what_to_look_at(first_and_rerun):
    workdir, *_ = first_and_rerun
    lines = (workdir / "report.md").read_text().splitlines()
    figures = [i for i, line in enumerate(lines) if line.startswith("![")]
    assert len(figures) == 4
    for index in figures:
        name = lines[index].split("(")[-1].rstrip(")")
        assert (workdir / name).stat().st_size > 0
        caption = lines[index + 2]
        assert caption.startswith("*") and caption.endswith("*") and "look" in caption.lower()
