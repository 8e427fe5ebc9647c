"""The full λ-selection study (the protocol's ≥ 3 data draws × ≥ 5 seeds): the default preset's
parts with 5 seeds per draw, the held-out mnist1d setup at budgets up to 10,000 steps, and a
second held-out setup (`mlp_digits_ce`: standard MLP with biases, cross-entropy, momentum).
About an hour on 2 CPU cores.

    python -m experiments.reproduce --preset=study --workdir=/tmp/reproduce_study
"""

from ml_collections import config_dict

from experiments.configs import mlp_digits_ce, reproduce_default


def get_config() -> config_dict.ConfigDict:
    config = reproduce_default.get_config()
    config.setups["mnist1d_batchnorm"] = reproduce_default.mnist1d_setup(
        budgets=(300, 1_000, 3_000, 10_000)
    )
    run = mlp_digits_ce.get_config()
    run.data_options.validation_size = reproduce_default.DIGITS_VALIDATION
    config.setups["digits_ce"] = config_dict.ConfigDict(
        {
            "role": "held-out",
            "run": run,
            "lr": 0.05,  # effective η/(1−μ) = 0.5
            "l2s": (0.0, *reproduce_default.THIRDS.tolist()),
            "budgets": (150, 500, 1_700, 6_000),
            "probe_l2": reproduce_default.PROBE_L2_LR / 0.5,
            "probe_length": 3.0,
            "autol2_l2": reproduce_default.PROBE_L2_LR / 0.5,
            "small_l2": 1e-4,
            "cooldown_in_t_star": 1.0,
        }
    )
    config.seeds = 5
    return config
