"""Mel-cepstral distortion."""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional

import torch

from ..core.validation import check_real_frames
from ..errors import HMMValueError
from ._common import batch_pair, frame_mask
from .dtw import dtw

__all__ = ["MCD_CONSTANT", "MCDResult", "mel_cepstral_distortion"]

MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)
"""``10 sqrt(2) / ln 10`` ~= 6.1418 dB per unit of Euclidean mel-cepstral distance."""


class MCDResult(NamedTuple):
    """Mel-cepstral distortion.

    Attributes:
        mcd: ``(B,)`` dB, mean per-frame distortion of each utterance (0 for an empty one).
        mean: pooled dB over every counted frame of the batch (frame-weighted mean).
        n_frames: ``(B,)`` frames (or DTW path steps) counted.
        paths: with DTW, the ``(L_b, 2)`` index pairs ``(ref frame, hyp frame)`` per
            utterance; else None.
    """

    mcd: torch.Tensor
    mean: float
    n_frames: torch.Tensor
    paths: Optional[List[torch.Tensor]]


def mel_cepstral_distortion(
    ref: torch.Tensor,
    hyp: torch.Tensor,
    ref_lengths: Optional[torch.Tensor] = None,
    hyp_lengths: Optional[torch.Tensor] = None,
    *,
    exclude_c0: bool = True,
    dtw_align: bool = False,
) -> MCDResult:
    """Mel-cepstral distortion in dB.

    Per frame pair ``(t, u)``::

        MCD(t, u) = 10 sqrt(2) / ln(10) * sqrt( sum_{d=d0}^{D-1} (ref[t, d] - hyp[u, d])^2 )

    with ``d0 = 1`` (energy term c0 left out, the default) or ``d0 = 0``. Without DTW the pairs
    are ``(t, t)`` for ``t < lengths[b]``, which must agree between ``ref`` and ``hyp``. With
    ``dtw_align=True`` the pairs are the cells of the DTW path (steps (1,0), (0,1), (1,1))
    minimising the summed Euclidean distance over the same coefficients, and each path cell
    counts as one frame. The utterance MCD is the mean over its pairs; ``mean`` pools all pairs.

    Args:
        ref, hyp: ``(B, T, D)`` or ``(T, D)`` mel-cepstra (same ``D``; with DTW the ``T`` may
            differ).
        ref_lengths, hyp_lengths: ``(B,)`` valid frames (``hyp_lengths`` defaults to
            ``ref_lengths``).
        exclude_c0: leave out coefficient 0.
        dtw_align: align the sequences by DTW first.

    Returns:
        :class:`MCDResult`.

    Raises:
        ValueError: mismatched lengths without DTW, mismatched feature dimensions, or
            ``D == 1`` with ``exclude_c0``.
    """
    r, h, rl, hl, _ = batch_pair(
        ref, hyp, ref_lengths, hyp_lengths, feature_dim=True, allow_length_mismatch=dtw_align
    )
    d0 = 1 if exclude_c0 else 0
    if r.shape[-1] <= d0:
        raise HMMValueError(
            f"ref has {r.shape[-1]} coefficient(s); with exclude_c0 at least 2 are needed"
        )
    # frames past the lengths are padding, never read (replaced by 0); NaN / inf in a real
    # frame is refused with the utterance and frame named
    r = check_real_frames("ref", r, rl, allow_neg_inf=False)
    h = check_real_frames("hyp", h, hl, allow_neg_inf=False)
    r, h = r[..., d0:], h[..., d0:]
    B = r.shape[0]
    if not dtw_align:
        dist = torch.linalg.vector_norm(r - h, dim=-1) * MCD_CONSTANT  # (B, T)
        mask = frame_mask(rl, r.shape[1])
        total = torch.where(mask, dist, dist.new_zeros(())).sum(1)
        counts = rl
        mcd = total / counts.clamp(min=1).to(total.dtype)
        pooled = float(total.sum() / max(int(counts.sum()), 1))
        return MCDResult(mcd, pooled, counts, None)
    mcds, counts, paths, totals = [], [], [], []
    for b in range(B):
        x, y = r[b, : int(rl[b])], h[b, : int(hl[b])]
        if x.shape[0] == 0 or y.shape[0] == 0:
            if x.shape[0] != y.shape[0]:
                raise HMMValueError(f"utterance {b}: one sequence is empty and the other is not")
            mcds.append(0.0)
            counts.append(0)
            totals.append(0.0)
            paths.append(torch.zeros(0, 2, dtype=torch.long))
            continue
        local = torch.cdist(x[None], y[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
        res = dtw(local.cpu().numpy())
        path = torch.from_numpy(res.path)
        d = local[path[:, 0], path[:, 1]] * MCD_CONSTANT
        totals.append(float(d.sum()))
        counts.append(len(path))
        mcds.append(float(d.mean()))
        paths.append(path)
    counts_t = torch.tensor(counts, dtype=torch.long)
    pooled = sum(totals) / max(sum(counts), 1)
    return MCDResult(torch.tensor(mcds, dtype=torch.float64), pooled, counts_t, paths)
