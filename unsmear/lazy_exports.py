"""Packages whose names load on first use, so that importing one light module stays light.

``pipeline``, ``models`` and ``dataset_builder`` re-export their main names at the top, but
importing a package runs its ``__init__`` first: eager re-exports would load torch, PyAV or
OpenCV for ``--help`` or for the exception classes. A module ``__getattr__`` (PEP 562)
imports the module that holds a name only when the name is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: ``exports`` maps each name to the
    module that defines it."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
