"""Compiled CPU kernels (numba) for the engine's per-frame loops.

A frame of a recursion is a handful of operations on (B, K) tensors; run from Python, each
costs microseconds of dispatch, which for K in the tens is more than the arithmetic. These
kernels run the whole time loop of each sequence in machine code, sequences in parallel
(``prange``), and stop at each sequence's own length. They implement exactly the recursions
of the torch paths in :mod:`pytorch_hmm.core.inference` (which stay the reference and the
path for other devices) and take numpy views of CPU tensors.

This module imports numba at import time: import it through
:func:`pytorch_hmm.core.inference._kernels`, which returns None when numba is missing.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_JIT = dict(cache=True, nogil=True, parallel=True)
# reassociation (vectorised reductions) and contraction, but infinities and NaN keep their
# IEEE meaning: -inf marks impossible states throughout
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(**_JIT)
def scaled_forward(bs, pi, A, lengths, alpha, c, tiny, underflow):
    """Rabiner-scaled forward, each frame normalised to sum one.

    ``bs`` (T, B, K) emission likelihoods relative to each frame's best state; ``pi`` (B, K)
    initial probabilities; ``A`` (1|B, K, K) transition probabilities; ``lengths`` (B,).
    Writes ``alpha`` (S, B, K) (S = T: every frame, zero past each length; S = 2: the last
    two frames only, the last real frame of sequence b in slot ``(L_b - 1) % 2``), ``c``
    (T, B) the scales (1 past each length), and ``underflow`` (B,) 1 where a scale fell to
    ``tiny`` or below (the caller recomputes those sequences in log space)."""
    T, B, K = bs.shape
    S = alpha.shape[0]
    for b in nb.prange(B):
        Ab = A[0] if A.shape[0] == 1 else A[b]
        L = lengths[b]
        s = 0.0
        for j in range(K):
            v = pi[b, j] * bs[0, b, j]
            alpha[0, b, j] = v
            s += v
        c[0, b] = s
        if not s > tiny:
            underflow[b] = 1
            s = 1.0
        inv = 1.0 / s
        for j in range(K):
            alpha[0, b, j] *= inv
        for t in range(1, L):
            prev = alpha[(t - 1) % S, b]
            cur = alpha[t % S, b]
            for j in range(K):
                cur[j] = 0.0
            for i in range(K):
                ai = prev[i]
                if ai != 0.0:
                    for j in range(K):
                        cur[j] += ai * Ab[i, j]
            s = 0.0
            for j in range(K):
                v = cur[j] * bs[t, b, j]
                cur[j] = v
                s += v
            c[t, b] = s
            if not s > tiny:
                underflow[b] = 1
                s = 1.0
            inv = 1.0 / s
            for j in range(K):
                cur[j] *= inv
        for t in range(L, T):
            c[t, b] = 1.0
            if S == T:
                for j in range(K):
                    alpha[t, b, j] = 0.0


@nb.njit(**_JIT)
def scaled_backward(bs, A, At, lengths, alpha, c, gamma, xi):
    """Backward pass matching :func:`scaled_forward` (every frame normalised).

    ``A`` (1|B, K, K) transition probabilities and ``At`` their transposes. Writes ``gamma``
    (T, B, K) state posteriors ``alpha_t * beta_t`` (zero past each length) and ``xi``
    (B, K, K) expected transition counts ``sum_t alpha_t(i) A(i, j) V_{t+1}(j)`` with
    ``V_t = bs_t * beta_t / c_t``, accumulated frame by frame (no (T, B, K) temporary)."""
    T, B, K = bs.shape
    for b in nb.prange(B):
        Ab = A[0] if A.shape[0] == 1 else A[b]
        Atb = At[0] if At.shape[0] == 1 else At[b]
        L = lengths[b]
        beta = np.ones(K, dtype=bs.dtype)
        v = np.empty(K, dtype=bs.dtype)
        acc = np.zeros((K, K), dtype=bs.dtype)
        for t in range(L, T):
            for j in range(K):
                gamma[t, b, j] = 0.0
        for j in range(K):
            gamma[L - 1, b, j] = alpha[L - 1, b, j]
        for t in range(L - 2, -1, -1):
            inv = 1.0 / c[t + 1, b]
            for j in range(K):
                v[j] = bs[t + 1, b, j] * beta[j] * inv
                beta[j] = 0.0
            # beta[i] = sum_j A[i, j] v[j], as rows of A^T scaled by v[j] (vectorises)
            for j in range(K):
                vj = v[j]
                if vj != 0.0:
                    for i in range(K):
                        beta[i] += Atb[j, i] * vj
            for i in range(K):
                ai = alpha[t, b, i]
                gamma[t, b, i] = ai * beta[i]
                if ai != 0.0:
                    for j in range(K):
                        acc[i, j] += ai * v[j]
        for i in range(K):
            for j in range(K):
                xi[b, i, j] = acc[i, j] * Ab[i, j]


@nb.njit(cache=True, nogil=True)
def _chain_step(prev, cur, move, stay, e, cut):
    """One log-semiring frame of :func:`banded_forward` for a left-to-right chain (band: predecessor
    ``j - 1`` with ``move[j]``, ``j`` itself with ``stay[j]``); re-centres ``cur`` and
    returns the max it subtracted."""
    K = cur.shape[0]
    fmx = -np.inf
    for j in range(K):
        a = prev[j] + stay[j]
        c = prev[j - 1] + move[j] if j > 0 else -np.inf
        hi_ = a if a >= c else c
        lo_ = c if a >= c else a
        if hi_ == -np.inf:
            cur[j] = -np.inf
            continue
        x = lo_ - hi_
        if x > cut:
            hi_ += math.log1p(math.exp(x))
        v = hi_ + e[j]
        cur[j] = v
        if v > fmx:
            fmx = v
    if fmx == -np.inf:
        fmx = 0.0
    for j in range(K):
        cur[j] -= fmx
    return fmx


@nb.njit(**_JIT)
def banded_forward(em, log_pi, band_t, hi, lengths, use_max, cut, alpha, inc, final):
    """Exact log-space forward over a band, in the log (``use_max`` False) or max semiring.

    ``em`` (B, T, K) log emissions (batch-major); ``log_pi`` (B, K); ``band_t`` (1|B, W, K) with
    ``band_t[., d, j] = log A[j - (hi - d), j]`` (-inf outside the matrix); ``cut``: a term
    this far below the largest cannot change a float log-sum (e.g. -20 in float32) and is
    skipped. Each frame is re-centred on its best state: ``alpha`` (S, B, K) holds scores
    relative to ``inc`` (T, B) float64, the running offsets (S = T keeps every frame, -inf
    past each length; S = 2 keeps two), and ``final`` (B, K) each sequence's last frame."""
    B, T, K = em.shape
    S = alpha.shape[0]
    W = band_t.shape[1]
    for b in nb.prange(B):
        bb = band_t[0] if band_t.shape[0] == 1 else band_t[b]
        L = lengths[b]
        terms = np.empty((W, K), dtype=em.dtype)
        best = np.empty(K, dtype=em.dtype)
        mx = -np.inf
        for j in range(K):
            v = log_pi[b, j] + em[b, 0, j]
            alpha[0, b, j] = v
            mx = max(mx, v)
        if mx == -np.inf:
            mx = 0.0
        for j in range(K):
            alpha[0, b, j] -= mx
        inc[0, b] = mx
        for t in range(1, L):
            prev = alpha[(t - 1) % S, b]
            cur = alpha[t % S, b]
            if W == 2 and hi == 1 and not use_max:
                # left-to-right log-sum (stay or move one): one sweep, no temporaries
                fmx = _chain_step(prev, cur, bb[0], bb[1], em[b, t], cut)
                inc[t, b] = inc[t - 1, b] + fmx
                continue
            # the W predecessor terms of every state and their max, one contiguous sweep
            # per band diagonal
            for j in range(K):
                best[j] = -np.inf
            for d in range(W):
                off = hi - d
                row = terms[d]
                for j in range(K):
                    row[j] = -np.inf
                for j in range(max(off, 0), min(K, K + off)):
                    x = prev[j - off] + bb[d, j]
                    row[j] = x
                    best[j] = max(best[j], x)
            fmx = -np.inf
            for j in range(K):
                bj = best[j]
                if bj == -np.inf:
                    cur[j] = -np.inf
                    continue
                if not use_max:
                    s = 0.0
                    for d in range(W):
                        x = terms[d, j] - bj
                        if x > cut and x != 0.0:
                            s += math.exp(x)
                    if s > 0.0:
                        bj += math.log1p(s)
                v = bj + em[b, t, j]
                cur[j] = v
                fmx = max(fmx, v)
            if fmx == -np.inf:
                fmx = 0.0
            for j in range(K):
                cur[j] -= fmx
            inc[t, b] = inc[t - 1, b] + fmx
        last = alpha[(L - 1) % S, b]
        for j in range(K):
            final[b, j] = last[j]
        for t in range(L, T):
            inc[t, b] = inc[L - 1, b]
            if S == T:
                for j in range(K):
                    alpha[t, b, j] = -np.inf


@nb.njit(cache=True, nogil=True)
def _band_back_step(a_t, u, bb, lo, step, cut, beta_out, gamma_t, xi_b, ex):
    """One frame of :func:`banded_backward` for every state ``i``: the log-sum over its
    successors ``j = i + lo + d`` of ``bb[i, d] + u[j]``, minus ``step``, into
    ``beta_out``; the posteriors ``exp(a_t + beta_out)`` into ``gamma_t``; the move counts
    added to ``xi_b``. ``w = exp(a + best - step)`` serves both: the posterior is ``w`` times
    the sum of the terms' exps relative to the best, each move's count ``w`` times its own
    (``ex`` (W,) scratch)."""
    K = a_t.shape[0]
    W = bb.shape[1]
    for i in range(K):
        best = -np.inf
        for d in range(W):
            j = i + lo + d
            if 0 <= j < K:
                best = max(best, bb[i, d] + u[j])
        if best == -np.inf:
            beta_out[i] = -np.inf
            continue
        tot = 0.0
        for d in range(W):
            j = i + lo + d
            e = 0.0
            if 0 <= j < K:
                x = bb[i, d] + u[j] - best
                if x > cut:
                    e = math.exp(x) if x != 0.0 else 1.0
            ex[d] = e
            tot += e
        beta_out[i] = best + math.log(tot) - step
        a = a_t[i]
        if a == -np.inf:
            continue
        w = math.exp(a + best - step)
        gamma_t[i] = w * tot
        for d in range(W):
            xi_b[i, d] += w * ex[d]


@nb.njit(**_JIT)
def banded_backward(em, band_s, lo, lengths, alpha, offset, cut, gamma, xi):
    """Exact log-space backward over a band, after :func:`banded_forward` (log semiring,
    every frame kept), with the posteriors.

    ``em`` (B, T, K) log emissions; ``band_s`` (1|B, K, W) with ``band_s[., i, d] =
    log A[i, i + lo + d]`` (-inf outside the matrix); ``alpha`` (T, B, K) and ``offset``
    (T, B) from the forward pass. The backward scores are kept relative to the forward
    offsets and log Z (``beta_t + offset_t - log Z``), so ``gamma = exp(alpha + beta)``
    directly. Adds into ``gamma`` (T, B, K) and ``xi`` (B, K, W) (both zeroed by the caller)
    the state posteriors and the expected counts of each band move summed over time; both
    stay zero past each length and for sequences with no valid path."""
    B, T, K = em.shape
    for b in nb.prange(B):
        bb = band_s[0] if band_s.shape[0] == 1 else band_s[b]
        L = lengths[b]
        # log Z relative to the last offset
        mx = -np.inf
        for i in range(K):
            mx = max(mx, alpha[L - 1, b, i])
        if mx == -np.inf:
            continue  # no valid path: zero posteriors
        s = 0.0
        for i in range(K):
            s += math.exp(alpha[L - 1, b, i] - mx)
        z = mx + math.log(s)
        beta = np.empty(K, dtype=em.dtype)
        nxt = np.empty(K, dtype=em.dtype)
        u = np.empty(K, dtype=em.dtype)
        ex = np.empty(band_s.shape[2], dtype=em.dtype)
        for i in range(K):
            beta[i] = -z
            gamma[L - 1, b, i] = math.exp(alpha[L - 1, b, i] - z)
        for t in range(L - 2, -1, -1):
            step = em.dtype.type(offset[t + 1, b] - offset[t, b])
            for j in range(K):
                u[j] = em[b, t + 1, j] + beta[j]
            _band_back_step(alpha[t, b], u, bb, lo, step, cut, nxt, gamma[t, b], xi[b], ex)
            for i in range(K):
                beta[i] = nxt[i]


@nb.njit(**_JIT)
def banded_viterbi(em, log_pi, band_t, hi, lengths, path, valid):
    """Viterbi over a band: the max-semiring forward of :func:`banded_forward` storing each
    state's best band slot (int8), then back-tracking, per sequence.

    Ties go to the lowest predecessor state (the first band slot), and the last frame's ties
    to the lowest state, as the torch path (``argmax``). Writes ``path`` (B, T) (-1 past each
    length and for sequences with no valid path) and ``valid`` (B,) (1 when a path exists).
    The path's score is re-summed by the caller."""
    B, T, K = em.shape
    W = band_t.shape[1]
    for b in nb.prange(B):
        bb = band_t[0] if band_t.shape[0] == 1 else band_t[b]
        L = lengths[b]
        back = np.zeros((L, K), dtype=np.int8)
        prev = np.empty(K, dtype=em.dtype)
        cur = np.empty(K, dtype=em.dtype)
        for j in range(K):
            prev[j] = log_pi[b, j] + em[b, 0, j]
        for t in range(1, L):
            fmx = -np.inf
            for j in range(K):
                best = -np.inf
                arg = 0
                for d in range(W):
                    i = j - (hi - d)
                    if 0 <= i < K:
                        x = prev[i] + bb[d, j]
                        if x > best:
                            best = x
                            arg = d
                back[t, j] = arg
                v = best + em[b, t, j]
                cur[j] = v
                fmx = max(fmx, v)
            if fmx == -np.inf:
                fmx = 0.0
            for j in range(K):
                prev[j] = cur[j] - fmx
        for t in range(L, T):
            path[b, t] = -1
        s = 0
        for j in range(1, K):
            if prev[j] > prev[s]:
                s = j
        if prev[s] == -np.inf:
            valid[b] = 0
            for t in range(L):
                path[b, t] = -1
            continue
        valid[b] = 1
        for t in range(L - 1, -1, -1):
            path[b, t] = s
            if t > 0:
                s = s - (hi - back[t, s])
