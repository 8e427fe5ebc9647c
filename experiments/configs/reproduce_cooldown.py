"""AutoL2's cooldown swept: relation 1 as in the default preset, then the calibration setup
`mlp_digits_noisy` (digits, bias-free NTK MLP, MSE, 20% label noise) at budgets long enough for
decays to wait for plateaus (T up to 12,000 steps), and the default preset's two held-out
setups (batch-norm MLP on mnist1d, cross-entropy MLP on digits) at their default budgets, each
with AutoL2 at cooldowns from 0.003 to 1 in units of 1/(λη) besides the default schedules (the
released AutoL2 has 0.1, the t*-clock about c ≈ 1), 3 data draws × 1 seed. The cooldowns were
chosen before any held-out run. About 20 minutes on 2 idle CPU cores.

    python -m experiments.reproduce --preset=cooldown --workdir=/tmp/reproduce_cooldown

The report's decay table says, per replica, how many times each AutoL2 decayed against the
most its cooldown allows: fewer means a decay waited for a plateau.
"""

from ml_collections import config_dict

from experiments.configs import reproduce_default

# Cooldowns in units of 1/(λη), below and above the released 0.1 (which runs as "AutoL2
# (released)").
COOLDOWNS = (0.003, 0.01, 0.03, 0.3, 1.0)


def get_config() -> config_dict.ConfigDict:
    config = reproduce_default.get_config()
    # The default's half-decade grid up to 3e-3: at these budgets λ_opt is at most ~1e-3.
    digits = reproduce_default.digits_setup(
        budgets=(400, 1_500, 4_000, 12_000), l2s=reproduce_default.HALVES[:6]
    )
    digits.cooldowns = COOLDOWNS
    mnist1d, digits_ce = reproduce_default.mnist1d_setup(), reproduce_default.digits_ce_setup()
    mnist1d.cooldowns = digits_ce.cooldowns = COOLDOWNS
    config.setups = config_dict.ConfigDict(
        {"digits_mse": digits, "mnist1d_batchnorm": mnist1d, "digits_ce": digits_ce}
    )
    return config
