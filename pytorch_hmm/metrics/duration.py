"""Phone / state duration metrics."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from ..errors import HMMTypeError, HMMValueError
from ._common import as_tensor, batch_pair, check_finite, check_scalar, frame_mask

__all__ = ["DurationMetrics", "duration_metrics"]

_UNITS = ("frames", "ms", "relative")


class DurationMetrics(NamedTuple):
    """Duration errors per utterance ``(B,)`` and pooled over all phones of the batch.

    Attributes:
        mae_frames: ``(B,)`` mean absolute error in frames. mae_ms: ``(B,)`` the same in ms.
        rmse_frames: ``(B,)`` root mean squared error in frames.
        accuracy: ``(B,)`` share of phones whose predicted duration is within the tolerance.
        n_phones: ``(B,)`` phones counted.
        mean_mae_frames, mean_mae_ms, mean_rmse_frames, mean_accuracy: pooled over all phones.
    """

    mae_frames: torch.Tensor
    mae_ms: torch.Tensor
    rmse_frames: torch.Tensor
    accuracy: torch.Tensor
    n_phones: torch.Tensor
    mean_mae_frames: float
    mean_mae_ms: float
    mean_rmse_frames: float
    mean_accuracy: float


def duration_metrics(
    ref: torch.Tensor,
    hyp: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    frame_shift_ms: float = 5.0,
    tolerance: float = 2.0,
    tolerance_unit: str = "frames",
) -> DurationMetrics:
    """Duration errors of predicted vs reference phone (or state) durations in frames.

    For the valid phones ``k < lengths[b]`` with error ``e_k = hyp_k - ref_k`` (frames)::

        mae_frames = mean |e_k|;   mae_ms = mae_frames * frame_shift_ms;
        rmse_frames = sqrt(mean e_k^2)
        accuracy = share of k with |e_k| <= tol_k, where tol_k is ``tolerance`` frames
                   (``tolerance_unit="frames"``), ``tolerance / frame_shift_ms`` frames
                   (``"ms"``) or ``tolerance * ref_k`` frames (``"relative"``)

    The comparison is inclusive (with 1e-9 slack for rounding). Empty utterances give 0.0.

    Args:
        ref, hyp: ``(B, K)`` or ``(K,)`` durations in frames (state durations: sum them
            per phone first, or pass ``(K*S,)`` flattened for state-level figures).
        lengths: ``(B,)`` valid phones.
        frame_shift_ms: milliseconds per frame (5 ms for HTS).
        tolerance, tolerance_unit: see above.
    """
    if tolerance_unit not in _UNITS:
        raise HMMValueError(f"tolerance_unit must be one of {_UNITS}, got {tolerance_unit!r}")
    tolerance = check_scalar(tolerance, "tolerance")
    frame_shift_ms = check_scalar(frame_shift_ms, "frame_shift_ms", positive=True)
    for x, nm in ((ref, "ref"), (hyp, "hyp")):
        t = as_tensor(x, nm)
        if t.dtype == torch.bool or t.is_complex():
            raise HMMTypeError(f"{nm} must hold durations (numbers), got {t.dtype}")
    r, h, n, _, _ = batch_pair(ref, hyp, lengths, None, feature_dim=False)
    valid_ = frame_mask(n, r.shape[1])
    check_finite(torch.where(valid_, r, torch.zeros_like(r)), "ref", non_negative=True)
    check_finite(torch.where(valid_, h, torch.zeros_like(h)), "hyp", non_negative=True)
    valid = frame_mask(n, r.shape[1])
    err = torch.where(valid, h - r, torch.zeros_like(r))
    if tolerance_unit == "frames":
        tol = torch.full_like(r, tolerance)
    elif tolerance_unit == "ms":
        tol = torch.full_like(r, tolerance / frame_shift_ms)
    else:
        tol = tolerance * r.abs()
    hit = (err.abs() <= tol + 1e-9) & valid
    cnt = n.clamp(min=1).to(r.dtype)
    mae = err.abs().sum(1) / cnt
    rmse = torch.sqrt((err**2).sum(1) / cnt)
    acc = hit.sum(1).to(r.dtype) / cnt
    total = max(int(n.sum()), 1)
    mean_mae = float(err.abs().sum()) / total
    return DurationMetrics(
        mae,
        mae * frame_shift_ms,
        rmse,
        acc,
        n,
        mean_mae,
        mean_mae * frame_shift_ms,
        math.sqrt(float((err**2).sum()) / total),
        float(hit.sum()) / total,
    )
