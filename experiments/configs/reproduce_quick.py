"""The quick reproduction, a smoke test of every part (about a minute on 2 CPU cores, used by
the tests): part 1 on the clean-label NTK MLP with MSE on digits, parts 2–4 on a batch-norm
MLP with cross-entropy on mnist1d, which shows relation 2.

    python -m experiments.reproduce --preset=quick --workdir=/tmp/reproduce_quick
"""

from ml_collections import config_dict

from experiments.configs import mlp_digits_noisy
from l2reg.training.defaults import default_config


def get_config() -> config_dict.ConfigDict:
    clean = mlp_digits_noisy.get_config()
    clean.model_options.widths = (128, 128)
    clean.data_options = config_dict.ConfigDict()
    batch_norm = default_config()
    batch_norm.dataset = "mnist1d"
    batch_norm.model_options = config_dict.ConfigDict(
        {"widths": (64, 64), "use_bias": False, "normalization": "batch"}
    )
    batch_norm.optimizer = "sgd"
    config = config_dict.ConfigDict()
    config.t_star = config_dict.ConfigDict(
        {"run": clean, "lrs": (0.5, 1.0, 2.0), "l2_lrs": (1e-3, 3e-3, 1e-2), "run_length": 3.0}
    )
    config.l2 = config_dict.ConfigDict(
        {
            "run": batch_norm,
            "lrs": (0.3,),
            "l2s": (0.0, 1e-3, 1e-2, 1e-1),
            "num_steps": 1_500,
            "budgets": (300, 1_500),
            "scaled_length": 10.0,
            "probe_l2": 1e-1,
            "probe_length": 3.0,
            "autol2_l2": 1e-1,
        }
    )
    config.seeds = 1
    config.evals_per_decade = 8
    config.driver = "sweep"
    config.trainer_evals = 100
    return config
