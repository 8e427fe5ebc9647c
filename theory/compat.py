"""Imports neural-tangents on a JAX that moved names it depends on.

neural-tangents 0.6.5 (its latest release) imports ``jax.core.{Jaxpr, JaxprEqn, Literal, Var,
Primitive, ClosedJaxpr}``, ``jax.interpreters.ad.zeros_like_p`` and the module ``jax.util``,
which current JAX moved to ``jax.extend.core`` and ``jax._src.util`` (or removed). The shim
puts each missing name back where neural-tangents looks for it, and does nothing for names a
JAX still has, so on an older JAX it is a no-op.
"""

import importlib
import importlib.util
import sys
import types

import jax
import jax.core
import jax.interpreters.ad

# Names neural-tangents imports from `jax.core` that moved to `jax.extend.core`.
_CORE_NAMES = ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive", "ClosedJaxpr")


def apply_shim() -> list[str]:
    """Restores the JAX names neural-tangents 0.6.5 imports; idempotent.

    Returns:
      The names that were missing and have been put back (empty when the JAX in use
      still has them all, or when the shim was applied before).
    """
    patched = []
    missing = [name for name in _CORE_NAMES if not hasattr(jax.core, name)]
    if missing:
        from jax.extend import core as extend_core  # only on a JAX that moved the names

        for name in missing:
            setattr(jax.core, name, getattr(extend_core, name))
            patched.append(f"jax.core.{name}")
    if not hasattr(jax.interpreters.ad, "zeros_like_p"):
        from jax.extend import core as extend_core

        # Used only as a key of neural-tangents' structure and Jacobian rule tables; a fresh
        # primitive is a key no traced program ever contains, which is what a removed
        # primitive is.
        jax.interpreters.ad.zeros_like_p = extend_core.Primitive("zeros_like")
        patched.append("jax.interpreters.ad.zeros_like_p")
    if "jax.util" not in sys.modules and importlib.util.find_spec("jax.util") is None:
        sys.modules["jax.util"] = importlib.import_module("jax._src.util")
        patched.append("jax.util")
    return patched


def import_neural_tangents() -> types.ModuleType:
    """Applies `apply_shim` and returns the imported `neural_tangents` module."""
    apply_shim()
    return importlib.import_module("neural_tangents")
