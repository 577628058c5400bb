"""Definitions shared by the models and the training code (no torch or engine imports: what
needs tensors uses their methods)."""

from __future__ import annotations

import contextlib
import math
import numbers

from ..errors import HMMTypeError, HMMValueError

__all__ = [
    "COVARIANCE_TYPES",
    "StateDictError",
    "StateGuard",
    "check_count",
    "check_covariance_type",
    "check_min_covar",
    "check_real",
    "restore_on_error",
]

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


def check_real(
    name: str,
    value: object,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float when it is a finite real number in the interval from ``low`` to
    ``high`` (open ends with ``low_open`` / ``high_open``), else ``HMMValueError`` (a number out
    of range, NaN) or ``HMMTypeError`` (not a number: ``None``, ``"0.5"``, ``True``), naming the
    argument, the value and the interval."""
    v = value.item() if getattr(value, "ndim", None) == 0 else value  # 0-d tensor / array
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise HMMTypeError(f"{name} must be a real number, got {value!r}")
    v = float(v)
    ok = math.isfinite(v)
    ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise HMMValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def _tensors(state):
    return {k: v for k, v in state.items() if hasattr(v, "is_floating_point")}


@contextlib.contextmanager
def restore_on_error(module, attrs=()):
    """Run the ``with`` block; if it raises, put back ``module``'s parameters and buffers (in
    place, so optimisers and views keep working) and the named attributes, then re-raise:
    a failing call leaves the model as it was. (Tensors only; ``KeyboardInterrupt`` keeps
    what was done, e.g. the iterations of an interrupted ``fit``.)"""
    saved = {k: v.detach().clone() for k, v in _tensors(module.state_dict()).items()}
    missing = object()
    saved_attrs = {a: getattr(module, a, missing) for a in attrs}
    try:
        yield
    except Exception:
        current = _tensors(module.state_dict(keep_vars=True))
        for k, v in saved.items():
            t = current.get(k)
            if t is not None and t.shape == v.shape:
                t.data.copy_(v)
        for a, v in saved_attrs.items():
            if v is missing:
                if hasattr(module, a):
                    delattr(module, a)
            else:
                setattr(module, a, v)
        raise


class StateDictError(HMMValueError, RuntimeError):
    """A state dict torch cannot load (missing or unexpected keys, sizes): an
    ``HMMValueError`` that is also the ``RuntimeError`` torch raises for it."""


class StateGuard:
    """Mixin for the models' ``nn.Module``: ``load_state_dict`` refuses non-finite values
    (``HMMValueError`` naming the entry) and parameters the model cannot use (checked by
    ``_check_parameters`` after loading), and on any error, torch's own size and key errors
    included, leaves the model exactly as it was."""

    def _check_parameters(self) -> None:
        """Raise ``HMMValueError`` when the current parameters are unusable (subclasses)."""

    def load_state_dict(self, state_dict, *args, **kwargs):
        for k, v in state_dict.items():
            if hasattr(v, "is_floating_point") and v.is_floating_point():
                if not bool(v.isfinite().all()):
                    what = "NaN" if bool(v.isnan().any()) else "inf"
                    raise HMMValueError(
                        f"state_dict[{k!r}] contains {what}: a model's parameters must be finite "
                        "(the model is unchanged)"
                    )
        with restore_on_error(self):
            try:
                out = super().load_state_dict(state_dict, *args, **kwargs)
            except RuntimeError as e:
                raise StateDictError(f"{e} (the model is unchanged)") from None
            try:
                self._check_parameters()
            except HMMValueError as e:
                raise HMMValueError(f"state_dict: {e} (the model is unchanged)") from None
        return out
