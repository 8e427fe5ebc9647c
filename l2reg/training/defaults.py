"""Every field a run config has, with its default: the schema that `config.validate` checks.

Imports ml_collections alone (no JAX), so that loading a config file, which launchers do while
parsing their flags, stays fast and a bad flag is reported at once.
"""

from ml_collections import config_dict


def default_config() -> config_dict.ConfigDict:
    """Every field of a run config, with its default: a small MLP on the embedded digits."""
    config = config_dict.ConfigDict()
    # Model: l2reg.models.create(model, **model_options); 'none' stands for None.
    config.model = "mlp"
    config.model_options = config_dict.ConfigDict(
        {
            "widths": (256, 256),
            "parameterization": "standard",
            "use_bias": True,
            "normalization": "none",
        }
    )
    config.dtype = "float32"  # compute dtype: 'float32' | 'bfloat16' (parameters stay float32)
    # Data: l2reg.data.load(dataset, data_dir=data_dir, **data_options): test_size (mnist1d:
    # an independent test set of that size; None: the standard one), label_noise (a fraction
    # of the training labels moved to another class, e.g. 0.2) and its seed, validation_size
    # (examples carved from the noisy training split into a validation split; 0: none) and
    # its seed. A config may hold only some of these (a free-form field, checked by the data).
    config.dataset = "digits"
    config.data_dir = config_dict.placeholder(str)
    config.data_options = config_dict.ConfigDict(
        {
            "test_size": config_dict.placeholder(int),
            "label_noise": 0.0,
            "label_noise_seed": 0,
            "validation_size": 0,
            "validation_seed": 0,
        }
    )
    config.augment = False
    config.mixup_alpha = 0.0  # mixup weights ~ Beta(α, α); 0 turns mixup off
    # Loss: 'cross_entropy' | 'mse' (½‖f − y‖², y = one-hot or, 'centered', one-hot − 1/K).
    config.loss = "cross_entropy"
    config.mse_targets = "one_hot"
    config.batch_size = 100  # global, split over the devices
    config.eval_batch_size = 400  # capped at the test set rounded up to a multiple of the devices
    config.steps = 3_000
    # Optimizer: 'sgd' | 'momentum' | 'adam'; learning rate η and its schedule.
    config.optimizer = "momentum"
    config.momentum = 0.9
    config.adam = config_dict.ConfigDict({"b1": 0.9, "b2": 0.999, "eps": 1e-8})
    config.lr = 0.01
    config.lr_schedule = "constant"  # 'constant' | 'cosine' | 'step'
    config.lr_step_boundaries = (0.3, 0.6, 0.9)  # fractions of `steps` ('step' schedule)
    config.lr_step_factor = 0.2
    # L2: mode 'none' | 'fixed' | 'autol2' | 'anytime'; λ (AutoL2's and the anytime schedule's
    # initial λ); placement 'coupled' (added to the gradient, as L2 in the loss) | 'decoupled'
    # (weight decay after the optimizer).
    config.l2_mode = "fixed"
    config.l2 = 1e-4
    config.l2_placement = "coupled"
    # The anytime schedule's c (`l2reg.anytime_l2`): relation 1's constant t*·λη, with η the
    # effective η/(1−μ) when λ goes through momentum μ (`recipe.effective_momentum`), as for
    # AutoL2's cooldown; λ(t) = c/(η(t + t0)) from λ(0) = l2.
    config.anytime_c = 1.0
    # AutoL2's settings (`l2reg.autol2`); its cooldown is in units of 1/(λη), η the effective
    # η/(1−μ) when λ goes through momentum μ (`recipe.effective_momentum`).
    config.autol2 = config_dict.ConfigDict(
        {"decay_factor": 10.0, "cooldown": 0.1, "patience": 2, "check_every": 10, "min_l2": 0.0}
    )
    # Loop: a metrics line every `eval_every` steps, checkpoints every `checkpoint_every`.
    config.eval_every = 250
    config.checkpoint_every = 1_000
    config.keep_checkpoints = 3
    config.seed = 0
    return config
