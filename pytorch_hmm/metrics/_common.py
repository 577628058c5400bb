"""Shared input checks for the metrics."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..core.validation import check_lengths as _check_lengths
from ..errors import HMMTypeError, HMMValueError


def as_tensor(x, name: str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise HMMTypeError(f"{name} must be a tensor or array, got {type(x).__name__}") from err
    if dtype is not None:
        t = t.to(dtype)
    return t


def check_finite(t: torch.Tensor, name: str, *, non_negative: bool = False) -> None:
    """NaN/inf (and, with ``non_negative``, negative values) in ``t`` raise, naming it."""
    if not t.is_floating_point():
        if non_negative and t.numel() and bool((t < 0).any()):
            raise HMMValueError(f"{name} must be >= 0, got {t.min().item()}")
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        idx = tuple(torch.nonzero(bad)[0].tolist())
        raise HMMValueError(f"{name} contains NaN or inf (first at index {idx})")
    if non_negative and t.numel() and bool((t < 0).any()):
        idx = tuple(torch.nonzero(t < 0)[0].tolist())
        raise HMMValueError(f"{name} must be >= 0, got {t[idx].item()} at index {idx}")


def as_labels(x, name: str) -> torch.Tensor:
    """Integer labels; floats must be whole numbers (no NaN), bools are refused."""
    t = as_tensor(x, name)
    if t.dtype == torch.bool or t.is_complex():
        raise HMMTypeError(f"{name} must hold integer labels, got {t.dtype}")
    if t.is_floating_point():
        check_finite(t, name)
        if not bool((t == t.round()).all()):
            raise HMMValueError(f"{name} must hold whole-number labels, got fractions")
        t = t.long()
    return t


def check_scalar(v, name: str, *, positive: bool = False) -> float:
    """A finite real number (``> 0`` with ``positive``, else ``>= 0``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            import numpy as np

            if isinstance(v, np.generic) and np.issubdtype(type(v), np.number):
                v = float(v)
            else:
                raise TypeError
        except TypeError:
            raise HMMTypeError(f"{name} must be a number, got {v!r}") from None
    v = float(v)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise HMMValueError(
            f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}"
        )
    return v


def check_lengths(lengths, batch: int, total: int, name: str, device) -> torch.Tensor:
    """Lengths in ``[0, total]`` (the library's one validator)."""
    if lengths is not None and not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths).reshape(-1)
    return _check_lengths(lengths, batch, total, device, name=name, min_value=0)


def batch_pair(
    ref,
    hyp,
    ref_lengths,
    hyp_lengths,
    *,
    feature_dim: bool,
    names: Tuple[str, str] = ("ref", "hyp"),
    dtype: torch.dtype = torch.float64,
    allow_length_mismatch: bool = False,
):
    """Batch ``ref``/``hyp`` to ``(B, T[, F])`` and check that lengths agree.

    Returns ``(ref, hyp, ref_lengths, hyp_lengths, unbatched)``.
    """
    r = as_tensor(ref, names[0], dtype)
    h = as_tensor(hyp, names[1], dtype).to(r.device)
    base = 2 if feature_dim else 1
    shape_txt = "(B, T, F) or (T, F)" if feature_dim else "(B, T) or (T,)"
    unbatched = r.dim() == base
    for t, n in ((r, names[0]), (h, names[1])):
        if t.dim() not in (base, base + 1) or t.dim() != r.dim():
            raise HMMValueError(f"{n} must have shape {shape_txt}, got {tuple(t.shape)}")
    if unbatched:
        r, h = r.unsqueeze(0), h.unsqueeze(0)
    if r.shape[0] != h.shape[0]:
        raise HMMValueError(
            f"{names[0]} and {names[1]} must have the same batch size, got {tuple(r.shape)} and "
            f"{tuple(h.shape)}"
        )
    if feature_dim and r.shape[-1] != h.shape[-1]:
        raise HMMValueError(
            f"{names[0]} and {names[1]} must have the same feature dimension, got "
            f"{tuple(r.shape)} and {tuple(h.shape)}"
        )
    B = r.shape[0]
    rl = check_lengths(ref_lengths, B, r.shape[1], f"{names[0]}_lengths", r.device)
    if hyp_lengths is None:
        if ref_lengths is None and r.shape[1] != h.shape[1] and not allow_length_mismatch:
            raise HMMValueError(
                f"{names[0]} has {r.shape[1]} frames but {names[1]} has {h.shape[1]} "
                f"(shapes {tuple(r.shape)} and {tuple(h.shape)}); give lengths, or align first"
            )
        if ref_lengths is None:
            hl = torch.full((B,), h.shape[1], dtype=torch.long, device=r.device)
        else:
            hl = rl
            if B and int(hl.max()) > h.shape[1]:
                raise HMMValueError(
                    f"{names[1]} has {h.shape[1]} frames, fewer than "
                    f"{names[0]}_lengths max {int(hl.max())}"
                )
    else:
        hl = check_lengths(hyp_lengths, B, h.shape[1], f"{names[1]}_lengths", r.device)
    if not allow_length_mismatch and not torch.equal(rl, hl):
        raise HMMValueError(
            f"{names[0]} and {names[1]} lengths differ ({rl.tolist()} vs {hl.tolist()}); "
            "the frames must correspond one to one (or use DTW where offered)"
        )
    return r, h, rl, hl, unbatched


def frame_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    return torch.arange(total, device=lengths.device)[None] < lengths[:, None]


def check_segments(segments) -> list:
    """``segments`` as a list of ``(start, end, label)`` with finite times, 0 <= start <= end;
    ``HMMValueError`` naming the first bad segment otherwise."""
    segs = list(segments)
    for k, seg in enumerate(segs):
        if isinstance(seg, str) or len(seg) != 3:
            raise HMMValueError(f"segment {k} must be (start, end, label), got {seg!r}")
        try:
            s, e = float(seg[0]), float(seg[1])
        except (TypeError, ValueError) as err:
            raise HMMValueError(f"segment {k}: times must be numbers, got {seg!r}") from err
        if not (math.isfinite(s) and math.isfinite(e)) or s < 0 or e < s:
            raise HMMValueError(
                f"segment {k}: times must be finite with 0 <= start <= end, got {seg!r}"
            )
    return segs
