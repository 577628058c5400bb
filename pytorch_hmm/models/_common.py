"""Definitions shared by the models and the training code (no torch or engine imports)."""

from __future__ import annotations

import math
import numbers

from ..errors import HMMValueError

__all__ = ["COVARIANCE_TYPES", "check_count", "check_covariance_type", "check_min_covar"]

#: Covariance types the Gaussian models, their statistics and M-steps support.
COVARIANCE_TYPES = ("diag", "full")


def check_covariance_type(value: object, name: str = "covariance_type", note: str = "") -> str:
    """Return ``value`` when it is one of :data:`COVARIANCE_TYPES`, else raise ``ValueError``
    naming the argument, the value and the allowed values (``note`` is appended, e.g. why)."""
    if value not in COVARIANCE_TYPES:
        allowed = ", ".join(repr(c) for c in COVARIANCE_TYPES)
        raise HMMValueError(
            f"{name} must be one of {allowed}, got {value!r}" + (f" ({note})" if note else "")
        )
    return value


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int when it is a whole number >= ``minimum`` (``3`` or ``3.0``, not
    ``2.5``, ``True`` or ``"3"``), else ``ValueError`` naming the argument."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        try:
            ok = math.isfinite(float(value)) and float(value) == int(value)
        except (TypeError, ValueError, OverflowError):
            ok = False
    if not ok or int(value) < minimum:
        raise HMMValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_min_covar(value: object, name: str = "min_covar") -> float:
    """``value`` as a float when it is finite and >= 0 (the variance floor), else
    ``ValueError`` naming the argument."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HMMValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v < 0:
        raise HMMValueError(
            f"{name} must be a finite number >= 0 (a variance floor), got {value!r}"
        )
    return v
