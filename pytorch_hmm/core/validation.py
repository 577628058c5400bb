"""Input checks shared by every inference kernel.

Each check raises ``ValueError`` (bad values or shapes) or ``TypeError`` (bad dtypes) with a
message that names the argument, the shape or value it got and what was expected.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import HMMTypeError, HMMValueError

FLOAT_DTYPES = (torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


shape_str = _shape


def check_float(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise HMMTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise HMMTypeError(f"{name} must be float32 or float64, got {x.dtype}")


def check_no_nan(name: str, x: torch.Tensor) -> None:
    """NaN or +inf anywhere in ``x`` raises ValueError with the first offending index."""
    total = x.sum()  # one pass: NaN and +inf both leave the sum NaN or +inf
    if not (torch.isnan(total) or torch.isposinf(total)):
        return
    if torch.isnan(x).any():
        idx = torch.nonzero(torch.isnan(x))[0].tolist()
        raise HMMValueError(f"{name} contains NaN (first at index {tuple(idx)})")
    if torch.isposinf(x).any():
        idx = torch.nonzero(torch.isposinf(x))[0].tolist()
        raise HMMValueError(
            f"{name} contains +inf (first at index {tuple(idx)}); log-probabilities "
            "must be finite or -inf"
        )


def check_lengths(
    lengths,
    B: int,
    max_len: int,
    device: Optional[torch.device] = None,
    *,
    name: str = "lengths",
    min_value: int = 1,
    what: str = "",
) -> torch.Tensor:
    """The one length validator of the library (engine, aligners, metrics, MLPG).

    ``None`` -> every sequence has ``max_len``; else a (B,) integer tensor (or sequence) with
    values in ``[min_value, max_len]``, returned as a long tensor on ``device`` (its own
    device when None). One exception type per condition: ``TypeError`` for a non-integer
    dtype, ``ValueError`` for a wrong shape and for values out of range; each message names
    ``name``, what it got and what was expected (``what`` explains the range).
    """
    if lengths is None:
        return torch.full((B,), max_len, dtype=torch.long, device=device)
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise HMMTypeError(f"{name} must be an integer tensor, got {lengths.dtype}")
    if lengths.shape != (B,):
        raise HMMValueError(
            f"{name} must have shape ({B},) (one per sequence), got {_shape(lengths)}"
        )
    lengths = lengths.to(device=device if device is not None else lengths.device, dtype=torch.long)
    if B > 0:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < min_value or hi > max_len:
            why = f" ({what})" if what else ""
            got = lengths.tolist() if B <= 16 else f"values in [{lo}, {hi}]"
            extra = ""
            if lo < 1 <= min_value:
                extra = " (empty sequences have no likelihood)"
            elif hi > max_len:
                extra = f" (the padded length is {max_len})"
            raise HMMValueError(
                f"{name} must lie in [{min_value}, {max_len}]{why}, got {got}{extra}"
            )
    return lengths
