"""A held-out setup of the λ-selection study: the calibration setup's data (digits, 20% of the
training labels flipped) with another model, loss and optimizer: a standard-parameterization
MLP with biases, cross-entropy, SGD with momentum 0.9 (effective learning rate η/(1−μ) = 0.5,
the calibration setup's).

    python -m experiments.train --config=experiments/configs/mlp_digits_ce.py \
        --workdir=/tmp/digits_ce
"""

from ml_collections import config_dict

from l2reg.training.defaults import default_config


def get_config() -> config_dict.ConfigDict:
    config = default_config()
    config.data_options.label_noise = 0.2
    config.model_options.widths = (256, 256)
    config.loss = "cross_entropy"
    config.optimizer = "momentum"
    config.momentum = 0.9
    config.lr = 0.05
    config.l2 = 1e-4
    config.steps = 6_000
    config.eval_every = 100
    config.checkpoint_every = 2_000
    return config
