"""AutoL2 in the training loops people already have: Linen TrainState, NNX, plain optax,
inject_hyperparams and MultiSteps; the README's snippets for them; and the wheel as users
install it."""

import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import l2reg

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A tiny MLP on random data with random labels: 8 batches of 32, one pass every 8 steps.
NUM_BATCHES, BATCH_SIZE, DIM, HIDDEN, CLASSES = 8, 32, 8, 16, 4
_KEY_X, _KEY_Y, _KEY_INIT = jax.random.split(jax.random.key(0), 3)
X = jax.random.normal(_KEY_X, (NUM_BATCHES, BATCH_SIZE, DIM))
Y = jax.random.randint(_KEY_Y, (NUM_BATCHES, BATCH_SIZE), 0, CLASSES)
LR, MOMENTUM = 0.05, 0.9


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(CLASSES, name="out")(nn.relu(nn.Dense(HIDDEN, name="hidden")(x)))


LINEN_MLP = MLP()
PARAMS = LINEN_MLP.init(_KEY_INIT, X[0])["params"]


def make_autol2(**overrides):
    # check_every = one pass over the data, so each check measures the mean loss of a pass.
    settings = dict(l2_init=0.1, learning_rate=LR, momentum=MOMENTUM, check_every=NUM_BATCHES)
    return l2reg.autol2(**{**settings, **overrides})


def make_optimizer():
    return optax.chain(make_autol2(), optax.sgd(LR, MOMENTUM))


def batch(step):
    return X[step % NUM_BATCHES], Y[step % NUM_BATCHES]


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def linen_loss(params, step):
    x, y = batch(step)
    return cross_entropy(LINEN_MLP.apply({"params": params}, x), y)


def decay_steps(l2s):
    """The steps n after which λ changed (the update numbered n is the first with the new λ)."""
    return (np.flatnonzero(np.diff(l2s)) + 1).tolist()


@jax.jit
def replay(losses, l2_init=0.1, momentum=MOMENTUM):
    """The λ each update used when ``losses`` are fed to a bare autol2 with zero gradients."""
    transform = make_autol2(l2_init=l2_init, momentum=momentum)
    params = {"w": jnp.zeros(())}

    def step(state, loss):
        _, next_state = transform.update(params, state, params, value=loss)
        return next_state, state.l2

    return jax.lax.scan(step, transform.init(params), losses)[1]


# The pass-mean loss stops improving after n = 24: not a record at 32 and 40, so λ decays at 40
# (its cooldown is 0.1/(λ·η/(1 − μ)) = 0.1/(0.1·0.5) = 2 steps). At λ = 0.01 the cooldown is 20
# steps and the loss still stalls: the next decay is at the first check past n = 60, 64. At
# λ = 1e-3 the cooldown (200 steps) outlasts the run. (The measurements that were not records
# are at least 0.007 above the record: no decision here hangs on rounding.)
STEPS, DECAYS = 120, [40, 64]


def assert_trajectory(l2s, losses, decays=DECAYS, **replay_settings):
    """λ decays at ``decays``, exactly as the bare transform does on the loop's losses."""
    assert decay_steps(l2s) == decays
    np.testing.assert_allclose(l2s, replay(np.asarray(losses), **replay_settings), rtol=1e-6)


def linen_train_state_loop(steps):
    @jax.jit
    def train_step(state):
        loss, grads = jax.value_and_grad(linen_loss)(state.params, state.step)
        return state.apply_gradients(grads=grads, value=loss), loss

    state = l2reg.TrainState.create(apply_fn=LINEN_MLP.apply, params=PARAMS, tx=make_optimizer())
    l2s, losses = [], []
    for _ in range(steps):
        l2s.append(float(l2reg.current_l2(state.opt_state)))
        state, loss = train_step(state)
        losses.append(float(loss))
    return np.array(l2s), np.array(losses, np.float32)


def optax_loop(optimizer, steps, loss_fn=linen_loss):
    """A plain optax loop; returns λ before each update and each update's loss."""

    @jax.jit
    def train_step(params, opt_state, step):
        loss, grads = jax.value_and_grad(loss_fn)(params, step)
        updates, opt_state = optimizer.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state, loss

    params, opt_state = PARAMS, optimizer.init(PARAMS)
    l2s, losses = [], []
    for step in range(steps):
        l2s.append(float(l2reg.current_l2(opt_state)))
        params, opt_state, loss = train_step(params, opt_state, step)
        losses.append(float(loss))
    return np.array(l2s), np.array(losses, np.float32)


def test_linen_train_state_loop():
    l2s, losses = linen_train_state_loop(STEPS)
    assert_trajectory(l2s, losses)
    # The same optimizer in a plain optax loop: the same losses, bit for bit.
    optax_l2s, optax_losses = optax_loop(make_optimizer(), STEPS)
    np.testing.assert_array_equal(optax_losses, losses)
    np.testing.assert_array_equal(optax_l2s, l2s)
    # A clock at η, without the momentum, would leave λ = 0.01 for 200 steps after n = 40.
    assert decay_steps(replay(losses, momentum=0.0)) == [40]


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(DIM, HIDDEN, rngs=rngs)
        self.out = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def test_nnx_optimizer_loop():
    model = NnxMLP(nnx.Rngs(0))
    # The Linen loop's initial parameters, so that both loops train the same network.
    for layer, name in ((model.hidden, "hidden"), (model.out, "out")):
        layer.kernel.value = PARAMS[name]["kernel"]
        layer.bias.value = PARAMS[name]["bias"]
    optimizer = nnx.Optimizer(model, make_optimizer(), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, step):
        x, y = batch(step)
        loss, grads = nnx.value_and_grad(lambda model: cross_entropy(model(x), y))(model)
        optimizer.update(model, grads, value=loss)
        return loss

    l2s, losses = [], []
    for step in range(STEPS):
        l2 = l2reg.current_l2(optimizer.opt_state)
        assert type(l2) is type(jnp.zeros(())), type(l2)  # an array, not an nnx variable
        assert f"{l2:.3g}" in ("0.1", "0.01", "0.001")
        l2s.append(float(l2))
        losses.append(float(train_step(model, optimizer, jnp.asarray(step))))
    assert_trajectory(np.array(l2s), losses)
    np.testing.assert_allclose(losses, linen_train_state_loop(STEPS)[1], rtol=1e-5)


def test_inject_hyperparams_loop_with_warmup_from_zero():
    # η rises from 0 to LR over the first 40 steps, for the optimizer and AutoL2's clock alike.
    warmup = optax.linear_schedule(0.0, LR, transition_steps=40)
    optimizer = optax.chain(
        optax.inject_hyperparams(l2reg.autol2)(
            l2_init=0.1, learning_rate=warmup, momentum=MOMENTUM, check_every=NUM_BATCHES
        ),
        optax.inject_hyperparams(optax.sgd)(learning_rate=warmup, momentum=MOMENTUM),
    )
    l2s, losses = optax_loop(optimizer, STEPS)
    # The same schedule passed to autol2 directly, on the same losses.
    direct = make_autol2(learning_rate=warmup)
    state, replayed = direct.init(PARAMS), []
    for loss in losses:
        replayed.append(float(state.l2))
        _, state = jax.jit(direct.update)(PARAMS, state, PARAMS, value=loss)
    np.testing.assert_allclose(l2s, replayed, rtol=1e-6)
    # Slower at first, the loss stalls from n = 40 (not a record at 40 and 48): decays at 48
    # (η = LR by then) and, past the 20-step cooldown at λ = 0.01, at 72.
    assert decay_steps(l2s) == [48, 72]


def test_multi_steps_loop_records_the_emitting_micro_batch_and_counts_optimizer_steps():
    # Each batch in two micro-batches of 16: MultiSteps averages their gradients into one
    # update. Micro-step 2k + 1 completes update k; only its loss reaches AutoL2.
    def micro_batch_loss(params, micro_step):
        x, y = batch(micro_step // 2)
        half = (micro_step % 2) * (BATCH_SIZE // 2)
        x = jax.lax.dynamic_slice_in_dim(x, half, BATCH_SIZE // 2)
        y = jax.lax.dynamic_slice_in_dim(y, half, BATCH_SIZE // 2)
        return cross_entropy(LINEN_MLP.apply({"params": params}, x), y)

    optimizer = optax.MultiSteps(make_optimizer(), every_k_schedule=2)
    l2s, losses = optax_loop(optimizer, 2 * STEPS, loss_fn=micro_batch_loss)
    # λ changes only between updates, and check_every counts updates, not micro-steps. The
    # emitting half-batches' pass means stall after update 24 as the whole batches' do.
    np.testing.assert_array_equal(l2s[0::2], l2s[1::2])
    assert_trajectory(l2s[0::2], losses[1::2], decays=[40, 64])


def readme_section_snippets():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## In your training loop\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)\n```", section, flags=re.S)


def test_readme_section_has_the_three_loops():
    snippets = readme_section_snippets()
    assert len(snippets) == 3
    calls = (
        "state.apply_gradients(grads=grads, value=loss",
        "optimizer.update(model, grads, value=loss)",
        "optax.MultiSteps(",
    )
    for snippet, call in zip(snippets, calls, strict=True):
        assert call in snippet


@pytest.mark.parametrize("index", range(3))
def test_readme_section_snippet_runs(index, capsys):
    namespace = {}
    exec(compile(readme_section_snippets()[index], "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    # The snippets' runs are shorter than their first cooldowns: λ is still l2_init.
    assert re.search(r"λ.*: 0\.01$|λ.*: 0\.1$", printed.strip()), printed


CORE_ONLY_SCRIPT = """
import re, sys, pathlib, importlib.metadata, importlib.resources
import l2reg
assert "site-packages" in l2reg.__file__ and {root!r} not in l2reg.__file__, l2reg.__file__
assert l2reg.__version__ == importlib.metadata.version("l2reg"), l2reg.__version__
assert importlib.resources.files("l2reg").joinpath("py.typed").is_file()
readme = pathlib.Path({readme!r}).read_text(encoding="utf-8")
exec(re.search(r"```python\\n(.*?)\\n```", readme, flags=re.S).group(1), {{}})
extras = ("tensorflow", "tensorflow_datasets", "orbax", "ml_collections", "matplotlib",
          "sklearn", "neural_tangents", "diffrax", "scipy", "tqdm", "tensorboardX")
imported = sorted({{name.split(".")[0] for name in sys.modules}} & set(extras))
assert not imported, f"the core imported {{imported}}"
"""


@pytest.mark.slow
def test_wheel_installs_and_runs_the_readme_snippet_with_core_dependencies_only(tmp_path):
    # Built from a copy, so that the build leaves nothing in the working tree.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("l2reg", "experiments", "theory"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    version = importlib.metadata.version("l2reg")
    (wheel,) = dist.glob(f"l2reg-{version}-py3-none-any.whl")
    assert (dist / f"l2reg-{version}.tar.gz").is_file()

    # A fresh venv whose only other packages are this environment's (jax, optax, flax and
    # numpy among them), visible after its own site-packages: the wheel's l2reg comes first.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (pathlib.Path(venv_site) / "host.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = ["install", "-q", "--no-deps", "--no-index", "--target", venv_site, str(wheel)]
    subprocess.run(
        [sys.executable, "-m", "pip", *install],
        check=True,
        capture_output=True,
    )
    script = CORE_ONLY_SCRIPT.format(root=str(ROOT), readme=str(ROOT / "README.md"))
    result = subprocess.run(
        [python, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
