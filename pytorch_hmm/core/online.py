"""Online Viterbi: partial traceback of the engine's back-pointers, chunk after chunk.

The engine's :func:`~pytorch_hmm.core.viterbi` with a carry continues the max recursion on
each new chunk and returns the chunk's back-pointers. :class:`OnlineViterbi` keeps the
back-pointers of the frames not yet decided and, after every chunk, commits the frames on
which every surviving path agrees (Sramek, Brejova and Vinar, "On-line Viterbi algorithm
and its relationship to random walks", 2007; Kaldi's "immortal token"): walking back from
the newest frame, the set of states that some surviving path passes through shrinks; at the
newest frame where it holds one state, that state and everything before it are on the
final best path whatever comes later. Committed frames plus those of :meth:`flush` equal
the offline Viterbi path of the whole sequence exactly (same back-pointers, same ties).

Memory is the undecided stretch only (O(B * P * K) for P pending frames). Where that must be
bounded, ``max_delay`` forces a decision once P exceeds it: the frames older than
``max_delay`` follow the best path now, and surviving paths that disagree with that decision
are pruned (their scores set to -inf), so what is committed later stays one consistent path.

The bookkeeping is :func:`commit_pending` (one pass over all streams, compiled when numba is
available: ``online_commit`` in :mod:`pytorch_hmm.core._cpu_kernels`, the same source).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from ..errors import HMMValueError
from .backend import cpu_kernels

KERNELS = "pytorch_hmm.core._cpu_kernels"


def commit_pending(pend, count, new_back, new_len, live, best, max_delay, out, n_out, kill, forced):
    """Append a chunk's back-pointers and commit what every surviving path agrees on.

    ``pend`` (B, C, K) int64: back-pointers of the pending (undecided) frames of each stream;
    ``pend[b, p, k]`` is the state at pending frame p-1 that precedes state k at pending frame
    p (entry 0 points into the last committed frame and is never followed). ``count`` (B,)
    pending frames, updated in place. ``new_back`` (B, n, K) int64 and ``new_len`` (B,): the
    chunk's back-pointers (the caller makes C >= count + n). ``live`` (B, K) bool: states
    with a finite score at the newest frame; ``best`` (B,) the best state there. Writes
    ``out`` (B, C) the committed states, oldest first, ``n_out`` (B,) how many; with
    ``max_delay > 0`` a stream left with more pending frames than that commits the older ones
    along the path of ``best``, sets ``forced[b]`` and marks in ``kill`` (B, K) the live
    states whose paths disagree (the caller sets their scores to -inf)."""
    B, C, K = pend.shape
    mark = np.zeros(K, dtype=np.bool_)
    nxt = np.zeros(K, dtype=np.bool_)
    anc = np.zeros(K, dtype=np.int64)
    for b in range(B):
        P = count[b]
        for q in range(new_len[b]):
            for k in range(K):
                pend[b, P + q, k] = new_back[b, q, k]
        P += new_len[b]
        n_out[b] = 0
        forced[b] = False
        for k in range(K):
            kill[b, k] = False
        n_live = 0
        for k in range(K):
            mark[k] = live[b, k]
            if mark[k]:
                n_live += 1
        if P == 0 or n_live == 0:
            count[b] = P
            continue
        # newest pending frame at which the surviving paths share one state
        conv = -1
        state = -1
        p = P - 1
        while p >= 0:
            n = 0
            s = -1
            for k in range(K):
                if mark[k]:
                    n += 1
                    s = k
            if n == 1:
                conv = p
                state = s
                break
            if p == 0:
                break
            for k in range(K):
                nxt[k] = False
            for k in range(K):
                if mark[k]:
                    nxt[pend[b, p, k]] = True
            for k in range(K):
                mark[k] = nxt[k]
            p -= 1
        done = 0
        if conv >= 0:
            s = state
            for q in range(conv, -1, -1):
                out[b, q] = s
                if q > 0:
                    s = pend[b, q, s]
            done = conv + 1
        if max_delay > 0 and P - done > max_delay:
            m = P - done - max_delay  # frames to decide now, after the committed ones
            for k in range(K):
                anc[k] = k
            for q in range(P - 1, done + m - 1, -1):
                for k in range(K):
                    if live[b, k]:
                        anc[k] = pend[b, q, anc[k]]
            f = anc[best[b]]  # the best path's state at pending frame done + m - 1
            for k in range(K):
                kill[b, k] = live[b, k] and anc[k] != f
            s = f
            for q in range(done + m - 1, done - 1, -1):
                out[b, q] = s
                if q > 0:
                    s = pend[b, q, s]
            done += m
            forced[b] = True
        n_out[b] = done
        if done:
            for q in range(P - done):
                for k in range(K):
                    pend[b, q, k] = pend[b, q + done, k]
        count[b] = P - done


class CommitResult(NamedTuple):
    """What one chunk decided, per stream: ``states`` the committed states (1-D long, oldest
    first), ``start`` (B,) the frame index of each one's first element, ``forced`` (B,) bool
    whether ``max_delay`` forced the decision, ``pending`` (B,) frames still undecided."""

    states: List[torch.Tensor]
    start: torch.Tensor
    forced: torch.Tensor
    pending: torch.Tensor


class OnlineViterbi:
    """Pending back-pointers of B streams and their partial traceback (no recursion here:
    the engine's :func:`~pytorch_hmm.core.viterbi` with a carry produces the back-pointers).

    Args:
        num_streams: B. num_states: K. max_delay: force a decision once more than this many
            frames are undecided (None: exact, memory grows with the undecided stretch).
        backend: "auto", "numba" or "torch" (the commit runs compiled, or as Python).
    """

    def __init__(
        self,
        num_streams: int,
        num_states: int,
        max_delay: Optional[int] = None,
        backend: Optional[str] = None,
    ) -> None:
        if max_delay is not None and int(max_delay) < 1:
            raise HMMValueError(f"max_delay must be >= 1 frame or None, got {max_delay}")
        self.B, self.K = int(num_streams), int(num_states)
        self.max_delay = None if max_delay is None else int(max_delay)
        kern = cpu_kernels(KERNELS, torch.device("cpu"), backend)
        self._commit = commit_pending if kern is None else kern.online_commit
        self.reset()

    def reset(self) -> None:
        self.pend = np.zeros((self.B, 16, self.K), dtype=np.int64)
        self.count = np.zeros(self.B, dtype=np.int64)
        self.committed = np.zeros(self.B, dtype=np.int64)  # frames committed so far

    @property
    def capacity(self) -> int:
        """Frames the pending buffer holds before it grows (it never shrinks below 16)."""
        return self.pend.shape[1]

    def _reserve(self, need: int) -> None:
        C = self.pend.shape[1]
        if need > C:
            new = max(need, 2 * C)
            grown = np.zeros((self.B, new, self.K), dtype=np.int64)
            grown[:, :C] = self.pend
            self.pend = grown
        elif need <= C // 4 and C > 16:  # shrink once a long undecided stretch is resolved
            self.pend = np.ascontiguousarray(self.pend[:, : max(16, C // 2)])

    def step(
        self,
        back: torch.Tensor,
        lengths: torch.Tensor,
        scores: torch.Tensor,
        final: bool = False,
    ) -> Tuple[CommitResult, torch.Tensor]:
        """Add a chunk's back-pointers ``back`` (B, n, K) (``lengths`` (B,) frames each) with
        the best-path ``scores`` (B, K) at each stream's newest frame; commit what is decided.
        With ``final`` every pending frame is committed along the best path (end of stream).
        Returns the :class:`CommitResult` and the states (B, K) bool pruned by ``max_delay``
        (their scores must be set to -inf by the caller)."""
        n = back.shape[1]
        bk = back.detach().cpu().numpy().astype(np.int64, copy=False)
        ln = lengths.detach().cpu().numpy().astype(np.int64)
        sc = scores.detach().cpu()
        live = torch.isfinite(sc).numpy()
        best = sc.argmax(-1).numpy().astype(np.int64)
        if final:  # every frame is decided: only the best state survives
            live = np.zeros_like(live)
            live[np.arange(self.B), best] = np.isfinite(sc.numpy()[np.arange(self.B), best])
        self._reserve(int((self.count + ln).max()) if self.B else 0)
        out = np.zeros((self.B, self.pend.shape[1]), dtype=np.int64)
        n_out = np.zeros(self.B, dtype=np.int64)
        kill = np.zeros((self.B, self.K), dtype=np.bool_)
        forced = np.zeros(self.B, dtype=np.bool_)
        md = 0 if (self.max_delay is None or final) else self.max_delay
        if n == 0:
            bk = np.zeros((self.B, 0, self.K), dtype=np.int64)
        self._commit(
            self.pend, self.count, np.ascontiguousarray(bk), ln, live, best, md, out, n_out,
            kill, forced,
        )  # fmt: skip
        start = self.committed.copy()
        self.committed += n_out
        states = [torch.from_numpy(out[b, : n_out[b]].copy()) for b in range(self.B)]
        res = CommitResult(
            states,
            torch.from_numpy(start),
            torch.from_numpy(forced.copy()),
            torch.from_numpy(self.count.copy()),
        )
        return res, torch.from_numpy(kill)

    def state(self) -> dict:
        """Everything needed to resume (see :meth:`load_state`)."""
        P = int(self.count.max()) if self.B else 0
        return {
            "pend": torch.from_numpy(self.pend[:, :P].copy()),
            "count": torch.from_numpy(self.count.copy()),
            "committed": torch.from_numpy(self.committed.copy()),
        }

    def load_state(self, st: dict) -> None:
        pend = st["pend"].numpy().astype(np.int64)
        if pend.shape[0] != self.B or pend.shape[2] != self.K:
            raise HMMValueError(
                f"saved stream state is for {pend.shape[0]} streams of {pend.shape[2]} states, "
                f"this decoder has {self.B} and {self.K}"
            )
        self.pend = np.zeros((self.B, max(16, pend.shape[1]), self.K), dtype=np.int64)
        self.pend[:, : pend.shape[1]] = pend
        self.count = st["count"].numpy().astype(np.int64).copy()
        self.committed = st["committed"].numpy().astype(np.int64).copy()
