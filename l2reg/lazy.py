"""Packages whose public names load their modules on first use (PEP 562).

`import l2reg` then loads no JAX until a name is used, so a launcher can read its config file
and report a bad flag at once; `theory` and `l2reg.training` do the same.
"""

import importlib
from collections.abc import Callable


def exports(package: str, homes: dict[str, str]) -> tuple[Callable, Callable]:
    """`(__getattr__, __dir__)` for `package`: each name of `homes` comes from the module it
    maps to, and any other attribute is tried as a submodule (`package.name`)."""

    def getattr_(name: str):
        if name in homes:
            return getattr(importlib.import_module(homes[name]), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{package}.{name}":
                raise  # the submodule exists, something it imports does not
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    def dir_() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *homes})

    return getattr_, dir_
