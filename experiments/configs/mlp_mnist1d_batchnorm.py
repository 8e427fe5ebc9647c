"""A held-out setup of the λ-selection study: a batch-norm MLP on mnist1d with cross-entropy,
plain SGD, a 10,000-example test set (the non-lazy regime: batch norm makes the loss invariant
to the scale of the hidden weights, so L2 acts through the effective learning rate).

Hidden layers are Linear (no bias) → BatchNorm → ReLU; the study never tunes anything on it.

    python -m experiments.train --config=experiments/configs/mlp_mnist1d_batchnorm.py \
        --workdir=/tmp/mnist1d_batchnorm
"""

from ml_collections import config_dict

from l2reg.training.defaults import default_config


def get_config() -> config_dict.ConfigDict:
    config = default_config()
    config.dataset = "mnist1d"
    config.data_options.test_size = 10_000
    config.model_options.widths = (128, 128)
    config.model_options.use_bias = False
    config.model_options.normalization = "batch"
    config.loss = "cross_entropy"
    config.optimizer = "sgd"
    config.lr = 0.3
    config.l2 = 1e-3
    config.eval_batch_size = 1_000
    config.steps = 10_000
    config.eval_every = 500
    config.checkpoint_every = 5_000
    return config
