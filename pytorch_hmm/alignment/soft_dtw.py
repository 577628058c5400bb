"""Soft-DTW (Cuturi & Blondel, 2017): a differentiable DTW loss, batched with lengths.

``R[i, j] = C[i, j] + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1])`` with
``softmin_gamma(a) = -gamma * log(sum(exp(-a / gamma)))``; the loss is ``R[N-1, M-1]``
(symmetric1 steps; as ``gamma -> 0`` it tends to the DTW cost with ``symmetric1``).

The backward pass is the E-matrix recursion of the paper (a custom autograd Function), so the
memory is ``O(B * N * M)`` (the cost and R matrices) with no autograd tape of small steps.
Back ends: numba on CPU (parallel over the batch), an anti-diagonal torch wavefront on GPU or
when numba is missing.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..core.backend import kernel_call
from ..errors import HMMTypeError, HMMValueError
from .dtw import _as_tensor, _check_lengths, _use_numba, pairwise_distance, prepare_features

__all__ = ["soft_dtw_distance", "soft_dtw_cost", "SoftDTW"]


def _band_arg(band: Optional[int]) -> int:
    if band is None:
        return -1
    if int(band) != band or band < 0:
        raise HMMValueError(f"band must be a non-negative integer or None, got {band!r}")
    return int(band)


# ----------------------------------------------------------------------------------------------
# torch wavefront
# ----------------------------------------------------------------------------------------------
def _diag(k: int, N: int, M: int, device) -> tuple:
    i = torch.arange(max(0, k - M + 1), min(k, N - 1) + 1, device=device)
    return i, k - i


def _torch_forward(C: Tensor, n: Tensor, m: Tensor, gamma: float, band: int) -> Tensor:
    """R ``(B, N+1, M+1)``; ``R[:, i+1, j+1]`` is cell ``(i, j)``."""
    B, N, M = C.shape
    inf = float("inf")
    R = torch.full((B, N + 1, M + 1), inf, dtype=C.dtype, device=C.device)
    R[:, 0, 0] = 0.0
    for k in range(N + M - 1):
        i, j = _diag(k, N, M, C.device)
        cand = torch.stack([R[:, i, j], R[:, i, j + 1], R[:, i + 1, j]], dim=0)  # (3, B, L)
        z = -cand / gamma
        zmax = z.amax(dim=0)
        finite = torch.isfinite(zmax)
        zmax_safe = torch.where(finite, zmax, torch.zeros_like(zmax))
        lse = torch.log(torch.exp(z - zmax_safe).sum(dim=0)) + zmax_safe
        soft = torch.where(finite, -gamma * lse, torch.full_like(zmax, inf))
        val = C[:, i, j] + soft
        if band >= 0:
            val = val.masked_fill((i - j).abs() > band, inf)
        R[:, i + 1, j + 1] = val
    # cells beyond each pair's lengths are never used; leave them as computed
    return R


def _torch_backward(C: Tensor, R: Tensor, n: Tensor, m: Tensor, gamma: float) -> Tensor:
    """E ``(B, N, M)`` = d R[b, n_b, m_b] / d C[b]."""
    B, N, M = C.shape
    device = C.device
    inf = float("inf")
    nn_ = n.to(device).view(B, 1)
    mm_ = m.to(device).view(B, 1)
    # Rm: R restricted to each pair's rectangle, +inf elsewhere, padded by one cell
    rows = torch.arange(N, device=device).view(1, N, 1)
    cols = torch.arange(M, device=device).view(1, 1, M)
    inside = (rows < n.to(device).view(B, 1, 1)) & (cols < m.to(device).view(B, 1, 1))
    Rm = torch.full((B, N + 1, M + 1), inf, dtype=C.dtype, device=device)
    Rm[:, :N, :M] = torch.where(inside, R[:, 1:, 1:], torch.full_like(C, inf))
    Cp = torch.zeros((B, N + 1, M + 1), dtype=C.dtype, device=device)
    Cp[:, :N, :M] = C
    E = torch.zeros((B, N + 1, M + 1), dtype=C.dtype, device=device)
    for k in range(N + M - 2, -1, -1):
        i, j = _diag(k, N, M, device)
        r = Rm[:, i, j]
        is_end = (i.view(1, -1) == nn_ - 1) & (j.view(1, -1) == mm_ - 1)
        acc = torch.zeros_like(r)
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            r2 = Rm[:, i + di, j + dj]
            ok = torch.isfinite(r2) & torch.isfinite(r)
            expo = torch.where(
                ok, (r2 - r - Cp[:, i + di, j + dj]) / gamma, torch.full_like(r, -inf)
            )
            acc = acc + E[:, i + di, j + dj] * torch.exp(expo)
        acc = torch.where(is_end & torch.isfinite(r), torch.ones_like(acc), acc)
        E[:, i, j] = acc
    return E[:, :N, :M]


# ----------------------------------------------------------------------------------------------
class _SoftDTWFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, C: Tensor, n: Tensor, m: Tensor, gamma: float, band: int, kernels):
        Cd = C.detach()
        B = Cd.shape[0]
        if kernels is not None:
            Cn = Cd.contiguous().numpy()
            R = np.empty((B, Cd.shape[1] + 1, Cd.shape[2] + 1), dtype=np.float64)
            with kernel_call():
                kernels.soft_dtw_forward(Cn, n.numpy(), m.numpy(), float(gamma), band, R)
            R = torch.from_numpy(R)
        else:
            # accumulate in float64 on CPU (as the numba kernel); in the input dtype on GPU
            acc = torch.float64 if Cd.device.type == "cpu" else Cd.dtype
            R = _torch_forward(Cd.to(acc), n, m, float(gamma), band)
        idx = torch.arange(B, device=Cd.device)
        loss = R[idx, n.to(Cd.device), m.to(Cd.device)].to(Cd.dtype)
        ctx.save_for_backward(Cd, R)
        ctx.n, ctx.m, ctx.gamma, ctx.kernels = n, m, float(gamma), kernels
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        C, R = ctx.saved_tensors
        if ctx.kernels is not None:
            E = np.zeros(C.shape, dtype=np.float64)
            with kernel_call():
                ctx.kernels.soft_dtw_backward(
                    C.contiguous().numpy(), R.numpy(), ctx.n.numpy(), ctx.m.numpy(), ctx.gamma, E
                )
            E = torch.from_numpy(E)
        else:
            E = _torch_backward(C.to(R.dtype), R, ctx.n, ctx.m, ctx.gamma)
        E = E.to(device=C.device, dtype=C.dtype)
        return E * grad_out.view(-1, 1, 1), None, None, None, None, None


def soft_dtw_cost(
    cost: Tensor,
    gamma: float = 1.0,
    x_lengths: Optional[Tensor] = None,
    y_lengths: Optional[Tensor] = None,
    band: Optional[int] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """Soft-DTW value of a local cost matrix, differentiable with respect to ``cost``.

    Args:
        cost: ``(B, N, M)`` (or ``(N, M)``) local costs, float32/float64.
        gamma: smoothing, ``> 0``.
        x_lengths: ``(B,)`` valid rows per pair (default ``N``).
        y_lengths: ``(B,)`` valid columns per pair (default ``M``).
        band: Sakoe-Chiba radius (``|i - j| <= band``), or ``None``.
        backend: ``"auto"``, ``"numba"`` or ``"torch"``.

    Returns:
        ``(B,)`` soft-DTW values (0-d for a 2-D ``cost``); ``inf`` where the band admits no path.
    """
    cost = _as_tensor(cost, "cost")
    if cost.dim() not in (2, 3):
        raise HMMValueError(f"cost must have shape (N, M) or (B, N, M), got {tuple(cost.shape)}")
    gamma = _gamma_arg(gamma)
    unbatched = cost.dim() == 2
    if unbatched:
        if x_lengths is not None or y_lengths is not None:
            raise HMMValueError("x_lengths/y_lengths need a batched (B, N, M) cost")
        cost = cost.unsqueeze(0)
    if not cost.is_floating_point():
        raise HMMTypeError(f"cost must be a floating-point tensor, got {cost.dtype}")
    in_dtype = cost.dtype
    if in_dtype not in (torch.float32, torch.float64):
        cost = cost.float()  # float16 / bfloat16: computed in float32, returned as given
    B, N, M = cost.shape
    if N < 1 or M < 1:
        raise HMMValueError(f"cost must have N, M >= 1, got shape {tuple(cost.shape)}")
    n = _check_lengths(x_lengths, B, N, "x_lengths")
    m = _check_lengths(y_lengths, B, M, "y_lengths")
    _check_cost(cost, n, m)
    kernels = _use_numba(cost.device, backend)
    out = _SoftDTWFunction.apply(cost, n, m, gamma, _band_arg(band), kernels)
    out = out.to(in_dtype)
    return out[0] if unbatched else out


def _gamma_arg(gamma) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating, np.integer)):
        raise HMMTypeError(f"gamma must be a number > 0, got {gamma!r}")
    g = float(gamma)
    if not (0 < g < math.inf):
        raise HMMValueError(f"gamma must be > 0 and finite, got {gamma!r}")
    return g


def _check_cost(cost: Tensor, n: Tensor, m: Tensor) -> None:
    """NaN or -inf inside a pair's lengths is an error on every backend (+inf is a forbidden
    cell). Without this the backends disagreed (NaN on one, a finite wrong value on the
    other)."""
    B, N, M = cost.shape
    if B == 0:
        return
    odd = torch.isnan(cost) | torch.isneginf(cost)
    if not bool(odd.any()):
        return
    rows = torch.arange(N, device=cost.device).view(1, N, 1)
    cols = torch.arange(M, device=cost.device).view(1, 1, M)
    inside = (rows < n.to(cost.device).view(B, 1, 1)) & (cols < m.to(cost.device).view(B, 1, 1))
    hit = (odd & inside).flatten(1).any(1)
    if bool(hit.any()):
        raise HMMValueError(
            f"cost contains NaN or -inf (pairs {hit.nonzero()[:, 0].tolist()}); local costs "
            "must be finite or +inf (a forbidden cell)"
        )


def soft_dtw_distance(
    x: Tensor,
    y: Tensor,
    gamma: float = 1.0,
    x_lengths: Optional[Tensor] = None,
    y_lengths: Optional[Tensor] = None,
    distance: Union[str, Callable[[Tensor, Tensor], Tensor]] = "sqeuclidean",
    band: Optional[int] = None,
    backend: Optional[str] = None,
) -> Tensor:
    """Soft-DTW between feature sequences ``x`` ``(B, N, D)`` and ``y`` ``(B, M, D)``.

    Differentiable in ``x`` and ``y`` (through the distance). ``distance`` as in
    :class:`~pytorch_hmm.alignment.DTWAligner` (default squared euclidean, as in the paper).
    Returns ``(B,)`` values (0-d for unbatched ``(N, D)``/``(M, D)`` inputs).
    """
    x, y = prepare_features(x, y, x_lengths, y_lengths)
    cost = distance(x, y) if callable(distance) else pairwise_distance(x, y, distance)
    return soft_dtw_cost(cost, gamma, x_lengths, y_lengths, band, backend)


class SoftDTW(nn.Module):
    """Soft-DTW loss module.

    Args:
        gamma: smoothing (``> 0``).
        distance: ``"sqeuclidean"`` (default), ``"euclidean"``, ``"cosine"`` or a callable.
        band: Sakoe-Chiba radius or ``None``.
        normalize: return the soft-DTW divergence
            ``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2`` (Blondel et al., 2021), which is
            non-negative and zero for ``x == y``.
        reduction: ``"none"``, ``"mean"`` or ``"sum"`` over the batch.

    ``forward(x (B, N, D), y (B, M, D), x_lengths=None, y_lengths=None)``.
    """

    def __init__(
        self,
        gamma: float = 1.0,
        distance: Union[str, Callable[[Tensor, Tensor], Tensor]] = "sqeuclidean",
        band: Optional[int] = None,
        normalize: bool = False,
        reduction: str = "mean",
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise HMMValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
        self.gamma = _gamma_arg(gamma)
        self.distance = distance
        self.band = band
        self.normalize = normalize
        self.reduction = reduction
        self.backend = backend

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        x_lengths: Optional[Tensor] = None,
        y_lengths: Optional[Tensor] = None,
    ) -> Tensor:
        def f(a, b, la, lb):
            return soft_dtw_distance(
                a, b, self.gamma, la, lb, self.distance, self.band, self.backend
            )

        out = f(x, y, x_lengths, y_lengths)
        if self.normalize:
            out = out - 0.5 * (f(x, x, x_lengths, x_lengths) + f(y, y, y_lengths, y_lengths))
        if self.reduction == "mean":
            return out.mean()
        if self.reduction == "sum":
            return out.sum()
        return out
