"""Workbench: Conv2d-FSQ IMU models from training to the Hailo-8 NPU."""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

__version__ = "0.1.0"


def lazy_exports(package: str, where: dict[str, tuple[str, ...]]) -> tuple[Any, Any]:
    """``__getattr__`` and ``__dir__`` for a package ``__init__`` whose names load on first use (PEP 562):
    ``where`` maps each submodule to the names it provides. Why: the Pi service imports a few light
    modules (graph.host, data.normalize, reliability.conformal) and must not pull onnx, pandas or scipy
    through their packages' ``__init__``."""
    module_of = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__
