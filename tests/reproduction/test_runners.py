"""The runners' caches: reused for the same settings and code, never across a code change."""

import os
import types

import numpy as np
import pytest

from experiments.configs import mlp_digits
from l2reg.reproduction import SweepRunner, TrainerRunner, runners
from l2reg.training import Curves, loop, rundir, sweep

CONFIG = mlp_digits.get_config()
RUNS = [sweep.Run(1e-3, 0.5, 0, 20), sweep.Run(1e-2, 0.5, 1, 30)]


def fake_training(trained, eval_at_seen=None):
    def run(config, runs, *, evals_per_decade, eval_at, progress):
        trained.append(len(runs))
        if eval_at_seen is not None:
            eval_at_seen.append(eval_at)
        return [Curves(*(np.arange(1.0, 4.0) * (index + 1),) * 8) for index, _ in enumerate(runs)]

    return run


def test_cache_is_reused_for_the_same_settings_and_code_only(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(sweep, "run", fake_training(trained))
    runner = SweepRunner(str(tmp_path), CONFIG, evals_per_decade=4)
    first = runner("part", RUNS)
    again = runner("part", RUNS)
    assert trained == [2]
    for stored, fresh in zip(again, first, strict=True):
        for field in Curves._fields:
            np.testing.assert_array_equal(getattr(stored, field), getattr(fresh, field))
    runner("part", RUNS[:1])  # other runs
    SweepRunner(str(tmp_path), CONFIG, evals_per_decade=8)("part", RUNS)
    other_config = CONFIG.copy_and_resolve_references()
    other_config.batch_size = 50
    SweepRunner(str(tmp_path), other_config, evals_per_decade=4)("part", RUNS)
    assert trained == [2, 1, 2, 2]
    monkeypatch.setattr(
        runners, "training_code_digest", lambda driver="trainer": "another version of the code"
    )
    runner("part", RUNS)
    assert trained == [2, 1, 2, 2, 2]
    assert len(list((tmp_path / "cache").iterdir())) == 5


def test_extra_evaluation_steps_reach_the_sweep_and_key_the_cache(tmp_path, monkeypatch):
    trained, eval_at_seen = [], []
    monkeypatch.setattr(sweep, "run", fake_training(trained, eval_at_seen))
    runner = SweepRunner(str(tmp_path), CONFIG, evals_per_decade=4)
    runner("part", RUNS)
    runner("part", RUNS, eval_at=(7, 25))
    runner("part", RUNS, eval_at=(7, 25))
    assert trained == [2, 2]
    assert eval_at_seen == [(), (7, 25)]


def test_a_corrupt_cache_file_is_moved_aside_and_retrained(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(sweep, "run", fake_training(trained))
    runner = SweepRunner(str(tmp_path), CONFIG, evals_per_decade=4)
    runner("part", RUNS)
    (path,) = (tmp_path / "cache").iterdir()
    path.write_bytes(b"cut short")
    curves = runner("part", RUNS)
    assert trained == [2, 2]
    np.testing.assert_array_equal(curves[1].steps, [2.0, 4.0, 6.0])
    assert (tmp_path / "cache" / (path.name + ".corrupt")).read_bytes() == b"cut short"


def test_code_digest_covers_the_training_code_not_the_analysis(tmp_path):
    package = tmp_path / "l2reg"
    (package / "reproduction").mkdir(parents=True)
    (package / "training").mkdir()
    (package / "training" / "sweep.py").write_text("LR = 0.5\n")
    (package / "reproduction" / "report.py").write_text("TITLE = 'a'\n")
    digest = runners.source_digest(package)
    (package / "reproduction" / "report.py").write_text("TITLE = 'b'\n")
    assert runners.source_digest(package) == digest
    (package / "training" / "sweep.py").write_text("LR = 0.25\n")
    changed = runners.source_digest(package)
    assert changed != digest
    (package / "models").mkdir()
    (package / "models" / "mlp.py").write_text("")
    assert runners.source_digest(package) != changed


def test_a_sweep_is_keyed_by_the_code_it_trains_with_not_the_trainers_own(tmp_path):
    package = tmp_path / "l2reg"
    (package / "training").mkdir(parents=True)
    (package / "training" / "sweep.py").write_text("LR = 0.5\n")
    (package / "training" / "checkpoints.py").write_text("KEEP = 3\n")
    sweep_digest = runners.source_digest(package, runners.NOT_SWEEP)
    trainer_digest = runners.source_digest(package)
    (package / "training" / "checkpoints.py").write_text("KEEP = 4\n")
    assert runners.source_digest(package, runners.NOT_SWEEP) == sweep_digest
    assert runners.source_digest(package) != trainer_digest
    (package / "training" / "sweep.py").write_text("LR = 0.25\n")
    assert runners.source_digest(package, runners.NOT_SWEEP) != sweep_digest


def test_a_trainer_run_stopped_by_sigterm_stops_the_runner_and_is_not_recorded_as_finished(
    tmp_path, monkeypatch
):
    def preempted(config, workdir):
        os.makedirs(workdir, exist_ok=True)
        return types.SimpleNamespace(step=config.steps // 2)  # saved at half way, returned

    monkeypatch.setattr(loop, "train_and_evaluate", preempted)
    runner = TrainerRunner(str(tmp_path), CONFIG, "mlp_digits", evals=4)
    with pytest.raises(loop.StoppedEarly, match=r"stopped by SIGTERM at step 10 of 20 in "):
        runner("part", RUNS[:1])
    # No record of a finished run: a rerun trains it (resuming from its checkpoint).
    assert not list((tmp_path / "runs").glob("*.seconds.json"))
    assert runner.history == []


def test_trainer_runs_are_keyed_by_their_config_and_the_training_code(tmp_path, monkeypatch):
    folders, configs = [], []

    def fake_train_and_evaluate(config, workdir):
        folders.append(workdir)
        configs.append(config)
        return types.SimpleNamespace(step=config.steps)  # finished

    monkeypatch.setattr(loop, "train_and_evaluate", fake_train_and_evaluate)
    monkeypatch.setattr(rundir, "read_curves", lambda workdir: None)
    runner = TrainerRunner(str(tmp_path), CONFIG, "mlp_digits", evals=4)
    runner("part", RUNS[:1])
    runner("part", RUNS[:1])
    assert folders[0] == folders[1]
    runner("part", RUNS[1:])  # another run
    monkeypatch.setattr(
        runners, "training_code_digest", lambda driver="trainer": "another version of the code"
    )
    runner("part", RUNS[:1])
    assert len(set(folders)) == 3 and folders[3] != folders[0]
    # Each run trains its own config (`Run.config`), evaluated `evals` times.
    expected = RUNS[1].config(CONFIG)
    expected.eval_every, expected.checkpoint_every = 30 // 4, 30 // 4
    assert configs[2].to_dict() == expected.to_dict()


def test_history_says_what_was_reused_and_keeps_the_first_training_time(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "run", fake_training([]))
    runner = SweepRunner(str(tmp_path / "sweep"), CONFIG, evals_per_decade=4)
    runner("t_star", RUNS)
    runner("t_star", RUNS)
    trained, reused = runner.history
    assert (trained.reused, reused.reused) == (False, True)
    assert reused.source == trained.source and reused.source.endswith(".npz")
    assert reused.training_seconds == trained.training_seconds > 0

    monkeypatch.setattr(
        loop, "train_and_evaluate", lambda config, workdir: types.SimpleNamespace(step=config.steps)
    )
    monkeypatch.setattr(rundir, "read_curves", lambda workdir: None)
    runner = TrainerRunner(str(tmp_path / "trainer"), CONFIG, "mlp_digits", evals=4)
    runner("probe", RUNS)
    runner("probe", RUNS)
    runner("probe", [*RUNS[:1], sweep.Run(3e-3, 0.5, 0, 40)])  # one run new: not all reused
    assert [call.reused for call in runner.history] == [False, True, False]
    assert runner.history[1].training_seconds == pytest.approx(runner.history[0].training_seconds)
