"""WRN-28-10 on CIFAR-10: the authors' setup (batch norm, flip/crop augmentation, momentum SGD
η = 0.2, batch 128, 200 epochs, η × 0.2 at 30/60/90% of training), with their mixup off.

λ = 1e-3 is their L2 = 5e-4 (their loss adds L2·Σθ², ours ½λ‖θ‖²). Switches:
  --config.model_options.normalization=none   no batch norm
  --config.model_options.fused_batch_norm=False
                                              flax's batch norm, differentiated by JAX (the
                                              same function; the default's gradient is written
                                              by hand, l2reg.models.batch_norm)
  --config.augment=False                      no augmentation
  --config.mixup_alpha=1.0                    mixup, as the authors' code has by default (α = 1
                                              is the mixup paper's CIFAR-10 choice)
  --config.l2_mode=autol2 --config.l2=0.2     their Figure 1c AutoL2 run (L2 = 0.1 at the start)
  --config.model=wrn16_4, wrn28_1, ...        smaller Wide ResNets
  --config.dtype=bfloat16                     bf16 compute, float32 parameters and optimizer state

Needs CIFAR-10 prepared with TFDS in `data_dir` (`tfds.builder('cifar10').download_and_prepare()`).

    python -m experiments.train --config=experiments/configs/wrn28_10_cifar10.py --workdir=/tmp/wrn
"""

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    # Model: l2reg.models.create(model, **model_options); 'none' stands for None.
    config.model = "wrn28_10"
    config.model_options = config_dict.ConfigDict(
        {
            "parameterization": "standard",
            "use_bias": True,
            "normalization": "batch",
            "fused_batch_norm": True,
        }
    )
    config.dtype = "float32"  # compute dtype: 'float32' | 'bfloat16' (parameters stay float32)
    # Data: l2reg.data.load(dataset, data_dir=data_dir, **data_options).
    config.dataset = "cifar10"
    config.data_dir = config_dict.placeholder(str)
    config.data_options = config_dict.ConfigDict()
    config.augment = True  # 4-pixel pad, random crop, horizontal flip
    config.mixup_alpha = 0.0  # mixup weights ~ Beta(α, α); 0 turns mixup off (authors: on)
    config.loss = "cross_entropy"  # 'cross_entropy' | 'mse'
    config.batch_size = 128  # global, split over the devices
    config.eval_batch_size = 1_000  # capped at the test set rounded up to a multiple of the devices
    config.steps = 78_125  # 200 epochs of 50,000 images
    # Optimizer: 'sgd' | 'momentum' | 'adam'; learning rate η and its schedule.
    config.optimizer = "momentum"
    config.momentum = 0.9
    config.adam = config_dict.ConfigDict({"b1": 0.9, "b2": 0.999, "eps": 1e-8})
    config.lr = 0.2
    config.lr_schedule = "step"  # 'constant' | 'cosine' | 'step'
    config.lr_step_boundaries = (0.3, 0.6, 0.9)  # fractions of `steps` ('step' schedule)
    config.lr_step_factor = 0.2
    # L2: mode 'none' | 'fixed' | 'autol2'; λ (AutoL2's initial λ); placement 'coupled'
    # (added to the gradient, as L2 in the loss) | 'decoupled' (weight decay after the optimizer).
    config.l2_mode = "fixed"
    config.l2 = 1e-3
    config.l2_placement = "coupled"
    # AutoL2's cooldown is cooldown/(λη) steps with the effective η/(1−μ) = 2: 0.4 gives the
    # authors' 0.1/L2 = 0.2/λ steps at the initial η.
    config.autol2 = config_dict.ConfigDict(
        {"decay_factor": 10.0, "cooldown": 0.4, "patience": 2, "check_every": 10, "min_l2": 0.0}
    )
    # Loop: a metrics line every `eval_every` steps, checkpoints every `checkpoint_every`.
    config.eval_every = 390  # about an epoch
    config.checkpoint_every = 3_900
    config.keep_checkpoints = 3
    config.seed = 0
    return config
