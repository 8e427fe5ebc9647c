"""The default reproduction: every part on the noisy-label digits setup (`mlp_digits_noisy`),
3 seeds, as vmapped sweeps (≤ 10 minutes on 2 CPU cores).

    python -m experiments.reproduce --workdir=/tmp/reproduce
    python -m experiments.reproduce --config=experiments/configs/reproduce_default.py \
        --config.seeds=5 --workdir=/tmp/reproduce

Fields (read by `l2reg.reproduction.Preset.from_config`): `t_star` and `l2` hold each grid's
fields (`l2reg.reproduction.TStarGrid`, `L2Grid`) with the trainer config of its runs as `run`.
"""

import numpy as np
from ml_collections import config_dict

from experiments.configs import mlp_digits_noisy


def get_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    config.t_star = config_dict.ConfigDict(
        {
            "run": mlp_digits_noisy.get_config(),
            "lrs": (0.5, 1.0, 2.0),
            "l2_lrs": tuple(np.geomspace(2e-4, 2e-2, 5).tolist()),
            "run_length": 3.0,
        }
    )
    config.l2 = config_dict.ConfigDict(
        {
            "run": mlp_digits_noisy.get_config(),
            "lrs": (0.5, 2.0),
            "l2s": (0.0, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
            "num_steps": 6_000,
            "budgets": (600, 2_000, 6_000),
            # Read at 1/(λη), near t*: runs of this setup collapse after their peak.
            "scaled_length": 1.0,
            "probe_l2": 3e-3,
            "probe_length": 3.0,
            "autol2_l2": 3e-3,
        }
    )
    config.seeds = 3
    config.evals_per_decade = 12
    config.driver = "sweep"
    config.trainer_evals = 100
    return config
