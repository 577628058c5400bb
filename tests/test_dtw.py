"""DTW and soft-DTW against dtw-python, librosa, brute-force path enumeration and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_hmm.alignment import DTWAligner, SoftDTW, StepPattern, soft_dtw_cost, soft_dtw_distance
from pytorch_hmm.alignment.dtw import _load_kernels, pairwise_distance

try:  # dtw-python: only the tests marked needs_dtw_python use it
    import dtw as dtw_python
except ImportError:
    dtw_python = None
needs_dtw_python = pytest.mark.skipif(dtw_python is None, reason="needs dtw-python")

BACKENDS = ["torch"] + (["numba"] if _load_kernels() is not None else [])


def _feats(n, m, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((m, d))


def _ref_path(ref):
    return np.stack([ref.index1, ref.index2], axis=1)


# ----------------------------------------------------------------------------------------------
# dtw-python
# ----------------------------------------------------------------------------------------------
CASES = [
    ("symmetric1", {}),
    ("symmetric2", {}),
    ("asymmetric", {}),
    ("symmetric1", {"band": 5}),
    ("symmetric2", {"band": 5}),
    ("asymmetric", {"band": 6}),
    ("symmetric2", {"open_end": True}),
    ("asymmetric", {"open_end": True}),
    ("asymmetric", {"open_begin": True, "open_end": True}),
    ("asymmetric", {"open_begin": True}),
]


@needs_dtw_python
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern,opts", CASES)
def test_matches_dtw_python(pattern, opts, backend):
    x, y = _feats(20, 24, seed=1)
    kw = {}
    if "band" in opts:
        kw = {"window_type": "sakoechiba", "window_args": {"window_size": opts["band"]}}
    ref = dtw_python.dtw(
        x,
        y,
        step_pattern=pattern,
        open_end=opts.get("open_end", False),
        open_begin=opts.get("open_begin", False),
        **kw,
    )
    r = DTWAligner(step_pattern=pattern, backend=backend, **opts).align(
        torch.from_numpy(x), torch.from_numpy(y)
    )
    np.testing.assert_array_equal(r.path.numpy(), _ref_path(ref))
    assert r.path.dtype == torch.long and r.path.shape[1] == 2
    np.testing.assert_allclose(float(r.cost), ref.distance, rtol=1e-12, atol=0)
    if pattern != "symmetric1":
        np.testing.assert_allclose(
            float(r.normalized_cost), ref.normalizedDistance, rtol=1e-12, atol=0
        )
    else:  # no normaliser in dtw-python: per-step mean
        np.testing.assert_allclose(
            float(r.normalized_cost), ref.distance / len(ref.index1), rtol=1e-12, atol=0
        )


@needs_dtw_python
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_distances_match_dtw_python(metric):
    x, y = _feats(15, 11, d=6, seed=2)
    ref = dtw_python.dtw(x, y, dist_method=metric)
    r = DTWAligner(distance=metric).align(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_array_equal(r.path.numpy(), _ref_path(ref))
    np.testing.assert_allclose(float(r.cost), ref.distance, rtol=1e-10, atol=0)


@needs_dtw_python
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", ["symmetric1", "symmetric2", "asymmetric"])
def test_integer_costs_ties_match_dtw_python(pattern, backend):
    # small integer costs: many exact ties, so the tie rule must match too
    rng = np.random.default_rng(3)
    C = rng.integers(0, 3, size=(12, 17)).astype(np.float64)
    ref = dtw_python.dtw(C, step_pattern=pattern)
    r = DTWAligner(step_pattern=pattern, backend=backend).align_cost(torch.from_numpy(C))
    np.testing.assert_array_equal(r.path.numpy(), _ref_path(ref))
    assert float(r.cost) == ref.distance


# ----------------------------------------------------------------------------------------------
# librosa
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", ["symmetric1", "symmetric2"])
@pytest.mark.parametrize("integer_costs", [False, True])
def test_matches_librosa(pattern, backend, integer_costs):
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(4)
    if integer_costs:
        C = rng.integers(0, 3, size=(14, 19)).astype(np.float64)
    else:
        x, y = _feats(14, 19, seed=4)
        C = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    wm = np.array([2.0, 1.0, 1.0]) if pattern == "symmetric2" else None
    D, wp = librosa.sequence.dtw(C=C, weights_mul=wm)
    r = DTWAligner(step_pattern=pattern, backend=backend).align_cost(torch.from_numpy(C))
    np.testing.assert_array_equal(r.path.numpy(), wp[::-1])
    np.testing.assert_allclose(float(r.cost), D[-1, -1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_subsequence_matches_librosa(backend):
    librosa = pytest.importorskip("librosa")
    x, y = _feats(8, 30, seed=5)
    D, wp = librosa.sequence.dtw(X=x.T, Y=y.T, subseq=True)
    r = DTWAligner(
        step_pattern="symmetric1", open_begin=True, open_end=True, backend=backend
    ).align(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_array_equal(r.path.numpy(), wp[::-1])
    np.testing.assert_allclose(float(r.cost), D[-1].min(), rtol=1e-12, atol=0)
    assert int(r.end) == int(wp[0, 1])


# ----------------------------------------------------------------------------------------------
# brute force over all monotonic paths (tiny inputs)
# ----------------------------------------------------------------------------------------------
def _all_paths(n, m, steps):
    """All paths from (0, 0) to (n-1, m-1) as lists of (cell, step weight)."""
    out = []

    def rec(i, j, acc):
        if (i, j) == (0, 0):
            out.append(acc[::-1])
            return
        for di, dj, w in steps:
            pi, pj = i - di, j - dj
            if pi >= 0 and pj >= 0:
                rec(pi, pj, acc + [((i, j), w)])

    rec(n - 1, m - 1, [])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", ["symmetric1", "symmetric2", "asymmetric"])
def test_dtw_cost_is_min_over_all_paths(pattern, backend):
    rng = np.random.default_rng(6)
    C = rng.random((4, 6))
    steps = DTWAligner(step_pattern=pattern).pattern.steps
    costs = [C[0, 0] + sum(w * C[c] for c, w in p) for p in _all_paths(4, 6, steps)]
    r = DTWAligner(step_pattern=pattern, backend=backend).align_cost(torch.from_numpy(C))
    np.testing.assert_allclose(float(r.cost), min(costs), rtol=1e-12, atol=0)
    best = _all_paths(4, 6, steps)[int(np.argmin(costs))]
    np.testing.assert_array_equal(r.path.numpy(), [(0, 0)] + [c for c, _ in best])


# ----------------------------------------------------------------------------------------------
# batching, back ends, validation
# ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(_load_kernels() is None, reason="needs numba")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("opts", [{}, {"band": 5}, {"open_begin": True, "open_end": True}])
def test_costs_computed_in_kernel_match_given_costs(metric, dtype, opts):
    """numba + built-in distance: each pair's cost matrix is computed inside the compiled
    kernel; same result as aligning the torch-computed cost matrices."""
    g = torch.Generator().manual_seed(3)
    B, N, M, D = 5, 23, 30, 11  # D not a multiple of 4
    x = torch.randn(B, N, D, generator=g, dtype=dtype)
    y = torch.randn(B, M, D, generator=g, dtype=dtype)
    xl, yl = torch.tensor([23, 1, 9, 23, 17]), torch.tensor([30, 4, 1, 30, 12])
    al = DTWAligner(distance=metric, step_pattern="symmetric1", **opts)
    r = al.align(x, y, xl, yl)
    ref = al.align_cost(pairwise_distance(x, y, metric), xl, yl)
    torch.testing.assert_close(r.path, ref.path, rtol=0, atol=0)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(r.cost, ref.cost, rtol=tol, atol=tol)
    assert r.cost.dtype == dtype


@pytest.mark.parametrize("opts", [{}, {"band": 6}, {"open_end": True}])
def test_batched_with_lengths_equals_single(opts):
    torch.manual_seed(0)
    B, N, M, D = 4, 18, 21, 3
    x, y = torch.randn(B, N, D, dtype=torch.float64), torch.randn(B, M, D, dtype=torch.float64)
    xl, yl = torch.tensor([18, 10, 15, 7]), torch.tensor([21, 12, 9, 7])
    results = {}
    for backend in BACKENDS:
        al = DTWAligner(backend=backend, **opts)
        rb = al.align(x, y, xl, yl)
        assert rb.path.shape[0] == B and rb.cost.shape == (B,)
        for b in range(B):
            rs = al.align(x[b, : xl[b]], y[b, : yl[b]])
            torch.testing.assert_close(rb.paths()[b], rs.path, rtol=0, atol=0)
            torch.testing.assert_close(rb.cost[b], rs.cost, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(
                rb.normalized_cost[b], rs.normalized_cost, rtol=1e-12, atol=1e-12
            )
            assert (rb.path[b, int(rb.path_lengths[b]) :] == -1).all()
        results[backend] = rb
    if len(results) == 2:
        a, b = results["torch"], results["numba"]
        torch.testing.assert_close(a.path, b.path, rtol=0, atol=0)
        torch.testing.assert_close(a.cost, b.cost, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_padding_is_ignored(backend):
    C = torch.rand(2, 5, 6, dtype=torch.float64)
    C[1, 3:, :] = float("nan")
    r = DTWAligner(backend=backend).align_cost(C, torch.tensor([5, 3]), torch.tensor([6, 6]))
    ref = DTWAligner(backend=backend).align_cost(C[1, :3])
    torch.testing.assert_close(r.cost[1], ref.cost, rtol=0, atol=0)


def test_float32_and_custom_callable_distance():
    torch.manual_seed(1)
    x, y = torch.randn(2, 12, 5), torch.randn(2, 9, 5)
    r32 = DTWAligner().align(x, y)
    r64 = DTWAligner(distance=lambda a, b: torch.cdist(a, b)).align(x.double(), y.double())
    assert r32.cost.dtype == torch.float32
    torch.testing.assert_close(r32.path, r64.path, rtol=0, atol=0)
    torch.testing.assert_close(r32.cost.double(), r64.cost, rtol=1e-5, atol=1e-5)


def test_custom_step_pattern_and_impossible_band():
    C = torch.rand(5, 12, dtype=torch.float64)
    r = DTWAligner(step_pattern="symmetric2", band=3).align_cost(C)
    assert math.isinf(float(r.cost)) and r.path.shape == (0, 2)
    pat = StepPattern("diag-or-right", ((1, 1, 1.0), (0, 1, 1.0)), "NA")
    r = DTWAligner(step_pattern=pat).align_cost(C)
    assert r.path[:, 0].diff().ge(0).all() and r.path[:, 1].diff().eq(1).all()
    assert tuple(r.path[-1].tolist()) == (4, 11)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: DTWAligner().align(torch.rand(3, 2), torch.rand(4, 3)), "same feature size"),
        (lambda: DTWAligner().align(torch.rand(2, 3, 2), torch.rand(4, 2)), "both be"),
        (lambda: DTWAligner().align(torch.rand(2, 3, 2), torch.rand(3, 4, 2)), "batch sizes"),
        (
            lambda: DTWAligner().align(
                torch.rand(2, 3, 2), torch.rand(2, 4, 2), torch.tensor([3, 4])
            ),
            r"x_lengths must lie in \[1, 3\]",
        ),
        (
            lambda: DTWAligner().align(
                torch.rand(2, 3, 2), torch.rand(2, 4, 2), None, torch.tensor([4])
            ),
            r"y_lengths must have shape \(2,\)",
        ),
        (lambda: DTWAligner(step_pattern="nope"), "step_pattern must be one of"),
        (lambda: DTWAligner(distance="manhattan"), "distance must be"),
        (lambda: DTWAligner(band=-1), "band must be"),
        (lambda: DTWAligner(backend="cuda"), "backend must be"),
        (lambda: DTWAligner().align_cost(torch.tensor([[0.0, float("nan")]])), "NaN"),
        (
            lambda: DTWAligner(backend="torch").align_cost(torch.tensor([[0.0, float("nan")]])),
            r"cost matrix contains NaN \(pairs \[0\]\)",
        ),
        (
            lambda: DTWAligner().align(
                torch.rand(2, 3, 2),
                torch.rand(2, 4, 2).index_put_(
                    (torch.tensor([1]), torch.tensor([2]), torch.tensor([0])),
                    torch.tensor(float("nan")),
                ),
            ),
            r"y contains NaN or inf \(first at index \(1, 2, 0\)\)",
        ),
        (lambda: DTWAligner().align_cost(torch.rand(3)), r"cost must have shape"),
    ],
)
def test_dtw_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------------------------
# soft-DTW
# ----------------------------------------------------------------------------------------------
def _soft_brute(C, gamma):
    vals = [
        C[0, 0] + sum(w * C[c] for c, w in p)
        for p in _all_paths(*C.shape, ((1, 1, 1.0), (0, 1, 1.0), (1, 0, 1.0)))
    ]
    v = -np.asarray(vals) / gamma
    return -gamma * (np.log(np.exp(v - v.max()).sum()) + v.max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_dtw_matches_brute_force_sum_over_paths(backend):
    rng = np.random.default_rng(7)
    C = rng.random((2, 4, 5))
    got = soft_dtw_cost(torch.from_numpy(C), gamma=0.7, backend=backend)
    for b in range(2):
        np.testing.assert_allclose(float(got[b]), _soft_brute(C[b], 0.7), rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_dtw_tends_to_dtw(backend):
    torch.manual_seed(2)
    C = torch.rand(3, 9, 11, dtype=torch.float64)
    n, m = torch.tensor([9, 6, 4]), torch.tensor([11, 11, 5])
    hard = DTWAligner(step_pattern="symmetric1").align_cost(C, n, m)
    prev_gap = None
    for gamma in (1.0, 0.1, 0.01, 0.001):
        soft = soft_dtw_cost(C, gamma, n, m, backend=backend)
        gap = hard.cost - soft
        # softmin is within [min - gamma*log(3), min] at each of at most N+M-1 cells
        assert (gap >= -1e-12).all()
        assert (gap <= gamma * math.log(3) * (n + m - 1) + 1e-12).all()
        if prev_gap is not None:
            assert (gap <= prev_gap + 1e-12).all()
        prev_gap = gap
    # the gradient tends to the DTW path's 0/1 matrix
    Cg = C.clone().requires_grad_()
    soft_dtw_cost(Cg, 1e-3, n, m, backend=backend).sum().backward()
    for b, p in enumerate(hard.paths()):
        target = torch.zeros(9, 11, dtype=torch.float64)
        target[p[:, 0], p[:, 1]] = 1.0
        torch.testing.assert_close(Cg.grad[b], target, rtol=0, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("band", [None, 3])
def test_soft_dtw_gradcheck(backend, band):
    torch.manual_seed(3)
    C = torch.rand(3, 5, 6, dtype=torch.float64, requires_grad=True)
    n, m = torch.tensor([5, 3, 4]), torch.tensor([6, 6, 2])
    assert torch.autograd.gradcheck(
        lambda c: soft_dtw_cost(c, 0.5, n, m, band=band, backend=backend), (C,)
    )
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: soft_dtw_distance(a, b, 0.3, backend=backend), (x, y)
    )


def test_soft_dtw_backends_agree_float32():
    if len(BACKENDS) < 2:
        pytest.skip("numba not installed")
    torch.manual_seed(4)
    x = torch.randn(4, 30, 8, requires_grad=True)
    y = torch.randn(4, 25, 8)
    xl, yl = torch.tensor([30, 20, 11, 5]), torch.tensor([25, 25, 7, 9])
    out, grads = [], []
    for backend in BACKENDS:
        v = soft_dtw_distance(x, y, 0.1, xl, yl, backend=backend)
        (g,) = torch.autograd.grad(v.sum(), x)
        out.append(v)
        grads.append(g)
    torch.testing.assert_close(out[0], out[1], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    assert (grads[0][1, 20:] == 0).all() and (grads[0][3, 5:] == 0).all()


def test_soft_dtw_module_divergence_and_validation():
    torch.manual_seed(5)
    x, y = torch.randn(3, 7, 2), torch.randn(3, 9, 2)
    loss = SoftDTW(gamma=0.1, normalize=True, reduction="none")
    torch.testing.assert_close(loss(x, x), torch.zeros(3), rtol=0, atol=1e-4)
    assert SoftDTW(gamma=0.1)(x, y).dim() == 0
    with pytest.raises(ValueError, match="gamma must be > 0"):
        soft_dtw_cost(torch.rand(3, 3), gamma=0.0)
    with pytest.raises(ValueError, match="reduction must be"):
        SoftDTW(reduction="avg")
    with pytest.raises(ValueError, match="same D"):
        soft_dtw_distance(torch.rand(3, 2), torch.rand(3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(6)
    x, y = torch.randn(3, 40, 5, dtype=torch.float64), torch.randn(3, 50, 5, dtype=torch.float64)
    xl, yl = torch.tensor([40, 22, 9]), torch.tensor([50, 30, 12])
    a = DTWAligner().align(x, y, xl, yl)
    b = DTWAligner().align(x.cuda(), y.cuda(), xl.cuda(), yl.cuda())
    assert b.path.is_cuda
    torch.testing.assert_close(a.path, b.path.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(a.cost, b.cost.cpu(), rtol=1e-10, atol=1e-10)
    c = torch.rand(3, 30, 35, dtype=torch.float64)
    cg = c.cuda().requires_grad_()
    cc = c.clone().requires_grad_()
    va, vb = (
        soft_dtw_cost(cc, 0.3, xl.clamp(max=30), yl.clamp(max=35)),
        soft_dtw_cost(cg, 0.3, xl.clamp(max=30).cuda(), yl.clamp(max=35).cuda()),
    )
    va.sum().backward()
    vb.sum().backward()
    torch.testing.assert_close(va, vb.cpu(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cc.grad, cg.grad.cpu(), rtol=1e-8, atol=1e-10)


@needs_dtw_python
def test_falls_back_to_torch_without_numba(monkeypatch):
    monkeypatch.setenv("PYTORCH_HMM_DISABLE_NUMBA", "1")
    x, y = _feats(10, 12, seed=9)
    ref = dtw_python.dtw(x, y)
    r = DTWAligner().align(torch.from_numpy(x), torch.from_numpy(y))  # backend="auto"
    np.testing.assert_array_equal(r.path.numpy(), _ref_path(ref))
    with pytest.raises(ValueError, match="backend=.numba. needs numba"):
        DTWAligner(backend="numba").align(torch.from_numpy(x), torch.from_numpy(y))
    from pytorch_hmm.alignment import CTCAligner, monotonic_alignment_search

    lp = torch.randn(1, 6, 3).log_softmax(-1)
    assert CTCAligner().align(lp, torch.tensor([[1, 2]])).valid.all()
    assert monotonic_alignment_search(torch.randn(2, 6)).durations.sum() == 6
