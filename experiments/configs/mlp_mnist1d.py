"""MLP 40→128→128→10 on mnist1d, plain SGD, fixed L2: a small task on which L2 clearly helps.

Measured with this setup (standard parameterization, biases, batch 100, η = 0.1, 80k steps):
λ = 2e-3–4e-3 beats λ = 0 by about 5 points of test accuracy on a 10,000-example test set.

    python -m experiments.train --config=experiments/configs/mlp_mnist1d.py --workdir=/tmp/mnist1d
"""

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    # Model: l2reg.models.create(model, **model_options); 'none' stands for None.
    config.model = "mlp"
    config.model_options = config_dict.ConfigDict(
        {
            "widths": (128, 128),
            "parameterization": "standard",
            "use_bias": True,
            "normalization": "none",
        }
    )
    config.dtype = "float32"  # compute dtype: 'float32' | 'bfloat16' (parameters stay float32)
    # Data: l2reg.data.load(dataset, data_dir=data_dir, **data_options).
    config.dataset = "mnist1d"
    config.data_dir = config_dict.placeholder(str)
    # The standard 1,000-example test set is too noisy to compare λ (seeds differ by ~5 points).
    config.data_options = config_dict.ConfigDict({"test_size": 10_000})
    config.augment = False
    config.mixup_alpha = 0.0  # mixup weights ~ Beta(α, α); 0 turns mixup off
    config.loss = "cross_entropy"  # 'cross_entropy' | 'mse'
    config.batch_size = 100  # global, split over the devices
    config.eval_batch_size = 1_000  # capped at the test set rounded up to a multiple of the devices
    config.steps = 80_000
    # Optimizer: 'sgd' | 'momentum' | 'adam'; learning rate η and its schedule.
    config.optimizer = "sgd"
    config.momentum = 0.9
    config.adam = config_dict.ConfigDict({"b1": 0.9, "b2": 0.999, "eps": 1e-8})
    config.lr = 0.1
    config.lr_schedule = "constant"  # 'constant' | 'cosine' | 'step'
    config.lr_step_boundaries = (0.3, 0.6, 0.9)  # fractions of `steps` ('step' schedule)
    config.lr_step_factor = 0.2
    # L2: mode 'none' | 'fixed' | 'autol2'; λ (AutoL2's initial λ); placement 'coupled'
    # (added to the gradient, as L2 in the loss) | 'decoupled' (weight decay after the optimizer).
    config.l2_mode = "fixed"
    config.l2 = 2e-3
    config.l2_placement = "coupled"
    config.autol2 = config_dict.ConfigDict(
        {"decay_factor": 10.0, "cooldown": 0.1, "patience": 2, "check_every": 10, "min_l2": 0.0}
    )
    # Loop: a metrics line every `eval_every` steps, checkpoints every `checkpoint_every`.
    config.eval_every = 1_000
    config.checkpoint_every = 10_000
    config.keep_checkpoints = 3
    config.seed = 0
    return config
