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

from l2reg.training.defaults import default_config


def get_config() -> config_dict.ConfigDict:
    config = default_config()
    config.model = "wrn28_10"
    config.model_options = config_dict.ConfigDict(
        {
            "parameterization": "standard",
            "use_bias": True,
            "normalization": "batch",
            "fused_batch_norm": True,
        }
    )
    config.dataset = "cifar10"
    config.augment = True  # 4-pixel pad, random crop, horizontal flip
    config.mixup_alpha = 0.0  # the authors' code has mixup on by default
    config.batch_size = 128  # global, split over the devices
    config.eval_batch_size = 1_000
    config.steps = 78_125  # 200 epochs of 50,000 images
    config.optimizer = "momentum"
    config.momentum = 0.9
    config.lr = 0.2
    config.lr_schedule = "step"  # η × 0.2 at 30%, 60% and 90% of the run
    config.l2 = 1e-3
    # AutoL2's cooldown is cooldown/(λη) steps with the effective η/(1−μ) = 2: 0.4 gives the
    # authors' 0.1/L2 = 0.2/λ steps at the initial η.
    config.autol2.cooldown = 0.4
    config.eval_every = 390  # about an epoch
    config.checkpoint_every = 3_900
    return config
