"""The core package works with the core dependencies alone (jax, optax, flax, numpy), and the
extras' packages say which extra they need."""

import subprocess
import sys
import textwrap

# Top-level modules that only the extras install (absl and scipy come with optax and jax).
EXTRAS_MODULES = (
    "diffrax",
    "matplotlib",
    "ml_collections",
    "mnist1d",
    "neural_tangents",
    "orbax",
    "sklearn",
    "tensorboardX",
    "tensorflow",
    "tensorflow_datasets",
    "tqdm",
)

BLOCKER = f"""
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {EXTRAS_MODULES!r}:
            raise ImportError(f"blocked: {{name}}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_core_api_imports_and_runs_without_the_extras():
    result = _run(
        """
        import jax, jax.numpy as jnp, optax
        import l2reg
        from l2reg import relations

        params = {"w": jnp.ones(3)}
        optimizer = optax.chain(l2reg.autol2(1e-2, learning_rate=0.1), optax.sgd(0.1))
        state = optimizer.init(params)
        grads = {"w": jnp.zeros(3)}
        updates, state = optimizer.update(grads, state, params, value=jnp.float32(1.0))
        fixed = l2reg.add_l2(1e-3).update(grads, l2reg.add_l2(1e-3).init(params), params)[0]
        assert float(fixed["w"][0]) == float(jnp.float32(1e-3))
        assert float(l2reg.current_l2(state)) == float(jnp.float32(1e-2))
        assert abs(relations.predict_l2(1.0, 0.5, 2000) - 1e-3) < 1e-12
        loaded = [name for name in sys.modules if name.split(".")[0] in {extras!r}]
        assert not loaded, loaded
        print("ok")
        """.replace("{extras!r}", repr(EXTRAS_MODULES))
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_training_package_names_its_extra_when_one_is_missing():
    result = _run("import l2reg.training")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "l2reg.training needs the 'experiments' extra" in last
    assert "pip install 'l2reg[experiments]'" in last
