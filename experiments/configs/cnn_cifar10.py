"""Plain CNN (three conv stages, no normalization) on CIFAR-10 without augmentation, SGD,
fixed L2: the paper's CNN setting for the λ×η grids (constant η, no momentum, no augmentation).

Needs CIFAR-10 prepared with TFDS in `data_dir` (`tfds.builder('cifar10').download_and_prepare()`).

    python -m experiments.train --config=experiments/configs/cnn_cifar10.py --workdir=/tmp/cnn
"""

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    # Model: l2reg.models.create(model, **model_options); 'none' stands for None.
    config.model = "cnn"
    config.model_options = config_dict.ConfigDict(
        {
            "channels": (32, 64, 128),
            "parameterization": "standard",
            "use_bias": True,
            "normalization": "none",
        }
    )
    config.dtype = "float32"  # compute dtype: 'float32' | 'bfloat16' (parameters stay float32)
    # Data: l2reg.data.load(dataset, data_dir=data_dir, **data_options).
    config.dataset = "cifar10"
    config.data_dir = config_dict.placeholder(str)
    config.data_options = config_dict.ConfigDict()
    config.augment = False  # 4-pixel pad, random crop, horizontal flip
    config.mixup_alpha = 0.0  # mixup weights ~ Beta(α, α); 0 turns mixup off
    config.loss = "cross_entropy"  # 'cross_entropy' | 'mse'
    config.batch_size = 128  # global, split over the devices
    config.eval_batch_size = 1_000  # capped at the test set rounded up to a multiple of the devices
    config.steps = 50_000
    # Optimizer: 'sgd' | 'momentum' | 'adam'; learning rate η and its schedule.
    config.optimizer = "sgd"
    config.momentum = 0.9
    config.adam = config_dict.ConfigDict({"b1": 0.9, "b2": 0.999, "eps": 1e-8})
    config.lr = 0.05
    config.lr_schedule = "constant"  # 'constant' | 'cosine' | 'step'
    config.lr_step_boundaries = (0.3, 0.6, 0.9)  # fractions of `steps` ('step' schedule)
    config.lr_step_factor = 0.2
    # L2: mode 'none' | 'fixed' | 'autol2'; λ (AutoL2's initial λ); placement 'coupled'
    # (added to the gradient, as L2 in the loss) | 'decoupled' (weight decay after the optimizer).
    config.l2_mode = "fixed"
    config.l2 = 5e-4
    config.l2_placement = "coupled"
    config.autol2 = config_dict.ConfigDict(
        {"decay_factor": 10.0, "cooldown": 0.1, "patience": 2, "check_every": 10, "min_l2": 0.0}
    )
    # Loop: a metrics line every `eval_every` steps, checkpoints every `checkpoint_every`.
    config.eval_every = 500
    config.checkpoint_every = 5_000
    config.keep_checkpoints = 3
    config.seed = 0
    return config
