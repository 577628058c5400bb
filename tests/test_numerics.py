"""float32 against float64 on the same (float32-representable) inputs: large emissions,
+1e30 emissions, and sequences of 10^6 frames (issue 16, numerical robustness).

Every reference is the float64 run of the engine on the float32 inputs cast up, so the
differences are the float32 computation's own, not the rounding of the inputs."""

import pytest
import torch

import pytorch_hmm as ph


def _chain(K, stay=0.7):
    A = torch.zeros(K, K, dtype=torch.float64)
    for i in range(K):
        A[i, i] = stay if i + 1 < K else 1.0
        if i + 1 < K:
            A[i, i + 1] = 1.0 - stay
    pi = torch.zeros(K, dtype=torch.float64)
    pi[0] = 1.0
    return pi, A


def _sparse(K, g):
    A = torch.rand(K, K, generator=g, dtype=torch.float64)
    A[A < 0.3] = 0.0
    A += torch.eye(K, dtype=torch.float64)
    return torch.full((K,), 1.0 / K, dtype=torch.float64), A / A.sum(1, keepdim=True)


def _dense(K, g):
    A = torch.rand(K, K, generator=g, dtype=torch.float64) + 3 * torch.eye(K, dtype=torch.float64)
    return torch.full((K,), 1.0 / K, dtype=torch.float64), A / A.sum(1, keepdim=True)


def _both(fn, em, pi, A, **kw):
    """``fn`` in float64 and in float32 on the same float32 values."""
    em, lpi, lA = em.float(), pi.log().float(), A.log().float()
    return fn(em.double(), lpi.double(), lA.double(), **kw), fn(em, lpi, lA, **kw)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("topology", ["chain", "sparse", "dense"])
def test_float32_posteriors_with_emissions_of_minus_1e4(backend, topology):
    # one sequence's emissions near -1e4, the other's near 0: float32 alpha + log b at 1e4
    # is rounded to ~1e-3, which the posteriors used to accumulate (frames summing to 0.98)
    B, T, K = 2, 200, 5
    g = torch.Generator().manual_seed(1)
    pi, A = {"chain": lambda: _chain(K), "sparse": lambda: _sparse(K, g),
             "dense": lambda: _dense(K, g)}[topology]()
    em = torch.randn(B, T, K, generator=g, dtype=torch.float64)
    em[0] -= 1e4
    lengths = torch.tensor([T, T - 37])
    r64, r32 = _both(ph.posteriors, em, pi, A, lengths=lengths, backend=backend)
    g32 = r32.state_posteriors.double()
    assert (g32 - r64.state_posteriors).abs().max() < 1e-4
    for b, n in enumerate(lengths.tolist()):
        assert (g32[b, :n].sum(-1) - 1).abs().max() < 1e-5
        assert r32.transition_counts[b].double().sum().item() == pytest.approx(n - 1, abs=1e-3)
    torch.testing.assert_close(
        r32.transition_counts.double(), r64.transition_counts, rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_backward_with_plus_1e30_emissions_is_exact_at_the_last_frame(backend):
    K, T = 4, 5
    g = torch.Generator().manual_seed(0)
    pi, A = _dense(K, g)
    em = torch.full((1, T, K), 1e30)
    beta = ph.backward(em, pi.log().float(), A.log().float(), backend=backend)
    assert torch.equal(beta[0, -1], torch.zeros(K))  # was -0.57 / -log K
    for t in range(T - 1):  # log p(x_{t+1..}) = (T-1-t) * 1e30, every state alike
        torch.testing.assert_close(beta[0, t], torch.full((K,), (T - 1 - t) * 1e30))


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["chain", "dense"])
def test_float32_matches_float64_at_a_million_frames(topology):
    # the bar: within 1e-4 relative of float64 for log-likelihood, posteriors and
    # Viterbi at T = 10^6, through the public functions with their defaults
    T, K = 1_000_000, 3
    g = torch.Generator().manual_seed(0)
    pi, A = _chain(K, stay=0.99999) if topology == "chain" else _dense(K, g)
    em = torch.randn(1, T, K, generator=g, dtype=torch.float64) * 3 - 50
    l64, l32 = _both(ph.log_likelihood, em, pi, A)
    assert abs(l32.double().item() / l64.item() - 1) < 1e-6
    p64, p32 = _both(ph.posteriors, em, pi, A)
    assert (p32.state_posteriors.double() - p64.state_posteriors).abs().max() < 1e-4
    c64, c32 = p64.transition_counts, p32.transition_counts.double()
    assert ((c32 - c64).abs().max() / c64.abs().max()).item() < 1e-4
    assert c32.sum().item() == pytest.approx(T - 1, rel=1e-5)
    v64, v32 = _both(ph.viterbi, em, pi, A)
    assert abs(v32.score.double().item() / v64.score.item() - 1) < 1e-6
    assert (v32.path != v64.path).float().mean().item() < 1e-4


def test_torch_backend_long_float32_posteriors_sum_to_one():
    # the torch rescaled backward re-normalises beta on long float32 sequences
    T, K = 12_000, 4
    g = torch.Generator().manual_seed(2)
    pi, A = _dense(K, g)
    em = torch.randn(1, T, K, generator=g, dtype=torch.float64) * 3 - 50
    p64, p32 = _both(ph.posteriors, em, pi, A, backend="torch")
    assert (p32.state_posteriors.sum(-1) - 1).abs().max() < 1e-5
    assert (p32.state_posteriors.double() - p64.state_posteriors).abs().max() < 1e-5


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_one_state(backend):
    # K = 1: one path; its score is the sum of the emissions over each sequence's frames
    em = torch.randn(3, 7, 1, dtype=torch.float64)
    lengths = torch.tensor([7, 1, 4])
    lpi, lA = torch.zeros(1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    want = torch.stack([em[b, :n, 0].sum() for b, n in enumerate(lengths.tolist())])
    kw = dict(lengths=lengths, backend=backend)
    torch.testing.assert_close(ph.log_likelihood(em, lpi, lA, **kw), want)
    v = ph.viterbi(em, lpi, lA, **kw)
    torch.testing.assert_close(v.score, want)
    assert v.path.tolist() == [[0] * 7, [0] + [-1] * 6, [0] * 4 + [-1] * 3]
    p = ph.posteriors(em, lpi, lA, **kw)
    assert p.state_posteriors.sum((1, 2)).tolist() == lengths.double().tolist()
    assert p.transition_counts.flatten().tolist() == (lengths - 1).double().tolist()


def test_same_seed_same_results():
    # determinism for a seed: EM from a random start, sampling, posterior sampling
    x = torch.randn(3, 40, 2, generator=torch.Generator().manual_seed(0))

    def fitted(cls, *args):
        torch.manual_seed(7)
        return cls(*args).fit(x, n_iter=3)

    for cls, args in ((ph.GaussianHMM, (3, 2)), (ph.HSMM, (3, 2, 20))):
        a, b = fitted(cls, *args), fitted(cls, *args)
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(va, vb), (cls.__name__, k)
        torch.manual_seed(3)
        s1 = a.sample(20)
        torch.manual_seed(3)
        s2 = a.sample(20)
        for u, w in zip(s1, s2):
            assert torch.equal(u, w)
    em = torch.randn(2, 9, 3)
    lA = torch.full((3, 3), 1.0 / 3).log()
    gen = [torch.Generator().manual_seed(5) for _ in range(2)]
    draws = [ph.sample_posterior(em, lA[0], lA, num_samples=4, generator=g) for g in gen]
    assert torch.equal(draws[0], draws[1])
