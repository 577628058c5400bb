"""F0 error metrics."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from ..errors import HMMTypeError, HMMValueError
from ._common import as_tensor, batch_pair, frame_mask

__all__ = ["F0Metrics", "f0_metrics"]


class F0Metrics(NamedTuple):
    """F0 errors per utterance ``(B,)`` and pooled over the batch.

    Attributes:
        rmse_hz: ``(B,)`` RMSE in Hz over frames voiced in both (0.0 where there is none).
        rmse_cents: ``(B,)`` RMSE in cents, ``1200 log2(hyp / ref)``, same frames.
        vuv_error: ``(B,)`` share of valid frames whose voicing decisions differ.
        n_voiced: ``(B,)`` frames voiced in both. n_frames: ``(B,)`` valid frames.
        mean_rmse_hz, mean_rmse_cents: pooled RMSE over all voiced-in-both frames of the batch.
        mean_vuv_error: pooled share over all valid frames.
    """

    rmse_hz: torch.Tensor
    rmse_cents: torch.Tensor
    vuv_error: torch.Tensor
    n_voiced: torch.Tensor
    n_frames: torch.Tensor
    mean_rmse_hz: float
    mean_rmse_cents: float
    mean_vuv_error: float


def _voicing(f0: torch.Tensor, voiced, name: str, valid: torch.Tensor) -> torch.Tensor:
    if voiced is None:
        return torch.isfinite(f0) & (f0 > 0)
    v = as_tensor(voiced, name).to(f0.device)
    if v.dim() == f0.dim() - 1:
        v = v.unsqueeze(0)
    if v.shape != f0.shape:
        raise HMMValueError(
            f"{name} must have the shape of its F0 {tuple(f0.shape)}, got {tuple(v.shape)}"
        )
    if v.is_complex() or (v.is_floating_point() and not bool(((v == 0) | (v == 1)).all())):
        raise HMMTypeError(f"{name} must be a boolean (or 0/1) voicing mask, got {v.dtype}")
    v = v.bool()
    # padded frames (t >= lengths[b]) are never read
    bad = v & ~(torch.isfinite(f0) & (f0 > 0)) & valid
    if bool(bad.any()):
        b, t = torch.nonzero(bad)[0].tolist()
        raise HMMValueError(
            f"{name} marks frames voiced whose F0 is not a positive number (first: utterance "
            f"{b}, frame {t}, F0 {float(f0[b, t])})"
        )
    return v & valid


def f0_metrics(
    ref_f0: torch.Tensor,
    hyp_f0: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    ref_voiced: Optional[torch.Tensor] = None,
    hyp_voiced: Optional[torch.Tensor] = None,
) -> F0Metrics:
    """F0 RMSE (Hz and cents) over frames voiced in both, and voiced/unvoiced error rate.

    With ``V_b`` the valid frames (``t < lengths[b]``) voiced in both sequences::

        rmse_hz    = sqrt( mean_{t in V_b} (hyp[t] - ref[t])^2 )
        rmse_cents = sqrt( mean_{t in V_b} (1200 log2(hyp[t] / ref[t]))^2 )
        vuv_error  = #{t < lengths[b] : voiced_ref[t] != voiced_hyp[t]} / lengths[b]

    An empty ``V_b`` (no frame voiced in both) gives 0.0 RMSE with ``n_voiced == 0`` (not
    NaN); a zero-length utterance gives ``vuv_error`` 0.0.

    Args:
        ref_f0, hyp_f0: ``(B, T)`` or ``(T,)`` F0 in Hz on the same frame grid. A frame is
            voiced when its F0 is finite and > 0 (pyin's NaN and the HTS 0 both mean unvoiced)
            unless voicing masks are given.
        lengths: ``(B,)`` valid frames.
        ref_voiced, hyp_voiced: optional boolean voicing ``(B, T)``/``(T,)``.

    Returns:
        :class:`F0Metrics`.

    Raises:
        ValueError: different frame counts or batch sizes (there is no alignment here).
    """
    r, h, n, _, _ = batch_pair(ref_f0, hyp_f0, lengths, None, feature_dim=False)
    valid = frame_mask(n, r.shape[1])
    vr = _voicing(r, ref_voiced, "ref_voiced", valid)
    vh = _voicing(h, hyp_voiced, "hyp_voiced", valid)
    both = vr & vh & valid
    safe_r = torch.where(both, r, torch.ones_like(r))
    safe_h = torch.where(both, h, torch.ones_like(h))
    sq_hz = torch.where(both, (safe_h - safe_r) ** 2, torch.zeros_like(r))
    cents = 1200.0 * torch.log2(safe_h / safe_r)
    sq_c = torch.where(both, cents**2, torch.zeros_like(r))
    nv = both.sum(1)
    denom = nv.clamp(min=1).to(r.dtype)
    rmse_hz = torch.sqrt(sq_hz.sum(1) / denom)
    rmse_c = torch.sqrt(sq_c.sum(1) / denom)
    mism = ((vr != vh) & valid).sum(1)
    vuv = mism.to(r.dtype) / n.clamp(min=1).to(r.dtype)
    tot_v = max(int(nv.sum()), 1)
    return F0Metrics(
        rmse_hz,
        rmse_c,
        vuv,
        nv,
        n,
        math.sqrt(float(sq_hz.sum()) / tot_v),
        math.sqrt(float(sq_c.sum()) / tot_v),
        float(mism.sum()) / max(int(n.sum()), 1),
    )
