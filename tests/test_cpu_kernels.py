"""The compiled CPU kernels (pytorch_hmm.core._cpu_kernels) against plain float64 references.

The references are written independently of the kernels: log-space forward/backward over a
dense (K, K) matrix per frame, and brute-force Viterbi over every state path of tiny models.
"""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
if HAVE_NUMBA:
    from pytorch_hmm.core import _cpu_kernels as ck
else:  # pragma: no cover
    ck = None

needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")

NEG = -np.inf
DTYPES = [np.float32, np.float64]
# (per-sequence matrices, time-varying matrices)
LAYOUTS = [(False, False), (True, False), (False, True), (True, True)]
# band kinds: (lo, hi) or "dense" (the full band lo = -(K-1), hi = K-1)
BANDS = [(0, 1), (-1, 2), "dense"]


# ----------------------------------------------------------------------------- references


def lse(x, axis):
    """log-sum-exp in float64, -inf when every term is -inf."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def state_emissions(case):
    """(B, T, K) float64: the emission each state reads."""
    em, eidx = case["em"].astype(np.float64), case["eidx"]
    B = em.shape[0]
    ex = np.broadcast_to(eidx, (B, eidx.shape[1]))
    return np.take_along_axis(em, ex[:, None, :], axis=2)


def trans_into(case, b, t):
    """float64 log matrix of the move into frame t of sequence b."""
    logA = case["logA"]
    bx = 0 if logA.shape[0] == 1 else b
    tx = 0 if logA.shape[1] == 1 else t - 1
    return logA[bx, tx].astype(np.float64)


def ref_posteriors(case, b):
    """alpha (L, K), log Z, gamma (L, K), xi (L-1, K, K) of sequence b, in float64."""
    e = state_emissions(case)[b]
    L = int(case["lengths"][b])
    K = e.shape[1]
    alpha = np.empty((L, K))
    alpha[0] = case["log_pi"][b].astype(np.float64) + e[0]
    for t in range(1, L):
        alpha[t] = lse(alpha[t - 1][:, None] + trans_into(case, b, t), 0) + e[t]
    lf = case["log_final"][b].astype(np.float64)
    logZ = lse(alpha[L - 1] + lf, 0)
    beta = np.empty((L, K))
    beta[L - 1] = lf
    for t in range(L - 2, -1, -1):
        beta[t] = lse(trans_into(case, b, t + 1) + (e[t + 1] + beta[t + 1])[None, :], 1)
    gamma = np.zeros((L, K))
    xi = np.zeros((max(L - 1, 0), K, K))
    if np.isfinite(logZ):
        gamma = np.exp(alpha + beta - logZ)
        for t in range(L - 1):
            xi[t] = np.exp(
                alpha[t][:, None]
                + trans_into(case, b, t + 1)
                + (e[t + 1] + beta[t + 1])[None, :]
                - logZ
            )
    return alpha, logZ, gamma, xi


def brute_viterbi(case, b, upto=None):
    """Best score and path of sequence b over every path (float64), ties to the path the
    back-tracking picks: the lowest last state, then the lowest predecessor at each step.
    ``upto`` = (t, j): best score of the prefixes ending in state j at frame t instead."""
    e = state_emissions(case)[b]
    L = int(case["lengths"][b])
    K = e.shape[1]
    n = L if upto is None else upto[0] + 1
    best, best_key, best_path = NEG, None, None
    for path in itertools.product(range(K), repeat=n):
        if upto is not None and path[-1] != upto[1]:
            continue
        s = float(case["log_pi"][b, path[0]]) + e[0, path[0]]
        for t in range(1, n):
            s += trans_into(case, b, t)[path[t - 1], path[t]] + e[t, path[t]]
        if upto is None:
            s += float(case["log_final"][b, path[-1]])
        key = tuple(reversed(path))
        if s > best or (s == best and s > NEG and key < best_key):
            best, best_key, best_path = s, key, path
    return best, best_path


# ----------------------------------------------------------------------------- cases


def band_dst(logA, lo, hi):
    """(.., K, K) -> (.., W, K) destination-indexed band[d, j] = A[j - (hi - d), j]."""
    K = logA.shape[-1]
    W = hi - lo + 1
    out = np.full(logA.shape[:-2] + (W, K), NEG, dtype=logA.dtype)
    for d in range(W):
        for j in range(K):
            i = j - (hi - d)
            if 0 <= i < K:
                out[..., d, j] = logA[..., i, j]
    return out


def band_src(logA, lo, hi):
    """(.., K, K) -> (.., K, W) source-indexed band[i, d] = A[i, i + lo + d]."""
    K = logA.shape[-1]
    W = hi - lo + 1
    out = np.full(logA.shape[:-2] + (K, W), NEG, dtype=logA.dtype)
    for i in range(K):
        for d in range(W):
            j = i + lo + d
            if 0 <= j < K:
                out[..., i, d] = logA[..., i, j]
    return out


def src_to_dense(xi, lo):
    """(.., K, W) band counts -> (.., K, K)."""
    K, W = xi.shape[-2:]
    out = np.zeros(xi.shape[:-1] + (K,), dtype=np.float64)
    for i in range(K):
        for d in range(W):
            j = i + lo + d
            if 0 <= j < K:
                out[..., i, j] = xi[..., i, d]
    return out


def make_case(
    seed,
    dtype,
    per_seq,
    varying,
    band,
    *,
    B=4,
    T=7,
    K=5,
    E=3,
    lengths=None,
    integer=False,
    impossible=None,
    inf_final=True,
):
    """A random model: ``band`` (lo, hi) or "dense"; ``E != K`` ties emission columns;
    ``integer``: small integer log scores (exact sums, many ties); ``impossible``: index of
    a sequence given no valid path."""
    rng = np.random.default_rng(seed)
    lo, hi = (-(K - 1), K - 1) if band == "dense" else band
    lengths = np.array(lengths if lengths is not None else [T, 3, 1, T - 2][:B], dtype=np.int64)
    Bx = B if per_seq else 1
    Tx = T - 1 if varying else 1

    def draw(*shape):
        if integer:
            return -rng.integers(0, 4, size=shape).astype(np.float64)
        return rng.normal(size=shape) - 1.0

    em = draw(B, T, E)
    if E == K:
        eidx = np.tile(np.arange(K), (Bx, 1))
    else:
        eidx = rng.integers(0, E, size=(Bx, K))
    log_pi = draw(B, K)
    log_pi[:, K - 1] = NEG
    logA = draw(Bx, Tx, K, K)
    ii, jj = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
    logA[..., (jj - ii < lo) | (jj - ii > hi)] = NEG
    if band != "dense" or integer:
        holes = rng.random(logA.shape) < 0.1
        logA[holes] = NEG
    log_final = draw(B, K) if integer else np.zeros((B, K))
    if inf_final:
        log_final[:, 0] = NEG
    if impossible is not None:
        em[impossible, min(1, lengths[impossible] - 1)] = NEG
    case = dict(
        em=np.ascontiguousarray(em, dtype=dtype),
        eidx=np.ascontiguousarray(eidx, dtype=np.int64),
        log_pi=np.ascontiguousarray(log_pi, dtype=dtype),
        logA=np.ascontiguousarray(logA, dtype=dtype),
        log_final=np.ascontiguousarray(log_final, dtype=dtype),
        lengths=lengths,
        lo=lo,
        hi=hi,
        dtype=dtype,
    )
    return case


def cut_of(dtype):
    return -20.0 if dtype == np.float32 else -40.0


def tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)


def run_forward(case, use_max=False, store_back=False, S=None):
    B, T, _ = case["em"].shape
    K = case["log_pi"].shape[1]
    dt = case["dtype"]
    S = T if S is None else S
    alpha = np.full((S, B, K), np.nan, dtype=dt)
    offset = np.full((T, B), np.nan)
    final = np.full((B, K), np.nan, dtype=dt)
    back = np.full((B, T, K), -7, dtype=np.int32) if store_back else np.zeros((1, 1, 1), np.int32)
    ck.band_forward(
        case["em"], case["eidx"], case["log_pi"],
        np.ascontiguousarray(band_dst(case["logA"], case["lo"], case["hi"])),
        case["hi"], case["lengths"], use_max, cut_of(dt), alpha, offset, final, back,
        store_back,
    )  # fmt: skip
    return alpha, offset, final, back


def assert_log_close(got, want, dtype):
    """Equal -inf patterns, finite values close."""
    got = np.asarray(got, dtype=np.float64)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], **tol(dtype))


# ----------------------------------------------------------------------------- band kernels


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("band", BANDS)
def test_band_forward_logsum(dtype, layout, band):
    case = make_case(1, dtype, *layout, band, impossible=3)
    alpha, offset, final, _ = run_forward(case)
    T = case["em"].shape[1]
    for b, L in enumerate(case["lengths"]):
        ref, _, _, _ = ref_posteriors(case, b)
        assert_log_close(alpha[:L, b] + offset[:L, b, None], ref, dtype)
        np.testing.assert_array_equal(final[b], alpha[L - 1, b])
        assert np.all(np.isneginf(alpha[L:, b]))
        np.testing.assert_array_equal(offset[L:, b], offset[L - 1, b])
        for t in range(L):  # each frame re-centred on its max (0 when all -inf)
            m = alpha[t, b].max()
            assert m == 0.0 or (m == NEG and (t == 0 or offset[t, b] == offset[t - 1, b]))
    assert np.all(np.isneginf(final[3]))
    # two alternating frames: the same offsets and last frames
    a2, off2, fin2, _ = run_forward(case, S=2)
    np.testing.assert_array_equal(off2, offset)
    np.testing.assert_array_equal(fin2, final)
    assert T > 2


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("band", BANDS)
def test_band_backward(dtype, layout, band):
    case = make_case(2, dtype, *layout, band, E=5 if layout[0] else 3, impossible=3)
    alpha, offset, _, _ = run_forward(case)
    B, T, _ = case["em"].shape
    K = case["log_pi"].shape[1]
    W = case["hi"] - case["lo"] + 1
    bs = np.ascontiguousarray(band_src(case["logA"], case["lo"], case["hi"]))
    outs = {}
    for per_frame in (False, True):
        gamma = np.full((T, B, K), np.nan, dtype=dtype)
        xi = np.full((B, T - 1, K, W) if per_frame else (B, K, W), np.nan, dtype=dtype)
        ck.band_backward(
            case["em"], case["eidx"], bs, case["lo"], case["lengths"], case["log_final"],
            alpha, offset, cut_of(dtype), gamma, xi, per_frame,
        )  # fmt: skip
        outs[per_frame] = gamma, xi
    gamma, xi = outs[False]
    gamma_pf, xi_pf = outs[True]
    np.testing.assert_array_equal(gamma_pf, gamma)
    np.testing.assert_allclose(xi_pf.astype(np.float64).sum(1), xi, **tol(dtype))
    for b, L in enumerate(case["lengths"]):
        _, logZ, g_ref, xi_ref = ref_posteriors(case, b)
        lf = case["log_final"][b].astype(np.float64)
        got_Z = lse(alpha[L - 1, b] + lf, 0) + offset[L - 1, b]
        if np.isfinite(logZ):
            np.testing.assert_allclose(got_Z, logZ, **tol(dtype))
        else:
            assert got_Z == NEG
        np.testing.assert_allclose(gamma[:L, b], g_ref, **tol(dtype))
        assert np.all(gamma[L:, b] == 0.0)
        np.testing.assert_allclose(src_to_dense(xi[b], case["lo"]), xi_ref.sum(0), **tol(dtype))
        np.testing.assert_allclose(
            src_to_dense(xi_pf[b, : L - 1], case["lo"]), xi_ref, **tol(dtype)
        )
        assert np.all(xi_pf[b, L - 1 :] == 0.0)
    assert np.all(gamma[:, 3] == 0.0) and np.all(xi[3] == 0.0)


def backtrack(back, final, log_final, hi, L):
    """The caller's back-tracking: lowest best last state, then the stored slots."""
    s = int(np.argmax(final.astype(np.float64) + log_final))
    path = [s]
    for t in range(L - 1, 0, -1):
        s = s - (hi - int(back[t, s]))
        path.append(s)
    return tuple(reversed(path))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("band", [(0, 1), (-1, 1), "dense"])
def test_band_forward_viterbi_brute_force(dtype, layout, band):
    # integer scores: exact sums in both dtypes, so ties are real ties
    K, T = 3, 5
    case = make_case(3, dtype, *layout, band, K=K, T=T, E=2, lengths=[5, 4, 1, 3],
                     integer=True, impossible=2)  # fmt: skip
    alpha, offset, final, back = run_forward(case, use_max=True, store_back=True)
    a_nb, off_nb, fin_nb, _ = run_forward(case, use_max=True, store_back=False)
    np.testing.assert_array_equal(fin_nb, final)
    np.testing.assert_array_equal(off_nb, offset)
    np.testing.assert_array_equal(a_nb, alpha)
    n_ties = 0
    for b, L in enumerate(case["lengths"]):
        for t in range(L):
            for j in range(K):
                want, _ = brute_viterbi(case, b, upto=(t, j))
                assert alpha[t, b, j] + offset[t, b] == want
        assert np.all(back[b, 0] == 0)
        best, path = brute_viterbi(case, b)
        lf = case["log_final"][b].astype(np.float64)
        if best == NEG:
            assert b == 2 and np.all(final[b] + lf == NEG)
            continue
        got = backtrack(back[b], final[b], lf, case["hi"], L)
        assert got == path
        if hasattr(ck, "band_backtrack"):  # the compiled back-tracking, when there is one
            T = back.shape[1]
            out = np.full((1, T), -7, dtype=np.int64)
            state = np.array([got[-1]], dtype=np.int64)
            ck.band_backtrack(back[b : b + 1], state, np.array([L]), case["hi"], out)
            assert tuple(out[0, :L]) == path and np.all(out[0, L:] == -1)
        scores = final[b].astype(np.float64) + lf
        n_ties += int((scores == scores.max()).sum() > 1)
        for t in range(1, L):
            assert np.all((back[b, t] >= 0) & (back[b, t] < case["hi"] - case["lo"] + 1))


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_band_forward_viterbi_random_scores(dtype):
    """Continuous scores, a full band of a bigger model: the back-tracked path's score is
    the brute-force best."""
    case = make_case(4, dtype, True, True, "dense", K=4, T=6, E=4, lengths=[6, 5, 2, 1])
    alpha, offset, final, back = run_forward(case, use_max=True, store_back=True)
    e = state_emissions(case)
    for b, L in enumerate(case["lengths"]):
        best, path = brute_viterbi(case, b)
        lf = case["log_final"][b].astype(np.float64)
        got = backtrack(back[b], final[b], lf, case["hi"], L)
        s = case["log_pi"][b, got[0]] + e[b, 0, got[0]] + lf[got[-1]]
        for t in range(1, L):
            s += trans_into(case, b, t)[got[t - 1], got[t]] + e[b, t, got[t]]
        np.testing.assert_allclose(s, best, **tol(dtype))
        np.testing.assert_allclose((final[b] + lf).max() + offset[L - 1, b], best, **tol(dtype))
        if dtype == np.float64:
            assert got == path


# ----------------------------------------------------------------------------- scaled kernels


def scaled_inputs(case):
    e = state_emissions(case)  # (B, T, K)
    with np.errstate(invalid="ignore"):
        m = e.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    bs = np.exp(e - m).transpose(1, 0, 2)
    dt = case["dtype"]
    c = lambda x: np.ascontiguousarray(x, dtype=dt)  # noqa: E731
    return (
        c(bs), c(np.exp(case["log_pi"].astype(np.float64))),
        c(np.exp(case["logA"].astype(np.float64))),
        c(np.exp(case["log_final"].astype(np.float64))), m[..., 0],
    )  # fmt: skip


def run_scaled_forward(case, every, S=None):
    bs, pi, A, fw, m = scaled_inputs(case)
    T, B, K = bs.shape
    dt = case["dtype"]
    S = T if S is None else S
    alpha = np.full((S, B, K), np.nan, dtype=dt)
    c = np.full((T, B), np.nan, dtype=dt)
    underflow = np.full(B, 7, dtype=np.uint8)
    rest = np.full(B, np.nan, dtype=dt)
    tiny = float(np.finfo(dt).tiny) ** 0.5
    ck.scaled_forward(bs, pi, A, case["lengths"], every, fw, alpha, c, tiny, underflow, rest)
    return alpha, c, underflow, rest, (bs, A, fw, m)


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("every", [1, 4])
def test_scaled_kernels(dtype, layout, every):
    T = 10
    case = make_case(5, dtype, *layout, "dense", T=T, E=4, lengths=[10, 6, 1, 5])
    alpha, c, underflow, rest, (bs, A, fw, m) = run_scaled_forward(case, every)
    B, K = bs.shape[1:]
    assert np.all(underflow == 0)
    for b, L in enumerate(case["lengths"]):
        ref, logZ, g_ref, xi_ref = ref_posteriors(case, b)
        normed = np.arange(T) % every == 0
        np.testing.assert_array_equal(c[~normed, b], 1.0)
        np.testing.assert_array_equal(c[L:, b], 1.0)
        assert np.all(alpha[L:, b] == 0.0)
        logc = np.cumsum(np.log(c[:L, b].astype(np.float64)) + m[b, :L])
        with np.errstate(divide="ignore"):
            assert_log_close(np.log(alpha[:L, b].astype(np.float64)) + logc[:, None], ref, dtype)
        np.testing.assert_allclose(np.log(float(rest[b])) + logc[-1], logZ, **tol(dtype))
        np.testing.assert_allclose(rest[b], (alpha[L - 1, b] * fw[b]).sum(), **tol(dtype))
    # two alternating frames: same scales and rests
    _, c2, u2, r2, _ = run_scaled_forward(case, every, S=2)
    np.testing.assert_array_equal(c2, c)
    np.testing.assert_array_equal(r2, rest)
    np.testing.assert_array_equal(u2, underflow)
    outs = {}
    for per_frame in (False, True):
        gamma = np.full((T, B, K), np.nan, dtype=dtype)
        xi = np.full((B, T - 1, K, K) if per_frame else (B, K, K), np.nan, dtype=dtype)
        ck.scaled_backward(bs, A, case["lengths"], every, fw, rest, alpha, c, gamma, xi, per_frame)
        outs[per_frame] = gamma, xi
    gamma, xi = outs[False]
    gamma_pf, xi_pf = outs[True]
    np.testing.assert_allclose(gamma_pf, gamma, **tol(dtype))
    np.testing.assert_allclose(xi_pf.astype(np.float64).sum(1), xi, **tol(dtype))
    for b, L in enumerate(case["lengths"]):
        _, _, g_ref, xi_ref = ref_posteriors(case, b)
        np.testing.assert_allclose(gamma[:L, b], g_ref, **tol(dtype))
        assert np.all(gamma[L:, b] == 0.0)
        np.testing.assert_allclose(xi[b], xi_ref.sum(0), **tol(dtype))
        np.testing.assert_allclose(xi_pf[b, : L - 1], xi_ref, **tol(dtype))
        assert np.all(xi_pf[b, L - 1 :] == 0.0)


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_scaled_forward_flags_underflow(dtype):
    case = make_case(6, dtype, False, False, "dense", T=8, E=5, lengths=[8, 8, 3, 5], impossible=1)
    case["log_final"][2] = NEG  # may end nowhere: rest 0
    alpha, c, underflow, rest, (bs, A, fw, m) = run_scaled_forward(case, 1)
    np.testing.assert_array_equal(underflow, [0, 1, 1, 0])
    T, B, K = bs.shape
    gamma = np.full((T, B, K), np.nan, dtype=dtype)
    xi = np.full((B, K, K), np.nan, dtype=dtype)
    ck.scaled_backward(bs, A, case["lengths"], 1, fw, rest, alpha, c, gamma, xi, False)
    assert np.all(gamma[:, 2] == 0.0) and np.all(xi[2] == 0.0)
    assert np.all(np.isfinite(gamma[:, [0, 3]])) and np.all(np.isfinite(xi[[0, 3]]))


def test_small_kernel_calls_run_on_the_calling_thread():
    numba = pytest.importorskip("numba")
    from pytorch_hmm.core.backend import SERIAL_WORK, kernel_call

    before = numba.get_num_threads()
    with kernel_call(SERIAL_WORK - 1, 8):
        assert numba.get_num_threads() == 1
    with kernel_call(10 * SERIAL_WORK, 1):  # one sequence: nothing to run in parallel
        assert numba.get_num_threads() == 1
    with kernel_call(10 * SERIAL_WORK, 8):
        assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with kernel_call(1, 1):
            raise RuntimeError("kernel failed")
    assert numba.get_num_threads() == before
