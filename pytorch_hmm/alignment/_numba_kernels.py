"""Compiled CPU kernels (numba) for DTW, soft-DTW, CTC forced alignment and MAS.

This module imports numba at import time; the public modules import it lazily through
:func:`get_kernels`, which returns ``None`` when numba is missing or broken so that callers
fall back to their pure-torch paths. Kernels take numpy arrays (already padded to the batch
maxima) and per-item lengths, and run in parallel over the batch (``prange``).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_INF = np.inf


def num_threads() -> int:
    """Number of threads numba's parallel loops use."""
    return nb.get_num_threads()


_JIT = dict(cache=True, nogil=True)


# ----------------------------------------------------------------------------------------------
# DTW
# ----------------------------------------------------------------------------------------------
@nb.njit(**_JIT)
def backtrack_steps(steps, n, jend, di, dj, path_out):
    """Backtrack a step matrix (from the torch path) for one pair; returns the path length."""
    i = n - 1
    j = jend
    L = 0
    while True:
        path_out[L, 0] = i
        path_out[L, 1] = j
        L += 1
        k = steps[i, j]
        if k < 0:
            break
        i -= di[k]
        j -= dj[k]
        if i < 0:
            break
    return L


@nb.njit(**_JIT)
def _dtw_one(C, n, m, di, dj, w, band, open_begin, open_end, norm_code, path_out):
    """DTW on one ``(n, m)`` cost matrix; returns ``(cost, end_col, path_len, saw_nan)``.

    Rolling rows of the accumulated cost plus an int8 matrix of chosen steps (for the
    backtrack): memory ``n * m`` bytes. Ties go to the first step of the pattern, as in
    dtw-python and librosa. ``norm_code``: 0 none, 1 N+M, 2 N (used to pick the open end).
    """
    K = di.shape[0]
    maxdi = 0
    maxdj = 0
    for k in range(K):
        maxdi = max(maxdi, di[k])
        maxdj = max(maxdj, dj[k])
    nrows = maxdi + 1
    pj = maxdj
    # rows 0..nrows-1: ring buffer of accumulated-cost rows; row nrows: always +inf (source
    # rows that do not exist); columns are shifted by pj so that j - dj never goes negative
    R = np.full((nrows + 1, m + pj), _INF)
    if open_begin:
        R[nrows - 1, pj:] = 0.0  # virtual row -1 of zeros (dtw-python's null row)
    steps = np.full((n, m), -1, dtype=np.int8)
    rk = np.empty(K, dtype=np.int64)
    ok_ = np.empty(K, dtype=np.int64)
    nan = False
    for i in range(n):
        s = i % nrows
        Rs = R[s]
        Rs[:] = _INF
        for k in range(K):
            ii = i - di[k]
            if ii < -1 or (ii == -1 and not open_begin):
                rk[k] = nrows
            else:
                rk[k] = (ii + nrows) % nrows
            ok_[k] = pj - dj[k]
        jlo = 0
        jhi = m - 1
        if band >= 0:
            jlo = max(0, i - band)
            jhi = min(m - 1, i + band)
        if i == 0 and not open_begin:
            Rs[pj] = C[0, 0]
            nan |= C[0, 0] != C[0, 0]
            jlo = 1
        Ci = C[i]
        St = steps[i]
        if K == 3:
            R0 = R[rk[0]]
            R1 = R[rk[1]]
            R2 = R[rk[2]]
            o0 = ok_[0]
            o1 = ok_[1]
            o2 = ok_[2]
            w0 = w[0]
            w1 = w[1]
            w2 = w[2]
            for j in range(jlo, jhi + 1):
                c = Ci[j]
                nan |= c != c
                # branch-free selects (random data makes branches unpredictable)
                best = R0[o0 + j] + w0 * c
                bk = 0
                v = R1[o1 + j] + w1 * c
                lt = v < best
                best = v if lt else best
                bk = 1 if lt else bk
                v = R2[o2 + j] + w2 * c
                lt = v < best
                best = v if lt else best
                bk = 2 if lt else bk
                bk = -1 if best == _INF else bk
                Rs[pj + j] = best
                St[j] = bk
        else:
            for j in range(jlo, jhi + 1):
                c = Ci[j]
                nan |= c != c
                best = _INF
                bk = -1
                for k in range(K):
                    v = R[rk[k], ok_[k] + j] + w[k] * c
                    if v < best:
                        best = v
                        bk = k
                Rs[pj + j] = best
                St[j] = bk
    last = (n - 1) % nrows
    jend = m - 1
    if open_end:
        bestv = _INF
        for j in range(m):
            v = R[last, pj + j]
            if norm_code == 1:
                v = v / (n + j + 1)
            elif norm_code == 2:
                v = v / n
            if v < bestv:
                bestv = v
                jend = j
    cost = R[last, pj + jend]
    if cost == _INF or nan:
        return cost, jend, 0, nan
    # backtrack (reversed into path_out, then flipped)
    L = backtrack_steps(steps, n, jend, di, dj, path_out)
    for a in range(L // 2):
        t0 = path_out[a, 0]
        t1 = path_out[a, 1]
        path_out[a, 0] = path_out[L - 1 - a, 0]
        path_out[a, 1] = path_out[L - 1 - a, 1]
        path_out[L - 1 - a, 0] = t0
        path_out[L - 1 - a, 1] = t1
    return cost, jend, L, nan


@nb.njit(parallel=True, cache=True)
def dtw_batch(
    C,
    n,
    m,
    di,
    dj,
    w,
    band,
    open_begin,
    open_end,
    norm_code,
    path_out,
    cost_out,
    end_out,
    len_out,
    nan_out,
):
    """Batched DTW: ``C`` ``(B, N, M)``, lengths ``n``/``m`` ``(B,)``; fills the outputs
    (``nan_out[b]``: a NaN cost was read inside the band)."""
    B = C.shape[0]
    for b in nb.prange(B):
        cost, jend, L, nan = _dtw_one(
            C[b], n[b], m[b], di, dj, w, band, open_begin, open_end, norm_code, path_out[b]
        )
        nan_out[b] = nan
        cost_out[b] = cost
        end_out[b] = jend
        len_out[b] = L


@nb.njit(**_JIT)
def dtw_serial(
    C,
    n,
    m,
    di,
    dj,
    w,
    band,
    open_begin,
    open_end,
    norm_code,
    path_out,
    cost_out,
    end_out,
    len_out,
    nan_out,
):
    """:func:`dtw_batch` without a parallel region (cheaper for one pair, no idle threads)."""
    for b in range(C.shape[0]):
        cost, jend, L, nan = _dtw_one(
            C[b], n[b], m[b], di, dj, w, band, open_begin, open_end, norm_code, path_out[b]
        )
        nan_out[b] = nan
        cost_out[b] = cost
        end_out[b] = jend
        len_out[b] = L


@nb.njit(**_JIT)
def _pair_cost(xb, yb, n, m, metric, band, eps, C):
    """Local costs between frames ``xb[:n]`` (N, D) and ``yb[:m]`` (M, D) into ``C[:n, :m]``
    (only the cells inside the band when ``band >= 0``), single-threaded.

    ``metric``: 0 euclidean, 1 squared euclidean (both ``|x|^2 + |y|^2 - 2 x.y``, clamped at
    0, as ``torch.cdist``), 2 cosine (``1 - x.y / (|x| |y|)``, norms clamped at ``eps``).
    The dot products run as axpy sweeps over a transposed copy of ``yb`` (contiguous in j),
    four feature dimensions per sweep. The j loops count from 0 (``j = jlo + k``): LLVM
    vectorises them in that form, not as ``range(jlo, jhi)`` (5x slower)."""
    D = xb.shape[1]
    yT = np.empty((D, m), dtype=C.dtype)
    yn = np.zeros(m, dtype=C.dtype)
    for j in range(m):
        acc = 0.0
        for d in range(D):
            v = yb[j, d]
            yT[d, j] = v
            acc += v * v
        yn[j] = math.sqrt(acc) if metric == 2 else acc
    if metric == 2:
        for j in range(m):
            yn[j] = 1.0 / max(yn[j], eps)
    D4 = D - D % 4
    for i in range(n):
        jlo = 0
        jhi = m - 1
        if band >= 0:
            jlo = max(0, i - band)
            jhi = min(m - 1, i + band)
        width = jhi - jlo + 1
        Ci = C[i]
        for k in range(width):
            Ci[jlo + k] = 0.0
        xn = 0.0
        for d in range(D):
            xn += xb[i, d] * xb[i, d]
        for d in range(0, D4, 4):
            a0 = xb[i, d]
            a1 = xb[i, d + 1]
            a2 = xb[i, d + 2]
            a3 = xb[i, d + 3]
            y0 = yT[d]
            y1 = yT[d + 1]
            y2 = yT[d + 2]
            y3 = yT[d + 3]
            for k in range(width):
                j = jlo + k
                Ci[j] += a0 * y0[j] + a1 * y1[j] + a2 * y2[j] + a3 * y3[j]
        for d in range(D4, D):
            a0 = xb[i, d]
            y0 = yT[d]
            for k in range(width):
                j = jlo + k
                Ci[j] += a0 * y0[j]
        if metric == 2:
            rx = 1.0 / max(math.sqrt(xn), eps)
            for k in range(width):
                j = jlo + k
                Ci[j] = 1.0 - Ci[j] * rx * yn[j]
        elif metric == 1:
            for k in range(width):
                j = jlo + k
                Ci[j] = max(xn + yn[j] - 2.0 * Ci[j], 0.0)
        else:
            for k in range(width):
                j = jlo + k
                Ci[j] = math.sqrt(max(xn + yn[j] - 2.0 * Ci[j], 0.0))


@nb.njit(parallel=True, cache=True)
def dtw_batch_features(
    x,
    y,
    n,
    m,
    metric,
    eps,
    scratch,
    di,
    dj,
    w,
    band,
    open_begin,
    open_end,
    norm_code,
    path_out,
    cost_out,
    end_out,
    len_out,
    nan_out,
):
    """Batched DTW from features ``x`` (B, N, D), ``y`` (B, M, D): each pair's cost matrix
    (:func:`_pair_cost`) is computed by the numba thread that aligns it, in that thread's
    slot of ``scratch`` (S, >= max n, >= max m); slot ``s`` takes pairs ``s, s + S, ...``.
    So the cost computation uses exactly the numba threads, one pair each, and no other
    thread pool (no torch intra-op threads competing with numba's)."""
    B = x.shape[0]
    S = scratch.shape[0]
    for s in nb.prange(S):
        C = scratch[s]
        for b in range(s, B, S):
            _pair_cost(x[b], y[b], n[b], m[b], metric, band, eps, C)
            cost, jend, L, nan = _dtw_one(
                C, n[b], m[b], di, dj, w, band, open_begin, open_end, norm_code, path_out[b]
            )
            nan_out[b] = nan
            cost_out[b] = cost
            end_out[b] = jend
            len_out[b] = L


# ----------------------------------------------------------------------------------------------
# Soft-DTW
# ----------------------------------------------------------------------------------------------
@nb.njit(**_JIT)
def _softmin3(a, b, c, gamma):
    ra = -a / gamma
    rb = -b / gamma
    rc = -c / gamma
    rmax = max(ra, max(rb, rc))
    if rmax == -_INF:
        return _INF
    s = math.exp(ra - rmax) + math.exp(rb - rmax) + math.exp(rc - rmax)
    return -gamma * (math.log(s) + rmax)


@nb.njit(parallel=True, cache=True)
def soft_dtw_forward(C, n, m, gamma, band, R):
    """Soft-DTW forward. ``R`` ``(B, N+1, M+1)`` is filled (``R[b, i+1, j+1]`` = cell (i, j))."""
    B = C.shape[0]
    for b in nb.prange(B):
        Rb = R[b]
        Rb[:, :] = _INF
        Rb[0, 0] = 0.0
        for i in range(1, n[b] + 1):
            jlo = 1
            jhi = m[b]
            if band >= 0:
                jlo = max(1, i - band)
                jhi = min(m[b], i + band)
            for j in range(jlo, jhi + 1):
                Rb[i, j] = C[b, i - 1, j - 1] + _softmin3(
                    Rb[i - 1, j - 1], Rb[i - 1, j], Rb[i, j - 1], gamma
                )


@nb.njit(parallel=True, cache=True)
def soft_dtw_backward(C, R, n, m, gamma, E):
    """Cuturi-Blondel backward: ``E[b, i, j]`` = d loss_b / d C[b, i, j] (``E`` zero-filled)."""
    B = C.shape[0]
    for b in nb.prange(B):
        nb_ = n[b]
        mb = m[b]
        Eb = E[b]
        Rb = R[b]
        Cb = C[b]
        if Rb[nb_, mb] == _INF:
            continue
        for i in range(nb_ - 1, -1, -1):
            for j in range(mb - 1, -1, -1):
                r = Rb[i + 1, j + 1]
                if r == _INF:
                    continue
                if i == nb_ - 1 and j == mb - 1:
                    Eb[i, j] = 1.0
                    continue
                acc = 0.0
                if i + 1 < nb_:
                    r2 = Rb[i + 2, j + 1]
                    if r2 != _INF:
                        acc += Eb[i + 1, j] * math.exp((r2 - r - Cb[i + 1, j]) / gamma)
                if j + 1 < mb:
                    r2 = Rb[i + 1, j + 2]
                    if r2 != _INF:
                        acc += Eb[i, j + 1] * math.exp((r2 - r - Cb[i, j + 1]) / gamma)
                if i + 1 < nb_ and j + 1 < mb:
                    r2 = Rb[i + 2, j + 2]
                    if r2 != _INF:
                        acc += Eb[i + 1, j + 1] * math.exp((r2 - r - Cb[i + 1, j + 1]) / gamma)
                Eb[i, j] = acc


# ----------------------------------------------------------------------------------------------
# CTC forced alignment (Viterbi)
# ----------------------------------------------------------------------------------------------
@nb.njit(parallel=True, cache=True)
def ctc_viterbi(lp, tgt, T, L, blank, labels_out, scores_out, total_out):
    """Viterbi CTC alignment per utterance.

    ``lp`` ``(B, Tmax, C)`` log-probs, ``tgt`` ``(B, Smax)``, lengths ``T``/``L``. Fills
    ``labels_out`` (``(B, Tmax)``, pre-filled with -1), ``scores_out`` (``(B, Tmax)``) and
    ``total_out`` (``(B,)``, -inf when no alignment exists). Ties: stay, then s-1, then s-2.
    Used by ``CTCAligner`` (``method="auto"``/``"kernel"``) on CPU; elsewhere the same graph
    runs through the engine (``pytorch_hmm.alignment.ctc``: kept for speed).
    """
    B = lp.shape[0]
    for b in nb.prange(B):
        Tb = T[b]
        Lb = L[b]
        S = 2 * Lb + 1
        if Tb == 0:
            total_out[b] = 0.0 if Lb == 0 else -_INF
            continue
        ext = np.empty(S, dtype=np.int64)
        for s in range(S):
            ext[s] = blank if s % 2 == 0 else tgt[b, s // 2]
        skip = np.zeros(S, dtype=np.bool_)
        for s in range(3, S, 2):
            skip[s] = ext[s] != ext[s - 2]
        bp = np.zeros((Tb, S), dtype=np.int8)
        prev = np.full(S, -_INF)
        cur = np.full(S, -_INF)
        prev[0] = lp[b, 0, blank]
        if S > 1:
            prev[1] = lp[b, 0, ext[1]]
        for t in range(1, Tb):
            for s in range(S):
                best = prev[s]
                k = 0
                if s >= 1 and prev[s - 1] > best:
                    best = prev[s - 1]
                    k = 1
                if skip[s] and prev[s - 2] > best:
                    best = prev[s - 2]
                    k = 2
                bp[t, s] = k
                cur[s] = best + lp[b, t, ext[s]]
            for s in range(S):
                prev[s] = cur[s]
        s = S - 1
        if S > 1 and prev[S - 2] >= prev[S - 1]:
            s = S - 2
        tot = prev[s]
        total_out[b] = tot
        if tot == -_INF or math.isnan(tot):
            total_out[b] = -_INF
            continue
        for t in range(Tb - 1, -1, -1):
            lab = ext[s]
            labels_out[b, t] = lab
            scores_out[b, t] = lp[b, t, lab]
            s -= bp[t, s]


# ----------------------------------------------------------------------------------------------
# Monotonic alignment search (Glow-TTS)
# ----------------------------------------------------------------------------------------------
@nb.njit(parallel=True, cache=True)
def mas(value, tx, ty, path_out, dur_out, nan_out):
    """Glow-TTS MAS on ``value`` ``(B, T_text, T_mel)``; writes 1s into zero-filled ``path_out``.

    Same recurrence, tie rule and arithmetic (in the input dtype) as monotonic-align's
    ``maximum_path_each``, keeping two columns plus one decision byte per cell (the decision
    is the comparison the max already makes). ``nan_out[b]`` is set when a NaN was read.
    Used by ``monotonic_alignment_search`` (``method="auto"``/``"kernel"``) on CPU; elsewhere
    the same graph runs through the engine (``pytorch_hmm.alignment.mas``: kept for speed).
    """
    B = value.shape[0]
    for b in nb.prange(B):
        t_x = tx[b]
        t_y = ty[b]
        if t_x == 0 or t_y == 0:
            continue
        vb = value[b]
        bufa = np.empty(t_x, dtype=value.dtype)
        bufb = np.empty(t_x, dtype=value.dtype)
        # down[y, x]: at (x, y) the backtrack moves to x-1, i.e. acc[x, y-1] < acc[x-1, y-1]
        down = np.zeros((t_y, t_x), dtype=np.uint8)
        nan = False
        for y in range(t_y):
            if y % 2 == 0:
                prev = bufb
                cur = bufa
            else:
                prev = bufa
                cur = bufb
            lo = max(0, t_x + y - t_y)
            hi = min(t_x, y + 1)
            x0 = lo
            if lo == 0:
                v = vb[0, y]
                nan |= v != v
                cur[0] = v if y == 0 else prev[0] + v  # x == 0: only the horizontal move
                x0 = 1
            x1 = hi
            if hi == y + 1 and y >= 1:
                x1 = y  # x == y handled below: only the diagonal move
            dy = down[y]
            for x in range(x0, x1):
                a = prev[x]
                c = prev[x - 1]
                v = vb[x, y]
                nan |= v != v
                lt = a < c
                cur[x] = (c if lt else a) + v
                dy[x] = lt
            if hi == y + 1 and y >= 1:
                v = vb[y, y]
                nan |= v != v
                cur[y] = prev[y - 1] + v
                dy[y] = 1
        nan_out[b] = nan
        index = t_x - 1
        for y in range(t_y - 1, -1, -1):
            path_out[b, index, y] = 1
            dur_out[b, index] += 1
            if index != 0 and down[y, index]:
                index -= 1
