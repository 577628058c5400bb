"""Lazy loading of the optional compiled (numba) CPU kernels.

Every kernel module has a pure-torch counterpart that stays the reference and the path for
other devices. Set ``PYTORCH_HMM_DISABLE_NUMBA=1`` to force the torch paths everywhere.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Dict, Optional

_LOADED: Dict[str, Optional[ModuleType]] = {}


def numba_disabled() -> bool:
    """True when ``PYTORCH_HMM_DISABLE_NUMBA`` asks for the torch paths."""
    return os.environ.get("PYTORCH_HMM_DISABLE_NUMBA", "") not in ("", "0")


def load_kernels(module: str) -> Optional[ModuleType]:
    """The kernel module ``module`` (a dotted name), or None when numba is missing, broken or
    disabled. Imported once; a broken install warns once and falls back to torch."""
    if numba_disabled():
        return None
    if module not in _LOADED:
        try:
            _LOADED[module] = importlib.import_module(module)
        except Exception as exc:  # ImportError, or a broken numba/llvmlite install
            if not isinstance(exc, ImportError):
                warnings.warn(
                    f"numba kernels unavailable ({exc!r}); using the torch path",
                    RuntimeWarning,
                    stacklevel=2,
                )
            _LOADED[module] = None
    return _LOADED[module]
