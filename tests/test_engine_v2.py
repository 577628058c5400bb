"""Engine contract v2 against independent references: time-varying transitions, ``log_final``,
``emission_index``, stated bands, carries over chunks, ``on_impossible``, the one backend
dispatch point and concurrent callers. Each test runs on the compiled and the torch backend."""

from __future__ import annotations

import itertools
import math
import threading

import pytest
import torch

from pytorch_hmm import core
from pytorch_hmm.core import Transitions
from pytorch_hmm.core._numba import load_kernels
from pytorch_hmm.core.transitions import band_counts_to_dense

HAVE_NUMBA = load_kernels("pytorch_hmm.core._cpu_kernels") is not None


@pytest.fixture(params=["numba", "torch"])
def backend(request):
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    with core.use_backend(request.param):
        yield request.param


def brute(lb, lpi, A_t, lf=None):
    """Every path of one sequence: lb (T, K), A_t (T-1, K, K) log transitions per move, lf
    (K,) final scores. Returns log Z, gamma (T, K), xi (T-1, K, K), best path, best score."""
    T, K = lb.shape
    lf = torch.zeros(K, dtype=lb.dtype) if lf is None else lf
    scores, paths = [], []
    for path in itertools.product(range(K), repeat=T):
        s = lpi[path[0]] + lb[0, path[0]] + lf[path[-1]]
        for t in range(1, T):
            s = s + A_t[t - 1, path[t - 1], path[t]] + lb[t, path[t]]
        scores.append(s)
        paths.append(path)
    sc = torch.stack(scores)
    logZ = torch.logsumexp(sc, 0)
    w = (sc - logZ).exp()
    gamma = torch.zeros(T, K, dtype=lb.dtype)
    xi = torch.zeros(max(T - 1, 0), K, K, dtype=lb.dtype)
    for wi, path in zip(w, paths):
        for t in range(T):
            gamma[t, path[t]] += wi
        for t in range(T - 1):
            xi[t, path[t], path[t + 1]] += wi
    best = int(sc.argmax())
    return logZ, gamma, xi, torch.tensor(paths[best]), sc[best]


def rand_tv(B, T, K, seed=0, sparse=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lb = torch.randn(B, T, K, generator=g, dtype=dtype)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=dtype), -1)
    A = torch.log_softmax(torch.randn(B, T - 1, K, K, generator=g, dtype=dtype), -1)
    if sparse:  # some forbidden moves, renormalised
        mask = torch.rand(B, T - 1, K, K, generator=g) < 0.3
        mask[..., 0] = False
        A = torch.log_softmax(A.masked_fill(mask, -math.inf), -1)
    return lb, lpi, A


@pytest.mark.parametrize("sparse", [False, True])
def test_time_varying_dense_against_brute_force(backend, sparse):
    B, T, K = 2, 5, 3
    lb, lpi, A = rand_tv(B, T, K, sparse=sparse)
    L = torch.tensor([5, 3])
    post = core.posteriors(lb, lpi, A, L, per_frame=True)
    vit = core.viterbi(lb, lpi, A, L)
    ll = core.log_likelihood(lb, lpi, A, L)
    for b in range(B):
        n = int(L[b])
        z, g, x, path, best = brute(lb[b, :n], lpi, A[b, : n - 1])
        torch.testing.assert_close(ll[b], z)
        torch.testing.assert_close(post.log_likelihood[b], z)
        torch.testing.assert_close(post.state_posteriors[b, :n], g)
        assert post.state_posteriors[b, n:].abs().sum() == 0
        torch.testing.assert_close(post.transition_counts[b, : n - 1], x)
        assert torch.equal(vit.path[b, :n], path)
        torch.testing.assert_close(vit.score[b], best)


def chain_band(B, Tm, K, seed=0, dtype=torch.float64, skip=False):
    """Left-to-right band values (B, Tm, K, W) with lo=0: stay, move (and skip)."""
    g = torch.Generator().manual_seed(seed)
    W = 3 if skip else 2
    v = torch.randn(B, Tm, K, W, generator=g, dtype=dtype)
    i = torch.arange(K).unsqueeze(1) + torch.arange(W)
    v = v.masked_fill(i >= K, -math.inf)
    return torch.log_softmax(v, -1)


@pytest.mark.parametrize("skip", [False, True])
def test_time_varying_banded_against_brute_force(backend, skip):
    B, T, K = 2, 6, 4
    band = chain_band(B, T - 1, K, skip=skip)
    trans = Transitions.banded(band, lo=0)
    dense = trans.to_dense()  # (B, T-1, K, K)
    g = torch.Generator().manual_seed(1)
    lb = torch.randn(B, T, K, generator=g, dtype=torch.float64)
    lpi = torch.full((K,), -math.inf, dtype=torch.float64)
    lpi[0] = 0.0
    lf = torch.full((K,), -math.inf, dtype=torch.float64)
    lf[K - 1] = 0.0  # must end in the last state
    L = torch.tensor([6, 5])
    post = core.posteriors(lb, lpi, trans, L, log_final=lf, per_frame=True)
    vit = core.viterbi(lb, lpi, trans, L, log_final=lf)
    for b in range(B):
        n = int(L[b])
        z, gm, x, path, best = brute(lb[b, :n], lpi, dense[b, : n - 1], lf)
        torch.testing.assert_close(post.log_likelihood[b], z)
        torch.testing.assert_close(post.state_posteriors[b, :n], gm)
        # per-frame counts in the band's layout: slot d = move i -> i + d
        W = band.shape[-1]
        xb = post.transition_counts[b, : n - 1]
        for d in range(W):
            for i in range(K - d):
                torch.testing.assert_close(xb[:, i, d], x[:, i, i + d])
        assert torch.equal(vit.path[b, :n], path)
        assert int(vit.path[b, n - 1]) == K - 1
        torch.testing.assert_close(vit.score[b], best)


def test_time_varying_equals_fixed_when_every_frame_is_the_same(backend):
    B, T, K = 3, 40, 5
    g = torch.Generator().manual_seed(2)
    lb = torch.randn(B, T, K, generator=g, dtype=torch.float64)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    A = torch.log_softmax(torch.randn(K, K, generator=g, dtype=torch.float64), -1)
    L = torch.tensor([40, 31, 7])
    tv = A.expand(B, T - 1, K, K)
    for f in (core.log_likelihood,):
        torch.testing.assert_close(f(lb, lpi, tv, L), f(lb, lpi, A, L))
    p1, p2 = core.posteriors(lb, lpi, tv, L, per_frame=True), core.posteriors(lb, lpi, A, L)
    torch.testing.assert_close(p1.state_posteriors, p2.state_posteriors)
    torch.testing.assert_close(p1.transition_counts.sum(1), p2.transition_counts)
    v1, v2 = core.viterbi(lb, lpi, tv, L), core.viterbi(lb, lpi, A, L)
    assert torch.equal(v1.path, v2.path)
    band = chain_band(1, 1, K)[0, 0]
    tb = Transitions.banded(band.expand(B, T - 1, K, 2), lo=0)
    fb = Transitions.banded(band, lo=0)
    torch.testing.assert_close(
        core.log_likelihood(lb, lpi, tb, L), core.log_likelihood(lb, lpi, fb, L)
    )


@pytest.mark.parametrize("kind", ["dense", "banded"])
def test_gradcheck_time_varying_transitions(backend, kind):
    B, T, K = 2, 5, 4
    g = torch.Generator().manual_seed(3)
    lb = torch.randn(B, T, K, generator=g, dtype=torch.float64)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    lf = torch.randn(K, generator=g, dtype=torch.float64)
    L = torch.tensor([5, 4])
    if kind == "dense":
        vals = torch.randn(B, T - 1, K, K, generator=g, dtype=torch.float64)
    else:
        vals = torch.randn(B, T - 1, K, 2, generator=g, dtype=torch.float64)
    vals.requires_grad_(True)
    lf.requires_grad_(True)
    lb.requires_grad_(True)

    def f(v, e, fin):
        tr = Transitions.dense(v) if kind == "dense" else Transitions.banded(v, lo=0)
        return core.log_likelihood(e, lpi, tr, L, log_final=fin, check_stochastic=False)

    assert torch.autograd.gradcheck(f, (vals, lb, lf), eps=1e-6, atol=1e-6)
    # the gradient with respect to the transitions is the per-frame expected counts
    tr = Transitions.dense(vals) if kind == "dense" else Transitions.banded(vals, lo=0)
    post = core.posteriors(
        lb.detach(),
        lpi,
        tr.to(torch.float64),
        L,
        log_final=lf.detach(),
        per_frame=True,
        check_stochastic=False,
    )
    (gv,) = torch.autograd.grad(f(vals, lb, lf).sum(), vals)
    counts = post.transition_counts
    if kind == "banded":
        counts = torch.where(torch.isfinite(tr.values), counts, 0.0)
    torch.testing.assert_close(gv, counts.detach())


def test_log_final_and_emission_index_against_expanded_form(backend):
    """Tied states read one column: equal to the (B, T, K) copied emissions, and log_final
    equal to brute force; gradients scatter back onto the shared columns."""
    B, T, E, K = 2, 6, 3, 5
    g = torch.Generator().manual_seed(4)
    lb = torch.randn(B, T, E, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[0, 1, 1, 2, 0], [2, 2, 0, 1, 1]])
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    A = torch.log_softmax(torch.randn(K, K, generator=g, dtype=torch.float64), -1)
    lf = torch.log_softmax(torch.randn(B, K, generator=g, dtype=torch.float64), -1)
    lf[0, 2] = -math.inf
    L = torch.tensor([6, 4])
    expanded = lb.gather(2, idx.unsqueeze(1).expand(B, T, K))
    for fn in (core.log_likelihood,):
        a = fn(lb, lpi, A, L, log_final=lf, emission_index=idx)
        b = fn(expanded, lpi, A, L, log_final=lf)
        torch.testing.assert_close(a, b)
    (ga,) = torch.autograd.grad(a.sum(), lb)
    (gb,) = torch.autograd.grad(b.sum(), lb)
    torch.testing.assert_close(ga, gb)
    v1 = core.viterbi(lb.detach(), lpi, A, L, log_final=lf, emission_index=idx)
    v2 = core.viterbi(expanded.detach(), lpi, A, L, log_final=lf)
    assert torch.equal(v1.path, v2.path)
    torch.testing.assert_close(v1.score, v2.score)
    for b_ in range(B):
        n = int(L[b_])
        z, gm, _, path, best = brute(expanded[b_, :n].detach(), lpi, A.expand(n - 1, K, K), lf[b_])
        torch.testing.assert_close(a[b_], z)
        assert torch.equal(v1.path[b_, :n], path)
    p1 = core.posteriors(lb.detach(), lpi, A, L, log_final=lf, emission_index=idx)
    p2 = core.posteriors(expanded.detach(), lpi, A, L, log_final=lf)
    torch.testing.assert_close(p1.state_posteriors, p2.state_posteriors)
    torch.testing.assert_close(p1.transition_counts, p2.transition_counts)
    f1 = core.forward(lb.detach(), lpi, A, L, log_final=lf, emission_index=idx)
    f2 = core.forward(expanded.detach(), lpi, A, L, log_final=lf)
    torch.testing.assert_close(f1.log_alpha, f2.log_alpha)
    torch.testing.assert_close(
        core.backward(lb.detach(), lpi, A, L, log_final=lf, emission_index=idx),
        core.backward(expanded.detach(), lpi, A, L, log_final=lf),
    )


def test_stated_band_equals_inferred_band_and_dense(backend):
    B, T, K = 3, 30, 7
    band = chain_band(1, 1, K, skip=True)[0, 0]
    trans = Transitions.banded(band, lo=0)
    dense = trans.to_dense()[0, 0]
    assert core.make_transitions(dense).is_banded
    g = torch.Generator().manual_seed(5)
    lb = torch.randn(B, T, K, generator=g, dtype=torch.float64)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    L = torch.tensor([30, 20, 9])
    a = core.posteriors(lb, lpi, trans, L)
    b = core.posteriors(lb, lpi, dense, L, topology="dense")
    torch.testing.assert_close(a.state_posteriors, b.state_posteriors)
    assert a.transition_counts.shape == (B, K, 3)  # the band's layout, as given
    torch.testing.assert_close(band_counts_to_dense(a.transition_counts, 0), b.transition_counts)
    assert torch.equal(core.viterbi(lb, lpi, trans, L).path, core.viterbi(lb, lpi, dense, L).path)


def test_band_values_outside_the_matrix_are_ignored():
    v = torch.zeros(4, 2)
    tr = Transitions.banded(v, lo=0)
    assert tr.values[0, 0, 3, 1] == -math.inf and tr.values[0, 0, 2, 1] == 0
    with pytest.raises(ValueError, match="must include 0"):
        Transitions.banded(torch.zeros(4, 2), lo=1)


def split_points(T, g):
    cuts = sorted(
        set(
            torch.randint(
                1, T, (int(torch.randint(0, 5, (1,), generator=g)),), generator=g
            ).tolist()
        )
    )
    return [0] + cuts + [T]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["dense", "sparse", "banded", "tv_banded"])
def test_carry_over_random_chunks_equals_whole_sequence(backend, seed, kind):
    g = torch.Generator().manual_seed(seed)
    B, T, K = 3, 23, 5
    lb = torch.randn(B, T, K, generator=g, dtype=torch.float64)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    lf = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    if kind == "dense":
        tr = Transitions.dense(
            torch.log_softmax(torch.randn(K, K, generator=g, dtype=torch.float64), -1)
        )
    elif kind == "sparse":
        A = torch.randn(K, K, generator=g, dtype=torch.float64)
        A[torch.rand(K, K, generator=g) < 0.4] = -math.inf
        A[:, 0] = 0.0
        tr = Transitions.dense(torch.log_softmax(A, -1))
    elif kind == "banded":
        tr = Transitions.banded(chain_band(1, 1, K, skip=True)[0, 0], lo=0)
    else:
        tr = Transitions.banded(chain_band(B, T - 1, K, skip=True), lo=0)
    L = torch.full((B,), T)
    whole_f = core.forward(lb, lpi, tr, L, log_final=lf)
    whole_v = core.viterbi(lb, lpi, tr, L, log_final=lf)
    pts = split_points(T, g)
    if seed == 0:
        pts = list(range(T + 1))  # chunks of one frame
    fc = vc = None
    alphas = []
    for a, b in zip(pts[:-1], pts[1:]):
        x = lb[:, a:b]
        if tr.time_varying:
            # a continued chunk carries the move into its first frame
            ct = Transitions.banded(tr.values[:, (a - 1 if a else 0) : (b - 1)], lo=0)
        else:
            ct = tr
        fr = core.forward(x, lpi, ct, log_final=lf, carry=fc)
        vr = core.viterbi(x, lpi, ct, log_final=lf, carry=vc, return_carry=True)
        fc, vc = fr.carry, vr.carry
        alphas.append(fr.log_alpha)
    torch.testing.assert_close(torch.cat(alphas, 1), whole_f.log_alpha, rtol=0, atol=1e-10)
    torch.testing.assert_close(fr.log_likelihood, whole_f.log_likelihood, rtol=0, atol=1e-10)
    assert torch.equal(vc.traceback(lf), whole_v.path)
    assert torch.equal(vr.path, whole_v.path[:, pts[-2] :])
    torch.testing.assert_close(vr.score, whole_v.score, rtol=0, atol=1e-10)


def test_carry_validates_its_shapes():
    lb = torch.randn(2, 4, 3)
    lpi = torch.log_softmax(torch.randn(3), -1)
    A = torch.log_softmax(torch.randn(3, 3), -1)
    r = core.forward(lb, lpi, A)
    with pytest.raises(ValueError, match="carry holds scores of shape"):
        core.forward(torch.randn(3, 4, 3), lpi, A, carry=r.carry)
    with pytest.raises(TypeError, match="carry must be"):
        core.forward(lb, lpi, A, carry=(1, 2))


def test_on_impossible_modes(backend):
    K = 3
    lb = torch.zeros(2, 2, K)
    lpi = torch.tensor([0.0, -math.inf, -math.inf])
    A = torch.tensor(
        [[0.0, -math.inf, -math.inf], [-math.inf, 0.0, -math.inf], [-math.inf, -math.inf, 0.0]]
    )
    lf = torch.tensor([[0.0, 0.0, 0.0], [-math.inf, 0.0, 0.0]])  # seq 1 can't end in 0
    with pytest.raises(core.NoValidPathError, match=r"sequence\(s\) \[1\]"):
        core.viterbi(lb, lpi, A, log_final=lf, on_impossible="raise")
    with pytest.warns(RuntimeWarning, match="no valid state path"):
        core.posteriors(lb, lpi, A, log_final=lf, on_impossible="warn")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = core.viterbi(lb, lpi, A, log_final=lf, on_impossible="ignore")
        ll = core.log_likelihood(lb, lpi, A, log_final=lf)
    assert r.score[1] == -math.inf and (r.path[1] == -1).all() and r.path[0].tolist() == [0, 0]
    assert ll[1] == -math.inf and ll[0] == 0
    with pytest.raises(ValueError, match="on_impossible must be"):
        core.viterbi(lb, lpi, A, on_impossible="quiet")


def test_clear_errors_for_the_new_inputs():
    lb = torch.randn(2, 5, 3)
    lpi = torch.log_softmax(torch.randn(3), -1)
    A = torch.log_softmax(torch.randn(3, 3), -1)
    with pytest.raises(ValueError, match=r"emission_index must have shape \(K,\) or \(B, K\)"):
        core.log_likelihood(lb, lpi, A, emission_index=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"emission_index values must lie in \[0, 3\)"):
        core.log_likelihood(lb, lpi, A, emission_index=torch.tensor([0, 1, 3]))
    with pytest.raises(TypeError, match="emission_index must be an integer"):
        core.log_likelihood(lb, lpi, A, emission_index=torch.tensor([0.0, 1, 2]))
    with pytest.raises(ValueError, match=r"log_final must have shape"):
        core.log_likelihood(lb, lpi, A, log_final=torch.zeros(4))
    with pytest.raises(ValueError, match=r"T-1 = 4 moves"):
        core.log_likelihood(lb, lpi, A.expand(2, 5, 3, 3))
    with pytest.raises(ValueError, match="3 columns but the transitions have K=4"):
        core.log_likelihood(
            lb, torch.log_softmax(torch.randn(4), -1), torch.log_softmax(torch.randn(4, 4), -1)
        )
    with pytest.raises(ValueError, match="backend must be"):
        core.log_likelihood(lb, lpi, A, backend="gpu")


def test_one_dispatch_point(monkeypatch):
    from pytorch_hmm.core.backend import default_backend, resolve_backend

    cpu = torch.device("cpu")
    monkeypatch.delenv("PYTORCH_HMM_DISABLE_NUMBA", raising=False)
    monkeypatch.delenv("PYTORCH_HMM_BACKEND", raising=False)
    assert default_backend() == "auto"
    assert resolve_backend(cpu, "torch") == "torch"
    with core.use_backend("torch"):
        assert resolve_backend(cpu) == "torch"
        if HAVE_NUMBA:
            assert resolve_backend(cpu, "numba") == "numba"  # an argument beats the context
    monkeypatch.setenv("PYTORCH_HMM_BACKEND", "torch")
    assert resolve_backend(cpu) == "torch"
    monkeypatch.setenv("PYTORCH_HMM_BACKEND", "fast")
    with pytest.raises(ValueError, match="PYTORCH_HMM_BACKEND"):
        resolve_backend(cpu)
    monkeypatch.delenv("PYTORCH_HMM_BACKEND")
    monkeypatch.setenv("PYTORCH_HMM_DISABLE_NUMBA", "1")
    assert resolve_backend(cpu) == "torch"
    with pytest.raises(ValueError, match="needs numba"):
        resolve_backend(cpu, "numba")
    with pytest.raises(ValueError, match="CPU tensors only"):
        resolve_backend(torch.device("meta"), "numba")


def test_backends_agree_and_threads_are_untouched():
    if not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    g = torch.Generator().manual_seed(6)
    B, T, K = 4, 60, 6
    lb = torch.randn(B, T, K, generator=g)
    lpi = torch.log_softmax(torch.randn(K, generator=g), -1)
    band = Transitions.banded(chain_band(B, T - 1, K, dtype=torch.float32), lo=0)
    A = torch.log_softmax(torch.randn(K, K, generator=g), -1)
    L = torch.tensor([60, 50, 3, 1])
    n = torch.get_num_threads()
    for tr in (A, band):
        out = {}
        for be in ("numba", "torch"):
            out[be] = (
                core.log_likelihood(lb, lpi, tr, L, backend=be),
                core.posteriors(lb, lpi, tr, L, backend=be, per_frame=True),
                core.viterbi(lb, lpi, tr, L, backend=be),
            )
            assert torch.get_num_threads() == n
        torch.testing.assert_close(out["numba"][0], out["torch"][0], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(
            out["numba"][1].state_posteriors, out["torch"][1].state_posteriors, atol=1e-4, rtol=0
        )
        torch.testing.assert_close(
            out["numba"][1].transition_counts,
            out["torch"][1].transition_counts,
            atol=1e-4,
            rtol=0,
        )
        assert torch.equal(out["numba"][2].path, out["torch"][2].path)


def test_two_threads_call_the_engine_and_aligners_at_once(backend):
    from pytorch_hmm import DTWAligner
    from pytorch_hmm.alignment.ctc import CTCAligner
    from pytorch_hmm.alignment.mas import monotonic_alignment_search

    g = torch.Generator().manual_seed(7)
    B, T, K = 8, 300, 16
    lb = torch.randn(B, T, K, generator=g)
    lpi = torch.log_softmax(torch.randn(K, generator=g), -1)
    A = torch.log_softmax(torch.randn(K, K, generator=g), -1)
    band = Transitions.banded(chain_band(1, 1, K, dtype=torch.float32)[0, 0], lo=0)
    x, y = torch.randn(4, 50, 5, generator=g), torch.randn(4, 60, 5, generator=g)
    lp = torch.randn(4, 40, 6, generator=g).log_softmax(-1)
    tg = torch.randint(1, 6, (4, 8), generator=g)
    mas_in = torch.randn(4, 10, 40, generator=g)
    be = backend

    def work():
        return (
            core.log_likelihood(lb, lpi, A),
            core.posteriors(lb, lpi, band).state_posteriors,
            core.viterbi(lb, lpi, A).path,
            DTWAligner(backend=be).align(x, y).cost,
            CTCAligner(blank_id=0, backend=be).align(lp, tg).labels,
            monotonic_alignment_search(mas_in, backend=be).durations,
        )

    ref = work()
    results, errors = [None] * 4, []

    def run(i):
        try:
            # use_backend is a context variable: each thread enters its own
            with core.use_backend(be):
                for _ in range(3):
                    results[i] = work()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:
        for a, b in zip(r, ref):
            if isinstance(a, torch.Tensor):
                assert torch.equal(a, b)
            elif isinstance(a, tuple):
                for u, v in zip(a, b):
                    assert torch.equal(u, v)


def test_banded_viterbi_with_no_valid_path_returns_minus_one():
    # slot 0 (stay) forbidden and no way to reach the end: the compiled traceback used to
    # follow unset back-pointers out of the states (a segfault)
    from pytorch_hmm import core
    from pytorch_hmm.core.transitions import Transitions

    torch.manual_seed(0)
    band = torch.log_softmax(torch.randn(20, 5), -1)
    band[:, 0] = -float("inf")
    le = torch.randn(2, 300, 20)
    for backend in ("numba", "torch"):
        r = core.viterbi(
            le, torch.log_softmax(torch.randn(20), 0), Transitions.banded(band, lo=0),
            check_stochastic=False, backend=backend, on_impossible="ignore",
        )  # fmt: skip
        assert (r.path == -1).all() and (r.score == -float("inf")).all()
