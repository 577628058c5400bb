"""Transition operators: dense ``(1|B, K, K)`` or banded (left-to-right and other band shapes).

A banded matrix has every finite entry ``log_A[i, j]`` at an offset ``j - i`` in ``[lo, hi]``;
the recursion then reduces over ``W = hi - lo + 1`` predecessors instead of ``K``, which makes
a step O(B*K*W) instead of O(B*K*K). :func:`make_transitions` finds the band by itself, so a
left-to-right model converted from elsewhere gets the fast path too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

NEG_INF = float("-inf")


def find_band(log_transitions: torch.Tensor) -> Tuple[int, int]:
    """Smallest ``(lo, hi)`` with ``lo <= 0 <= hi`` such that every finite entry of
    ``log_transitions`` (..., K, K) has ``lo <= j - i <= hi``."""
    K = log_transitions.shape[-1]
    finite = torch.isfinite(log_transitions)
    if finite.dim() == 3:
        finite = finite.any(0)
    ij = torch.nonzero(finite)
    if ij.numel() == 0:
        return 0, 0
    off = ij[:, 1] - ij[:, 0]
    lo, hi = int(off.min()), int(off.max())
    return min(lo, 0), max(hi, 0) if K > 0 else 0


@dataclass
class Transitions:
    """A transition operator in log space.

    dense: ``log_A`` (1|B, K, K). banded: ``band_dst`` (1|B, K, W) with
    ``band_dst[b, j, d] = log_A[b, j - (hi - d), j]`` (indexed by destination, for the forward
    recursion) and ``band_src`` (1|B, K, W) with ``band_src[b, i, d] = log_A[b, i, i + lo + d]``
    (indexed by source, for the backward recursion).
    """

    log_A: torch.Tensor
    banded: bool
    lo: int = 0
    hi: int = 0
    band_dst: Optional[torch.Tensor] = None
    band_src: Optional[torch.Tensor] = None
    log_A_T: Optional[torch.Tensor] = None
    scaled_ok: Optional[bool] = None  # cached by the engine: may the rescaled recursion run?

    def __post_init__(self) -> None:
        if not self.banded and self.log_A_T is None:
            # destination-major copy, so the forward step reduces over a contiguous axis
            self.log_A_T = self.log_A.transpose(-1, -2).contiguous()

    def to(self, dtype: torch.dtype) -> Transitions:
        """The same operator in another floating dtype."""

        def cv(x):
            return None if x is None else x.to(dtype)

        return Transitions(
            cv(self.log_A),
            self.banded,
            self.lo,
            self.hi,
            cv(self.band_dst),
            cv(self.band_src),
            cv(self.log_A_T),
        )

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    @property
    def num_states(self) -> int:
        return self.log_A.shape[-1]

    # -- one step of the recursions -------------------------------------------------------
    def gather_predecessors(self, prev: torch.Tensor) -> torch.Tensor:
        """Scores of every (predecessor -> state) move: ``prev`` (..., B, K) -> (..., B, K_dst,
        K_src) for dense, (..., B, K_dst, W) for banded (window d is predecessor
        ``j - (hi - d)``). Reduce over the last axis."""
        if not self.banded:
            return prev.unsqueeze(-2) + self.log_A_T
        padded = torch.nn.functional.pad(prev, (self.hi, -self.lo), value=NEG_INF)
        return padded.unfold(-1, self.width, 1) + self.band_dst

    def gather_successors(self, nxt: torch.Tensor) -> torch.Tensor:
        """Scores of every (state -> successor) move: ``nxt`` (..., B, K) -> (..., B, K_src,
        K_dst) for dense, (..., B, K_src, W) for banded (window d is successor ``i + lo + d``).
        Reduce over the last axis."""
        if not self.banded:
            return self.log_A + nxt.unsqueeze(-2)
        padded = torch.nn.functional.pad(nxt, (-self.lo, self.hi), value=NEG_INF)
        return padded.unfold(-1, self.width, 1) + self.band_src

    def best_predecessor(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """Viterbi back-tracking step: for ``prev`` (B, K) scores at frame t-1 and the states
        ``cur`` (B,) chosen at frame t, the best predecessor of each, (B,). Ties go to the
        lowest state index (as ``argmax``)."""
        B, K = prev.shape
        c = cur.clamp(0, K - 1)
        if not self.banded:
            if self.log_A_T.shape[0] == 1:  # shared matrix: one row lookup
                cols = self.log_A_T[0][c]
            else:
                cols = self.log_A_T.gather(1, c.view(B, 1, 1).expand(B, 1, K)).squeeze(1)
            return (prev + cols).argmax(-1)
        W = self.width
        padded = torch.nn.functional.pad(prev, (self.hi, -self.lo), value=NEG_INF)
        win = padded.unfold(-1, W, 1).gather(1, c.view(B, 1, 1).expand(B, 1, W)).squeeze(1)
        band = self.band_dst.expand(B, K, W).gather(1, c.view(B, 1, 1).expand(B, 1, W))
        # window d is predecessor j - (hi - d): low d is a low state, so ties match dense
        d = (win + band.squeeze(1)).argmax(-1)
        return c - (self.hi - d)

    def banded_backpointers(self, delta: torch.Tensor) -> torch.Tensor:
        """All back-pointers of a banded model at once: ``delta`` (T, B, K) Viterbi scores ->
        (T, B, K) int, the best predecessor state of each state at each frame (frame 0 holds
        garbage). Vectorised over frames in chunks (memory O(chunk*B*K*W))."""
        T, B, K = delta.shape
        W = self.width
        out = torch.empty(
            T, B, K, dtype=torch.int32 if K < 2**31 else torch.long, device=delta.device
        )
        j = torch.arange(K, device=delta.device, dtype=out.dtype)
        chunk = max(1, (1 << 22) // max(1, B * K * W))
        for t0 in range(1, T, chunk):
            t1 = min(T, t0 + chunk)
            p = torch.nn.functional.pad(delta[t0 - 1 : t1 - 1], (self.hi, -self.lo), value=NEG_INF)
            # argmax over the W band slots as W-1 comparisons (a reduction over a tiny last
            # axis is slow); strict '>' keeps the lowest predecessor on ties, as argmax
            best = p[..., 0:K] + self.band_dst[..., 0]
            arg = torch.zeros(best.shape, dtype=out.dtype, device=delta.device)
            for d in range(1, W):
                cand = p[..., d : d + K] + self.band_dst[..., d]
                better = cand > best
                arg = torch.where(better, d, arg)
                best = torch.where(better, cand, best)
            out[t0:t1] = (j - self.hi + arg).clamp_(0, K - 1)  # clamp: rows with no valid path
        return out

    def band_to_dense(self, band_src: torch.Tensor) -> torch.Tensor:
        """(B, K, W) source-indexed band values (e.g. expected counts) -> dense (B, K, K)."""
        B, K, W = band_src.shape
        out = band_src.new_zeros(B, K, K + W)
        i = torch.arange(K, device=band_src.device)
        cols = (i.unsqueeze(1) + torch.arange(W, device=band_src.device)).expand(B, K, W)
        out.scatter_(2, cols, band_src)
        # column c of `out` is state c + lo
        shift = -self.lo
        return out[:, :, shift : shift + K]


def make_transitions(log_transitions: torch.Tensor, topology: str = "auto") -> Transitions:
    """Build the operator for ``log_transitions`` (1|B, K, K).

    ``topology``: ``"dense"``, ``"banded"`` or ``"auto"`` (banded when the band covers at most
    half of the states and K >= 4).
    """
    if topology not in ("auto", "dense", "banded"):
        raise ValueError(f"topology must be 'auto', 'dense' or 'banded', got {topology!r}")
    K = log_transitions.shape[-1]
    if topology == "dense":
        return Transitions(log_transitions, banded=False)
    lo, hi = find_band(log_transitions)
    W = hi - lo + 1
    if topology == "auto" and not (K >= 4 and 2 * W <= K):
        return Transitions(log_transitions, banded=False)
    dev = log_transitions.device
    i = torch.arange(K, device=dev)
    d = torch.arange(W, device=dev)
    # destination-indexed: src = j - (hi - d)
    src = i.unsqueeze(1) - (hi - d).unsqueeze(0)  # (K, W)
    ok = (src >= 0) & (src < K)
    A = log_transitions
    band_dst = A[:, src.clamp(0, K - 1), i.unsqueeze(1).expand(K, W)]
    band_dst = band_dst.masked_fill(~ok, NEG_INF)
    # source-indexed: dst = i + lo + d
    dst = i.unsqueeze(1) + (lo + d).unsqueeze(0)
    ok2 = (dst >= 0) & (dst < K)
    band_src = A[:, i.unsqueeze(1).expand(K, W), dst.clamp(0, K - 1)]
    band_src = band_src.masked_fill(~ok2, NEG_INF)
    return Transitions(A, True, lo, hi, band_dst.contiguous(), band_src.contiguous())
