"""GaussianHMM and HMMPyTorch against hmmlearn on identical parameters, and their module
behaviour (state_dict, gradient training, structural zeros, sampling, bad input)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_hmm.models import GaussianHMM, HMMPyTorch

try:  # only the tests marked needs_hmmlearn use it; the others run without it
    from hmmlearn import hmm
except ImportError:
    hmm = None
needs_hmmlearn = pytest.mark.skipif(hmm is None, reason="needs hmmlearn")


def make_hmmlearn(ctype, K=4, D=3, seed=0):
    rng = np.random.default_rng(seed)
    m = hmm.GaussianHMM(n_components=K, covariance_type=ctype, init_params="", params="")
    m.n_features = D
    m.startprob_ = rng.dirichlet(np.ones(K))
    m.transmat_ = rng.dirichlet(np.ones(K), size=K)
    m.means_ = rng.normal(size=(K, D)) * 3
    if ctype == "diag":
        m.covars_ = rng.uniform(0.3, 2.0, size=(K, D))
    else:
        A = rng.normal(size=(K, D, D))
        m.covars_ = A @ A.transpose(0, 2, 1) + np.eye(D) * 0.5
    return m


@needs_hmmlearn
@pytest.mark.parametrize("ctype", ["diag", "full"])
def test_same_numbers_as_hmmlearn(ctype):
    ref = make_hmmlearn(ctype)
    X, _ = ref.sample(80, random_state=1)
    ours = GaussianHMM.from_hmmlearn(ref)
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=1e-5)
    logprob, states = ref.decode(X)
    lp, path = ours.decode(X)
    np.testing.assert_allclose(lp.item(), logprob, rtol=1e-5)
    assert np.array_equal(path[0].numpy(), states)
    np.testing.assert_allclose(
        ours.predict_proba(X)[0].numpy(), ref.predict_proba(X), rtol=1e-5, atol=1e-8
    )
    # and back again
    back = ours.to_hmmlearn()
    np.testing.assert_allclose(back.score(X), ref.score(X), rtol=1e-10)
    np.testing.assert_allclose(back.covars_, ref.covars_, rtol=1e-10)


@needs_hmmlearn
def test_several_sequences_with_lengths_like_hmmlearn():
    ref = make_hmmlearn("diag")
    X1, _ = ref.sample(50, random_state=2)
    X2, _ = ref.sample(30, random_state=3)
    ours = GaussianHMM.from_hmmlearn(ref)
    x = np.zeros((2, 50, 3))
    x[0], x[1, :30] = X1, X2
    ll = ours.log_likelihood(x, lengths=[50, 30])
    np.testing.assert_allclose(ll.detach().numpy(), [ref.score(X1), ref.score(X2)], rtol=1e-5)
    np.testing.assert_allclose(
        ref.score(np.vstack([X1, X2]), lengths=[50, 30]), ours.score(x, lengths=[50, 30]), rtol=1e-5
    )


@needs_hmmlearn
def test_float32_module_behaviour_and_state_dict():
    ref = make_hmmlearn("diag")
    m64 = GaussianHMM.from_hmmlearn(ref)
    m32 = GaussianHMM(4, 3, "diag", dtype=torch.float32)
    m32.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in m64.state_dict().items()}
    )
    X, _ = ref.sample(40, random_state=4)
    np.testing.assert_allclose(m32.score(X), ref.score(X), rtol=1e-4)
    assert m32(torch.tensor(X, dtype=torch.float32)).shape == (1,)


def test_gradient_training_keeps_structural_zeros_and_improves_fit():
    torch.manual_seed(0)
    K, D = 3, 2
    trans = np.array([[0.8, 0.2, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    true = GaussianHMM(
        K,
        D,
        startprob=[1, 0, 0],
        transmat=trans,
        means=[[0, 0], [3, 3], [-3, 3]],
        covars=np.ones((K, D)) * 0.5,
    )
    x, _ = true.sample(60, num_sequences=8, generator=torch.Generator().manual_seed(0))
    model = GaussianHMM(
        K, D, startprob=[1, 0, 0], transmat=[[0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 1]]
    )
    with torch.no_grad():
        model.means.copy_(torch.randn(K, D))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = -model(x).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 10
    A = model.transmat
    assert A[0, 2] == 0 and A[1, 0] == 0 and A[2, 0] == 0 and A[2, 1] == 0
    assert model.startprob[1] == 0
    torch.testing.assert_close(A.sum(-1), torch.ones(K))


def test_sample_and_generate_sequence():
    m = GaussianHMM(
        3,
        2,
        startprob=[1, 0, 0],
        transmat=[[0.9, 0.1, 0], [0, 0.8, 0.2], [0, 0, 1]],
        means=[[0, 0], [1, 1], [2, 2]],
        covars=np.full((3, 2), 1e-4),
    )
    x, z = m.sample(50, generator=torch.Generator().manual_seed(0))
    assert x.shape == (50, 2) and z.shape == (50,)
    assert (z[1:] >= z[:-1]).all()  # left-to-right
    torch.testing.assert_close(x, m.means[z].detach(), rtol=0, atol=0.1)
    y = m.generate_sequence(torch.tensor([2, 3, 1]))
    assert y.shape == (6, 2)
    torch.testing.assert_close(y[:, 0], torch.tensor([0.0, 0, 1, 1, 1, 2]))
    y = m.generate_sequence(30)  # frames shared by expected durations 10 : 5 : (long)
    assert y.shape == (30, 2)
    with pytest.raises(ValueError, match="shorter than the 3 states"):
        m.generate_sequence(2)


def test_hmmpytorch_over_given_scores():
    A = torch.tensor([[0.7, 0.3], [0.0, 1.0]])
    h = HMMPyTorch(A)
    lp = torch.log_softmax(torch.randn(2, 10, 2, generator=torch.Generator().manual_seed(0)), -1)
    v = h.viterbi(lp)
    assert v.path.shape == (2, 10) and (v.path[:, 0] == 0).all()
    post = h.forward_backward(lp)
    torch.testing.assert_close(post.state_posteriors.sum(-1), torch.ones(2, 10))
    assert h(lp).shape == (2,)
    with pytest.raises(ValueError, match=r"transition_matrix must be a square"):
        HMMPyTorch(torch.ones(2, 3) / 3)
    with pytest.raises(ValueError, match=r"log_emissions must have shape \(B, T, K\)"):
        h.viterbi(torch.zeros(2, 10, 3))


def test_bad_input_messages():
    m = GaussianHMM(2, 3)
    with pytest.raises(ValueError, match=r"feature_dim=3"):
        m.log_likelihood(torch.zeros(1, 5, 4))
    x = torch.zeros(1, 5, 3)
    x[0, 2, 1] = math.nan
    with pytest.raises(ValueError, match=r"x contains NaN \(sequence 0, frame 2\)"):
        m.log_likelihood(x)
    x[0, 2, 1] = 0
    pad = torch.full((1, 5, 3), math.nan)
    pad[:, :2] = 0.0
    x2 = torch.cat([x, pad])  # NaN only in the padding is fine
    assert torch.isfinite(m.log_likelihood(x2, lengths=[5, 2])).all()
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, .*empty sequences"):
        m.log_likelihood(x, lengths=[0])
    with pytest.raises(ValueError, match=r"transmat rows must sum to one"):
        GaussianHMM(2, 3, transmat=[[0.5, 0.4], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"covars must be positive"):
        GaussianHMM(2, 3, covars=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"covars\[1\] is not symmetric positive definite"):
        GaussianHMM(2, 2, "full", covars=np.stack([np.eye(2), -np.eye(2)]))
    with pytest.raises(ValueError, match="covariance_type must be one of 'diag', 'full', got 't"):
        GaussianHMM(2, 2, "tied")
    with pytest.raises(ValueError, match="x has no frames"):
        m.log_likelihood(torch.zeros(1, 0, 3))


def test_infinite_features_rejected():
    m = GaussianHMM(2, 3)
    x = torch.zeros(2, 4, 3)
    x[1, 2, 0] = math.inf
    with pytest.raises(ValueError, match=r"x contains inf \(sequence 1, frame 2\)"):
        m.log_likelihood(x)


@needs_hmmlearn
@pytest.mark.parametrize("ctype", ["diag", "full"])
def test_mixture_round_trip_through_hmmlearn(ctype):
    from pytorch_hmm.models import MixtureGaussianHMM

    g = torch.Generator().manual_seed(0)
    m = MixtureGaussianHMM(3, 2, 2, covariance_type=ctype, dtype=torch.float64)
    with torch.no_grad():
        m.means.copy_(torch.randn(m.means.shape, generator=g, dtype=torch.float64))
    X = np.random.default_rng(0).normal(size=(30, 2))
    h = m.to_hmmlearn()
    assert isinstance(h, hmm.GMMHMM) and h.n_mix == 2
    np.testing.assert_allclose(m.score(X), h.score(X), rtol=1e-10)
    back = MixtureGaussianHMM.from_hmmlearn(h)
    np.testing.assert_allclose(back.score(X), h.score(X), rtol=1e-10)
