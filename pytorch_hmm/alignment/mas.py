"""Monotonic alignment search (MAS) as in Glow-TTS (Kim et al., 2020), batched.

Finds, per utterance, the monotonic, surjective alignment of ``T_text`` tokens to ``T_mel``
frames (every token gets at least one frame, every frame exactly one token, token index
non-decreasing in time) that maximises the summed ``log_p``. Recurrence, tie rule and
arithmetic (in the input dtype) are those of the reference Cython ``maximum_path`` used by
Glow-TTS and VITS (the ``monotonic-align`` package), so outputs are identical to it for
finite inputs (the reference uses ``-1e9`` for "impossible" where this uses ``-inf``).

Layout: ``log_p`` is ``(B, T_text, T_mel)`` as in Glow-TTS (VITS and the ``monotonic-align``
package take the transpose, ``(B, T_mel, T_text)``).

Back ends: numba on CPU (parallel over the batch); a torch loop over mel frames (vectorised
over batch and tokens) on GPU or when numba is missing.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..core.validation import check_lengths
from .dtw import _use_numba

__all__ = ["MASResult", "monotonic_alignment_search"]


class MASResult(NamedTuple):
    """Result of :func:`monotonic_alignment_search`.

    Attributes:
        alignment: ``(B, T_text, T_mel)`` hard 0/1 alignment in ``log_p``'s dtype (zero outside
            each utterance's lengths), as Glow-TTS's ``attn``.
        durations: ``(B, T_text)`` long, frames per token (``alignment.sum(-1)``).
    """

    alignment: Tensor
    durations: Tensor


def _lengths(x: Optional[Tensor], B: int, maxv: int, name: str) -> Tensor:
    return check_lengths(x, B, maxv, torch.device("cpu"), name=name, min_value=0)


def monotonic_alignment_search(
    log_p: Tensor,
    text_lengths: Optional[Tensor] = None,
    mel_lengths: Optional[Tensor] = None,
    backend: str = "auto",
) -> MASResult:
    """Glow-TTS monotonic alignment search.

    Args:
        log_p: ``(B, T_text, T_mel)`` (or unbatched ``(T_text, T_mel)``) log-likelihood of mel
            frame ``j`` under token ``i``. Float32 gives results identical to monotonic-align.
        text_lengths: ``(B,)`` valid tokens (default ``T_text``).
        mel_lengths: ``(B,)`` valid frames (default ``T_mel``); needs
            ``text_lengths <= mel_lengths``.
        backend: ``"auto"``, ``"numba"`` or ``"torch"``.

    Returns:
        :class:`MASResult` (``alignment`` ``(B, T_text, T_mel)``, ``durations`` ``(B, T_text)``;
        unbatched shapes for a 2-D ``log_p``). Not differentiable (detached), as in Glow-TTS.
    """
    if not isinstance(log_p, Tensor) or not log_p.is_floating_point():
        raise TypeError("log_p must be a floating-point tensor of shape (B, T_text, T_mel)")
    unbatched = log_p.dim() == 2
    if unbatched:
        if text_lengths is not None or mel_lengths is not None:
            raise ValueError("text_lengths/mel_lengths need a batched (B, T_text, T_mel) log_p")
        log_p = log_p.unsqueeze(0)
    if log_p.dim() != 3:
        raise ValueError(f"log_p must have shape (B, T_text, T_mel), got {tuple(log_p.shape)}")
    B, Tx, Ty = log_p.shape
    tx = _lengths(text_lengths, B, Tx, "text_lengths")
    ty = _lengths(mel_lengths, B, Ty, "mel_lengths")
    if B and (tx > ty).any():
        bad = (tx > ty).nonzero()[:, 0].tolist()
        raise ValueError(
            f"text_lengths must be <= mel_lengths (each token needs a frame); "
            f"violated for utterances {bad}"
        )
    if B and ((tx == 0) != (ty == 0)).any():
        bad = ((tx == 0) != (ty == 0)).nonzero()[:, 0].tolist()
        raise ValueError(f"text_lengths is 0 but mel_lengths is not for utterances {bad}")
    value = log_p.detach()
    kernels = _use_numba(value.device, backend)
    if kernels is not None:
        v = value.contiguous()
        if v.dtype not in (torch.float32, torch.float64):
            v = v.float()
        path = torch.zeros((B, Tx, Ty), dtype=v.dtype)
        dur = torch.zeros((B, Tx), dtype=torch.long)
        nan = np.zeros(B, dtype=np.bool_)  # the kernel flags NaN on the cells it reads
        kernels.mas(v.numpy(), tx.numpy(), ty.numpy(), path.numpy(), dur.numpy(), nan)
        if nan.any():
            raise ValueError(f"log_p contains NaN (utterances {np.nonzero(nan)[0].tolist()})")
        path = path.to(log_p.dtype)
    else:
        dev = value.device
        inside = (torch.arange(Tx, device=dev).view(1, Tx, 1) < tx.to(dev).view(B, 1, 1)) & (
            torch.arange(Ty, device=dev).view(1, 1, Ty) < ty.to(dev).view(B, 1, 1)
        )
        isnan = torch.isnan(value) & inside  # NaN in the padding is ignored, as by the kernel
        if isnan.any():
            bad = isnan.flatten(1).any(1).nonzero()[:, 0].tolist()
            raise ValueError(f"log_p contains NaN (utterances {bad})")
        path, dur = _mas_torch(value, tx.to(value.device), ty.to(value.device))
    if unbatched:
        return MASResult(path[0], dur[0])
    return MASResult(path, dur)


def _mas_torch(value: Tensor, tx: Tensor, ty: Tensor):
    B, Tx, Ty = value.shape
    device = value.device
    neg = torch.tensor(float("-inf"), dtype=value.dtype, device=device)
    xs = torch.arange(Tx, device=device).unsqueeze(0)  # (1, Tx)
    txc = tx.unsqueeze(1)
    tyc = ty.unsqueeze(1)
    prev = torch.full((B, Tx), float("-inf"), dtype=value.dtype, device=device)
    down = torch.zeros((B, Tx, Ty), dtype=torch.bool, device=device)
    neg_col = torch.full((B, 1), float("-inf"), dtype=value.dtype, device=device)
    for y in range(Ty):
        lo = (txc + y - tyc).clamp_min(0)
        in_rng = (xs >= lo) & (xs < torch.clamp(txc, max=y + 1)) & (y < tyc)
        v_cur = torch.where(xs == y, neg, prev)
        shifted = torch.cat([neg_col, prev[:, :-1]], dim=1)
        if y == 0:
            shifted = shifted.clone()
            shifted[:, 0] = 0.0
        cur = torch.maximum(v_cur, shifted) + value[:, :, y]
        if y > 0:
            down[:, 1:, y] = (xs[:, 1:] == y) | (prev[:, 1:] < prev[:, :-1])
        prev = torch.where(in_rng, cur, prev)
    path = torch.zeros((B, Tx, Ty), dtype=value.dtype, device=device)
    index = (tx - 1).clamp_min(0)
    bidx = torch.arange(B, device=device)
    one = torch.ones((), dtype=value.dtype, device=device)
    for y in range(Ty - 1, -1, -1):
        active = (y < ty) & (tx > 0)
        path[bidx, index, y] = torch.where(active, one, path[bidx, index, y])
        dec = active & (index != 0) & down[bidx, index, y]
        index = index - dec.long()
    dur = path.sum(-1).round().long()
    return path, dur
