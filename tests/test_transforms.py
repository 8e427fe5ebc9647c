"""Tests for the L2 transforms: add_l2, autol2 and current_l2."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import l2reg

PARAMS = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
ZERO_GRADS = jax.tree.map(jnp.zeros_like, PARAMS)


def run(transform, losses, accuracies=None, params=PARAMS, state=None, jit=False):
    """Feeds a scripted loss sequence with zero gradients.

    Returns the λ each update used (read off the update of the first weight, which
    is λ·w with w = 1) and the final state.
    """
    state = transform.init(params) if state is None else state
    update = jax.jit(transform.update) if jit else transform.update
    used = []
    for t, loss in enumerate(losses):
        # An accuracy of None is one not passed on that update.
        accuracy = None if accuracies is None else accuracies[t]
        extra = {} if accuracy is None else {"accuracy": accuracy}
        updates, state = update(ZERO_GRADS, state, params, value=loss, **extra)
        used.append(float(updates["w"][0]))
    return np.array(used), state


def per_check(measurements, check_every):
    """Repeats each check's measurement over the updates it covers."""
    return np.repeat(np.asarray(measurements, dtype=np.float32), check_every)


# Hand-traced, check_every = 2, patience = 2, λ0 = 0.1, η = 1, cooldown = 0.1, so the
# cooldown is 1 step at λ = 0.1, 10 steps at 0.01, 100 at 0.001. Checks at n = 2k:
#  n:     2  4  6    8    10 12   14   16   18   20   22
#  loss:  5  4  4.5  4.2  3  3.5  3.5  3.5  3.5  3.5  3.5
#  record y  y  n    n    y  n    n    n    n    n    n
#  stale  0  0  1    2    0  1    2    3    4    5    6
#  n=8: 3 checks, 2 stale, 8 − 0 > 1 → decay to 0.01 (last_decay = 8)
#  n=14..18: stale but n − 8 ≤ 10; n=20: 12 > 10 → decay to 0.001 (last_decay = 20)
SCRIPTED_LOSSES = per_check([5, 4, 4.5, 4.2, 3, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5], 2)
SCRIPTED_L2 = np.array([0.1] * 8 + [0.01] * 12 + [0.001] * 2)


def scripted_autol2(**overrides):
    kwargs = dict(l2_init=0.1, learning_rate=1.0, cooldown=0.1, patience=2, check_every=2)
    return l2reg.autol2(**{**kwargs, **overrides})


def test_autol2_follows_hand_traced_trajectory():
    used, state = run(scripted_autol2(), SCRIPTED_LOSSES)
    np.testing.assert_allclose(used, SCRIPTED_L2, rtol=1e-6)
    assert int(state.last_decay) == 20
    assert int(state.num_checks) == 11
    assert int(state.loss.patience_count) == 6
    assert float(state.loss.best) == 3.0
    assert float(l2reg.current_l2(state)) == pytest.approx(0.001)


def test_autol2_under_jit_matches_eager():
    eager, _ = run(scripted_autol2(), SCRIPTED_LOSSES)
    jitted, _ = run(scripted_autol2(), SCRIPTED_LOSSES, jit=True)
    # XLA may compute λ/10 as λ·0.1 under jit (one ulp apart); the decay steps agree.
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)
    np.testing.assert_array_equal(np.diff(eager) != 0, np.diff(jitted) != 0)


def test_autol2_min_l2_floors_the_decay():
    used, _ = run(scripted_autol2(min_l2=0.02), SCRIPTED_LOSSES)
    # The first decay hits the floor; the second cooldown is 0.1/(0.02·1) = 5 steps,
    # so the decay at n = 14 (14 − 8 > 5) keeps it there.
    np.testing.assert_allclose(used, [0.1] * 8 + [0.02] * 14, rtol=1e-6)


def test_autol2_mean_skips_nonfinite_and_empty_check_is_not_a_record():
    # Checks at n = 2, 4, 6, 8: means 5, 4 (NaN skipped), none (both NaN), 4.5.
    losses = [5, 5, np.nan, 4, np.nan, np.inf, 4.5, 4.5]
    used, state = run(scripted_autol2(), losses)
    # Checks 3 and 4 are not records → 2 stale at n = 8 → decay.
    np.testing.assert_allclose(used, [0.1] * 8, rtol=1e-6)
    assert float(state.l2) == pytest.approx(0.01)
    assert float(state.loss.best) == 4.0
    assert int(state.num_nonfinite) == 3


@pytest.mark.parametrize(
    "patience, first_decay",
    [
        # Every check is empty (all NaN), so none is a record: after k checks k are stale.
        # "patience stale in a row" alone holds from check k = patience (n = 2·patience),
        # but a decay also needs patience + 1 checks: the first is at n = 2·(patience + 1).
        # The cooldown (1 step at λ = 0.1) has passed by then; the next one (10 steps at
        # λ = 0.01) outlasts the run.
        (1, 4),
        (2, 6),
    ],
)
def test_autol2_decays_only_after_patience_plus_one_checks(patience, first_decay):
    losses = np.full(10, np.nan, np.float32)
    used, state = run(scripted_autol2(patience=patience), losses)
    np.testing.assert_allclose(used, [0.1] * first_decay + [0.01] * (10 - first_decay), rtol=1e-6)
    assert int(state.last_decay) == first_decay
    assert int(state.loss.patience_count) == 5


def test_autol2_patience_and_decay_factor_are_honoured():
    # check_every = 1, no cooldown. Loss checks: record, 1, 2 stale, record, 1, 2, 3 stale:
    # patience 3 decays at n = 7 (not at n = 3, with 2 stale), dividing λ by 4.
    losses = [5, 6, 6, 4, 6, 6, 6, 6]
    transform = scripted_autol2(decay_factor=4.0, patience=3, check_every=1, cooldown=0.0)
    used, _ = run(transform, losses)
    np.testing.assert_allclose(used, [0.1] * 7 + [0.025], rtol=1e-6)


def test_autol2_learning_rate_schedule_sets_cooldown_clock():
    # η drops to 0.1 at t = 10: after the decay at n = 8 the cooldown becomes
    # 0.1/(0.01·0.1) = 100 steps, so the next decay waits until n = 110.
    schedule = optax.piecewise_constant_schedule(1.0, {10: 0.1})
    losses = np.concatenate([SCRIPTED_LOSSES[:10], np.full(110, 3.5, np.float32)])
    used, state = run(scripted_autol2(learning_rate=schedule), losses)
    np.testing.assert_allclose(used, [0.1] * 8 + [0.01] * 102 + [0.001] * 10, rtol=1e-6)
    assert int(state.last_decay) == 110


def test_autol2_accuracy_criterion():
    # The loss improves at every check; the accuracy stalls after the first.
    losses = per_check([5, 4, 3, 2, 1], 2)
    accuracies = per_check([0.5, 0.5, 0.4, 0.6, 0.6], 2)
    used, _ = run(scripted_autol2(), losses, accuracies)
    # n=2 record; n=4 equal (not a record); n=6 lower → 2 stale → decay at n = 6.
    np.testing.assert_allclose(used, [0.1] * 6 + [0.01] * 4, rtol=1e-6)
    loss_only, _ = run(scripted_autol2(), losses)
    np.testing.assert_allclose(loss_only, [0.1] * 10, rtol=1e-6)


def test_autol2_accuracy_criterion_honours_patience():
    # The loss is a record at every check; the accuracy's stale counts are those of the
    # losses above, so patience 3 decays at n = 7.
    losses = [5, 4, 3, 2, 1, 0.5, 0.4, 0.3]
    accuracies = [0.5, 0.4, 0.4, 0.6, 0.5, 0.5, 0.5, 0.5]
    used, _ = run(scripted_autol2(patience=3, check_every=1, cooldown=0.0), losses, accuracies)
    np.testing.assert_allclose(used, [0.1] * 7 + [0.01], rtol=1e-6)


def test_autol2_accuracy_passed_off_the_checks_is_averaged_per_check():
    # check_every = 4, accuracy passed at t = 0 and 2 of each window, never at the check
    # update t = 3. Means 0.5, 0.5, 0.5: a record, then 2 stale → decay at n = 12 (the first
    # values alone, 0.4, 0.6, 0.1, or the last, 0.6, 0.4, 0.9, would not decay there).
    losses = np.arange(14, 0, -1, dtype=np.float32)  # a record at every check
    window = lambda first, second: [first, None, second, None]
    accuracies = [*window(0.4, 0.6), *window(0.6, 0.4), *window(0.1, 0.9), None, None]
    used, state = run(scripted_autol2(check_every=4), losses, accuracies)
    np.testing.assert_allclose(used, [0.1] * 12 + [0.01] * 2, rtol=1e-6)
    assert float(state.accuracy.best) == pytest.approx(0.5)
    assert int(state.accuracy.patience_count) == 2


def test_autol2_check_without_accuracy_changes_nothing_for_accuracy():
    # check_every = 1, no cooldown; checks with an accuracy: n = 1 record, n = 3 and 6 stale.
    # The checks at n = 2, 4, 5 have none: they neither reset nor advance its patience, so
    # the decay waits for n = 6 (counting them as stale would decay at n = 3). The check at
    # n = 7 has none either: the last 2 accuracy measurements are still not records, and λ
    # decays again; n = 8's record ends the stall.
    losses = np.arange(9, 0, -1, dtype=np.float32)
    accuracies = [0.5, None, 0.4, None, None, 0.4, None, 0.6, None]
    used, state = run(scripted_autol2(check_every=1, cooldown=0.0), losses, accuracies)
    np.testing.assert_allclose(used, [0.1] * 6 + [0.01, 1e-3, 1e-3], rtol=1e-5)
    assert float(state.accuracy.best) == pytest.approx(0.6)
    assert int(state.accuracy.patience_count) == 0


def test_autol2_momentum_runs_the_clock_at_the_effective_learning_rate():
    # Only the first check is a record: λ decays at the first check past each cooldown.
    # η/(1 − μ) = 0.1/0.1 = 1: cooldowns 0.1/(1e-2·1) = 10 and 100 steps, so decays at
    # n = 30 (the first check with 2 stale) and 140; η = 0.1 alone would wait until n = 110.
    losses = np.ones(150, np.float32)
    transform = scripted_autol2(l2_init=1e-2, learning_rate=0.1, momentum=0.9, check_every=10)
    used, _ = run(transform, losses, jit=True)
    np.testing.assert_array_equal(np.flatnonzero(np.diff(used)) + 1, [30, 140])
    effective = scripted_autol2(l2_init=1e-2, learning_rate=1.0, check_every=10)
    np.testing.assert_array_equal(used, run(effective, losses, jit=True)[0])


def test_autol2_decay_never_raises_a_traced_l2_init_below_min_l2():
    # A traced l2_init cannot be checked against min_l2 when the transform is built.
    def trajectory(l2_init):
        transform = scripted_autol2(l2_init=l2_init, min_l2=1e-2, cooldown=0.0)

        def step(state, loss):
            updates, state = transform.update(ZERO_GRADS, state, PARAMS, value=loss)
            return state, updates["w"][0]

        return jax.lax.scan(step, transform.init(PARAMS), SCRIPTED_LOSSES)[1]

    batched = jax.jit(jax.vmap(trajectory))(jnp.array([1e-3, 0.1]))
    # Without a cooldown the scripted stalls decay at n = 8, 14, 16, …: 1e-3 stays, 0.1 stops
    # at the floor.
    np.testing.assert_allclose(batched[0], np.full(22, 1e-3), rtol=1e-6)
    np.testing.assert_allclose(batched[1], [0.1] * 8 + [1e-2] * 14, rtol=1e-6)


def test_autol2_learning_rate_warmup_from_zero():
    # Standard warmups start at η = 0.
    l2reg.autol2(0.1, optax.warmup_cosine_decay_schedule(0.0, 0.1, 100, 1000))
    warmup = lambda count: jnp.where(count < 10, 0.0, 1.0)
    losses = np.ones(14, np.float32)  # only the first check is a record
    # While η = 0 the cooldown 0.1/(λη) is infinite: the stall seen from n = 2 on decays λ
    # at the first check with η > 0, n = 11 (a cooldown of 1 step); the next needs 10 more.
    used, _ = run(scripted_autol2(learning_rate=warmup, patience=1, check_every=1), losses)
    np.testing.assert_allclose(used, [0.1] * 11 + [0.01] * 3, rtol=1e-6)
    # A zero cooldown is none at any η: λ decays at every stalled check from n = 2.
    transform = scripted_autol2(learning_rate=warmup, patience=1, check_every=1, cooldown=0.0)
    used, _ = run(transform, losses[:5])
    np.testing.assert_allclose(used, [0.1, 0.1, 1e-2, 1e-3, 1e-4], rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_autol2_injected_learning_rate_warmup_from_zero(jit):
    # optax.inject_hyperparams passes the schedule's value at each step, 0 during the warmup,
    # as a constant: the trajectory is that of the schedule passed directly (see above).
    warmup = lambda count: jnp.where(count < 10, 0.0, 1.0)
    transform = optax.inject_hyperparams(l2reg.autol2)(
        l2_init=0.1, learning_rate=warmup, cooldown=0.1, patience=1, check_every=1
    )
    used, state = run(transform, np.ones(14, np.float32), jit=jit)
    np.testing.assert_allclose(used, [0.1] * 11 + [0.01] * 3, rtol=1e-6)
    assert float(state.hyperparams["learning_rate"]) == 1.0


def test_autol2_authors_settings_give_cooldown_of_point_one_over_their_l2():
    # Their loss adds L2·Σθ² and waits 0.1/L2 steps: λ = 2·L2, learning_rate=1, cooldown=0.2.
    their_l2 = 1e-3
    transform = l2reg.autol2(2 * their_l2, learning_rate=1.0, cooldown=0.2)
    losses = np.full(1200, 1.0, np.float32)  # only the first check is a record
    used, state = run(transform, losses)
    decays = np.flatnonzero(np.diff(used)) + 1
    # First decay at the first check past 0.1/1e-3 = 100 steps; the next past 1000 more.
    np.testing.assert_array_equal(decays, [110, 1120])
    assert float(state.l2) == pytest.approx(2 * their_l2 / 100)


def test_autol2_zero_l2_never_decays():
    used, state = run(scripted_autol2(l2_init=0.0), SCRIPTED_LOSSES)
    assert np.all(used == 0)
    assert float(state.l2) == 0.0


def test_autol2_mask_applies_l2_to_selected_leaves():
    transform = scripted_autol2(mask={"w": True, "b": False})
    state = transform.init(PARAMS)
    updates, _ = transform.update(ZERO_GRADS, state, PARAMS, value=1.0)
    np.testing.assert_allclose(updates["w"], 0.1 * PARAMS["w"])
    np.testing.assert_array_equal(updates["b"], 0.0)
    assert float(l2reg.current_l2(state)) == pytest.approx(0.1)


def test_autol2_vmapped_over_l2_init_matches_separate_runs():
    l2_inits = jnp.array([0.1, 0.05, 0.0])

    def trajectory(l2_init):
        transform = scripted_autol2(l2_init=l2_init)

        def step(state, loss):
            updates, state = transform.update(ZERO_GRADS, state, PARAMS, value=loss)
            return state, updates["w"][0]

        return jax.lax.scan(step, transform.init(PARAMS), SCRIPTED_LOSSES)[1]

    batched = jax.jit(jax.vmap(trajectory))(l2_inits)
    for row, l2_init in zip(batched, [0.1, 0.05, 0.0], strict=True):
        alone, _ = run(scripted_autol2(l2_init=l2_init), SCRIPTED_LOSSES)
        np.testing.assert_allclose(row, alone, rtol=1e-6)


def test_autol2_inside_shard_map_over_two_devices():
    devices = jax.devices()[:2]
    assert len(devices) == 2, "conftest forces 4 CPU devices"
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    transform = scripted_autol2()
    # Each device sees half of a per-example loss; the pmean is the scripted loss.
    per_example = jnp.stack([SCRIPTED_LOSSES - 1.0, SCRIPTED_LOSSES + 1.0], axis=1)

    @jax.jit
    @functools.partial(
        jax.shard_map,
        mesh=mesh,
        in_specs=jax.sharding.PartitionSpec(None, "data"),
        out_specs=jax.sharding.PartitionSpec(),
    )
    def trajectory(local_losses):
        def step(state, loss):
            loss = jax.lax.pmean(loss[0], "data")
            updates, state = transform.update(ZERO_GRADS, state, PARAMS, value=loss)
            return state, updates["w"][0]

        return jax.lax.scan(step, transform.init(PARAMS), local_losses)[1]

    np.testing.assert_allclose(trajectory(per_example), SCRIPTED_L2, rtol=1e-6)


def test_autol2_resumed_from_orbax_checkpoint_continues_identically(tmp_path):
    optimizer = optax.chain(scripted_autol2(), optax.sgd(0.5, momentum=0.9))
    full, _ = run(optimizer, SCRIPTED_LOSSES)
    first, state = run(optimizer, SCRIPTED_LOSSES[:9])

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", state)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "state", target=state)
    second, _ = run(optimizer, SCRIPTED_LOSSES[9:], state=restored)
    np.testing.assert_array_equal(np.concatenate([first, second]), full)


INT_PARAMS = {"w": jnp.array([1.0, -2.0]), "step": jnp.array(3, jnp.int32)}


@pytest.mark.parametrize(
    ("make", "extra"),
    [(lambda: l2reg.add_l2(1.5), {}), (lambda: l2reg.autol2(1.5, 1.0), {"value": 1.0})],
)
def test_integer_parameters_get_no_l2(make, extra):
    transform = make()
    state = transform.init(INT_PARAMS)
    # λ = 1.5 cast to int32 would add 1·3 to the counter's update.
    int_grads = {"w": jnp.zeros(2), "step": jnp.zeros([], jnp.int32)}
    updates, _ = transform.update(int_grads, state, INT_PARAMS, **extra)
    np.testing.assert_allclose(updates["w"], 1.5 * INT_PARAMS["w"])
    assert updates["step"].dtype == jnp.int32 and int(updates["step"]) == 0
    # jax.grad(..., allow_int=True) gives integer leaves float0 gradients.
    float0_grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2), allow_int=True)(INT_PARAMS)
    updates, _ = transform.update(float0_grads, state, INT_PARAMS, **extra)
    np.testing.assert_allclose(updates["w"], 3.5 * INT_PARAMS["w"])
    assert updates["step"].dtype == jax.dtypes.float0


def test_autol2_decoupled_placement_scales_decay_by_learning_rate():
    lr = 0.01
    optimizer = optax.chain(
        optax.scale_by_adam(), scripted_autol2(learning_rate=lr), optax.scale_by_learning_rate(lr)
    )
    state = optimizer.init(PARAMS)
    updates, _ = optimizer.update(ZERO_GRADS, state, PARAMS, value=1.0)
    # Adam of a zero gradient is zero: what remains is the decoupled decay −lr·λ·θ.
    np.testing.assert_allclose(updates["w"], -lr * 0.1 * PARAMS["w"], rtol=1e-6)


def test_current_l2_through_nested_wrappers():
    inner = optax.chain(scripted_autol2(mask={"w": True, "b": False}), optax.sgd(0.1))
    wrapped = {
        "chain+masked": inner,
        "inject_hyperparams": optax.inject_hyperparams(l2reg.autol2, static_args=("check_every",))(
            l2_init=0.1, learning_rate=1.0, cooldown=0.1, check_every=2
        ),
        "multi_steps": optax.MultiSteps(inner, every_k_schedule=1),
        "named_chain": optax.named_chain(("l2", scripted_autol2()), ("sgd", optax.sgd(0.1))),
        "add_l2 schedule": optax.chain(
            l2reg.add_l2(optax.linear_schedule(0.1, 0.0, 20)), optax.sgd(0.1)
        ),
    }
    for name, optimizer in wrapped.items():
        _, state = run(optimizer, SCRIPTED_LOSSES[:10])
        expected = 0.05 if name == "add_l2 schedule" else 0.01
        l2 = l2reg.current_l2(state)
        assert isinstance(l2, jax.Array) and l2.shape == (), name
        assert float(l2) == pytest.approx(expected), name


def test_current_l2_of_an_nnx_optimizer_is_a_plain_array():
    # nnx.Optimizer.opt_state holds each leaf in an nnx.OptArray variable.
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.chain(scripted_autol2(), optax.sgd(0.1)), wrt=nnx.Param)
    l2 = l2reg.current_l2(optimizer.opt_state)
    assert isinstance(l2, jax.Array) and not isinstance(l2, nnx.Variable)
    assert f"{l2:.3g}" == "0.1"


def test_current_l2_errors_without_exactly_one_l2_state():
    with pytest.raises(ValueError, match="found 0"):
        l2reg.current_l2(optax.sgd(0.1).init(PARAMS))
    twice = optax.chain(l2reg.add_l2(0.1), l2reg.add_l2(0.2))
    with pytest.raises(ValueError, match="found 2"):
        l2reg.current_l2(twice.init(PARAMS))


def assert_same_as_add_decayed_weights(l2, params):
    grads = jax.tree.map(lambda p: jnp.cos(p.astype(jnp.float32)).astype(p.dtype), params)
    ours, theirs = l2reg.add_l2(l2), optax.add_decayed_weights(l2)
    our_state, their_state = ours.init(params), theirs.init(params)
    for _ in range(5):
        our_updates, our_state = jax.jit(ours.update)(grads, our_state, params)
        their_updates, their_state = jax.jit(theirs.update)(grads, their_state, params)
        jax.tree.map(np.testing.assert_array_equal, our_updates, their_updates)
        jax.tree.map(lambda a, b: np.testing.assert_equal(a.dtype, b.dtype), our_updates, grads)


@pytest.mark.parametrize("l2", [0.0, 3e-4, 0.1])
def test_add_l2_constant_equals_add_decayed_weights(l2):
    params = {"w": jnp.linspace(-1, 1, 7), "h": jnp.linspace(-1, 1, 5).astype(jnp.bfloat16)}
    assert_same_as_add_decayed_weights(l2, params)


def test_add_l2_schedule_equals_add_decayed_weights_for_float32():
    # (For bfloat16 leaves optax promotes the update to float32; add_l2 keeps bfloat16.)
    schedule = optax.exponential_decay(1e-2, transition_steps=3, decay_rate=0.5)
    assert_same_as_add_decayed_weights(schedule, {"w": jnp.linspace(-1, 1, 7)})


def test_add_l2_mask_and_reported_value():
    transform = l2reg.add_l2(0.1, mask={"w": False, "b": True})
    state = transform.init(PARAMS)
    updates, state = transform.update(ZERO_GRADS, state, PARAMS)
    np.testing.assert_array_equal(updates["w"], 0.0)
    np.testing.assert_allclose(updates["b"], 0.1 * PARAMS["b"])
    assert float(l2reg.current_l2(state)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: l2reg.add_l2(-1e-3), "l2 must be"),
        (lambda: l2reg.add_l2(float("nan")), "l2 must be"),
        (lambda: l2reg.add_l2(lambda count: -0.1), "l2 at step 0 must be"),
        (lambda: l2reg.add_l2(lambda count: jnp.nan), "l2 at step 0 must be"),
        (
            lambda: l2reg.add_l2(lambda count: jnp.full(2, 0.1)),
            r"^l2 at step 0 must be .*, got float32\[2\] array$",
        ),
        # Arrays are named by dtype and shape, so that the message stays on one line.
        (lambda: l2reg.add_l2(np.ones((3, 3))), r"^l2 must be .*, got float64\[3, 3\] array$"),
        (
            lambda: l2reg.autol2(0.1, jnp.full((3, 3), 0.1)),
            r"^learning_rate must be .*, got float32\[3, 3\] array$",
        ),
        (lambda: l2reg.autol2(-0.1, 1.0), "l2_init must be"),
        (lambda: l2reg.autol2(float("inf"), 1.0), "l2_init must be"),
        (lambda: l2reg.autol2(0.1, -0.1), "learning_rate must be"),
        (lambda: l2reg.autol2(0.1, float("inf")), "learning_rate must be"),
        (lambda: l2reg.autol2(0.1, 1.0, momentum=1.0), r"^momentum must be in \[0, 1\), got 1.0$"),
        (lambda: l2reg.autol2(0.1, 1.0, momentum=-0.1), "momentum must be"),
        (lambda: l2reg.autol2(0.1, lambda t: -1.0), "learning_rate at step 0 must be"),
        (lambda: l2reg.autol2(0.1, 1.0, decay_factor=1.0), "decay_factor must be"),
        (lambda: l2reg.autol2(0.1, 1.0, cooldown=-1.0), "cooldown must be"),
        (lambda: l2reg.autol2(0.1, 1.0, patience=0), "patience must be"),
        (lambda: l2reg.autol2(0.1, 1.0, patience=1.5), "patience must be"),
        (lambda: l2reg.autol2(0.1, 1.0, patience=2.0), "patience must be an integer"),
        (lambda: l2reg.autol2(0.1, 1.0, check_every=np.float32(3)), "check_every must be"),
        # Step counters are int32.
        (lambda: l2reg.autol2(0.1, 1.0, patience=2**31), "patience must be an integer in"),
        (lambda: l2reg.autol2(0.1, 1.0, check_every=2**31), "check_every must be an integer in"),
        (lambda: l2reg.autol2(0.1, 1.0, check_every=0), "check_every must be"),
        (lambda: l2reg.autol2(0.1, 1.0, min_l2=-1.0), "min_l2 must be"),
        (lambda: l2reg.autol2(0.1, 1.0, min_l2=0.2), "min_l2 must be ≤ l2_init"),
        # Booleans and complex numbers are not real scalars, even when they equal one.
        (lambda: l2reg.autol2(0.1, 1.0, patience=True), "patience must be"),
        (lambda: l2reg.add_l2(1e-3 + 0j), "l2 must be"),
    ],
)
def test_invalid_arguments_raise_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)
    assert "got" in str(error.value)


# A 0-d integer array is what `optax.inject_hyperparams` passes for an integer setting.
@pytest.mark.parametrize("count", [np.int64(3), jnp.array(3), 2**31 - 1])
def test_integer_settings_accept_numpy_and_jax_integers(count):
    l2reg.autol2(0.1, 1.0, patience=count, check_every=count)


@pytest.mark.parametrize(
    ("make", "traced", "message"),
    [
        (
            lambda x: l2reg.autol2(x, 1.0),
            jnp.ones(2),
            r"^l2_init must be a finite scalar ≥ 0, got a traced float32\[2\] array",
        ),
        (
            lambda x: l2reg.autol2(0.1, 1.0, cooldown=x),
            jnp.ones((), jnp.complex64),
            r"^cooldown must be finite and ≥ 0, got a traced complex64\[\] array",
        ),
        # A λ of shape (1,) would silently broadcast over every leaf.
        (
            lambda x: l2reg.add_l2(x),
            jnp.ones(1),
            r"^l2 must be .*, got a traced float32\[1\] array",
        ),
    ],
)
def test_traced_arguments_must_be_real_scalars(make, traced, message):
    # Their values are unknown while tracing; their shapes and dtypes are not.
    with pytest.raises(ValueError, match=message) as error:
        jax.eval_shape(lambda x: make(x).init(PARAMS), traced)
    assert "\n" not in str(error.value)


def test_autol2_update_without_value_is_a_type_error():
    transform = scripted_autol2()
    state = transform.init(PARAMS)
    with pytest.raises(TypeError, match="needs value="):
        transform.update(ZERO_GRADS, state, PARAMS)
    with pytest.raises(ValueError, match=r"scalar value, got shape \(3,\)"):
        transform.update(ZERO_GRADS, state, PARAMS, value=jnp.ones(3))
    with pytest.raises(ValueError, match=r"scalar accuracy, got shape \(2,\)"):
        transform.update(ZERO_GRADS, state, PARAMS, value=1.0, accuracy=jnp.ones(2))


@pytest.mark.parametrize(
    ("make", "extra"),
    [(lambda: l2reg.add_l2(0.1), {}), (lambda: l2reg.autol2(0.1, 0.1), {"value": 1.0})],
)
def test_update_without_params_is_a_one_line_error(make, extra):
    params = {"w": jnp.ones(3)}
    tx = make()
    with pytest.raises(ValueError, match="need the parameters") as error:
        tx.update(params, tx.init(params), **extra)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("transform", [l2reg.add_l2(1e-3), l2reg.autol2(1e-3, 0.1)])
def test_updates_unlike_the_params_are_one_line_errors(transform):
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    with pytest.raises(ValueError) as error:
        optax.with_extra_args_support(transform).update(
            {"w": jnp.ones(3)}, transform.init(params), params, value=1.0
        )
    message = str(error.value)
    assert message.startswith("updates must have the structure of params") and "\n" not in message
