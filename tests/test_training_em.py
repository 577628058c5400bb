"""Baum-Welch EM (GaussianHMM diag/full, MixtureGaussianHMM) against hmmlearn, and its
behaviour: monotone likelihood, parameter recovery, streaming = whole-set fit, topology kept,
selectable parameters, bad input, gradient training."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pytorch_hmm.models import GaussianHMM, MixtureGaussianHMM
from pytorch_hmm.training import (
    HMMStats,
    gaussian_m_step,
    gaussian_stats,
    kmeans,
    markov_m_step,
    mixture_m_step,
    mixture_stats,
    pad_sequences,
)

try:  # only the tests marked needs_hmmlearn use it; the others run without it
    from hmmlearn import hmm
except ImportError:
    hmm = None
needs_hmmlearn = pytest.mark.skipif(hmm is None, reason="needs hmmlearn")

RTOL = 1e-4


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-8)))


def _gaussian_problem(ctype, K=4, D=3, seed=0):
    rng = np.random.default_rng(seed)
    gen = hmm.GaussianHMM(K, covariance_type=ctype, init_params="", params="")
    gen.n_features = D
    gen.startprob_ = rng.dirichlet(np.ones(K))
    tm = rng.dirichlet(np.ones(K), size=K) + 3 * np.eye(K)
    gen.transmat_ = tm / tm.sum(1, keepdims=True)
    gen.means_ = rng.normal(size=(K, D)) * 3
    if ctype == "diag":
        gen.covars_ = rng.uniform(0.5, 2.0, size=(K, D))
    else:
        A = rng.normal(size=(K, D, D)) * 0.5
        gen.covars_ = A @ A.transpose(0, 2, 1) + np.eye(D) * 0.5
    seqs = [gen.sample(n, random_state=i)[0] for i, n in enumerate([200, 150, 300, 120])]
    start = hmm.GaussianHMM(K, covariance_type=ctype, init_params="", params="stmc")
    start.n_features = D
    start.startprob_ = np.full(K, 1.0 / K)
    start.transmat_ = rng.dirichlet(np.ones(K) * 5, size=K)
    start.means_ = gen.means_ + rng.normal(size=(K, D))
    start.covars_ = gen._covars_ * 1.5
    return gen, start, seqs


@needs_hmmlearn
@pytest.mark.parametrize("ctype", ["diag", "full"])
def test_gaussian_em_reproduces_hmmlearn(ctype):
    _, ref, seqs = _gaussian_problem(ctype)
    X, L = np.concatenate(seqs), [len(s) for s in seqs]
    ours = GaussianHMM.from_hmmlearn(ref)  # float64
    ref.n_iter, ref.tol = 10, -np.inf
    ref.fit(X, L)
    ours.fit(X, L, n_iter=10, tol=-math.inf, init_params="")
    assert ours.n_iter_ == 10
    hist = np.array(ours.log_likelihood_history)
    assert _rel(list(ref.monitor_.history), hist[-len(ref.monitor_.history) :]) < RTOL
    assert _rel(ref.startprob_, ours.startprob) < RTOL
    assert _rel(ref.transmat_, ours.transmat) < RTOL
    assert _rel(ref.means_, ours.means.detach()) < RTOL
    covars = ours.covars if ctype == "full" else torch.diag_embed(ours.covars)
    assert _rel(ref.covars_, covars) < RTOL
    assert np.all(np.diff(hist) > -1e-9 * np.abs(hist[1:]))


def _gmm_problem(ctype, K=3, M=2, D=2, seed=0):
    rng = np.random.default_rng(seed)
    gen = hmm.GMMHMM(K, M, covariance_type=ctype, init_params="", params="")
    gen.n_features = D
    gen.startprob_ = np.full(K, 1.0 / K)
    tm = rng.dirichlet(np.ones(K) * 5, size=K) + 3 * np.eye(K)
    gen.transmat_ = tm / tm.sum(1, keepdims=True)
    gen.weights_ = rng.dirichlet(np.ones(M) * 5, size=K)
    gen.means_ = rng.normal(size=(K, M, D)) * 3
    if ctype == "diag":
        gen.covars_ = rng.uniform(0.5, 2.0, size=(K, M, D))
    else:
        gen.covars_ = np.broadcast_to(np.eye(D) + 0.3, (K, M, D, D)).copy()
    seqs = [gen.sample(n, random_state=i)[0] for i, n in enumerate([300, 200, 400])]
    start = hmm.GMMHMM(K, M, covariance_type=ctype, init_params="", params="stmcw")
    start.n_features = D
    start.startprob_ = np.full(K, 1.0 / K)
    start.transmat_ = rng.dirichlet(np.ones(K) * 5, size=K)
    start.weights_ = np.full((K, M), 1.0 / M)
    start.means_ = gen.means_ + rng.normal(size=(K, M, D)) * 0.5
    start.covars_ = gen.covars_ * 1.3
    return start, seqs


@needs_hmmlearn
@pytest.mark.parametrize("ctype", ["diag", "full"])
def test_gmm_em_reproduces_hmmlearn(ctype):
    ref, seqs = _gmm_problem(ctype)
    X, L = np.concatenate(seqs), [len(s) for s in seqs]
    ours = MixtureGaussianHMM.from_hmmlearn(ref)  # covariance_center="previous", as hmmlearn
    ref.n_iter, ref.tol = 10, -np.inf
    ref.fit(X, L)
    ours.fit(X, L, n_iter=10, tol=-math.inf, init_params="")
    hist = np.array(ours.log_likelihood_history)
    assert len(hist) == 10
    assert _rel(list(ref.monitor_.history), hist[-len(ref.monitor_.history) :]) < RTOL
    for a, b in [
        (ref.startprob_, ours.startprob),
        (ref.transmat_, ours.transmat),
        (ref.weights_, ours.weights),
        (ref.means_, ours.means.detach()),
        (ref.covars_, ours.covars),
    ]:
        assert _rel(a, b) < RTOL


@needs_hmmlearn
def test_gmm_default_em_is_monotone():
    ref, seqs = _gmm_problem("diag", seed=3)
    ours = MixtureGaussianHMM.from_hmmlearn(ref, covariance_center="new")
    ours.fit(seqs, n_iter=15, tol=-math.inf, init_params="")
    hist = np.array(ours.log_likelihood_history)
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[1:]))


@needs_hmmlearn
@pytest.mark.parametrize("ctype", ["diag", "full"])
def test_log_likelihood_never_decreases_float32(ctype):
    _, ref, seqs = _gaussian_problem(ctype, seed=5)
    ours = GaussianHMM.from_hmmlearn(ref, dtype=torch.float32)
    ours.fit(seqs, n_iter=20, tol=-math.inf, init_params="")
    hist = np.array(ours.log_likelihood_history)
    assert np.all(np.diff(hist) >= -1e-5 * np.abs(hist[1:]))


def _best_perm_error(true, est):
    K = true.shape[0]
    return min(float(np.abs(true[list(p)] - est).max()) for p in itertools.permutations(range(K)))


def test_parameter_recovery_gaussian():
    K, D = 3, 2
    true = GaussianHMM(
        K,
        D,
        startprob=[0.5, 0.3, 0.2],
        transmat=[[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]],
        means=[[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]],
        covars=[[1.0, 1.0], [0.5, 1.5], [1.0, 0.7]],
        dtype=torch.float64,
    )
    x, _ = true.sample(500, num_sequences=8, generator=torch.Generator().manual_seed(0))
    model = GaussianHMM(K, D, dtype=torch.float64)
    model.fit(x, n_iter=50, tol=1e-6)  # k-means initialisation ("auto")
    err = _best_perm_error(true.means.detach().numpy(), model.means.detach().numpy())
    assert err < 0.1  # 4000 frames, unit-scale variances
    assert model.converged


def test_parameter_recovery_mixture():
    K, M, D = 2, 2, 2
    true = MixtureGaussianHMM(
        K,
        D,
        M,
        startprob=[0.5, 0.5],
        transmat=[[0.95, 0.05], [0.05, 0.95]],
        weights=[[0.5, 0.5], [0.3, 0.7]],
        means=[[[0.0, 0.0], [6.0, 0.0]], [[0.0, 8.0], [6.0, 8.0]]],
        covars=np.full((K, M, D), 0.5),
        dtype=torch.float64,
    )
    x, _ = true.sample(500, num_sequences=8, generator=torch.Generator().manual_seed(1))
    model = MixtureGaussianHMM(K, D, M, dtype=torch.float64)
    model.fit(x, n_iter=50, tol=1e-6)
    t = true.means.detach().numpy().reshape(K * M, D)
    e = model.means.detach().numpy().reshape(K * M, D)
    # components: match all K*M means up to a permutation (greedy nearest is enough here)
    err = max(np.min(np.abs(e - t[i]).max(-1)) for i in range(K * M))
    assert err < 0.15


def _sequences(seed=0, n=6):
    _, ref, seqs = _gaussian_problem("diag", seed=seed)
    return ref, seqs


@needs_hmmlearn
def test_streaming_fit_equals_whole_fit():
    ref, seqs = _sequences()
    whole = GaussianHMM.from_hmmlearn(ref)
    whole.fit(seqs, n_iter=5, tol=-math.inf, init_params="")
    streamed = GaussianHMM.from_hmmlearn(ref)
    batches = [pad_sequences(seqs[:2]), pad_sequences(seqs[2:3]), pad_sequences(seqs[3:])]
    streamed.fit(batches, n_iter=5, tol=-math.inf, init_params="")
    for a, b in zip(whole.parameters(), streamed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        whole.log_likelihood_history, streamed.log_likelihood_history, rtol=1e-12
    )


@needs_hmmlearn
def test_streaming_from_dataloader_and_callable():
    ref, seqs = _sequences()
    x, L = pad_sequences(seqs)
    whole = GaussianHMM.from_hmmlearn(ref).fit(x, L, n_iter=3, init_params="", tol=-math.inf)
    ds = torch.utils.data.TensorDataset(x, L)
    dl = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=False)
    a = GaussianHMM.from_hmmlearn(ref).fit(dl, n_iter=3, init_params="", tol=-math.inf)
    b = GaussianHMM.from_hmmlearn(ref).fit(
        lambda: ((x[i : i + 3], L[i : i + 3]) for i in range(0, 4, 3)),
        n_iter=3,
        init_params="",
        tol=-math.inf,
    )
    for m in (a, b):
        torch.testing.assert_close(m.means, whole.means, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="one-shot iterator"):
        GaussianHMM.from_hmmlearn(ref).fit(iter([(x, L)]), init_params="")


@needs_hmmlearn
def test_stats_add_up_and_functional_pieces():
    ref, seqs = _sequences()
    model = GaussianHMM.from_hmmlearn(ref)
    x, L = pad_sequences(seqs)
    whole = model.accumulate(x, L)
    parts = model.accumulate(x[:2], L[:2]) + model.accumulate(x[2:], L[2:])
    assert isinstance(parts, HMMStats)
    for a, b in zip(whole.tensors(), parts.tensors()):
        torch.testing.assert_close(a, b.to(a.dtype), rtol=1e-10, atol=1e-10)
    assert int(whole.num_frames) == sum(len(s) for s in seqs)
    assert int(whole.num_sequences) == len(seqs)
    assert sum([model.accumulate(x[:2], L[:2]), model.accumulate(x[2:], L[2:])]) is not None
    # functional: same as the model's step
    gamma = model.posteriors(x, L).state_posteriors
    st = gaussian_stats(x.double(), gamma, L, "diag")
    torch.testing.assert_close(st.occupancy, whole.emission.occupancy)
    means, covars = gaussian_m_step(st, min_covar=model.min_covar)
    sp, tm = markov_m_step(whole.start, whole.trans, model.start_mask, model.trans_mask)
    model.m_step(whole)
    torch.testing.assert_close(model.means.detach(), means)
    torch.testing.assert_close(model.covars, covars)
    torch.testing.assert_close(model.transmat, tm)
    torch.testing.assert_close(model.startprob, sp)


def test_left_to_right_topology_kept():
    K, D = 4, 2
    tm = np.zeros((K, K))
    for k in range(K):
        tm[k, k] = 0.7
        if k + 1 < K:
            tm[k, k + 1] = 0.3
        else:
            tm[k, k] = 1.0
    true = GaussianHMM(
        K,
        D,
        startprob=[1, 0, 0, 0],
        transmat=tm,
        means=np.arange(K * D, dtype=float).reshape(K, D) * 2,
        dtype=torch.float64,
    )
    x, _ = true.sample(40, num_sequences=10, generator=torch.Generator().manual_seed(0))
    model = GaussianHMM(K, D, startprob=[1, 0, 0, 0], transmat=tm, dtype=torch.float64)
    model.fit(x, n_iter=10)
    assert torch.equal(model.transmat == 0, torch.as_tensor(tm) == 0)
    assert torch.equal(model.startprob == 0, torch.tensor([False, True, True, True]))
    assert torch.allclose(model.transmat.sum(-1), torch.ones(K, dtype=torch.float64))


@needs_hmmlearn
def test_params_selects_what_is_trained():
    ref, seqs = _sequences()
    model = GaussianHMM.from_hmmlearn(ref)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.fit(seqs, n_iter=3, params="m", init_params="")
    after = dict(model.named_parameters())
    assert not torch.equal(before["means"], after["means"])
    for n in ("start_logits", "trans_logits", "log_covars"):
        assert torch.equal(before[n], after[n]), n
    with pytest.raises(ValueError, match="params"):
        model.fit(seqs, params="mz")
    # hmmlearn agrees on a partial update (not on one with "c" but no "m": hmmlearn then
    # skips the occupancy statistics its covariance update needs)
    ref.params, ref.n_iter, ref.tol = "tm", 3, -np.inf
    ours = GaussianHMM.from_hmmlearn(ref)
    ref.fit(np.concatenate(seqs), [len(s) for s in seqs])
    ours.fit(seqs, n_iter=3, params="tm", init_params="", tol=-math.inf)
    assert _rel(ref.means_, ours.means.detach()) < RTOL
    assert _rel(ref.transmat_, ours.transmat) < RTOL
    assert _rel(ref.startprob_, ours.startprob) == 0


@needs_hmmlearn
def test_init_params_auto_and_kmeans():
    ref, seqs = _sequences()
    m = GaussianHMM(4, 3, dtype=torch.float64).fit(seqs, n_iter=0)
    assert m.means.abs().sum() > 0  # k-means ran
    frames = torch.as_tensor(np.concatenate(seqs))
    km = kmeans(frames, 4, seed=0)
    torch.testing.assert_close(
        m.means.detach().sort(0).values, km.centers.sort(0).values, rtol=1e-10, atol=1e-10
    )
    # already-set parameters are not overwritten by "auto"
    m2 = GaussianHMM.from_hmmlearn(ref).fit(seqs, n_iter=0)
    np.testing.assert_array_equal(m2.means.detach().numpy(), ref.means_)
    # sklearn backend when installed
    pytest.importorskip("sklearn")
    m3 = GaussianHMM(4, 3, dtype=torch.float64).fit(seqs, n_iter=1, kmeans_backend="sklearn")
    assert torch.isfinite(m3.means).all()


@needs_hmmlearn
def test_verbose_progress_bar(capsys):
    _, seqs = _sequences()
    GaussianHMM(4, 3).fit(seqs, n_iter=2, verbose=True)
    assert "EM" in capsys.readouterr().err


# -- bad input ---------------------------------------------------------------------------


def test_fewer_frames_than_states_for_kmeans():
    with pytest.raises(ValueError, match="fewer than num_states"):
        GaussianHMM(5, 2).fit(torch.randn(3, 2))
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans(torch.randn(3, 2), 5)
    with pytest.raises(ValueError, match="fewer than num_states"):
        MixtureGaussianHMM(5, 2, 2).fit(torch.randn(3, 2))


def test_nan_features_rejected():
    x = torch.randn(2, 30, 2)
    x[1, 5, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        GaussianHMM(2, 2).fit(x)
    # NaN in padding is fine
    L = torch.tensor([30, 5])
    m = GaussianHMM(2, 2).fit(x, L, n_iter=3)
    assert all(torch.isfinite(p).all() for p in m.parameters())


@pytest.mark.parametrize("ctype", ["diag", "full"])
def test_zero_variance_dimension_hits_the_floor(ctype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 100, 3, generator=g, dtype=torch.float64)
    x[..., 1] = 2.5  # constant feature
    m = GaussianHMM(3, 3, covariance_type=ctype, min_covar=1e-3, dtype=torch.float64)
    m.fit(x, n_iter=5)
    c = m.covars if ctype == "diag" else torch.linalg.eigvalsh(m.covars)
    assert torch.isfinite(c).all() and (c >= 1e-3 * (1 - 1e-9)).all()
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert np.isfinite(m.log_likelihood_history).all()


def test_degenerate_mixture_component_is_reseeded():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 200, 2, generator=g, dtype=torch.float64)
    model = MixtureGaussianHMM(1, 2, 3, dtype=torch.float64)
    # component 2 sits far from every frame: no occupancy
    model.set_means([[[0.0, 0.0], [0.5, 0.5], [1e3, 1e3]]])
    model.set_covars(np.ones((1, 3, 2)))
    model.set_weights([[0.4, 0.4, 0.2]])
    stats = model.accumulate(x)
    assert stats.emission.occupancy[0, 2] < 1e-8
    w, mu, cov, reseeded = mixture_m_step(stats.emission, previous=None)
    assert reseeded[0, 2] and not reseeded[0, :2].any()
    assert torch.isfinite(mu).all() and torch.isfinite(cov).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(1, dtype=w.dtype))
    model.fit(x, n_iter=5, init_params="")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.weights.min() > 0.01  # the re-seeded component took frames again


def test_unused_state_keeps_parameters():
    # state 2 unreachable: start 0, no transition into it
    model = GaussianHMM(
        3,
        1,
        startprob=[0.5, 0.5, 0.0],
        transmat=[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
        means=[[0.0], [3.0], [7.0]],
        covars=[[1.0], [1.0], [2.0]],
        dtype=torch.float64,
    )
    x = torch.randn(3, 50, 1, dtype=torch.float64)
    model.fit(x, n_iter=3, init_params="")
    assert model.means[2].item() == 7.0 and model.covars[2].item() == pytest.approx(2.0)
    assert torch.isfinite(model.transmat).all()


def test_mixture_stats_shapes():
    x = torch.randn(2, 10, 3)
    gamma = torch.softmax(torch.randn(2, 10, 4), -1)
    comp = torch.randn(2, 10, 4, 2)
    st = mixture_stats(x, gamma, comp, torch.tensor([10, 6]))
    assert st.occupancy.shape == (4, 2) and st.sum_x.shape == (4, 2, 3)
    assert st.sum_xx.shape == (4, 2, 3)
    assert st.occupancy.sum().item() == pytest.approx(16, rel=1e-5)
    full = mixture_stats(x, gamma, comp, None, "full")
    assert full.sum_xx.shape == (4, 2, 3, 3)


# -- gradient training -------------------------------------------------------------------


@pytest.mark.parametrize("which", ["diag", "full", "mixture"])
def test_gradient_training_lowers_nll_and_keeps_parameters_valid(which):
    from pytorch_hmm.training import fit_gradient

    torch.manual_seed(0)
    x = torch.randn(4, 50, 2) + torch.tensor([1.0, -1.0])
    if which == "mixture":
        model = MixtureGaussianHMM(3, 2, 2, transmat=[[0.8, 0.2, 0], [0, 0.8, 0.2], [0, 0, 1]])
    else:
        model = GaussianHMM(3, 2, which, transmat=[[0.8, 0.2, 0], [0, 0.8, 0.2], [0, 0, 1]])
    with torch.no_grad():
        model.means.normal_()
    before = float(model.nll(x).detach())
    hist = fit_gradient(
        model, x, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), n_epochs=20
    )
    assert hist[-1] < before
    assert model.transmat[0, 2] == 0 and model.transmat[1, 0] == 0  # structural zeros kept
    assert torch.isfinite(model.covars).all()


def test_tied_states_for_forced_alignment():
    from pytorch_hmm.training import tie_posteriors, tie_transition_counts

    g = torch.Generator().manual_seed(0)
    B, T, K, S, D = 2, 7, 3, 4, 2
    x = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    gamma = torch.softmax(torch.randn(B, T, K, generator=g, dtype=torch.float64), -1)
    idx = torch.tensor([[0, 1, 2], [2, 0, -1]])
    gamma[1, :, 2] = 0.0  # the unused slot has no posterior mass
    trans = torch.rand(B, K, K, generator=g, dtype=torch.float64)
    start = gamma[:, 0]
    tied = tie_posteriors(gamma, idx, S)
    ref = torch.zeros(B, T, S, dtype=torch.float64)
    st_ref = torch.zeros(S, dtype=torch.float64)
    tr_ref = torch.zeros(S, S, dtype=torch.float64)
    for b in range(B):
        for k in range(K):
            if idx[b, k] >= 0:
                ref[b, :, idx[b, k]] += gamma[b, :, k]
                st_ref[idx[b, k]] += start[b, k]
                for j in range(K):
                    if idx[b, j] >= 0:
                        tr_ref[idx[b, k], idx[b, j]] += trans[b, k, j]
    torch.testing.assert_close(tied, ref)
    st, tr = tie_transition_counts(start, trans, idx, S)
    torch.testing.assert_close(st, st_ref)
    torch.testing.assert_close(tr, tr_ref)
    a = gaussian_stats(x, gamma, None, "diag", state_index=idx, num_states=S)
    b = gaussian_stats(x, ref)
    torch.testing.assert_close(a.sum_xx, b.sum_xx)
    assert a.occupancy.shape == (S,) and a.occupancy[3] == 0
    with pytest.raises(ValueError, match="state_index"):
        tie_posteriors(gamma, torch.tensor([[0, 1, 9], [0, 0, 0]]), S)


def test_diag_stats_from_augmented_matches_gaussian_stats_and_checks_shapes():
    from pytorch_hmm.models.gaussian import augment_features
    from pytorch_hmm.training.stats import diag_stats_from_augmented, gaussian_stats

    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g, dtype=torch.float64)
    w = torch.rand(50, 4, generator=g, dtype=torch.float64)
    a = diag_stats_from_augmented(augment_features(x), w)
    b = gaussian_stats(x, w)
    for u, v in zip(a.tensors(), b.tensors()):
        torch.testing.assert_close(u, v)
    with pytest.raises(ValueError, match="same number of frames"):
        diag_stats_from_augmented(augment_features(x), w[:10])
    with pytest.raises(ValueError, match=r"\(N, 2D\)"):
        diag_stats_from_augmented(x, w)
