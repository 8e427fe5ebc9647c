"""The reproduction's report: its version record, the summary of goals against results.json's
flags, the protocol before the results, one plot per setup, the runner calls named by part, and
a cached rerun that trains nothing and keeps the first training time; on a world of curves that
a stand-in for `sweep.run` makes up (nothing trains)."""

import copy
import json

import numpy as np
import pytest

from l2reg import reproduction, training, versions
from l2reg.reproduction import Preset, Setup, TStarGrid, relation1, report, selection
from l2reg.training import Curves, sweep

C = 5.0  # the world's t*·λ·η


def run_config():
    config = training.default_config()
    config.optimizer = "sgd"
    return config


def make_setup(name: str, role: str) -> Setup:
    return Setup(
        name=name,
        role=role,
        config=run_config(),
        lr=0.5,
        l2s=(0.0, 1e-3, 1e-2, 3e-2, 1e-1),
        budgets=(100, 300, 1_000),
        probe_l2=0.2,  # t* = C/(0.2 · 0.5) = 50 steps of a 300-step probe
        probe_length=6 * C,
        autol2_l2=0.1,
        small_l2=1e-3,
    )


SETTINGS = Preset(
    t_star=TStarGrid(
        config=run_config(), lrs=(0.5, 1.0), l2_lrs=(1e-3, 1e-2, 1e-1), run_length=6 * C
    ),
    setups=(make_setup("calib", "calibration"), make_setup("held_out", "held-out")),
    draws=2,
    seeds=1,
)


def world_sweep(calls, t_star_train_accuracy: float = 1.0):
    """A stand-in for `sweep.run`: a fixed λ > 0 peaks at λ·η·t = C, λ = 0 rises throughout,
    every schedule sits at 0.88; each call's progress label and `eval_at` recorded in `calls`.
    Every run fits its training labels, except relation 1's at `t_star_train_accuracy`."""

    def run(config, runs, *, evals_per_decade, eval_at, progress):
        calls.append((progress, tuple(eval_at)))
        curves = []
        for member in runs:
            steps = sweep.eval_steps(member.steps, evals_per_decade, eval_at).astype(float)
            if member.l2_mode != "fixed":
                accuracy = np.full_like(steps, 0.88)
            elif member.l2:
                time = member.l2 * member.lr * steps / C
                accuracy = 0.5 + 0.4 * time * np.exp(1 - time)
            else:
                accuracy = 0.5 + 0.3 * steps / member.steps
            accuracy = accuracy + 0.001 * member.seed
            ones = np.ones_like(steps)
            train = ones * (t_star_train_accuracy if progress.startswith("relation 1") else 1.0)
            curves.append(
                Curves(
                    steps, 1 - accuracy, train, 1 - accuracy, accuracy, member.l2 * ones, ones, ones
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
        first = reproduction.reproduce(str(workdir), SETTINGS, name="world")
        first_report = (workdir / "report.md").read_text()
        trained = list(calls)
        rerun = reproduction.reproduce(str(workdir), SETTINGS, name="world")
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


def test_runner_calls_name_their_part_and_draw_in_the_planned_order(first_and_rerun):
    _, first, *_, trained, rerun_calls = first_and_rerun
    budgets = (100, 300, 1_000)
    expected = [("relation 1: t* grid (draw 0)", ()), ("relation 1: t* grid (draw 1)", ())]
    for setup, name in zip(SETTINGS.setups, ("calib", "held_out"), strict=True):
        probe_steps = selection.probe_runs(setup, SETTINGS.replicas())[0][1].steps
        # Evenly, 60 times, as suggest_l2 evaluates its probe.
        probe_evals = tuple(round(k * probe_steps / 60) for k in range(1, 61))
        for part, eval_at in (
            ("λ grid", budgets),  # read at every budget, so evaluated after each
            ("probe", probe_evals),
            ("predicted λ", ()),
            ("schedules", budgets),
        ):
            expected += [(f"{name}: {part} (draw {draw})", eval_at) for draw in (0, 1)]
    assert trained == expected  # the progress bars' labels
    assert rerun_calls == []  # the rerun trained nothing
    # Each call's runs and member-steps, as planned before the first one trained.
    planned = reproduction._planned(SETTINGS, SETTINGS.replicas())
    assert [p["name"] for p in first["parts"]] == list(planned) == [name for name, _ in expected]
    assert [p["member_steps"] for p in first["parts"]] == list(planned.values())
    assert (
        first["parts"][0]["member_steps"]
        == sum(round(6 * C / l2_lr) for l2_lr in (1e-3, 1e-2, 1e-1)) * 2
    )
    assert first["parts"][2]["runs"] == 5 and first["parts"][2]["member_steps"] == 5 * 1_000


def test_a_cached_rerun_reuses_every_call_and_keeps_the_first_training_time(first_and_rerun):
    workdir, first, _, rerun, *_ = first_and_rerun
    assert first["reused_parts"] == []
    assert rerun["reused_parts"] == [p["part"] for p in first["parts"]]
    assert all(p["reused"] for p in rerun["parts"])
    assert rerun["training_seconds"] == pytest.approx(first["training_seconds"])
    assert [p["training_seconds"] for p in rerun["parts"]] == pytest.approx(
        [p["training_seconds"] for p in first["parts"]]
    )
    # The same curves give the same analysis.
    assert rerun["relation_1"] == first["relation_1"] and rerun["setups"] == first["setups"]
    lines = (workdir / "report.md").read_text().splitlines()
    assert lines[2] == (
        f"Replicas: 2 data draws × 1 seeds = 2. Time: training "
        f"{first['training_seconds']:.0f} s (measured when first trained), this run "
        f"{rerun['elapsed_seconds']:.0f} s; every part reused from the cache, nothing trained."
    )


def test_the_time_line_says_what_came_from_the_cache():
    parts = [{"part": "a"}, {"part": "b"}, {"part": "c"}]
    line = report.time_line(
        {"reused_parts": ["a"], "parts": parts, "training_seconds": 12.4, "elapsed_seconds": 3.6}
    )
    assert line == (
        "Time: training 12 s (measured when first trained), this run 4 s; 1 of 3 runner calls "
        "reused from the cache."
    )
    line = report.time_line(
        {"reused_parts": [], "parts": parts, "training_seconds": None, "elapsed_seconds": 1}
    )
    assert line.startswith("Time: training an unrecorded time (measured when first trained)")
    assert line.endswith("; every part trained in this run.")


def summary_table(text: str) -> list[list[str]]:
    """The cells of the summary table's rows (its header and rule left out)."""
    lines = text.splitlines()
    start = lines.index("| goal | setup | measured | verdict |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def met_flags(results: dict) -> list[tuple[str, bool]]:
    """(setup, met) of every goal, in the summary table's order."""
    flags = [("calibration", results["relation_1"]["met"])]
    for setup in results["setups"]:
        name = f"{setup['setup']} ({setup['role']})"
        flags += [(name, setup["relation_2"]["met"]), (name, setup["prediction"]["met"])]
        flags.append((name, selection.fall_prediction(setup)["held"]))
        flags += [(name, s["met"]) for s in setup["schedules"]["by_schedule"].values()]
    return flags


def test_the_summary_table_marks_every_goal_as_results_json_does(first_and_rerun):
    workdir, first, first_report, *_ = first_and_rerun
    stored = json.loads((workdir / "results.json").read_text())
    rows = summary_table(first_report)
    assert len(rows) == 1 + 2 * (3 + len(selection.SCHEDULES))
    verdict = {"**met**": True, "**missed**": False, "no prediction": None}
    verdicts = [(row[1], verdict[row[3]]) for row in rows]
    assert verdicts == met_flags(first) == met_flags(stored)
    # The world's probes fall with their training accuracy (L2's fall) and its λ_opt goes as
    # 1/T: the fall's prediction holds on both setups.
    assert [selection.fall_prediction(setup)["held"] for setup in first["setups"]] == [True] * 2
    # The world decides some of them: t* = C/(λη) exactly, some λ > 0 well above λ = 0, and
    # every schedule 2 points below the envelope.
    assert first["relation_1"]["met"]
    assert all(setup["relation_2"]["met"] for setup in first["setups"])
    assert not any(
        s["met"] for setup in first["setups"] for s in setup["schedules"]["by_schedule"].values()
    )
    assert (
        rows[0][0].startswith("relation 1:")
        and relation1.headline(first["relation_1"]) == rows[0][2]
    )


def test_the_protocol_comes_before_the_results_and_each_setup_has_its_plot(first_and_rerun):
    workdir, _, first_report, *_ = first_and_rerun
    lines = first_report.splitlines()
    order = [
        lines.index(heading)
        for heading in (
            "## Summary",
            "## Protocol",
            "## 1. Relation 1: t* ∝ 1/(λη)",
            "## 2. Choosing λ: relation 3, relation 2 and schedules against the envelope",
        )
    ]
    assert order == sorted(order)
    protocol = "\n".join(lines[order[1] : order[2]])
    assert all(line in protocol for line in report.PROTOCOL)
    assert relation1.RULES in protocol and first_report.count(relation1.RULES) == 1
    figures = [line for line in lines if line.startswith("![")]
    assert figures == [
        "![t* vs λη](t_star.png)",
        "![calib](selection-calib.png)",
        "![held_out](selection-held-out.png)",
    ]
    # Each setup's section comes before its plot, the calibration setup first.
    for name, role in (("calib", "calibration"), ("held_out", "held-out")):
        heading = lines.index(f"### {name} ({role})")
        assert heading < lines.index(f"![{name}]({reproduction.plot_name(name)})")
    pngs = sorted(path.name for path in workdir.glob("*.png"))
    assert pngs == ["selection-calib.png", "selection-held-out.png", "t_star.png"]
    for name in pngs:
        assert (workdir / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # Beside them only calibration.json, report.md and results.json (and the cache folder): no
    # staging left.
    files = sorted(path.name for path in workdir.iterdir() if path.name != "cache")
    assert files == ["calibration.json", "report.md", "results.json", *pngs]
    calibration = json.loads((workdir / reproduction.CALIBRATION_FILE).read_text())
    results = json.loads((workdir / "results.json").read_text())
    assert calibration == selection.calibration_record(results)


def test_results_are_strict_json(first_and_rerun):
    workdir, *_ = first_and_rerun

    def no_constants(name):
        raise AssertionError(f"results.json holds {name}, which JSON does not allow")

    stored = json.loads((workdir / "results.json").read_text(), parse_constant=no_constants)
    assert stored["preset"] == "world" and stored["draws"] == 2 and stored["seeds"] == 1
    assert stored["replicas"] == [[0, 0], [1, 0]]
    assert [setup["setup"] for setup in stored["setups"]] == ["calib", "held_out"]


def test_plot_names_are_the_setup_names_letters_and_digits():
    assert reproduction.plot_name("digits_mse") == "selection-digits-mse.png"
    assert reproduction.plot_name("_Mnist1D__bn_") == "selection-mnist1d-bn.png"


def test_a_schedule_equal_to_the_envelope_shows_as_zero_points(first_and_rerun):
    _, first, *_ = first_and_rerun
    results = copy.deepcopy(first)
    schedule = results["setups"][0]["schedules"]["by_schedule"]["AutoL2 (released)"]
    for row in schedule["budgets"]:
        row["vs_envelope"]["mean"] = 0.0
    row = next(r for r in report.summary_rows(results) if r.startswith("| AutoL2 (released)"))
    assert "| worst mean +0.0 points |" in row


def test_a_relation_1_that_keeps_no_run_is_reported_as_undefined(tmp_path, monkeypatch):
    # Relation 1's runs never fit their training labels: rule (a) excludes every one.
    monkeypatch.setattr(sweep, "run", world_sweep([], t_star_train_accuracy=0.1))
    results = reproduction.reproduce(str(tmp_path), SETTINGS, name="world")
    assert results["relation_1"]["c"]["mean"] is None and not results["relation_1"]["met"]
    assert "**missed**" in (tmp_path / "report.md").read_text()
