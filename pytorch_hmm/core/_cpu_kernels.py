"""Compiled CPU kernels (numba) for the engine's per-frame loops.

A frame of a recursion is a handful of operations on (B, K) tensors; run from Python, each
costs microseconds of dispatch, which for K in the tens is more than the arithmetic. These
kernels run the whole time loop of each sequence in machine code, sequences in parallel
(``prange``), each stopping at its own length. They implement the recursions of the torch
paths in :mod:`pytorch_hmm.core.inference` (which stay the reference and the path for other
devices) on numpy views of CPU tensors; every output is preallocated by the caller.

Conventions shared by the four kernels:

* all float arrays share one dtype (float32 or float64) except the float64 ``offset``;
  index arrays are int64 (``back`` int32);
* a leading ``Bx`` axis in {1, B} is shared (index 0) or per sequence; a ``Tx`` axis in
  {1, T - 1} is fixed (index 0) or time-varying (index ``t - 1`` for the move into frame t);
* ``eidx`` (Bx, K): state k reads column ``eidx[., k]`` of the (B, T, E) log emissions.

This module imports numba at import time: load it through the backend's ``cpu_kernels``,
which returns None when numba is missing.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.core import types
from numba.core.extending import intrinsic

from . import online as _online

# reassociation (vectorised reductions) and contraction, but infinities and NaN keep their
# IEEE meaning: -inf marks impossible states throughout
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = dict(cache=True, nogil=True, parallel=True, fastmath=_FAST, error_model="numpy")
_HELPER = dict(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")


# ----------------------------------------------------------------------------- helpers


@intrinsic
def _select(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select`` (no branch), so that loops using it
    vectorise with blends."""
    if not isinstance(cond, types.Boolean) or a != b:
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return a(cond, a, b), codegen


_BLOCK = 256  # frames summed in the input's precision before a float64 accumulation


@nb.njit(**_HELPER)
def _is_identity(eidx_b, E):
    """Whether state k reads column k for every k (then emissions are read in place)."""
    K = eidx_b.shape[0]
    if E != K:
        return False
    for k in range(K):
        if eidx_b[k] != k:
            return False
    return True


@nb.njit(**_HELPER)
def _gather(row, eidx_b, out):
    for k in range(out.shape[0]):
        out[k] = row[eidx_b[k]]


@nb.njit(**_HELPER)
def _store_recentred(v64, cur):
    """``cur = v64 - max(v64)`` (the max 0 when all -inf); returns the max.

    ``v64`` (K,) float64 holds a frame's scores with its emissions added: they can be large
    (|log b| ~ 1e4 for an unlikely frame), so the sum is formed and re-centred in float64 and
    only the small relative scores are rounded to ``cur``'s dtype. Rounding the large sum to
    float32 first would lose ~1e-3 a frame (the spacing of float32 at 1e4), which the
    posteriors accumulate over a sequence."""
    K = cur.shape[0]
    fmx = -np.inf
    for j in range(K):
        if v64[j] > fmx:
            fmx = v64[j]
    if fmx == -np.inf:
        fmx = 0.0
    for j in range(K):
        cur[j] = v64[j] - fmx
    return fmx


@nb.njit(**_HELPER)
def _chain_step(prev, cur, stay, move, e, cut, v64):
    """One log-semiring frame for a left-to-right chain (``hi`` = 1, W = 2: predecessor
    ``j - 1`` with ``move[j]``, ``j`` itself with ``stay[j]``) in one sweep; re-centres
    ``cur`` (through the float64 scratch ``v64``) and returns the max it subtracted."""
    K = cur.shape[0]
    for j in range(K):
        a = np.float64(prev[j]) + stay[j]
        c = np.float64(prev[j - 1]) + move[j] if j > 0 else -np.inf
        hi_ = a if a >= c else c
        lo_ = c if a >= c else a
        if hi_ == -np.inf:
            v64[j] = -np.inf
            continue
        x = lo_ - hi_
        if x > cut:
            hi_ += math.log1p(math.exp(x))
        v64[j] = hi_ + e[j]
    return _store_recentred(v64, cur)


@nb.njit(**_HELPER)
def _band_max(prev, bd, hi, best, arg):
    """``best[j] = max_d prev[j - (hi - d)] + bd[d, j]`` and ``arg[j]`` the first slot d
    reaching it (0 when all -inf), one contiguous sweep over j per diagonal, bounded to the
    sources inside the matrix. The update is branch-free so that it vectorises: ``fmax``
    for the value (a NaN term never wins) and a bit-mask select for the slot (strict '>',
    so ties keep the lowest slot, i.e. the lowest predecessor state)."""
    W, K = bd.shape
    for j in range(K):
        best[j] = -np.inf
        arg[j] = 0
    for d in range(W):
        off = hi - d
        j0 = off if off > 0 else 0
        j1 = K + off if off < 0 else K
        if j1 <= j0:
            continue
        p = prev[j0 - off : j1 - off]
        q = bd[d, j0:j1]
        bs = best[j0:j1]
        ar = arg[j0:j1]
        dd = np.int32(d)
        for k in range(j1 - j0):
            x = p[k] + q[k]
            y = bs[k]
            a = ar[k]
            m = -np.int32(x > y)
            bs[k] = np.fmax(x, y)
            ar[k] = a ^ ((a ^ dd) & m)


@nb.njit(**_HELPER)
def _band_logsum(prev, bd, hi, best, arg, s, cut):
    """Turn ``best`` (from :func:`_band_max`) into the log-sum over the band: the terms but
    the best one, relative to it, summed in ``s`` (those below ``cut`` skipped), then
    ``best += log1p(s)``."""
    W, K = bd.shape
    for j in range(K):
        s[j] = 0.0
    for d in range(W):
        off = hi - d
        j0 = off if off > 0 else 0
        j1 = K + off if off < 0 else K
        row = bd[d]
        for j in range(j0, j1):
            x = prev[j - off] + row[j] - best[j]
            if x > cut and arg[j] != d:
                s[j] += math.exp(x)
    for j in range(K):
        if s[j] > 0.0:
            best[j] += math.log1p(s[j])


@nb.njit(**_HELPER)
def _to_dense(bd, hi, M):
    """Destination-indexed band ``bd`` (W, K) to the (K, K) matrix ``M[i, j] = log A[i, j]``
    (-inf outside the band)."""
    W, K = bd.shape
    for i in range(K):
        for j in range(K):
            M[i, j] = -np.inf
    for d in range(W):
        off = hi - d
        j0 = off if off > 0 else 0
        j1 = K + off if off < 0 else K
        for j in range(j0, j1):
            M[j - off, j] = bd[d, j]


@nb.njit(**_HELPER)
def _dense_max(prev, M, best, src):
    """:func:`_band_max` for a wide band, over the (K, K) matrix ``M``: source rows swept
    two at a time (skipped when both -inf), each a contiguous run over every destination.
    ``src[j]`` gets the best predecessor state itself (sources ascend and each update is a
    strict '>', so ties keep the lowest); -1 when all -inf."""
    K = prev.shape[0]
    for j in range(K):
        best[j] = -np.inf
        src[j] = -1
    for i in range(0, K - 1, 2):
        p0 = prev[i]
        p1 = prev[i + 1]
        r0 = M[i]
        r1 = M[i + 1]
        i0 = np.int32(i)
        i1 = np.int32(i + 1)
        for j in range(K):
            b = best[j]
            a = src[j]
            x = p0 + r0[j]
            g = x > b
            b = _select(g, x, b)
            a = _select(g, i0, a)
            x = p1 + r1[j]
            g = x > b
            b = _select(g, x, b)
            a = _select(g, i1, a)
            best[j] = b
            src[j] = a
    i = K - 1
    if K % 2 == 1 and prev[i] > -np.inf:  # odd K: the last row (bit-mask select, no pair)
        p0 = prev[i]
        r0 = M[i]
        i0 = np.int32(i)
        for j in range(K):
            x = p0 + r0[j]
            y = best[j]
            a = src[j]
            m = -np.int32(x > y)
            best[j] = np.fmax(x, y)
            src[j] = a ^ ((a ^ i0) & m)


@nb.njit(**_HELPER)
def _dense_logsum(prev, M, best, src, s, cut):
    """:func:`_band_logsum` over the (K, K) matrix (``src`` from :func:`_dense_max`)."""
    K = prev.shape[0]
    for j in range(K):
        s[j] = 0.0
    for i in range(K):
        pi = prev[i]
        if pi == -np.inf:
            continue
        r = M[i]
        for j in range(K):
            x = pi + r[j] - best[j]
            if x > cut and src[j] != i:
                s[j] += math.exp(x)
    for j in range(K):
        if s[j] > 0.0:
            best[j] += math.log1p(s[j])


# ----------------------------------------------------------------------------- kernels


@nb.njit(**_HELPER)
def _band_forward_seq(
    b, em, eidx, log_pi, band, hi, lengths, use_max, cut, alpha, offset, final, back, store_back
):
    """:func:`band_forward` for sequence ``b`` (the prange body, compiled as an ordinary
    function: the parallel lowering optimises loops less well)."""
    B, T, E = em.shape
    K = log_pi.shape[1]
    S = alpha.shape[0]
    W = band.shape[2]
    Tx = band.shape[1]
    chain = W == 2 and hi == 1 and not use_max
    # a wide band (a dense matrix: W = 2K - 1) as a (K, K) matrix swept by source rows (K
    # full runs, no more work than the band's) rather than by diagonals (W runs of < K)
    by_rows = W > K and not chain
    bx = 0 if band.shape[0] == 1 else b
    ex = eidx[0] if eidx.shape[0] == 1 else eidx[b]
    ident = _is_identity(ex, E)
    L = lengths[b]
    ebuf = np.empty(K, dtype=em.dtype)
    best = np.empty(K, dtype=em.dtype)
    s = np.empty(K, dtype=em.dtype)
    argb = np.zeros(K, dtype=np.int32)
    v64 = np.empty(K, dtype=np.float64)
    M = np.empty((K, K) if by_rows else (1, 1), dtype=em.dtype)
    M_of = -1  # the band entry M holds
    e = em[b, 0] if ident else ebuf
    if not ident:
        _gather(em[b, 0], ex, ebuf)
    cur = alpha[0, b]
    for j in range(K):
        v64[j] = np.float64(log_pi[b, j]) + e[j]
    offset[0, b] = _store_recentred(v64, cur)
    if store_back:
        for j in range(K):
            back[b, 0, j] = 0
    for t in range(1, L):
        prev = alpha[(t - 1) % S, b]
        cur = alpha[t % S, b]
        tx = 0 if Tx == 1 else t - 1
        bd = band[bx, tx]
        e = em[b, t] if ident else ebuf
        if not ident:
            _gather(em[b, t], ex, ebuf)
        if chain:
            fmx = _chain_step(prev, cur, bd[1], bd[0], e, cut, v64)  # d=1 stays, d=0 moves
            offset[t, b] = offset[t - 1, b] + fmx
            continue
        arg = back[b, t] if store_back else argb
        if by_rows:
            if M_of != tx:
                _to_dense(bd, hi, M)
                M_of = tx
            _dense_max(prev, M, best, arg)
            if not use_max:
                _dense_logsum(prev, M, best, arg, s, cut)
            if store_back:
                for j in range(K):  # predecessor state -> band slot (0 when none)
                    a = arg[j]
                    arg[j] = hi - j + a if a >= 0 else 0
        else:
            _band_max(prev, bd, hi, best, arg)
            if not use_max:
                _band_logsum(prev, bd, hi, best, arg, s, cut)
        for j in range(K):
            v64[j] = np.float64(best[j]) + e[j]
        offset[t, b] = offset[t - 1, b] + _store_recentred(v64, cur)
    last = alpha[(L - 1) % S, b]
    for j in range(K):
        final[b, j] = last[j]
    for t in range(L, T):
        offset[t, b] = offset[L - 1, b]
        if S == T:
            for j in range(K):
                alpha[t, b, j] = -np.inf


@nb.njit(**_JIT)
def band_forward(
    em, eidx, log_pi, band, hi, lengths, use_max, cut, alpha, offset, final, back, store_back
):
    """Exact log-space forward over a band, in the log (``use_max`` False) or max semiring.

    ``em`` (B, T, E) log emissions; ``eidx`` (Bx, K); ``log_pi`` (B, K); ``band``
    (Bx, Tx, W, K) destination-indexed, ``band[., t, d, j] = log A_t[j - (hi - d), j]``
    (-inf where the source is outside the matrix; a dense matrix is the full band
    ``hi = K - 1``, W = 2K - 1, and costs K*K a frame); ``cut``: a term this far below the
    largest cannot change a float log-sum (e.g. -20 in float32) and is skipped.

    Each frame is re-centred on its best state: ``alpha`` (S, B, K) holds scores relative to
    ``offset`` (T, B) float64, the cumulative offsets (constant past each length); S = T
    keeps every frame (-inf past each length), S = 2 two alternating ones. ``final`` (B, K)
    is each sequence's last frame. With ``use_max`` and ``store_back``, ``back`` (B, T, K)
    int32 gets, for frames 1..L-1, the band slot d of each state's best predecessor
    ``j - (hi - d)`` (ties to the lowest predecessor) and 0 at frame 0."""
    for b in nb.prange(em.shape[0]):
        _band_forward_seq(
            np.int64(b),
            em,
            eidx,
            log_pi,
            band,
            hi,
            lengths,
            use_max,
            cut,
            alpha,
            offset,
            final,
            back,
            store_back,
        )


@nb.njit(**_HELPER)
def _band_back_step(a_t, u, bs, lo, step, cut, beta_out, gamma_t, xi_t):
    """One frame of :func:`band_backward` for every state ``i``: the log-sum over its
    successors ``j = i + lo + d`` of ``bs[i, d] + u[j]``, minus ``step``, into
    ``beta_out``; the posteriors ``exp(a_t + beta_out)`` into ``gamma_t``; the move
    posteriors added to ``xi_t``. ``w = exp(a + best - step)`` serves both: the posterior is
    ``w`` times the sum of the terms' exps relative to the best, each move's ``w`` times its
    own (the exps are kept in ``xi_t`` until scaled)."""
    K, W = bs.shape
    for i in range(K):
        d0 = -(i + lo) if i + lo < 0 else 0
        d1 = K - i - lo if K - i - lo < W else W
        row = bs[i]
        base = i + lo
        best = -np.inf
        for d in range(d0, d1):
            x = row[d] + u[base + d]
            if x > best:
                best = x
        if best == -np.inf:
            beta_out[i] = -np.inf
            continue
        a = a_t[i]
        w = math.exp(a + best - step)  # 0 when a is -inf
        tot = 0.0
        if w > 0.0:
            xr = xi_t[i]
            for d in range(d0, d1):
                x = row[d] + u[base + d] - best
                if x > cut:
                    ev = math.exp(x)
                    tot += ev
                    xr[d] += w * ev
        else:
            for d in range(d0, d1):
                x = row[d] + u[base + d] - best
                if x > cut:
                    tot += math.exp(x)
        beta_out[i] = best + math.log(tot) - step
        gamma_t[i] = w * tot


@nb.njit(**_HELPER)
def _band_backward_seq(
    b, em, eidx, band_src, lo, lengths, log_final, alpha, offset, cut, gamma, xi, per_frame
):
    """:func:`band_backward` for sequence ``b`` (the prange body, compiled as an ordinary
    function: the parallel lowering optimises loops less well)."""
    B, T, E = em.shape
    K = log_final.shape[1]
    W = band_src.shape[3]
    Tx = band_src.shape[1]
    nT = 1 if xi.ndim == 3 else xi.shape[1]
    xv = xi.reshape((B, nT, K, W))
    bx = 0 if band_src.shape[0] == 1 else b
    ex = eidx[0] if eidx.shape[0] == 1 else eidx[b]
    ident = _is_identity(ex, E)
    L = lengths[b]
    for t in range(T):
        for i in range(K):
            gamma[t, b, i] = 0.0
    for t in range(nT):
        for i in range(K):
            for d in range(W):
                xv[b, t, i, d] = 0.0
    # log Z relative to the last offset
    mx = -np.inf
    for i in range(K):
        v = alpha[L - 1, b, i] + log_final[b, i]
        if v > mx:
            mx = v
    if mx == -np.inf:
        return  # no valid path: zero posteriors
    s = 0.0
    for i in range(K):
        s += math.exp(alpha[L - 1, b, i] + log_final[b, i] - mx)
    z = mx + math.log(s)
    # float64 whatever the input: u = emission + beta is large where the emission is
    # (|log b| ~ 1e4), and rounding it to float32 would cost ~1e-3 a frame
    beta = np.empty(K, dtype=np.float64)
    nxt = np.empty(K, dtype=np.float64)
    u = np.empty(K, dtype=np.float64)
    ebuf = np.empty(K, dtype=em.dtype)
    for i in range(K):
        beta[i] = log_final[b, i] - z
        gamma[L - 1, b, i] = math.exp(alpha[L - 1, b, i] + beta[i])
    for t in range(L - 2, -1, -1):
        step = offset[t + 1, b] - offset[t, b]
        e = em[b, t + 1] if ident else ebuf
        if not ident:
            _gather(em[b, t + 1], ex, ebuf)
        for j in range(K):
            u[j] = np.float64(e[j]) + beta[j]
        bs = band_src[bx, 0 if Tx == 1 else t]
        _band_back_step(
            alpha[t, b], u, bs, lo, step, cut, nxt, gamma[t, b], xv[b, t if per_frame else 0]
        )
        for i in range(K):
            beta[i] = nxt[i]


@nb.njit(**_JIT)
def band_backward(
    em, eidx, band_src, lo, lengths, log_final, alpha, offset, cut, gamma, xi, per_frame
):
    """Exact log-space backward over a band after :func:`band_forward` (log semiring, S = T),
    with the posteriors.

    ``band_src`` (Bx, Tx, K, W) source-indexed, ``band_src[., t, i, d] = log A_t[i, i + lo +
    d]`` (-inf outside the matrix); ``log_final`` (B, K); ``alpha``, ``offset`` from the
    forward pass; log Z = logsumexp(alpha[L-1] + log_final) + offset[L-1]. The backward
    scores are kept relative to the forward offsets and log Z, so ``gamma = exp(alpha +
    beta)`` directly. Writes ``gamma`` (T, B, K) the state posteriors and ``xi`` the expected
    counts of each band move: (B, K, W) summed over time, or (B, T-1, K, W) per frame
    (``per_frame``; ``[b, t]`` the move from frame t to t+1). Both are written in full: zero
    past each length and for sequences with no valid path."""
    for b in nb.prange(em.shape[0]):
        _band_backward_seq(
            np.int64(b),
            em,
            eidx,
            band_src,
            lo,
            lengths,
            log_final,
            alpha,
            offset,
            cut,
            gamma,
            xi,
            per_frame,
        )


@nb.njit(**_JIT)
def scaled_forward(bs, pi, A, lengths, every, final_w, alpha, c, tiny, underflow, rest):
    """Rabiner-scaled forward in probability space.

    ``bs`` (T, B, K) emission likelihoods relative to each frame's best state; ``pi`` (B, K)
    initial probabilities; ``A`` (Bx, Tx, K, K) transition probabilities. Frame t is
    normalised when ``t % every == 0`` (frame 0 always): ``c[t, b]`` its sum and alpha
    divided by it; other frames have c = 1 (also past each length). ``alpha`` (S, B, K):
    S = T every frame (zero past each length), S = 2 two alternating ones. ``rest[b] =
    sum_k alpha[L-1, b, k] * final_w[b, k]``; ``underflow[b]`` 1 when a normalised frame's
    sum or ``rest`` is <= ``tiny`` (NaN included), else 0 (the caller recomputes those
    sequences in log space). log p(x) = sum_t log c[t] + log rest (+ emission shifts).

    The loop body is written inside the ``prange`` rather than in a helper as the other
    kernels are: measured on peaked emissions (one state with non-zero likelihood per frame,
    B=32 T=1000 K=64 float32) the helper form took 9-10 ms and this one 6-7 ms."""
    T, B, K = bs.shape
    S = alpha.shape[0]
    Tx = A.shape[1]
    for b in nb.prange(B):
        ax = min(np.int64(b), A.shape[0] - 1)
        L = lengths[b]
        flag = 0
        s = 0.0
        for j in range(K):
            v = pi[b, j] * bs[0, b, j]
            alpha[0, b, j] = v
            s += v
        c[0, b] = s
        if not s > tiny:
            flag = 1
            s = 1.0
        inv = 1.0 / s
        for j in range(K):
            alpha[0, b, j] *= inv
        for t in range(1, L):
            prev = alpha[(t - 1) % S, b]
            cur = alpha[t % S, b]
            At = A[ax, min(t - 1, Tx - 1)]
            for j in range(K):
                cur[j] = 0.0
            # rows of A scaled by prev[i] (contiguous over j); zero weights skipped (peaked
            # emissions leave most states at exactly zero)
            for i in range(K):
                ai = prev[i]
                if ai != 0.0:
                    for j in range(K):
                        cur[j] += ai * At[i, j]
            if t % every == 0:
                s = 0.0
                for j in range(K):
                    v = cur[j] * bs[t, b, j]
                    cur[j] = v
                    s += v
                c[t, b] = s
                if not s > tiny:
                    flag = 1
                    s = 1.0
                inv = 1.0 / s
                for j in range(K):
                    cur[j] *= inv
            else:
                for j in range(K):
                    cur[j] *= bs[t, b, j]
                c[t, b] = 1.0
        last = alpha[(L - 1) % S, b]
        r = 0.0
        for j in range(K):
            r += last[j] * final_w[b, j]
        rest[b] = r
        if not r > tiny:
            flag = 1
        underflow[b] = flag
        for t in range(L, T):
            c[t, b] = 1.0
            if S == T:
                for j in range(K):
                    alpha[t, b, j] = 0.0


@nb.njit(**_HELPER)
def _scaled_backward_seq(b, bs, A, lengths, every, final_w, rest, alpha, c, gamma, xi, per_frame):
    """:func:`scaled_backward` for sequence ``b`` (the prange body, compiled as an ordinary
    function: the parallel lowering optimises loops less well)."""
    T, B, K = bs.shape
    Tx = A.shape[1]
    nT = 1 if xi.ndim == 3 else xi.shape[1]
    xv = xi.reshape((B, nT, K, K))
    ax = 0 if A.shape[0] == 1 else b
    L = lengths[b]
    r = rest[b]
    ok = r > 0.0  # else (underflow, no path) zeros
    for t in range(L if ok else 0, T):
        for j in range(K):
            gamma[t, b, j] = 0.0
    for t in range(nT):
        for i in range(K):
            for j in range(K):
                xv[b, t, i, j] = 0.0
    if not ok:
        return
    beta = np.empty(K, dtype=bs.dtype)
    v = np.empty(K, dtype=bs.dtype)
    fixed = Tx == 1 and not per_frame
    # alpha_t v_t^T summed over time: in the array's precision (vectorises) within blocks of
    # _BLOCK frames, the blocks summed in float64 (a float32 sum over 1e6 frames drifts)
    acc = np.zeros((K, K) if fixed else (1, 1), dtype=bs.dtype)
    tot = np.zeros((K, K) if fixed else (1, 1), dtype=np.float64)
    Atr = np.empty((K, K) if Tx == 1 else (1, 1), dtype=bs.dtype)  # A transposed
    if Tx == 1:
        for i in range(K):
            for j in range(K):
                Atr[j, i] = A[ax, 0, i, j]
    inv_r = 1.0 / r
    for j in range(K):
        beta[j] = final_w[b, j] * inv_r
        gamma[L - 1, b, j] = alpha[L - 1, b, j] * beta[j]
    for t in range(L - 2, -1, -1):
        inv = 1.0 / c[t + 1, b]
        for j in range(K):
            v[j] = bs[t + 1, b, j] * beta[j] * inv
            beta[j] = 0.0
        At = A[ax, 0 if Tx == 1 else t]
        if Tx == 1:
            # beta[i] = sum_j A[i, j] v[j] as rows of the transpose scaled by v[j]
            # (contiguous over i, no horizontal sums)
            for j in range(K):
                vj = v[j]
                if vj != 0.0:
                    for i in range(K):
                        beta[i] += Atr[j, i] * vj
        else:
            # a fresh matrix each frame: a contiguous dot product per row
            for i in range(K):
                row = At[i]
                sm = bs.dtype.type(0.0)  # reduction in the array's precision (vectorises)
                for j in range(K):
                    sm += row[j] * v[j]
                beta[i] = sm
        # sum_i alpha_t(i) beta_t(i) is 1 in exact arithmetic; beta is scaled by the forward's
        # normalisers, so its round-off would compound over frames (1e-4 after 1e6 float32
        # frames): re-normalising it each frame keeps every frame's posteriors summing to 1
        sg = 0.0
        for i in range(K):
            sg += alpha[t, b, i] * beta[i]
        if sg > 0.0:
            isg = 1.0 / sg
            for i in range(K):
                beta[i] *= isg
        if fixed:  # alpha_t(i) v(j) summed; times A(i, j) at the end
            for i in range(K):
                ai = alpha[t, b, i]
                gamma[t, b, i] = ai * beta[i]
                if ai != 0.0:
                    for j in range(K):
                        acc[i, j] += ai * v[j]
            if t % _BLOCK == 0:
                for i in range(K):
                    for j in range(K):
                        tot[i, j] += acc[i, j]
                        acc[i, j] = 0.0
        else:
            xt = xv[b, t if per_frame else 0]
            for i in range(K):
                ai = alpha[t, b, i]
                gamma[t, b, i] = ai * beta[i]
                if ai != 0.0:
                    row = At[i]
                    xr = xt[i]
                    for j in range(K):
                        xr[j] += ai * row[j] * v[j]
    if fixed:
        A0 = A[ax, 0]
        for i in range(K):
            for j in range(K):
                xv[b, 0, i, j] = (tot[i, j] + acc[i, j]) * A0[i, j]


@nb.njit(**_JIT)
def scaled_backward(bs, A, lengths, every, final_w, rest, alpha, c, gamma, xi, per_frame):
    """Backward pass matching :func:`scaled_forward` (S = T), with the posteriors.

    ``beta[L-1] = final_w / rest``; ``beta_t(i) = sum_j A_t(i, j) V_{t+1}(j)`` with
    ``V_{t+1} = bs_{t+1} beta_{t+1} / c_{t+1}``. Writes ``gamma`` (T, B, K) = alpha * beta
    (zero past each length) and ``xi`` ``alpha_t(i) A_t(i, j) V_{t+1}(j)``: (B, K, K) summed
    over time, or (B, T-1, K, K) per frame (``per_frame``), zero past each length. Both are
    written in full; a sequence whose ``rest`` is not positive gets zeros. ``every`` is
    implied by ``c`` (1 on frames not normalised) and kept for the contract."""
    for b in nb.prange(bs.shape[1]):
        _scaled_backward_seq(
            np.int64(b), bs, A, lengths, every, final_w, rest, alpha, c, gamma, xi, per_frame
        )


@nb.njit(cache=True, nogil=True, parallel=True)
def band_backtrack(back, state, lengths, hi, path):
    """Follow :func:`band_forward`'s back-pointers: ``back`` (B, T, K) int32 band slots
    (predecessor of state j at frame t = ``j - (hi - back[b, t, j])``), ``state`` (B,) int64
    the chosen last state of each sequence, ``lengths`` (B,). Writes ``path`` (B, T) int64,
    -1 past each length (and on a sequence whose pointers leave the states: no valid path)."""
    B, T, K = back.shape
    for b in nb.prange(B):
        L = lengths[b]
        for t in range(L, T):
            path[b, t] = -1
        s = state[b]
        for t in range(L - 1, -1, -1):
            if s < 0 or s >= K:  # no valid path: back-pointers of unreachable states
                for u in range(t + 1):
                    path[b, u] = -1
                break
            path[b, t] = s
            if t > 0:
                s = s - (hi - back[b, t, s])


# the online Viterbi's partial traceback (pytorch_hmm.core.online): one source, compiled here
online_commit = nb.njit(cache=True, nogil=True)(_online.commit_pending)


# ----------------------------------------------------------------------------- semi-Markov
# The HSMM recursions of pytorch_hmm.core.semimarkov (whose torch loops are the reference),
# in float64. Inputs: ``C`` (B, T+1, K) float64 prefix sums of the finite emission scores and
# ``N`` (B, T+1, K) int32 prefix counts of the impossible (-inf) frames, so that a segment of
# state k over frames [s, e) scores C[e] - C[s] when N[e] == N[s] and -inf otherwise (never
# inf - inf); ``pi`` (Bx, K); ``A`` (Bx, K, K); ``nbr`` (Bx, K, K) int64 and ``nnbr`` (Bx, K):
# the allowed predecessors (forward) or successors (backward) of each state; ``dur`` and
# ``dend`` (Bx, K, Dm): duration log-probabilities, ``dend`` for the segment that ends at a
# sequence's last frame (the survival function when right-censored).


@nb.njit(**_HELPER)
def _lse_terms(terms, n, maxmode):
    """log-sum-exp (or max and its argument) of terms[:n]."""
    best = -np.inf
    arg = -1
    for i in range(n):
        if terms[i] > best:
            best = terms[i]
            arg = i
    if maxmode or best == -np.inf:
        return best, arg
    s = 0.0
    for i in range(n):
        v = terms[i] - best
        if v > -40.0:
            s += math.exp(v)
    return best + math.log(s), arg


@nb.njit(**_JIT)
def semi_forward(C, N, pi, A, nbr, nnbr, dur, dend, lengths, maxmode, alpha, U, bpd, bpj):
    """Forward messages: ``U[b, s, k]`` scores a segment of state k starting at frame s (with
    everything before it), ``alpha[b, t, k]`` a segment of state k ending at frame t. With
    ``maxmode`` the max semiring, with the best duration index (``bpd``) and predecessor
    (``bpj``) as int32 back-pointers. Padding frames get -inf."""
    for b in nb.prange(C.shape[0]):
        _semi_forward_seq(
            np.int64(b), C, N, pi, A, nbr, nnbr, dur, dend, lengths, maxmode, alpha, U, bpd, bpj
        )


@nb.njit(**_HELPER)
def _semi_forward_seq(b, C, N, pi, A, nbr, nnbr, dur, dend, lengths, maxmode, alpha, U, bpd, bpj):
    T1, K = C.shape[1], C.shape[2]
    Dm = dur.shape[2]
    L = lengths[b]
    ib = 0 if pi.shape[0] == 1 else b
    ia = 0 if A.shape[0] == 1 else b
    idd = 0 if dur.shape[0] == 1 else b
    terms = np.empty(max(Dm, K))
    for t in range(T1 - 1):
        for k in range(K):
            alpha[b, t, k] = -np.inf
            U[b, t, k] = -np.inf
            bpd[b, t, k] = -1
            bpj[b, t, k] = -1
    for k in range(K):
        U[b, 0, k] = pi[ib, k]
    for t in range(L):
        last = t == L - 1
        for k in range(K):
            ce = C[b, t + 1, k]
            ne = N[b, t + 1, k]
            n = 0
            for d in range(1, min(Dm, t + 1) + 1):
                s = t + 1 - d
                if N[b, s, k] != ne:
                    break  # an impossible frame inside: so is every longer segment
                w = dend[idd, k, d - 1] if last else dur[idd, k, d - 1]
                terms[d - 1] = U[b, s, k] + w + (ce - C[b, s, k])
                n = d
            v, a = _lse_terms(terms, n, maxmode)
            alpha[b, t, k] = v
            bpd[b, t, k] = a
        if last:
            break
        for k in range(K):
            m = nnbr[ia, k]
            for i in range(m):
                j = nbr[ia, k, i]
                terms[i] = alpha[b, t, j] + A[ia, j, k]
            v, a = _lse_terms(terms, m, maxmode)
            U[b, t + 1, k] = v
            bpj[b, t + 1, k] = nbr[ia, k, a] if a >= 0 else -1


@nb.njit(**_JIT)
def semi_backward(C, N, A, nbr, nnbr, dur, dend, lf, lengths, E, S):
    """Backward messages (log semiring): ``E[b, t, k]`` scores everything after a segment of
    state k that ends at frame t, ``S[b, s, k]`` a segment of state k starting at frame s and
    everything after it. ``lf`` (Bx, K) the final scores. Padding frames get -inf."""
    for b in nb.prange(C.shape[0]):
        _semi_backward_seq(np.int64(b), C, N, A, nbr, nnbr, dur, dend, lf, lengths, E, S)


@nb.njit(**_HELPER)
def _semi_backward_seq(b, C, N, A, nbr, nnbr, dur, dend, lf, lengths, E, S):
    T1, K = C.shape[1], C.shape[2]
    Dm = dur.shape[2]
    L = lengths[b]
    ia = 0 if A.shape[0] == 1 else b
    idd = 0 if dur.shape[0] == 1 else b
    il = 0 if lf.shape[0] == 1 else b
    terms = np.empty(max(Dm, K))
    for t in range(L - 1, T1 - 1):
        for k in range(K):
            E[b, t, k] = -np.inf
            S[b, t, k] = -np.inf
    for t in range(L - 1, -1, -1):
        for k in range(K):
            if t == L - 1:
                E[b, t, k] = lf[il, k]
            else:
                m = nnbr[ia, k]
                for i in range(m):
                    j = nbr[ia, k, i]
                    terms[i] = A[ia, k, j] + S[b, t + 1, j]
                E[b, t, k] = _lse_terms(terms, m, False)[0]
        for k in range(K):
            cs = C[b, t, k]
            ns = N[b, t, k]
            n = 0
            for d in range(1, min(Dm, L - t) + 1):
                e = t + d
                if N[b, e, k] != ns:
                    break
                w = dend[idd, k, d - 1] if e == L else dur[idd, k, d - 1]
                terms[d - 1] = w + (C[b, e, k] - cs) + E[b, e - 1, k]
                n = d
            S[b, t, k] = _lse_terms(terms, n, False)[0]


@nb.njit(cache=True, nogil=True, parallel=True)
def semi_backtrack(bpd, bpj, state, lengths, path, starts):
    """Follow :func:`semi_forward`'s back-pointers from ``state`` (B,) (the last segment's
    state). Writes ``path`` (B, T) int64 (-1 past each length) and ``starts`` (B, T) bool
    (True on the first frame of each segment)."""
    B, T, K = bpd.shape
    for b in nb.prange(B):
        L = lengths[b]
        for t in range(T):
            path[b, t] = -1
            starts[b, t] = False
        k = state[b]
        t = L - 1
        while t >= 0 and k >= 0:
            d = bpd[b, t, k] + 1
            s = t - d + 1
            for u in range(s, t + 1):
                path[b, u] = k
            starts[b, s] = True
            if s == 0:
                break
            k = bpj[b, s, k]
            t = s - 1


@nb.njit(**_JIT)
def semi_counts(
    C, N, A, nbr, nnbr, dur, dend, lengths, logZ, alpha, U, E, S, gamma, trans, dmid, dlast
):
    """Expected counts from the four messages of :func:`semi_forward` / :func:`semi_backward`
    and ``logZ`` (B,): ``gamma`` (B, T, K) state posteriors per frame, ``trans`` (B, K, K)
    transition counts (``nbr`` / ``nnbr``: successors), ``dmid`` and ``dlast`` (B, K, Dm)
    duration counts of the segments that do not / do end a sequence. A term below e^-50 of
    the total is left out. Sequences with ``logZ = -inf`` get zeros."""
    for b in nb.prange(C.shape[0]):
        _semi_counts_seq(
            np.int64(b), C, N, A, nbr, nnbr, dur, dend, lengths, logZ, alpha, U, E, S, gamma,
            trans, dmid, dlast,
        )  # fmt: skip


@nb.njit(**_HELPER)
def _semi_counts_seq(
    b, C, N, A, nbr, nnbr, dur, dend, lengths, logZ, alpha, U, E, S, gamma, trans, dmid, dlast
):
    K = gamma.shape[2]
    Dm = dur.shape[2]
    L = lengths[b]
    ia = 0 if A.shape[0] == 1 else b
    idd = 0 if dur.shape[0] == 1 else b
    Z = logZ[b]
    gamma[b] = 0.0
    trans[b] = 0.0
    dmid[b] = 0.0
    dlast[b] = 0.0
    if not np.isfinite(Z):
        return
    run = np.zeros(K)
    for t in range(L):
        for k in range(K):
            v = U[b, t, k] + S[b, t, k] - Z
            if v > -50.0:
                run[k] += math.exp(v)
            g = run[k]
            gamma[b, t, k] = min(1.0, max(0.0, g))
            v = alpha[b, t, k] + E[b, t, k] - Z
            if v > -50.0:
                run[k] -= math.exp(v)
        if t + 1 < L:
            for j in range(K):
                a = alpha[b, t, j] - Z
                if a == -np.inf:
                    continue
                for i in range(nnbr[ia, j]):
                    k = nbr[ia, j, i]
                    v = a + A[ia, j, k] + S[b, t + 1, k]
                    if v > -50.0:
                        trans[b, j, k] += math.exp(v)
        for k in range(K):
            base = U[b, t, k] - Z
            if base == -np.inf:
                continue
            cs = C[b, t, k]
            ns = N[b, t, k]
            for d in range(1, min(Dm, L - t) + 1):
                e = t + d
                if N[b, e, k] != ns:
                    break
                if e == L:
                    v = base + dend[idd, k, d - 1] + (C[b, e, k] - cs) + E[b, e - 1, k]
                    if v > -50.0:
                        dlast[b, k, d - 1] += math.exp(v)
                else:
                    v = base + dur[idd, k, d - 1] + (C[b, e, k] - cs) + E[b, e - 1, k]
                    if v > -50.0:
                        dmid[b, k, d - 1] += math.exp(v)
