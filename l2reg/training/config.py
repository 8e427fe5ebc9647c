"""The run config: every field a run reads, its default, and one validation of it.

A config file (experiments/configs/*.py) starts from `default_config()` and sets what its run
changes; `validate` checks a whole config once, before any data is loaded or file written, and
raises a one-line ValueError "config.{field} must be {allowed}, got {value}".
"""

import inspect
import math
from typing import Any

import ml_collections
from ml_collections import config_dict

import l2reg
from l2reg import checks, data
from l2reg.training import recipe

# Free-form fields: their keys are checked by the function they are passed to.
OPEN_FIELDS = ("model_options", "data_options")


def default_config() -> ml_collections.ConfigDict:
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
    # Data: l2reg.data.load(dataset, data_dir=data_dir, **data_options), e.g. data_options
    # {'label_noise': 0.2} replaces 20% of the training labels by another class.
    config.dataset = "digits"
    config.data_dir = config_dict.placeholder(str)
    config.data_options = config_dict.ConfigDict()
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
    # L2: mode 'none' | 'fixed' | 'autol2'; λ (AutoL2's initial λ); placement 'coupled'
    # (added to the gradient, as L2 in the loss) | 'decoupled' (weight decay after the optimizer).
    config.l2_mode = "fixed"
    config.l2 = 1e-4
    config.l2_placement = "coupled"
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


def _check_fields(config: Any, schema: ml_collections.ConfigDict, prefix: str) -> None:
    # Unknown or missing fields, named with their path and the closest known names.
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"{prefix[:-1] or 'config'} must be a ConfigDict, got {config!r}")
    unknown = sorted(set(config.keys()) - set(schema.keys()))
    missing = sorted(set(schema.keys()) - set(config.keys()))
    if unknown or missing:
        parts = [f"unknown {', '.join(prefix + n for n in unknown)}"] if unknown else []
        parts += [f"missing {', '.join(prefix + n for n in missing)}"] if missing else []
        raise ValueError(
            f"{prefix[:-1] or 'config'} must have exactly the fields of "
            f"l2reg.training.config.default_config(): {'; '.join(parts)}"
        )
    for name in schema.keys():
        if isinstance(schema[name], ml_collections.ConfigDict) and name not in OPEN_FIELDS:
            _check_fields(config[name], schema[name], f"{prefix}{name}.")


def _one_of(config: ml_collections.ConfigDict, name: str, allowed: tuple) -> None:
    if config[name] not in allowed:
        raise ValueError(f"config.{name} must be one of {allowed}, got {config[name]!r}")


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raises a one-line ValueError naming the first bad field of `config` (a TypeError for a
    model option of the wrong type), before any work; `num_devices` must divide the batches."""
    _check_fields(config, default_config(), "config.")
    _one_of(config, "l2_mode", recipe.L2_MODES)
    _one_of(config, "l2_placement", recipe.L2_PLACEMENTS)
    _one_of(config, "optimizer", recipe.OPTIMIZERS)
    _one_of(config, "lr_schedule", recipe.LR_SCHEDULES)
    _one_of(config, "loss", recipe.LOSSES)
    _one_of(config, "mse_targets", recipe.MSE_TARGETS)
    _one_of(config, "dtype", tuple(recipe.DTYPES))
    finite = math.isfinite
    checks.number("config.l2", config.l2, lambda x: finite(x) and x >= 0, "finite and >= 0")
    checks.number("config.lr", config.lr, lambda x: finite(x) and x > 0, "finite and > 0")
    checks.number("config.momentum", config.momentum, lambda x: 0 <= x < 1, "in [0, 1)")
    checks.number(
        "config.mixup_alpha",
        config.mixup_alpha,
        lambda x: finite(x) and x >= 0,
        "finite and >= 0 (0 turns mixup off)",
    )
    for name in ("steps", "batch_size", "eval_batch_size", "eval_every", "checkpoint_every"):
        checks.integer(f"config.{name}", config[name], maximum=checks.INT32_MAX)
    checks.integer("config.keep_checkpoints", config.keep_checkpoints)
    checks.integer("config.seed", config.seed, minimum=checks.INT32_MIN, maximum=checks.INT32_MAX)
    for name in ("batch_size", "eval_batch_size"):
        if config[name] % num_devices:
            raise ValueError(
                f"config.{name} must be divisible by the device count {num_devices}, "
                f"got {config[name]}"
            )
    boundaries = tuple(config.lr_step_boundaries)
    if not (all(0 < b < 1 for b in boundaries) and list(boundaries) == sorted(set(boundaries))):
        raise ValueError(
            "config.lr_step_boundaries must be increasing fractions of the run in (0, 1), "
            f"got {boundaries}"
        )
    if config.lr_schedule == "step":
        # Boundaries that round to one step would merge; one at `steps` would never be reached.
        at = recipe.lr_boundary_steps(config)
        if not (len(set(at)) == len(at) and all(1 <= step < config.steps for step in at)):
            raise ValueError(
                f"config.lr_step_boundaries must fall on distinct steps in "
                f"[1, {config.steps - 1}] of config.steps={config.steps}, got {boundaries} "
                f"(round(fraction·steps) gives {at})"
            )
    checks.number(
        "config.lr_step_factor",
        config.lr_step_factor,
        lambda x: finite(x) and x > 0,
        "finite and > 0",
    )
    if config.optimizer == "adam":
        for name in ("b1", "b2"):
            checks.number(
                f"config.adam.{name}", config.adam[name], lambda x: 0 <= x < 1, "in [0, 1)"
            )
        checks.number(
            "config.adam.eps", config.adam.eps, lambda x: finite(x) and x > 0, "finite and > 0"
        )
    try:
        if config.l2_mode == "autol2":
            l2reg.transforms.validate_autol2(config.l2, config.lr, **config.autol2)
        elif config.l2_mode == "fixed":
            l2reg.transforms.validate_add_l2(config.l2)
    except ValueError as error:  # it names the argument: say where it lives in the config
        where = "config." if config.l2_mode == "fixed" else "config.autol2."
        raise ValueError(f"{where}{error}") from None
    if config.l2_mode == "autol2" and config.l2 == 0:
        raise ValueError("config.l2 must be > 0 with l2_mode='autol2', got 0")
    options = config.data_options.to_dict()
    known = [name for name in inspect.signature(data.check_options).parameters if name != "name"]
    for name in options:
        if name not in known or name == "data_dir":
            allowed = ", ".join(n for n in known if n != "data_dir")
            raise ValueError(f"config.data_options must hold only {allowed}, got {name!r}")
    data.check_options(config.dataset, **options)
    # The model's name and options, before the data set that gives its number of classes is
    # loaded: building the (unbound) module checks them and allocates nothing.
    recipe.create_model(config, num_classes=1, axis_name=None)
