"""The inference engine against independent references: brute-force enumeration of every
state path, hmmlearn on identical parameters, autograd/gradcheck, long-sequence float64."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pytorch_hmm import core
from pytorch_hmm.core._numba import load_kernels

SEED = 1234


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def backend(request, monkeypatch):
    """Every test runs twice: with the compiled CPU kernels (numba) and with the pure-torch
    recursions (the path of every other device)."""
    if request.param == "torch":
        monkeypatch.setenv("PYTORCH_HMM_DISABLE_NUMBA", "1")
    elif load_kernels("pytorch_hmm.core._cpu_kernels") is None:
        pytest.skip("numba is not installed")
    return request.param


def random_hmm(B, T, K, dtype=torch.float64, seed=SEED, banded=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    lb = torch.randn(B, T, K, generator=g, dtype=dtype) * scale
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=dtype), -1)
    if banded:
        lA = left_to_right(K, dtype=dtype, g=g)
        lpi = torch.full((K,), -math.inf, dtype=dtype)
        lpi[0] = 0.0
    else:
        lA = torch.log_softmax(torch.randn(K, K, generator=g, dtype=dtype), -1)
    return lb, lpi, lA


def left_to_right(K, dtype=torch.float64, g=None, skip=False):
    """Left-to-right chain: stay, move one (and optionally skip one)."""
    W = 3 if skip else 2
    w = torch.rand(K, W, generator=g, dtype=dtype) + 0.1
    lA = torch.full((K, K), -math.inf, dtype=dtype)
    for i in range(K):
        cols = [j for j in range(i, min(K, i + W))]
        p = w[i, : len(cols)] / w[i, : len(cols)].sum()
        lA[i, cols] = p.log()
    return lA


def brute_force(lb, lpi, lA):
    """Enumerate all K^T paths of one sequence lb (T, K): log Z, posteriors, xi, best path."""
    T, K = lb.shape
    scores, paths = [], []
    for path in itertools.product(range(K), repeat=T):
        s = lpi[path[0]] + lb[0, path[0]]
        for t in range(1, T):
            s = s + lA[path[t - 1], path[t]] + lb[t, path[t]]
        scores.append(s)
        paths.append(path)
    scores = torch.stack(scores)
    logZ = torch.logsumexp(scores, 0)
    w = (scores - logZ).exp()
    gamma = torch.zeros(T, K, dtype=lb.dtype)
    xi = torch.zeros(K, K, dtype=lb.dtype)
    for p, wi in zip(paths, w):
        for t in range(T):
            gamma[t, p[t]] += wi
        for t in range(T - 1):
            xi[p[t], p[t + 1]] += wi
    best = int(scores.argmax())
    return logZ, gamma, xi, torch.tensor(paths[best]), scores[best]


@pytest.mark.parametrize("banded", [False, True])
def test_brute_force_every_quantity(banded):
    B, T, K = 3, 5, 4 if not banded else 5
    lb, lpi, lA = random_hmm(B, T, K, banded=banded)
    trans = core.make_transitions(lA.unsqueeze(0))
    assert trans.is_banded == banded
    post = core.posteriors(lb, lpi, lA)
    vit = core.viterbi(lb, lpi, lA)
    fwd = core.forward(lb, lpi, lA)
    bwd = core.backward(lb, lpi, lA)
    ll = core.log_likelihood(lb, lpi, lA)
    for b in range(B):
        logZ, gamma, xi, path, score = brute_force(lb[b], lpi, lA)
        torch.testing.assert_close(ll[b], logZ, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(post.log_likelihood[b], logZ, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(fwd.log_likelihood[b], logZ, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(post.state_posteriors[b], gamma, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(post.transition_counts[b], xi, rtol=1e-9, atol=1e-10)
        assert torch.equal(vit.path[b], path)
        torch.testing.assert_close(vit.score[b], score, rtol=1e-10, atol=1e-10)
        # alpha + beta at any frame gives log Z
        ab = torch.logsumexp(fwd.log_alpha[b] + bwd[b], -1)
        torch.testing.assert_close(ab, logZ.expand(T), rtol=1e-10, atol=1e-10)


def test_dense_and_banded_paths_agree_with_skips():
    g = torch.Generator().manual_seed(SEED)
    K, B, T = 12, 4, 40
    lA = left_to_right(K, g=g, skip=True)
    lpi = torch.full((K,), -math.inf, dtype=torch.float64)
    lpi[0] = 0.0
    lb = torch.randn(B, T, K, generator=g, dtype=torch.float64) * 2
    lengths = torch.tensor([40, 31, 25, 12])
    for fn in (core.log_likelihood, lambda *a, **k: core.viterbi(*a, **k).path):
        d = fn(lb, lpi, lA, lengths, topology="dense")
        b = fn(lb, lpi, lA, lengths, topology="banded")
        torch.testing.assert_close(d, b, rtol=1e-10, atol=1e-10)
    pd = core.posteriors(lb, lpi, lA, lengths, topology="dense")
    pb = core.posteriors(lb, lpi, lA, lengths, topology="banded")
    for x, y in zip(pd, pb):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)


def test_transitions_with_a_backward_band_are_banded_too():
    # an ergodic-looking matrix with offsets -1..1 (e.g. a ring without wrap)
    K = 10
    lA = torch.full((K, K), -math.inf, dtype=torch.float64)
    for i in range(K):
        cols = [j for j in (i - 1, i, i + 1) if 0 <= j < K]
        lA[i, cols] = -math.log(len(cols))
    trans = core.make_transitions(lA.unsqueeze(0))
    assert trans.is_banded and (trans.lo, trans.hi) == (-1, 1)
    lb, lpi, _ = random_hmm(2, 30, K)
    for x, y in zip(core.posteriors(lb, lpi, lA), core.posteriors(lb, lpi, lA, topology="dense")):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(
        core.viterbi(lb, lpi, lA).path, core.viterbi(lb, lpi, lA, topology="dense").path
    )


@pytest.mark.parametrize("banded", [False, True, "sparse"])
def test_padded_batch_equals_each_sequence_alone(banded):
    # dense (rescaled recursion), banded, and a dense matrix with forbidden moves (exact
    # log-space recursion without the band); two sequences share a length
    B, T, K = 5, 30, 8
    lb, lpi, lA = random_hmm(B, T, K, banded=banded is True, scale=3.0)
    if banded == "sparse":
        lA = lA.clone()
        lA[0, 3] = lA[2, 1] = lA[5, 5] = -math.inf
        lA = torch.log_softmax(lA, -1)
    lengths = torch.tensor([30, 17, 1, 9, 17])
    # padding holds garbage that must never be read
    lb = lb.clone()
    for b, L in enumerate(lengths.tolist()):
        lb[b, L:] = 1e3
    ll = core.log_likelihood(lb, lpi, lA, lengths)
    post = core.posteriors(lb, lpi, lA, lengths)
    vit = core.viterbi(lb, lpi, lA, lengths)
    for b, L in enumerate(lengths.tolist()):
        one = lb[b : b + 1, :L]
        torch.testing.assert_close(
            ll[b], core.log_likelihood(one, lpi, lA)[0], rtol=1e-12, atol=1e-12
        )
        p1 = core.posteriors(one, lpi, lA)
        torch.testing.assert_close(
            post.state_posteriors[b, :L], p1.state_posteriors[0], rtol=1e-10, atol=1e-12
        )
        assert post.state_posteriors[b, L:].abs().sum() == 0
        torch.testing.assert_close(
            post.transition_counts[b], p1.transition_counts[0], rtol=1e-10, atol=1e-12
        )
        v1 = core.viterbi(one, lpi, lA)
        assert torch.equal(vit.path[b, :L], v1.path[0])
        assert (vit.path[b, L:] == -1).all()
        torch.testing.assert_close(vit.score[b], v1.score[0], rtol=1e-12, atol=1e-12)


def test_batched_transition_matrices():
    B, T, K = 3, 12, 5
    lb, lpi, _ = random_hmm(B, T, K)
    g = torch.Generator().manual_seed(7)
    lA = torch.log_softmax(torch.randn(B, K, K, generator=g, dtype=torch.float64), -1)
    lpi_b = torch.log_softmax(torch.randn(B, K, generator=g, dtype=torch.float64), -1)
    ll = core.log_likelihood(lb, lpi_b, lA)
    post = core.posteriors(lb, lpi_b, lA)
    for b in range(B):
        one = core.posteriors(lb[b : b + 1], lpi_b[b], lA[b])
        torch.testing.assert_close(ll[b], one.log_likelihood[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            post.transition_counts[b], one.transition_counts[0], rtol=1e-10, atol=1e-12
        )


def test_hmmlearn_identical_parameters():
    hmm = pytest.importorskip("hmmlearn.hmm")
    rng = np.random.default_rng(SEED)
    K, D = 4, 3
    m = hmm.GaussianHMM(n_components=K, covariance_type="diag", implementation="log")
    m.startprob_ = rng.dirichlet(np.ones(K))
    m.transmat_ = rng.dirichlet(np.ones(K), size=K)
    m.means_ = rng.normal(size=(K, D)) * 2
    m.covars_ = rng.uniform(0.5, 2.0, size=(K, D))
    X, _ = m.sample(60, random_state=3)
    lb = torch.from_numpy(m._compute_log_likelihood(X)).unsqueeze(0)
    lpi = torch.from_numpy(np.log(m.startprob_))
    lA = torch.from_numpy(np.log(m.transmat_))
    ll = core.log_likelihood(lb, lpi, lA)
    np.testing.assert_allclose(ll.item(), m.score(X), rtol=1e-5)
    logprob, states = m.decode(X, algorithm="viterbi")
    vit = core.viterbi(lb, lpi, lA)
    np.testing.assert_allclose(vit.score.item(), logprob, rtol=1e-5)
    assert np.array_equal(vit.path[0].numpy(), states)
    np.testing.assert_allclose(
        core.posteriors(lb, lpi, lA).state_posteriors[0].numpy(),
        m.predict_proba(X),
        rtol=1e-5,
        atol=1e-8,
    )


@pytest.mark.parametrize("banded", [False, True])
def test_gradient_wrt_emissions_equals_posteriors(banded):
    lb, lpi, lA = random_hmm(2, 15, 6, banded=banded, scale=2.0)
    lengths = torch.tensor([15, 9])
    lb = lb.requires_grad_()
    ll = core.log_likelihood(lb, lpi, lA, lengths)
    (g,) = torch.autograd.grad(ll.sum(), lb)
    post = core.posteriors(lb.detach(), lpi, lA, lengths)
    torch.testing.assert_close(g, post.state_posteriors, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("banded", [False, True])
def test_gradcheck_float64(banded):
    lb, lpi, lA = random_hmm(2, 6, 5, banded=banded)
    lengths = torch.tensor([6, 4])
    lb.requires_grad_()
    if banded:
        # gradients w.r.t. the allowed (finite) transitions and the emissions
        mask = torch.isfinite(lA)
        vals = lA[mask].clone().requires_grad_()

        def f(lb_, vals_):
            A = torch.full_like(lA, -math.inf).masked_scatter(mask, vals_)
            return core.log_likelihood(lb_, lpi, A, lengths, check_stochastic=False)

        assert torch.autograd.gradcheck(f, (lb, vals))
    else:
        lpi = lpi.clone().requires_grad_()
        lA = lA.clone().requires_grad_()

        def f(lb_, lpi_, lA_):
            return core.log_likelihood(lb_, lpi_, lA_, lengths, check_stochastic=False)

        assert torch.autograd.gradcheck(f, (lb, lpi, lA))


def test_gradient_matches_plain_autograd_through_the_recursion():
    lb, lpi, lA = random_hmm(3, 20, 5, scale=2.0)
    lengths = torch.tensor([20, 13, 7])
    params = [x.clone().requires_grad_() for x in (lb, lpi, lA)]
    ll = core.log_likelihood(*params, lengths, check_stochastic=False)
    ours = torch.autograd.grad(ll.sum(), params)
    # reference: the textbook recursion, differentiated by autograd
    params2 = [x.clone().requires_grad_() for x in (lb, lpi, lA)]
    total = 0
    for b, L in enumerate(lengths.tolist()):
        a = params2[1] + params2[0][b, 0]
        for t in range(1, L):
            a = torch.logsumexp(a.unsqueeze(1) + params2[2], 0) + params2[0][b, t]
        total = total + torch.logsumexp(a, 0)
    ref = torch.autograd.grad(total, params2)
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("banded", [False, True])
def test_long_sequence_float32_is_stable(banded, backend):
    # the torch loop costs a few torch calls a frame: 20,000 frames (still past
    # LONG_SEQUENCE, so the float64 accumulation is what is tested) keep it to seconds
    T, K = (100_000 if backend == "compiled" else 20_000), 8
    lb64, lpi64, lA64 = random_hmm(1, T, K, banded=banded, scale=4.0)
    if banded:
        # a chain that can sit in each state for thousands of frames
        stay = 1.0 - K / T
        lA64 = torch.full((K, K), -math.inf, dtype=torch.float64)
        for i in range(K - 1):
            lA64[i, i], lA64[i, i + 1] = math.log(stay), math.log(1 - stay)
        lA64[K - 1, K - 1] = 0.0
    ll64 = core.log_likelihood(lb64, lpi64, lA64)
    ll32 = core.log_likelihood(lb64.float(), lpi64.float(), lA64.float())
    assert torch.isfinite(ll32).all()
    torch.testing.assert_close(ll32.double(), ll64, rtol=1e-4, atol=0)
    post = core.posteriors(lb64.float(), lpi64.float(), lA64.float())
    assert torch.isfinite(post.state_posteriors).all()
    torch.testing.assert_close(
        post.state_posteriors.sum(-1), torch.ones(1, T), rtol=1e-4, atol=1e-4
    )
    v32 = core.viterbi(lb64.float(), lpi64.float(), lA64.float())
    v64 = core.viterbi(lb64, lpi64, lA64)
    torch.testing.assert_close(v32.score.double(), v64.score, rtol=1e-4, atol=0)
    assert (v32.path == v64.path).float().mean() > 0.999


def test_underflowing_sequences_fall_back_to_exact_log_space():
    # the chain starts in states {0, 1}, whose emissions are ~1000 nats below those of {2..5},
    # reachable only through 1e-30 transitions: the rescaled recursion's frame scale falls
    # below its threshold, so those sequences must be recomputed exactly (no zero entry, so
    # the rescaled path is tried first)
    K, T = 6, 50
    lA = torch.full((K, K), math.log(1e-30), dtype=torch.float64)
    lA[0, 0] = lA[0, 1] = math.log(0.5)
    lA[1, 1] = lA[1, 0] = math.log(0.5)
    lA[2:, 2:] = -math.log(K - 2)
    lA = torch.log_softmax(lA, -1).float()
    assert core.make_transitions(lA.unsqueeze(0), "dense").is_banded is False
    lpi = torch.full((K,), -math.inf)
    lpi[0] = 0.0
    g = torch.Generator().manual_seed(0)
    lb = torch.randn(2, T, K, generator=g)
    lb[:, :, :2] -= 1000.0
    from pytorch_hmm.core.inference import _Problem, _scaled_forward

    underflow = _scaled_forward(_Problem(lb, lpi, lA, None), history=False).underflow
    assert underflow.all()  # the fallback is what this test exercises
    ll = core.log_likelihood(lb, lpi, lA, topology="dense")
    ref = core.log_likelihood(lb.double(), lpi.double(), lA.double(), topology="dense")
    assert torch.isfinite(ll).all()
    torch.testing.assert_close(ll.double(), ref, rtol=1e-5, atol=0)
    g1 = core.posteriors(lb, lpi, lA, topology="dense").state_posteriors
    g64 = core.posteriors(lb.double(), lpi.double(), lA.double(), topology="dense")
    assert torch.isfinite(g1).all()
    # float32 scores of magnitude ~1000 carry ~6e-5 round-off a frame
    torch.testing.assert_close(g1.double(), g64.state_posteriors, rtol=0, atol=5e-3)
    torch.testing.assert_close(
        g64.state_posteriors.sum(-1), torch.ones(2, T, dtype=torch.float64), rtol=1e-10, atol=1e-10
    )


def test_sampling_matches_posteriors():
    lb, lpi, lA = random_hmm(2, 4, 3, scale=1.5)
    lengths = torch.tensor([4, 3])
    g = torch.Generator().manual_seed(0)
    S = 20000
    z = core.sample_posterior(lb, lpi, lA, lengths, num_samples=S, generator=g)
    assert z.shape == (S, 2, 4)
    assert (z[:, 1, 3] == -1).all() and (z[:, :, :3] >= 0).all()
    post = core.posteriors(lb, lpi, lA, lengths).state_posteriors
    emp = torch.nn.functional.one_hot(z.clamp(min=0), 3).double().mean(0)
    torch.testing.assert_close(emp[0], post[0], rtol=0, atol=0.02)
    torch.testing.assert_close(emp[1, :3], post[1, :3], rtol=0, atol=0.02)
    # joint of a whole path: the empirical frequency of the Viterbi path of sequence 0
    _, _, _, path, score = brute_force(lb[0], lpi, lA)
    p = (score - core.log_likelihood(lb[:1], lpi, lA)[0]).exp().item()
    freq = (z[:, 0] == path).all(-1).double().mean().item()
    assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / S) + 1e-3


# ----------------------------------------------------------------------------------------
# bad input


def test_bad_shapes_and_types_give_clear_errors():
    lb, lpi, lA = random_hmm(2, 5, 3)
    with pytest.raises(ValueError, match=r"log_emissions must have shape \(B, T, K\)"):
        core.log_likelihood(lb[0], lpi, lA)
    with pytest.raises(ValueError, match=r"log_initial must have shape"):
        core.log_likelihood(lb, lpi[:2], lA)
    with pytest.raises(ValueError, match=r"log_transitions must have shape"):
        core.viterbi(lb, lpi, lA[:2])
    with pytest.raises(TypeError, match="dtype"):
        core.log_likelihood(lb, lpi.float(), lA)
    with pytest.raises(TypeError, match="float32 or float64"):
        core.log_likelihood(lb.long(), lpi, lA)
    with pytest.raises(ValueError, match="T=0 frames"):
        core.log_likelihood(lb[:, :0], lpi, lA)


def test_bad_lengths():
    lb, lpi, lA = random_hmm(2, 5, 3)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\].*padded length is 5"):
        core.log_likelihood(lb, lpi, lA, torch.tensor([6, 2]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, .*empty sequences"):
        core.posteriors(lb, lpi, lA, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\) \(one per sequence\)"):
        core.viterbi(lb, lpi, lA, torch.tensor([5]))
    with pytest.raises(TypeError, match="integer"):
        core.viterbi(lb, lpi, lA, torch.tensor([5.0, 2.0]))


def test_nan_and_unnormalised_inputs():
    lb, lpi, lA = random_hmm(2, 5, 3)
    bad = lb.clone()
    bad[1, 3, 2] = float("nan")
    msg = r"log_emissions contains NaN \(first at index \(1, 3, 2\)"
    with pytest.raises(ValueError, match=msg):
        core.log_likelihood(bad, lpi, lA)
    with pytest.raises(ValueError, match=r"rows of exp\(log_transitions\) must sum to one"):
        core.log_likelihood(lb, lpi, lA + 0.1)
    with pytest.raises(ValueError, match=r"exp\(log_initial\) must sum to one"):
        core.log_likelihood(lb, lpi - 1.0, lA)
    # unnormalised scores are allowed on request
    assert torch.isfinite(core.log_likelihood(lb, lpi, lA + 0.1, check_stochastic=False)).all()


def test_impossible_sequence_reports_minus_inf_and_no_path():
    K = 4
    lb, lpi, _ = random_hmm(2, 6, K)
    lA = left_to_right(K, g=torch.Generator().manual_seed(0))
    lpi = torch.full((K,), -math.inf, dtype=torch.float64)
    lpi[0] = 0.0
    lb = lb.clone()
    lb[1, :, 0] = -math.inf  # sequence 1 can never be in the only initial state
    ll = core.log_likelihood(lb, lpi, lA)
    assert torch.isfinite(ll[0]) and ll[1] == -math.inf
    with pytest.warns(RuntimeWarning, match=r"no valid state path for sequence\(s\) \[1\]"):
        v = core.viterbi(lb, lpi, lA)
    assert v.score[1] == -math.inf and (v.path[1] == -1).all() and (v.path[0] >= 0).all()
    with pytest.warns(RuntimeWarning, match="no valid state path"):
        p = core.posteriors(lb, lpi, lA)
    assert (p.state_posteriors[1] == 0).all() and torch.isfinite(p.state_posteriors).all()
    # the gradient of an impossible sequence is zero, not NaN
    lbg = lb.clone().requires_grad_()
    core.log_likelihood(lbg, lpi, lA)[0].backward()
    assert torch.isfinite(lbg.grad).all()


def test_mixed_devices_rejected():
    lb, lpi, lA = random_hmm(1, 3, 2)
    meta = torch.empty(2, 2, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="one device"):
        core.log_likelihood(lb, lpi, meta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("banded", [False, True])
def test_cuda_matches_cpu(banded):
    lb, lpi, lA = random_hmm(3, 40, 8, banded=banded, scale=2.0)
    lengths = torch.tensor([40, 25, 3])
    dev = [x.cuda() for x in (lb, lpi, lA)]
    for f in (
        core.log_likelihood,
        lambda *a: core.viterbi(*a).path,
        lambda *a: core.posteriors(*a).state_posteriors,
    ):
        torch.testing.assert_close(
            f(*dev, lengths.cuda()).cpu(), f(lb, lpi, lA, lengths), rtol=1e-9, atol=1e-10
        )
    g = dev[0].clone().requires_grad_()
    core.log_likelihood(g, dev[1], dev[2], lengths.cuda()).sum().backward()
    torch.testing.assert_close(
        g.grad.cpu(), core.posteriors(lb, lpi, lA, lengths).state_posteriors, rtol=1e-9, atol=1e-10
    )


def test_padded_viterbi_without_self_loops():
    # no state may follow itself: a back-tracking step that starts one frame too late would
    # put a different state on the last real frame
    K, T = 5, 12
    g = torch.Generator().manual_seed(3)
    lA = torch.randn(K, K, generator=g, dtype=torch.float64)
    lA.fill_diagonal_(-math.inf)
    lA = torch.log_softmax(lA, -1)
    lpi = torch.full((K,), -math.log(K), dtype=torch.float64)
    lb = torch.randn(3, T, K, generator=g, dtype=torch.float64) * 2
    lengths = torch.tensor([12, 7, 4])
    for topology in ("dense", "banded"):
        v = core.viterbi(lb, lpi, lA, lengths, topology=topology)
        for b, L in enumerate(lengths.tolist()):
            one = core.viterbi(lb[b : b + 1, :L], lpi, lA, topology=topology)
            assert torch.equal(v.path[b, :L], one.path[0])
            _, _, _, path, score = (
                brute_force(lb[b, :L], lpi, lA) if L <= 4 else (0, 0, 0, None, None)
            )
            if path is not None:
                assert torch.equal(one.path[0], path)


def test_long_chain_as_dense_matrix_matches_float64():
    # a left-to-right chain given as a dense matrix (topology="dense"): state masses drift
    # hundreds of nats apart over long sojourns, which a single per-frame scale would lose
    T, K = 20_000, 6
    g = torch.Generator().manual_seed(5)
    lb = torch.randn(1, T, K, generator=g, dtype=torch.float64) * 4
    stay = 1.0 - K / T
    lA = torch.full((K, K), -math.inf, dtype=torch.float64)
    for i in range(K - 1):
        lA[i, i], lA[i, i + 1] = math.log(stay), math.log(1 - stay)
    lA[K - 1, K - 1] = 0.0
    lpi = torch.full((K,), -math.inf, dtype=torch.float64)
    lpi[0] = 0.0
    ref = core.log_likelihood(lb, lpi, lA, topology="banded")
    for dt in (torch.float64, torch.float32):
        ll = core.log_likelihood(lb.to(dt), lpi.to(dt), lA.to(dt), topology="dense")
        torch.testing.assert_close(ll.double(), ref, rtol=1e-4, atol=0)


@pytest.mark.parametrize("kind", ["dense", "banded", "skip"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_kernels_match_torch_path(kind, dtype, backend, monkeypatch):
    # the compiled CPU kernels (numba) and the torch recursions are two implementations of
    # the same algorithms: on the same padded batch they agree to round-off
    if backend != "compiled":
        pytest.skip("compares the compiled path with the torch path")
    B, T, K = 4, 60, 12
    lb, lpi, lA = random_hmm(B, T, K, dtype=dtype, banded=kind != "dense", scale=2.0)
    if kind == "skip":
        g = torch.Generator().manual_seed(5)
        lA = left_to_right(K, dtype=dtype, g=g, skip=True)
    lengths = torch.tensor([60, 33, 1, 33])

    def run():
        return (
            core.log_likelihood(lb, lpi, lA, lengths),
            core.posteriors(lb, lpi, lA, lengths),
            core.viterbi(lb, lpi, lA, lengths),
        )

    ll_c, post_c, vit_c = run()
    monkeypatch.setenv("PYTORCH_HMM_DISABLE_NUMBA", "1")
    ll_t, post_t, vit_t = run()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ll_c, ll_t, **tol)
    for a, b in zip(post_c, post_t):
        torch.testing.assert_close(a, b, **tol)
    assert torch.equal(vit_c.path, vit_t.path)
    torch.testing.assert_close(vit_c.score, vit_t.score, **tol)


def test_engine_calls_from_two_threads(backend):
    # the compiled kernels' parallel loops are serialised: concurrent callers get the same
    # results as sequential ones (and the process does not abort)
    import threading

    lb, lpi, lA = random_hmm(8, 200, 10, banded=True)
    lb2, lpi2, lA2 = random_hmm(8, 200, 10)
    ref = [core.posteriors(lb, lpi, lA), core.posteriors(lb2, lpi2, lA2)]
    out = [None, None]

    def work(k, args):
        for _ in range(5):
            out[k] = core.posteriors(*args)

    threads = [
        threading.Thread(target=work, args=(0, (lb, lpi, lA))),
        threading.Thread(target=work, args=(1, (lb2, lpi2, lA2))),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r, o in zip(ref, out):
        for a, b in zip(r, o):
            assert torch.equal(a, b)


def test_wide_band_viterbi_matches_dense():
    # a band wider than the compiled back-tracking's int8 slots (W > 127) takes the torch
    # recursion; either way the banded path and score equal the dense ones
    K = 300
    g = torch.Generator().manual_seed(0)
    lA = torch.full((K, K), -math.inf, dtype=torch.float64)
    for i in range(K):
        hi = min(K, i + 130)
        lA[i, i:hi] = torch.randn(hi - i, generator=g, dtype=torch.float64)
    lA = torch.log_softmax(lA, -1)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    lb = torch.randn(2, 30, K, generator=g, dtype=torch.float64)
    a = core.viterbi(lb, lpi, lA, torch.tensor([30, 17]), topology="banded")
    b = core.viterbi(lb, lpi, lA, torch.tensor([30, 17]), topology="dense")
    assert torch.equal(a.path, b.path)
    torch.testing.assert_close(a.score, b.score, rtol=1e-12, atol=1e-12)
