"""Transition operators in log space: dense or banded, fixed or time-varying.

The caller states the structure; shapes never depend on values:

- :meth:`Transitions.dense` ``log_A`` (K, K), (B, K, K) or time-varying (1|B, T-1, K, K):
  ``[..., i, j] = log p(z_{t+1} = j | z_t = i)``; time-varying ``[:, t]`` moves frame t to t+1.
- :meth:`Transitions.banded` ``values`` (K, W), (B, K, W) or time-varying (1|B, T-1, K, W),
  source-indexed: ``values[..., i, d] = log p(z_{t+1} = i + lo + d | z_t = i)``; the band's
  offsets are ``lo .. hi = lo + W - 1``. A left-to-right chain is ``lo=0, W=2`` (stay, move).
  A step then costs O(B*K*W) instead of O(B*K*K).

:func:`make_transitions` turns a plain matrix into an operator, finding its band from the
values: a convenience for matrices converted from elsewhere, never used by the library's own
graphs (which know their structure).

Internally ``values`` is always 4-D, ``(Bx, Tx, K, K|W)`` with ``Bx`` in {1, B} (shared or
per sequence) and ``Tx`` 1 (fixed) or the number of moves (time-varying).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..errors import HMMTypeError, HMMValueError

NEG_INF = float("-inf")


def find_band(log_transitions: torch.Tensor) -> Tuple[int, int]:
    """Smallest ``(lo, hi)`` with ``lo <= 0 <= hi`` such that every finite entry of
    ``log_transitions`` (..., K, K) has ``lo <= j - i <= hi``."""
    finite = torch.isfinite(log_transitions)
    while finite.dim() > 2:
        finite = finite.any(0)
    ij = torch.nonzero(finite)
    if ij.numel() == 0:
        return 0, 0
    off = ij[:, 1] - ij[:, 0]
    return min(int(off.min()), 0), max(int(off.max()), 0)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


class Transitions:
    """A transition operator (see the module documentation). Build it with
    :meth:`dense`, :meth:`banded` or :func:`make_transitions`."""

    def __init__(self, kind: str, values: torch.Tensor, lo: int = 0, time_varying: bool = False):
        if kind not in ("dense", "banded"):
            raise HMMValueError(f"kind must be 'dense' or 'banded', got {kind!r}")
        if values.dim() != 4:
            raise HMMValueError(f"values must be 4-D (Bx, Tx, K, K|W), got {_shape(values)}")
        self.kind = kind
        self.values = values
        self.lo = int(lo) if kind == "banded" else -(values.shape[-1] - 1)
        self.time_varying = bool(time_varying)
        self.scaled_ok: Optional[bool] = None  # cached by the engine
        self._dst: Optional[torch.Tensor] = None
        self._fwd: Optional[torch.Tensor] = None

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def dense(cls, log_A: torch.Tensor) -> Transitions:
        """``log_A`` (K, K), (B, K, K) or time-varying (1|B, T-1, K, K)."""
        if not isinstance(log_A, torch.Tensor):
            raise HMMTypeError(f"log_A must be a torch.Tensor, got {type(log_A).__name__}")
        if log_A.dim() not in (2, 3, 4) or log_A.shape[-1] != log_A.shape[-2]:
            raise HMMValueError(
                "dense log_transitions must have shape (K, K), (B, K, K) or time-varying "
                f"(B, T-1, K, K), got {_shape(log_A)}"
            )
        tv = log_A.dim() == 4
        while log_A.dim() < 4:
            log_A = log_A.unsqueeze(0) if log_A.dim() == 2 else log_A.unsqueeze(1)
        return cls("dense", log_A, time_varying=tv)

    @classmethod
    def banded(cls, values: torch.Tensor, lo: int = 0) -> Transitions:
        """``values`` (K, W), (B, K, W) or time-varying (1|B, T-1, K, W), source-indexed:
        ``values[..., i, d] = log p(i -> i + lo + d)``. Entries whose destination lies outside
        ``[0, K)`` are ignored (set to -inf)."""
        if not isinstance(values, torch.Tensor):
            raise HMMTypeError(f"band values must be a torch.Tensor, got {type(values).__name__}")
        if values.dim() not in (2, 3, 4):
            raise HMMValueError(
                "banded log_transitions must have shape (K, W), (B, K, W) or time-varying "
                f"(B, T-1, K, W), got {_shape(values)}"
            )
        lo = int(lo)
        K, W = values.shape[-2], values.shape[-1]
        if W < 1 or lo > 0 or lo + W - 1 < 0:
            raise HMMValueError(
                f"the band's offsets lo={lo} .. hi={lo + W - 1} must include 0 (W={W} slots)"
            )
        tv = values.dim() == 4
        while values.dim() < 4:
            values = values.unsqueeze(0) if values.dim() == 2 else values.unsqueeze(1)
        i = torch.arange(K, device=values.device).unsqueeze(1)
        dst = i + lo + torch.arange(W, device=values.device).unsqueeze(0)
        outside = (dst < 0) | (dst >= K)
        if bool(outside.any()):
            values = values.masked_fill(outside, NEG_INF)
        return cls("banded", values, lo=lo, time_varying=tv)

    # -- structure ----------------------------------------------------------------------
    @property
    def is_banded(self) -> bool:
        return self.kind == "banded"

    @property
    def num_states(self) -> int:
        return self.values.shape[-2]

    @property
    def width(self) -> int:
        """Slots per state: W for a band, K for a dense matrix."""
        return self.values.shape[-1]

    @property
    def hi(self) -> int:
        return self.lo + self.width - 1 if self.is_banded else self.num_states - 1

    @property
    def batch(self) -> int:
        return self.values.shape[0]

    @property
    def steps(self) -> int:
        return self.values.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def __repr__(self) -> str:
        tv = ", time-varying" if self.time_varying else ""
        band = f", lo={self.lo}, hi={self.hi}" if self.is_banded else ""
        return f"Transitions({self.kind}{band}{tv}, values={_shape(self.values)})"

    # -- derived forms --------------------------------------------------------------------
    def _like(self, values: torch.Tensor, time_varying: Optional[bool] = None) -> Transitions:
        tv = self.time_varying if time_varying is None else time_varying
        return Transitions(self.kind, values, lo=self.lo, time_varying=tv)

    def to(self, dtype: torch.dtype) -> Transitions:
        return self if dtype == self.dtype else self._like(self.values.to(dtype))

    def select(self, idx: torch.Tensor) -> Transitions:
        """The operator for a sub-batch ``idx`` of sequences."""
        return self if self.batch == 1 else self._like(self.values[idx])

    def split_first(self) -> Tuple[torch.Tensor, Transitions]:
        """For a chunk that continues from a carry: ``(first, rest)``, the moves from the
        carry's frame into the chunk's frame 0 (Bx, K, K|W) and the operator for the moves
        within the chunk."""
        if not self.time_varying:
            return self.values[:, 0], self
        return self.values[:, 0], self._like(self.values[:, 1:])

    def step(self, t: int) -> torch.Tensor:
        """Values of the move from frame ``t`` to ``t + 1``: (Bx, K, K|W)."""
        return self.values[:, t if self.time_varying else 0]

    def source_band(self) -> Tuple[torch.Tensor, int]:
        """``(values, lo)`` as a source-indexed band, a dense matrix being the full band
        ``lo = -(K-1)``, W = 2K-1: (Bx, Tx, K, W)."""
        if self.is_banded:
            return self.values, self.lo
        K = self.num_states
        i = torch.arange(K, device=self.device).unsqueeze(1)
        j = i + torch.arange(-(K - 1), K, device=self.device).unsqueeze(0)  # (K, 2K-1)
        ok = (j >= 0) & (j < K)
        v = self.values[..., i.expand_as(j), j.clamp(0, K - 1)]
        return v.masked_fill(~ok, NEG_INF), -(K - 1)

    def dest_band(self) -> torch.Tensor:
        """Destination-indexed band (Bx, Tx, K, W') with ``[..., j, d] = log A[j - (hi - d),
        j]`` (a dense matrix as the full band, W' = 2K-1): what the forward recursion reads.
        Cached."""
        if self._dst is None:
            src, lo = self.source_band()
            K, W = src.shape[-2], src.shape[-1]
            hi = lo + W - 1
            j = torch.arange(K, device=self.device).unsqueeze(1)
            d = torch.arange(W, device=self.device).unsqueeze(0)
            i = j - (hi - d)  # source state
            ok = (i >= 0) & (i < K)
            v = src[..., i.clamp(0, K - 1), (W - 1 - d).expand_as(i)]
            self._dst = v.masked_fill(~ok, NEG_INF).contiguous()
        return self._dst

    def to_dense(self) -> torch.Tensor:
        """The full matrices (Bx, Tx, K, K)."""
        if not self.is_banded:
            return self.values
        return band_to_dense(self.values, self.lo)

    # -- one step of the torch recursions ---------------------------------------------------
    def forward_step(self, t: int) -> torch.Tensor:
        """Destination-major values of the move from frame ``t`` to ``t + 1``, what
        :meth:`predecessors` takes: (Bx, K_dst, K_src) dense, (Bx, K, W) banded (slot d is
        predecessor ``j - (hi - d)``)."""
        if self._fwd is None:
            if self.is_banded:
                self._fwd = self.dest_band()
            else:
                self._fwd = self.values.transpose(-1, -2).contiguous()
        return self._fwd[:, t if self.time_varying else 0]

    def predecessors(self, prev: torch.Tensor, fstep: torch.Tensor) -> torch.Tensor:
        """Scores of every (predecessor -> state) move for ``prev`` (B, K) with
        ``fstep = forward_step(t)``: (B, K_dst, K_src) dense, (B, K_dst, W) banded. Reduce
        over the last axis."""
        if not self.is_banded:
            return prev.unsqueeze(-2) + fstep
        padded = torch.nn.functional.pad(prev, (self.hi, -self.lo), value=NEG_INF)
        return padded.unfold(-1, self.width, 1) + fstep  # window d = state j - hi + d

    def successors(self, nxt: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Scores of every (state -> successor) move: ``nxt`` (B, K) -> (B, K_src, K|W)
        (banded slot d is successor ``i + lo + d``). Reduce over the last axis."""
        if not self.is_banded:
            return step + nxt.unsqueeze(-2)
        padded = torch.nn.functional.pad(nxt, (-self.lo, self.hi), value=NEG_INF)
        return padded.unfold(-1, self.width, 1) + step

    def slot_to_state(self, slot: torch.Tensor) -> torch.Tensor:
        """Predecessor state of destination-indexed slots (B, K) from :meth:`predecessors`."""
        if not self.is_banded:
            return slot
        j = torch.arange(self.num_states, device=slot.device)
        return j - (self.hi - slot)


def band_to_dense(band: torch.Tensor, lo: int) -> torch.Tensor:
    """Source-indexed band of log values (..., K, W) -> dense log matrices (..., K, K), -inf
    off the band."""
    *lead, K, W = band.shape
    flat = band.reshape(-1, K, W)
    n = flat.shape[0]
    fill = NEG_INF if band.dtype.is_floating_point else 0
    out = flat.new_full((n, K, K + W), fill)
    i = torch.arange(K, device=band.device)
    cols = (i.unsqueeze(1) + torch.arange(W, device=band.device)).expand(n, K, W)
    out.scatter_(2, cols, flat)
    shift = -lo  # column c of `out` is state c + lo
    return out[:, :, shift : shift + K].reshape(*lead, K, K)


def band_counts_to_dense(counts: torch.Tensor, lo: int) -> torch.Tensor:
    """Expected counts on a source-indexed band (..., K, W) -> dense (..., K, K), zeros off
    the band."""
    *lead, K, W = counts.shape
    flat = counts.reshape(-1, K, W)
    n = flat.shape[0]
    out = flat.new_zeros(n, K, K + W)
    i = torch.arange(K, device=counts.device)
    cols = (i.unsqueeze(1) + torch.arange(W, device=counts.device)).expand(n, K, W)
    out.scatter_add_(2, cols, flat)
    shift = -lo
    return out[:, :, shift : shift + K].reshape(*lead, K, K)


def make_transitions(log_transitions, topology: str = "auto") -> Transitions:
    """The operator for a plain matrix ``log_transitions`` (K, K), (B, K, K) or time-varying
    (B, T-1, K, K); a :class:`Transitions` is returned as it is.

    ``topology``: ``"dense"``, ``"banded"`` (the band found from the finite entries) or
    ``"auto"`` (banded when the band covers at most half of the states and K >= 4).
    """
    if topology not in ("auto", "dense", "banded"):
        raise HMMValueError(f"topology must be 'auto', 'dense' or 'banded', got {topology!r}")
    if isinstance(log_transitions, Transitions):
        return log_transitions
    dense = Transitions.dense(log_transitions)
    if topology == "dense":
        return dense
    K = dense.num_states
    lo, hi = find_band(dense.values)
    W = hi - lo + 1
    if topology == "auto" and not (K >= 4 and 2 * W <= K):
        return dense
    i = torch.arange(K, device=dense.device).unsqueeze(1)
    j = i + lo + torch.arange(W, device=dense.device).unsqueeze(0)
    ok = (j >= 0) & (j < K)
    v = dense.values[..., i.expand_as(j), j.clamp(0, K - 1)].masked_fill(~ok, NEG_INF)
    return Transitions("banded", v, lo=lo, time_varying=dense.time_varying)
