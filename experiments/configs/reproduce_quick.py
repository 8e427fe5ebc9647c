"""The quick reproduction, a smoke test of every part (about a minute on 2 CPU cores, used by
the tests): the default preset's calibration setup, smaller and shorter, and as its held-out
setup the same model at another learning rate (so that its compiled steps are reused), 1 data
draw × 2 seeds.

    python -m experiments.reproduce --preset=quick --workdir=/tmp/reproduce_quick
"""

from ml_collections import config_dict

from experiments.configs import reproduce_default


def get_config() -> config_dict.ConfigDict:
    config = reproduce_default.get_config()
    config.t_star.run.model_options.widths = (64, 64)
    config.t_star.lrs = (0.5, 2.0)
    config.t_star.l2_lrs = (3e-3, 1e-2, 3e-2)
    digits = reproduce_default.digits_setup(budgets=(100, 300, 1_000))
    digits.run.model_options.widths = (64, 64)
    digits.l2s = (0.0, 1e-4, 1e-3, 3e-3, 1e-2)
    digits.probe_l2 = 1e-2
    faster = digits.copy_and_resolve_references()
    faster.role = "held-out"
    faster.lr = 1.0
    faster.probe_l2 = 5e-3
    faster.autol2_l2 = 5e-3
    config.setups = config_dict.ConfigDict({"digits_mse": digits, "digits_mse_faster": faster})
    config.draws = 1
    config.seeds = 2
    config.evals_per_decade = 8
    return config
