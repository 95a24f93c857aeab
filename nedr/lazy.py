"""Package attributes imported on first use (PEP 562).

Why: `nedr.model` and `nedr.export` re-export names from modules that import torch, while others of
their modules are torch-free and must stay importable on a Jetson or serving box without it.
"""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Mapping


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: attribute `name` comes from submodule
    `names[name]`, imported on first access and then cached on the package."""
    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{names[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
