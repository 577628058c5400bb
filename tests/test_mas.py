"""Monotonic alignment search against brute force and the monotonic-align package."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pytorch_hmm.alignment import monotonic_alignment_search
from pytorch_hmm.core._numba import load_kernels

NUMBA = load_kernels("pytorch_hmm.alignment._numba_kernels") is not None
BACKENDS = ["torch"] + (["numba"] if NUMBA else [])
# (backend, method): the engine on torch, the compiled kernel, the engine on compiled kernels
CONFIGS = [("torch", "auto")] + ([("numba", "auto"), ("numba", "engine")] if NUMBA else [])


def _brute(lp: np.ndarray):
    """Best durations (each >= 1, summing to T_mel) by enumerating all compositions."""
    tx, ty = lp.shape
    best, arg = -np.inf, None
    for cuts in itertools.combinations(range(1, ty), tx - 1):
        bounds = (0,) + cuts + (ty,)
        v = sum(lp[i, bounds[i] : bounds[i + 1]].sum() for i in range(tx))
        if v > best:
            best, arg = v, np.diff(bounds)
    return best, arg


@pytest.mark.parametrize("backend,method", CONFIGS)
def test_matches_brute_force(backend, method):
    torch.manual_seed(20)
    B, Tx, Ty = 5, 4, 9
    lp = torch.randn(B, Tx, Ty, dtype=torch.float64)
    tx = torch.tensor([4, 3, 1, 4, 2])
    ty = torch.tensor([9, 7, 5, 4, 9])
    r = monotonic_alignment_search(lp, tx, ty, backend=backend, method=method)
    assert r.alignment.shape == (B, Tx, Ty) and r.durations.shape == (B, Tx)
    assert r.alignment.dtype == lp.dtype and r.durations.dtype == torch.long
    for b in range(B):
        best, dur = _brute(lp[b, : tx[b], : ty[b]].numpy())
        assert r.durations[b, : tx[b]].tolist() == dur.tolist()
        assert (r.durations[b, tx[b] :] == 0).all()
        np.testing.assert_allclose(float((r.alignment[b] * lp[b]).sum()), best, rtol=1e-12, atol=0)
        # one token per frame, monotonic
        a = r.alignment[b, : tx[b], : ty[b]]
        assert (a.sum(0) == 1).all() and (a.argmax(0).diff() >= 0).all()
        assert r.alignment[b].sum() == ty[b]


@pytest.mark.parametrize("backend,method", CONFIGS)
def test_matches_monotonic_align_package(backend, method):
    ma = pytest.importorskip("monotonic_align")
    torch.manual_seed(21)
    B, Tx, Ty = 8, 13, 60
    lp = torch.randn(B, Tx, Ty) * 3
    tx = torch.tensor([13, 5, 1, 13, 7, 10, 2, 13])
    ty = torch.tensor([60, 40, 9, 13, 60, 33, 2, 27])
    mask = (torch.arange(Tx)[None, :, None] < tx[:, None, None]) & (
        torch.arange(Ty)[None, None, :] < ty[:, None, None]
    )
    # the package takes (B, T_mel, T_text)
    ref = ma.maximum_path(
        lp.transpose(1, 2).contiguous(), mask.transpose(1, 2).float().contiguous()
    )
    ref = ref.transpose(1, 2)
    r = monotonic_alignment_search(lp, tx, ty, backend=backend, method=method)
    torch.testing.assert_close(r.alignment, ref, rtol=0, atol=0)
    torch.testing.assert_close(r.durations, ref.sum(-1).long(), rtol=0, atol=0)


def test_backends_agree_and_ties():
    if not NUMBA:
        pytest.skip("numba not installed")
    torch.manual_seed(22)
    lp = torch.randn(4, 20, 70)
    lp_ties = torch.randint(-2, 1, (4, 20, 70)).float()  # many exact ties
    tx, ty = torch.tensor([20, 11, 3, 20]), torch.tensor([70, 50, 3, 20])
    for v in (lp, lp_ties):
        a = monotonic_alignment_search(v, tx, ty, backend="torch")
        for m in ("auto", "engine"):
            b = monotonic_alignment_search(v, tx, ty, backend="numba", method=m)
            torch.testing.assert_close(a.alignment, b.alignment, rtol=0, atol=0)
            torch.testing.assert_close(a.durations, b.durations, rtol=0, atol=0)


@pytest.mark.parametrize("backend,method", CONFIGS)
def test_ties_match_monotonic_align_package(backend, method):
    ma = pytest.importorskip("monotonic_align")
    torch.manual_seed(23)
    lp = torch.randint(-2, 1, (3, 6, 15)).float()
    ref = ma.maximum_path(lp.transpose(1, 2).contiguous(), torch.ones(3, 15, 6)).transpose(1, 2)
    r = monotonic_alignment_search(lp, backend=backend, method=method)
    torch.testing.assert_close(r.alignment, ref, rtol=0, atol=0)


def test_unbatched():
    lp = torch.randn(3, 8)
    r = monotonic_alignment_search(lp)
    rb = monotonic_alignment_search(lp[None])
    assert r.alignment.shape == (3, 8) and r.durations.sum() == 8
    torch.testing.assert_close(r.alignment, rb.alignment[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.randn(2, 3, 4, 5),), r"log_p must have shape \(B, T_text, T_mel\)"),
        ((torch.randn(2, 3, 4), torch.tensor([3, 4])), r"text_lengths must lie in \[0, 3\]"),
        ((torch.randn(2, 3, 4), None, torch.tensor([4])), r"mel_lengths must have shape \(2,\)"),
        (
            (torch.randn(2, 3, 4), torch.tensor([3, 3]), torch.tensor([4, 2])),
            r"text_lengths must be <= mel_lengths .* utterances \[1\]",
        ),
        ((torch.full((1, 2, 3), float("nan")),), "log_p contains NaN"),
    ],
)
def test_validation(args, match):
    with pytest.raises(ValueError, match=match):
        monotonic_alignment_search(*args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(24)
    lp = torch.randn(4, 20, 90)
    tx, ty = torch.tensor([20, 11, 3, 20]), torch.tensor([90, 50, 3, 20])
    a = monotonic_alignment_search(lp, tx, ty)
    b = monotonic_alignment_search(lp.cuda(), tx.cuda(), ty.cuda())
    assert b.alignment.is_cuda
    torch.testing.assert_close(a.alignment, b.alignment.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(a.durations, b.durations.cpu(), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------
# the engine graph (method="engine") against the dedicated recursions (method="kernel") and a
# plain copy of monotonic-align's maximum_path_each (the previous kernel's arithmetic)


def _reference(lp: np.ndarray, tx: int, ty: int) -> np.ndarray:
    """monotonic-align's ``maximum_path_each`` on ``lp`` (T_text, T_mel), in lp's dtype."""
    path = np.zeros(lp.shape, dtype=lp.dtype)
    if tx == 0:
        return path
    val = lp.copy()
    neg = -np.inf
    for y in range(ty):
        for x in range(max(0, tx + y - ty), min(tx, y + 1)):
            v_cur = neg if x == y else val[x, y - 1]
            if x == 0:
                v_prev = 0.0 if y == 0 else neg
            else:
                v_prev = val[x - 1, y - 1]
            val[x, y] = max(v_cur, v_prev) + val[x, y]
    index = tx - 1
    for y in range(ty - 1, -1, -1):
        path[index, y] = 1
        if index != 0 and (index == y or val[index, y - 1] < val[index - 1, y - 1]):
            index -= 1
    return path


def _random_batch(g, dtype, ties):
    B = int(torch.randint(1, 6, (1,), generator=g))
    Tx = int(torch.randint(1, 10, (1,), generator=g))
    Ty = Tx + int(torch.randint(0, 25, (1,), generator=g))
    if ties:
        lp = torch.randint(-2, 1, (B, Tx, Ty), generator=g).to(dtype)
    else:
        lp = torch.randn(B, Tx, Ty, generator=g).to(dtype) * 3
    tx = torch.randint(0, Tx + 1, (B,), generator=g)
    ty = torch.minimum(tx + torch.randint(0, Ty + 1, (B,), generator=g), torch.tensor(Ty))
    ty = torch.where(tx == 0, torch.zeros_like(ty), ty)  # empty utterances
    tx[0], ty[0] = Tx, Ty
    return lp, tx, ty


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_engine_equals_previous_recursion(backend, dtype):
    """The engine (on ``backend``) against the compiled kernel and monotonic-align's loop."""
    g = torch.Generator().manual_seed(40 if dtype == torch.float32 else 41)
    for i in range(30):
        lp, tx, ty = _random_batch(g, dtype, ties=i % 3 == 2)
        eng = monotonic_alignment_search(lp, tx, ty, backend=backend, method="engine")
        if NUMBA:
            ker = monotonic_alignment_search(lp, tx, ty, method="kernel")
            assert torch.equal(eng.alignment, ker.alignment), i
            assert torch.equal(eng.durations, ker.durations), i
        for b in range(lp.shape[0]):
            ref = _reference(lp[b].numpy(), int(tx[b]), int(ty[b]))
            assert np.array_equal(eng.alignment[b].numpy(), ref), (i, b)


@pytest.mark.parametrize("backend,method", CONFIGS)
def test_nan_only_matters_where_a_path_reads(backend, method):
    lp = torch.randn(2, 3, 6)
    lp[0, 2, 0] = float("nan")  # token 2 at frame 0: on no monotonic path
    lp[0, 0, 5] = float("nan")  # token 0 at the last frame: on no path either
    lp[1, :, 4:] = float("nan")  # padding of utterance 1
    tx, ty = torch.tensor([3, 3]), torch.tensor([6, 4])
    clean = lp.nan_to_num(nan=-1e4)
    r = monotonic_alignment_search(lp, tx, ty, backend=backend, method=method)
    ref = monotonic_alignment_search(clean, tx, ty, backend=backend, method=method)
    assert torch.equal(r.alignment, ref.alignment)
    lp[1, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"log_p contains NaN \(utterances \[1\]\)"):
        monotonic_alignment_search(lp, tx, ty, backend=backend, method=method)


def test_engine_without_a_finite_path_gives_the_tied_path():
    lp = torch.randn(2, 3, 6)
    lp[1] = float("-inf")
    r = monotonic_alignment_search(lp, method="engine")
    assert r.durations[1].tolist() == [1, 1, 4]
    assert r.durations[0].sum() == 6
    if NUMBA:  # the kernel follows its comparisons of -inf scores: here the same path
        ref = monotonic_alignment_search(lp, method="kernel")
        assert torch.equal(r.alignment, ref.alignment)


def test_method_argument():
    with pytest.raises(ValueError, match="method must be 'auto', 'engine' or 'kernel'"):
        monotonic_alignment_search(torch.randn(3, 5), method="fast")
    with pytest.raises(ValueError, match="method='kernel' runs the compiled CPU kernel"):
        monotonic_alignment_search(torch.randn(3, 5), backend="torch", method="kernel")
    with pytest.raises(ValueError, match="backend must be 'auto', 'numba' or 'torch'"):
        monotonic_alignment_search(torch.randn(3, 5), backend="gpu")
