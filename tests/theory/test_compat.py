"""The neural-tangents shim restores only what JAX lacks, once."""

import importlib

import jax
import jax.core
import jax.interpreters.ad
import pytest

from theory import compat


def test_import_neural_tangents_returns_a_working_module():
    nt = compat.import_neural_tangents()
    _, _, kernel_fn = nt.stax.serial(nt.stax.Dense(1), nt.stax.Relu(), nt.stax.Dense(1))
    assert kernel_fn(jax.numpy.ones((2, 3)), None, "ntk").shape == (2, 2)


def test_shim_is_idempotent_and_uses_the_moved_names():
    compat.apply_shim()
    assert compat.apply_shim() == []
    from jax.extend import core as extend_core

    for name in compat._CORE_NAMES:
        assert getattr(jax.core, name) is getattr(extend_core, name)
    assert hasattr(jax.interpreters.ad, "zeros_like_p")
    assert callable(importlib.import_module("jax.util").safe_map)


def test_shim_leaves_names_a_jax_still_has(monkeypatch: pytest.MonkeyPatch):
    sentinel = object()
    for name in compat._CORE_NAMES:
        monkeypatch.setattr(jax.core, name, sentinel, raising=False)
    monkeypatch.setattr(jax.interpreters.ad, "zeros_like_p", sentinel, raising=False)
    assert compat.apply_shim() == []
    assert all(getattr(jax.core, name) is sentinel for name in compat._CORE_NAMES)
    assert jax.interpreters.ad.zeros_like_p is sentinel


def test_shim_restores_missing_names(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delattr(jax.core, "Jaxpr", raising=False)
    monkeypatch.delattr(jax.interpreters.ad, "zeros_like_p", raising=False)
    patched = compat.apply_shim()
    from jax.extend import core as extend_core

    assert "jax.core.Jaxpr" in patched and "jax.interpreters.ad.zeros_like_p" in patched
    assert jax.core.Jaxpr is extend_core.Jaxpr
