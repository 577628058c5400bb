"""Definitions shared by the models and the training code (no torch or engine imports)."""

from __future__ import annotations

__all__ = ["COVARIANCE_TYPES", "check_covariance_type"]

#: Covariance types the Gaussian models, their statistics and M-steps support.
COVARIANCE_TYPES = ("diag", "full")


def check_covariance_type(value: object, name: str = "covariance_type", note: str = "") -> str:
    """Return ``value`` when it is one of :data:`COVARIANCE_TYPES`, else raise ``ValueError``
    naming the argument, the value and the allowed values (``note`` is appended, e.g. why)."""
    if value not in COVARIANCE_TYPES:
        allowed = ", ".join(repr(c) for c in COVARIANCE_TYPES)
        raise ValueError(
            f"{name} must be one of {allowed}, got {value!r}" + (f" ({note})" if note else "")
        )
    return value
