"""Plain CNN (three conv stages, no normalization) on CIFAR-10 without augmentation, SGD,
fixed L2: the paper's CNN setting for the λ×η grids (constant η, no momentum, no augmentation).

Needs CIFAR-10 prepared with TFDS in `data_dir` (`tfds.builder('cifar10').download_and_prepare()`).

    python -m experiments.train --config=experiments/configs/cnn_cifar10.py --workdir=/tmp/cnn
"""

from ml_collections import config_dict

from l2reg.training.defaults import default_config


def get_config() -> config_dict.ConfigDict:
    config = default_config()
    config.model = "cnn"
    config.model_options = config_dict.ConfigDict(
        {
            "channels": (32, 64, 128),
            "parameterization": "standard",
            "use_bias": True,
            "normalization": "none",
        }
    )
    config.dataset = "cifar10"
    config.batch_size = 128
    config.eval_batch_size = 1_000
    config.steps = 50_000
    config.optimizer = "sgd"
    config.lr = 0.05
    config.l2 = 5e-4
    config.eval_every = 500
    config.checkpoint_every = 5_000
    return config
