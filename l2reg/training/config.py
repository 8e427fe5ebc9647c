"""One validation of a run config (its fields and defaults: `defaults.default_config`).

A config file (experiments/configs/*.py) starts from `default_config()` and sets what its run
changes; `validate` checks a whole config once, before any data is loaded or file written, and
raises a one-line ValueError "config.{field} must be {allowed}, got {value}".
"""

import inspect
import math
from typing import Any

import ml_collections

import l2reg
from l2reg import checks, data
from l2reg.training import recipe
from l2reg.training.defaults import default_config

# Free-form fields: their keys are checked by the function they are passed to.
OPEN_FIELDS = ("model_options", "data_options")


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
            f"l2reg.training.default_config(): {'; '.join(parts)}"
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
    if config.l2_mode in ("autol2", "anytime") and config.l2 == 0:
        raise ValueError(f"config.l2 must be > 0 with l2_mode={config.l2_mode!r}, got 0")
    if config.l2_mode == "anytime":
        checks.number(
            "config.anytime_c",
            config.anytime_c,
            lambda x: finite(x) and x > 0,
            "finite and > 0 with l2_mode='anytime'",
        )
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
