"""The runners' caches: reused for the same settings and code, never across a code change."""

import numpy as np

from l2reg import sweep
from l2reg.reproduction import SweepRunner, runners

SETUP = sweep.Setup("digits", loss="mse")
CONFIGS = [sweep.Config(1e-3, 0.5, 0, 20), sweep.Config(1e-2, 0.5, 1, 30)]


def fake_training(trained, eval_at_seen=None):
    def run(setup, configs, *, evals_per_decade, eval_at):
        trained.append(len(configs))
        if eval_at_seen is not None:
            eval_at_seen.append(eval_at)
        return [
            sweep.Curves(*(np.arange(1.0, 4.0) * (index + 1),) * 5)
            for index, _ in enumerate(configs)
        ]

    return run


def test_cache_is_reused_for_the_same_settings_and_code_only(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(sweep, "run", fake_training(trained))
    runner = SweepRunner(str(tmp_path), SETUP, evals_per_decade=4)
    first = runner("part", CONFIGS)
    again = runner("part", CONFIGS)
    assert trained == [2]
    for stored, fresh in zip(again, first, strict=True):
        for field in sweep.Curves._fields:
            np.testing.assert_array_equal(getattr(stored, field), getattr(fresh, field))
    runner("part", CONFIGS[:1])  # other settings
    SweepRunner(str(tmp_path), SETUP, evals_per_decade=8)("part", CONFIGS)
    assert trained == [2, 1, 2]
    monkeypatch.setattr(runners, "training_code_digest", lambda: "another version of the code")
    runner("part", CONFIGS)
    assert trained == [2, 1, 2, 2]
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_extra_evaluation_steps_reach_the_sweep_and_key_the_cache(tmp_path, monkeypatch):
    trained, eval_at_seen = [], []
    monkeypatch.setattr(sweep, "run", fake_training(trained, eval_at_seen))
    runner = SweepRunner(str(tmp_path), SETUP, evals_per_decade=4)
    runner("part", CONFIGS)
    runner("part", CONFIGS, eval_at=(7, 25))
    runner("part", CONFIGS, eval_at=(7, 25))
    assert trained == [2, 2]
    assert eval_at_seen == [(), (7, 25)]


def test_code_digest_covers_the_training_code_not_the_analysis(tmp_path):
    package = tmp_path / "l2reg"
    (package / "reproduction").mkdir(parents=True)
    (package / "sweep.py").write_text("LR = 0.5\n")
    (package / "reproduction" / "report.py").write_text("TITLE = 'a'\n")
    digest = runners.source_digest(package)
    (package / "reproduction" / "report.py").write_text("TITLE = 'b'\n")
    assert runners.source_digest(package) == digest
    (package / "sweep.py").write_text("LR = 0.25\n")
    changed = runners.source_digest(package)
    assert changed != digest
    (package / "models").mkdir()
    (package / "models" / "mlp.py").write_text("")
    assert runners.source_digest(package) != changed


def test_trainer_runs_are_keyed_by_their_config_and_the_training_code(tmp_path, monkeypatch):
    from experiments.configs import mlp_digits
    from l2reg import train
    from l2reg.reproduction import TrainerRunner

    folders = []

    def fake_train_and_evaluate(config, workdir):
        folders.append(workdir)

    monkeypatch.setattr(train, "train_and_evaluate", fake_train_and_evaluate)
    monkeypatch.setattr(train, "read_metrics", lambda workdir: [])
    runner = TrainerRunner(str(tmp_path), mlp_digits.get_config(), "mlp_digits", evals=4)
    runner("part", CONFIGS[:1])
    runner("part", CONFIGS[:1])
    assert folders[0] == folders[1]
    runner("part", CONFIGS[1:])  # another configuration
    monkeypatch.setattr(runners, "training_code_digest", lambda: "another version of the code")
    runner("part", CONFIGS[:1])
    assert len(set(folders)) == 3 and folders[3] != folders[0]
