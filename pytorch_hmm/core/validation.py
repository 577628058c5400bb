"""Input checks shared by every inference kernel.

Each check raises ``ValueError`` (bad values or shapes) or ``TypeError`` (bad dtypes) with a
message that names the argument, the shape or value it got and what was expected.

Padded batches: frames ``t >= lengths[b]`` are padding and never read, whatever they hold
(NaN and inf included): :func:`check_real_frames` checks the real frames only and returns the
batch with its padding replaced (:func:`mask_padding`), before any arithmetic, so padding
reaches neither results nor gradients.
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


def frame_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True on real frames (``t < lengths[b]``)."""
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def mask_padding(x: torch.Tensor, lengths: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``x`` (B, T, ...) with every padded frame (``t >= lengths[b]``) replaced by ``fill``
    (``x`` itself when there is no padding). Differentiable: padded frames get zero gradient,
    whatever they held (NaN and inf included), so padding never reaches results or gradients.
    """
    B, T = x.shape[0], x.shape[1]
    if B == 0 or int(lengths.min()) >= T:
        return x
    m = frame_mask(lengths.to(x.device), T).view(B, T, *([1] * (x.dim() - 2)))
    return torch.where(m, x, torch.full((), fill, dtype=x.dtype, device=x.device))


def check_real_frames(
    name: str,
    x: torch.Tensor,
    lengths: torch.Tensor,
    *,
    allow_neg_inf: bool = True,
    fill: float = 0.0,
) -> torch.Tensor:
    """Check the real frames of a padded batch ``x`` (B, T, ...) and return it with its
    padding replaced by ``fill`` (:func:`mask_padding`).

    NaN and +inf (and -inf unless ``allow_neg_inf``: the engine's -inf log-likelihood means
    "impossible") in a real frame raise ValueError naming the sequence and the frame; padded
    frames (``t >= lengths[b]``) are never read, whatever they hold.
    """
    x = mask_padding(x, lengths, fill)
    total = x.sum()
    if allow_neg_inf and not (torch.isnan(total) or torch.isposinf(total)):
        return x
    if not allow_neg_inf and torch.isfinite(total):
        return x
    for what, bad in (
        ("NaN", torch.isnan),
        ("+inf", torch.isposinf),
        ("-inf", None if allow_neg_inf else torch.isneginf),
    ):
        if bad is None:
            continue
        hit = bad(x)
        if hit.any():
            idx = torch.nonzero(hit)[0].tolist()
            expected = (
                "log-probabilities must be finite or -inf"
                if allow_neg_inf
                else "values must be finite"
            )
            b, t = idx[0], idx[1]
            raise HMMValueError(
                f"{name} contains {what} (first at index {tuple(idx)}: sequence {b}, frame "
                f"{t}, a real frame as lengths[{b}] = {int(lengths[b])}); {expected} (padded "
                "frames t >= lengths[b] are never read)"
            )
    return x


def to_tensor(value, name: str, what: str = "a tensor, numpy array or list of numbers"):
    """``value`` as a tensor (a tensor as it is; numpy arrays and lists converted by
    ``torch.as_tensor``). ``None``, strings and what does not convert (ragged lists, objects)
    raise ``HMMTypeError`` naming ``name`` and ``what`` was expected."""
    if isinstance(value, torch.Tensor):
        return value
    if value is None or isinstance(value, (str, bytes)):
        raise HMMTypeError(f"{name} must be {what}, got {value!r:.60}")
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise HMMTypeError(
            f"{name} must be {what}, got {type(value).__name__} ({err})"
        ) from None


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
    lengths = to_tensor(lengths, name, "a (B,) integer tensor or a sequence of integers")
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
