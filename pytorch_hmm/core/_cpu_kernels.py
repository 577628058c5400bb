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
def scaled_backward(bs, At, lengths, alpha, c, gamma, V):
    """Backward pass matching :func:`scaled_forward` (every frame normalised).

    ``At`` (1|B, K, K) transposed transition probabilities. Writes ``gamma`` (T, B, K) state
    posteriors ``alpha_t * beta_t`` and ``V`` (T, B, K) with ``V[t] = bs[t] * beta[t] / c[t]``
    for ``1 <= t < L`` (zero elsewhere), so that the expected transition counts are
    ``A * sum_t alpha[t]^T V[t + 1]``."""
    T, B, K = bs.shape
    for b in nb.prange(B):
        Atb = At[0] if At.shape[0] == 1 else At[b]
        L = lengths[b]
        beta = np.ones(K, dtype=bs.dtype)
        v = np.empty(K, dtype=bs.dtype)
        for t in range(L, T):
            for j in range(K):
                gamma[t, b, j] = 0.0
                V[t, b, j] = 0.0
        for j in range(K):
            gamma[L - 1, b, j] = alpha[L - 1, b, j]
            V[0, b, j] = 0.0
        for t in range(L - 2, -1, -1):
            inv = 1.0 / c[t + 1, b]
            for j in range(K):
                x = bs[t + 1, b, j] * beta[j] * inv
                v[j] = x
                V[t + 1, b, j] = x
                beta[j] = 0.0
            # beta[i] = sum_j A[i, j] v[j], as rows of A^T scaled by v[j] (vectorises)
            for j in range(K):
                vj = v[j]
                if vj != 0.0:
                    for i in range(K):
                        beta[i] += Atb[j, i] * vj
            for i in range(K):
                gamma[t, b, i] = alpha[t, b, i] * beta[i]


@nb.njit(**_JIT)
def banded_forward(em, log_pi, band, hi, lengths, use_max, cut, alpha, inc, final):
    """Exact log-space forward over a band, in the log (``use_max`` False) or max semiring.

    ``em`` (T, B, K) log emissions; ``log_pi`` (B, K); ``band`` (1|B, K, W) with
    ``band[., j, d] = log A[j - (hi - d), j]`` (-inf outside the matrix); ``cut`` the
    difference below which a smaller term cannot change a float log-sum (e.g. -20 in float32).
    Each frame is re-centred on its best state: ``alpha`` (S, B, K) holds scores relative to
    ``inc`` (T, B) float64, the running offsets (S = T keeps every frame, -inf past each
    length; S = 2 keeps two), and ``final`` (B, K) each sequence's last-frame scores."""
    T, B, K = em.shape
    S = alpha.shape[0]
    W = band.shape[2]
    for b in nb.prange(B):
        bb = band[0] if band.shape[0] == 1 else band[b]
        L = lengths[b]
        mx = -np.inf
        for j in range(K):
            v = log_pi[b, j] + em[0, b, j]
            alpha[0, b, j] = v
            if v > mx:
                mx = v
        if mx == -np.inf:
            mx = 0.0
        for j in range(K):
            alpha[0, b, j] -= mx
        inc[0, b] = mx
        for t in range(1, L):
            prev = alpha[(t - 1) % S, b]
            cur = alpha[t % S, b]
            fmx = -np.inf
            for j in range(K):
                # best of the W predecessor terms, then the others relative to it
                best = -np.inf
                for d in range(W):
                    i = j - (hi - d)
                    if 0 <= i < K:
                        x = prev[i] + bb[j, d]
                        if x > best:
                            best = x
                if best == -np.inf:
                    cur[j] = -np.inf
                    continue
                if not use_max:
                    s = 0.0
                    for d in range(W):
                        i = j - (hi - d)
                        if 0 <= i < K:
                            x = prev[i] + bb[j, d] - best
                            if x > cut and x != 0.0:
                                s += math.exp(x)
                    if s > 0.0:
                        best += math.log1p(s)
                v = best + em[t, b, j]
                cur[j] = v
                if v > fmx:
                    fmx = v
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
