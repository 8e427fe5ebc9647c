"""The paper's setup through the trainer, for an accelerator: WRN-28-10 on CIFAR-10, plain SGD
without augmentation for the relations (as the authors' λ×η grids), batch 128; every run in
`workdir/runs/`. Needs CIFAR-10 prepared with TFDS (`--config.t_star.run.data_dir=...` and
`--config.setups.cifar10_wrn.run.data_dir=...`).

    python -m experiments.reproduce --preset=paper --workdir=/tmp/reproduce_paper
"""

import numpy as np
from ml_collections import config_dict

from experiments.configs import wrn28_10_cifar10


def _run() -> config_dict.ConfigDict:
    config = wrn28_10_cifar10.get_config()
    config.optimizer = "sgd"
    config.augment = False
    return config


def get_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    config.t_star = config_dict.ConfigDict(
        {
            "run": _run(),
            "lrs": (0.05, 0.1, 0.2),
            "l2_lrs": tuple(np.geomspace(5e-5, 5e-3, 5).tolist()),
            "run_length": 2.0,
        }
    )
    run = _run()
    run.data_options.validation_size = 5_000  # of CIFAR-10's 50,000 training images
    config.setups = config_dict.ConfigDict(
        {
            "cifar10_wrn": {
                "role": "calibration",
                "run": run,
                "lr": 0.1,
                "l2s": (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                # Multiples of the trainer's evaluation interval, 39,000 // 100 steps; 100
                # epochs at the end.
                "budgets": (1_170, 3_900, 11_700, 39_000),
                "probe_l2": 2e-2,  # the authors' probe, L2 = 0.01 in their units
                "probe_length": 2.0,
                "autol2_l2": 0.2,  # their Figure 1c start, L2 = 0.1
                "small_l2": 1e-4,
                "cooldown_in_t_star": 1.0,
            }
        }
    )
    config.draws = 1
    config.seeds = 1
    config.evals_per_decade = 12
    config.driver = "trainer"
    config.trainer_evals = 100
    return config
