"""Property-based tests of the inference engine (hypothesis), float64.

Random models (K 1..8; dense, left-to-right and randomly sparse with exact zeros), random
lengths and batch compositions, random padding contents. Tiny cases (T <= 5, K <= 4) are
checked against brute-force enumeration of every state path (HMM) or every segmentation
(HSMM). Deterministic: ``derandomize=True``, so CI draws the same examples every run
(``PYTORCH_HMM_PROPERTY_SCALE=k``: k times the examples, randomly drawn, for a bug hunt).
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pytorch_hmm import core  # noqa: E402
from pytorch_hmm.core.backend import cpu_kernels  # noqa: E402
from pytorch_hmm.core.online import OnlineViterbi  # noqa: E402

D = torch.float64
NINF = -math.inf
HAS_KERNELS = cpu_kernels("pytorch_hmm.core._cpu_kernels", torch.device("cpu"), "auto") is not None


# PYTORCH_HMM_PROPERTY_SCALE=k runs k times the examples with random (not derandomized)
# draws: a longer bug hunt by hand; CI keeps the default, deterministic, ~1 minute.
SCALE = int(os.environ.get("PYTORCH_HMM_PROPERTY_SCALE", "0") or 0)


def props(n):
    return settings(
        max_examples=n * max(SCALE, 1),
        deadline=None,
        derandomize=SCALE == 0,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------------------------------
# strategies


def _log_normalise(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = torch.log_softmax(logits.masked_fill(~mask, NINF), -1)
    return torch.where(mask, out, torch.full_like(out, NINF))


def make_model(K: int, kind: str, seed: int):
    """``(log_initial (K,), log_transitions (K, K))``, normalised, exact -inf at zeros."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(K, K, generator=g, dtype=D) * 1.5
    i = torch.arange(K)
    if kind == "dense":
        mask = torch.ones(K, K, dtype=torch.bool)
        init_mask = torch.ones(K, dtype=torch.bool)
    elif kind == "ltr":  # stay, next, skip one
        d = i.unsqueeze(0) - i.unsqueeze(1)
        mask = (d >= 0) & (d <= 2)
        init_mask = i == 0
    else:  # random sparsity, every row keeps at least its diagonal
        mask = (torch.rand(K, K, generator=g) < 0.5) | torch.eye(K, dtype=torch.bool)
        init_mask = torch.rand(K, generator=g) < 0.6
        init_mask[int(torch.randint(K, (1,), generator=g))] = True
    lA = _log_normalise(logits, mask)
    lpi = _log_normalise(torch.randn(K, generator=g, dtype=D), init_mask)
    return lpi, lA


def make_emissions(B: int, T: int, K: int, seed: int, p_impossible: float = 0.1):
    g = torch.Generator().manual_seed(seed + 1)
    lb = torch.randn(B, T, K, generator=g, dtype=D) * 2.0
    if p_impossible > 0:
        lb = lb.masked_fill(torch.rand(B, T, K, generator=g) < p_impossible, NINF)
    return lb


def fill_padding(lb: torch.Tensor, lengths: torch.Tensor, how: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 2)
    T = lb.shape[1]
    pad = (torch.arange(T).unsqueeze(0) >= lengths.unsqueeze(1)).unsqueeze(-1)
    if how == "random":
        junk = torch.randn(lb.shape, generator=g, dtype=lb.dtype) * 1e3
    else:
        junk = torch.full_like(lb, {"nan": math.nan, "+inf": math.inf, "-inf": NINF}[how])
    return torch.where(pad, junk, lb)


KINDS = st.sampled_from(["dense", "ltr", "sparse"])
SEEDS = st.integers(0, 2**31 - 1)
PADDING = st.sampled_from(["random", "nan", "+inf", "-inf"])


@st.composite
def tiny_problem(draw):
    K = draw(st.integers(1, 4))
    T = draw(st.integers(1, 5))
    B = draw(st.integers(1, 3))
    lengths = torch.tensor(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    seed = draw(SEEDS)
    lpi, lA = make_model(K, draw(KINDS), seed)
    lb = make_emissions(B, T, K, seed, draw(st.sampled_from([0.0, 0.15])))
    return lb, lpi, lA, lengths, draw(final_scores(K, seed))


@st.composite
def final_scores(draw, K, seed):
    """None (any state may end) or a (K,) score with some exact -inf (may not end there)."""
    if not draw(st.booleans()):
        return None
    g = torch.Generator().manual_seed(seed + 4)
    lf = torch.randn(K, generator=g, dtype=D)
    return lf.masked_fill(torch.rand(K, generator=g) < 0.3, NINF)


@st.composite
def batch_problem(draw, max_k=8, max_t=12, max_b=4):
    K = draw(st.integers(1, max_k))
    T = draw(st.integers(1, max_t))
    B = draw(st.integers(1, max_b))
    lengths = torch.tensor(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    seed = draw(SEEDS)
    lpi, lA = make_model(K, draw(KINDS), seed)
    lb = make_emissions(B, T, K, seed, draw(st.sampled_from([0.0, 0.05])))
    return lb, lpi, lA, lengths, draw(final_scores(K, seed))


# ------------------------------------------------------------------------------------------
# brute force and independent path scores


def path_score(lb, lpi, lA, path, lf=None) -> float:
    """Log joint probability of one state path, recomputed from scratch."""
    s = float(lpi[path[0]]) + float(lb[0, path[0]])
    for t in range(1, len(path)):
        s += float(lA[path[t - 1], path[t]]) + float(lb[t, path[t]])
    return s if lf is None else s + float(lf[path[-1]])


def brute_hmm(lb, lpi, lA, L, lf=None):
    """(log-sum-exp, max) over all K^L state paths of one sequence lb (T, K)."""
    K = lb.shape[1]
    scores = [path_score(lb, lpi, lA, p, lf) for p in itertools.product(range(K), repeat=L)]
    a = np.array(scores)
    m = a.max()
    lse = m if not np.isfinite(m) else m + math.log(np.exp(a - m).sum())
    return lse, m


def segmentations(L, K, Dm):
    """Every tiling of L frames by segments (state, duration <= Dm)."""
    if L == 0:
        yield []
        return
    for d in range(1, min(Dm, L) + 1):
        for k in range(K):
            for rest in segmentations(L - d, K, Dm):
                yield [(k, d)] + rest


def segmentation_score(lb, lpi, lA, ldur, segs, lf=None, censored=False) -> float:
    """Score of one segmentation; right-censored, the last segment scores log P(D >= d)."""
    s, t = 0.0, 0
    for i, (k, d) in enumerate(segs):
        s += float(lpi[k]) if i == 0 else float(lA[segs[i - 1][0], k])
        last = i == len(segs) - 1
        dur = torch.logsumexp(ldur[k, d - 1 :], 0) if censored and last else ldur[k, d - 1]
        s += float(dur) + float(lb[t : t + d, k].sum())
        t += d
    return s if lf is None else s + float(lf[segs[-1][0]])


def brute_hsmm(lb, lpi, lA, ldur, L, lf=None, censored=False):
    K, Dm = lb.shape[1], ldur.shape[1]
    a = np.array(
        [segmentation_score(lb, lpi, lA, ldur, s, lf, censored) for s in segmentations(L, K, Dm)]
    )
    m = a.max()
    lse = m if not np.isfinite(m) else m + math.log(np.exp(a - m).sum())
    return lse, m


def close(a, b, tol=1e-8):
    a, b = (float(x.detach()) if isinstance(x, torch.Tensor) else float(x) for x in (a, b))
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tol * (1 + abs(b))


# ------------------------------------------------------------------------------------------
# HMM: forward == backward == brute force; Viterbi == brute max == its path's score


@props(50)
@given(tiny_problem())
def test_forward_backward_bruteforce(prob):
    lb, lpi, lA, lengths, lf = prob
    kw = dict(on_impossible="ignore", log_final=lf)
    ll = core.log_likelihood(lb, lpi, lA, lengths, **kw)
    fwd = core.forward(lb, lpi, lA, lengths, **kw)
    beta = core.backward(lb, lpi, lA, lengths, **kw)
    b_ll = torch.logsumexp(lpi + lb[:, 0] + beta[:, 0], -1)
    end = 0 if lf is None else lf
    for b, L in enumerate(lengths.tolist()):
        lse, _ = brute_hmm(lb[b], lpi, lA, L, lf)
        assert close(ll[b], lse), (b, float(ll[b]), lse)
        assert close(fwd.log_likelihood[b], lse)
        assert close(torch.logsumexp(fwd.log_alpha[b, L - 1] + end, -1), lse)
        assert close(b_ll[b], lse), (b, float(b_ll[b]), lse)


@props(50)
@given(tiny_problem())
def test_viterbi_bruteforce_and_own_path(prob):
    lb, lpi, lA, lengths, lf = prob
    ll = core.log_likelihood(lb, lpi, lA, lengths, log_final=lf)
    v = core.viterbi(lb, lpi, lA, lengths, log_final=lf, on_impossible="ignore")
    for b, L in enumerate(lengths.tolist()):
        _, best = brute_hmm(lb[b], lpi, lA, L, lf)
        assert close(v.score[b], best), (b, float(v.score[b]), best)
        assert float(v.score[b]) <= float(ll[b]) + 1e-9
        path = v.path[b].tolist()
        assert all(s == -1 for s in path[L:])
        if math.isfinite(best):
            assert all(0 <= s < lA.shape[0] for s in path[:L])
            assert close(path_score(lb[b], lpi, lA, path[:L], lf), v.score[b])
        else:
            assert all(s == -1 for s in path)


# ------------------------------------------------------------------------------------------
# posteriors and counts


@props(30)
@given(batch_problem())
def test_posteriors_normalised_and_counts(prob):
    lb, lpi, lA, lengths, lf = prob
    r = core.posteriors(lb, lpi, lA, lengths, log_final=lf, on_impossible="ignore")
    T = lb.shape[1]
    real = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    ok = torch.isfinite(r.log_likelihood)
    s = r.state_posteriors.sum(-1)
    assert (r.state_posteriors >= 0).all()
    assert torch.allclose(s[ok][real[ok]], torch.ones(()).double(), atol=1e-9, rtol=1e-9)
    assert (s[~real] == 0).all()
    assert (s[~ok] == 0).all()
    counts = r.transition_counts.sum((-1, -2))
    assert torch.allclose(counts[ok], (lengths[ok] - 1).double(), atol=1e-8, rtol=1e-9)
    # every count sits on an allowed move
    assert (r.transition_counts[:, ~torch.isfinite(lA)] == 0).all()


# ------------------------------------------------------------------------------------------
# padding is never read


@props(30)
@given(batch_problem(), PADDING)
def test_padded_batch_equals_one_by_one(prob, how):
    lb, lpi, lA, lengths, lf = prob
    padded = fill_padding(lb, lengths, how, int(lengths.sum()))
    kw = dict(on_impossible="ignore", log_final=lf)
    x = padded.clone().requires_grad_(True)
    ll = core.log_likelihood(x, lpi, lA, lengths, **kw)
    ll.masked_fill(~torch.isfinite(ll), 0).sum().backward()
    assert torch.isfinite(x.grad).all()
    post = core.posteriors(padded, lpi, lA, lengths, **kw)
    vit = core.viterbi(padded, lpi, lA, lengths, **kw)
    for b, L in enumerate(lengths.tolist()):
        one = lb[b : b + 1, :L]
        x1 = one.clone().requires_grad_(True)
        ll1 = core.log_likelihood(x1, lpi, lA, **kw)
        if torch.isfinite(ll1).all():
            ll1.sum().backward()
            assert torch.allclose(x.grad[b, :L], x1.grad[0], atol=1e-10, rtol=1e-9)
        assert (x.grad[b, L:] == 0).all()
        assert close(ll[b], ll1[0], 1e-10)
        p1 = core.posteriors(one, lpi, lA, **kw)
        assert torch.allclose(
            post.state_posteriors[b, :L], p1.state_posteriors[0], atol=1e-10, rtol=1e-9
        )
        assert torch.allclose(
            post.transition_counts[b], p1.transition_counts[0], atol=1e-10, rtol=1e-9
        )
        v1 = core.viterbi(one, lpi, lA, **kw)
        assert close(vit.score[b], v1.score[0], 1e-10)
        assert vit.path[b, :L].tolist() == v1.path[0].tolist()


# ------------------------------------------------------------------------------------------
# streaming (carry + online Viterbi) == offline Viterbi


@st.composite
def chunked_problem(draw):
    K = draw(st.integers(1, 6))
    T = draw(st.integers(1, 24))
    seed = draw(SEEDS)
    kind = draw(KINDS)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(T - 1, 1)), max_size=5))))
    cuts = [c for c in cuts if 0 < c < T]
    max_delay = draw(st.sampled_from([None, None, 1, 3]))
    return K, T, seed, kind, [0] + cuts + [T], max_delay


@props(40)
@given(chunked_problem())
def test_streaming_equals_offline_viterbi(case):
    K, T, seed, kind, bounds, max_delay = case
    lpi, lA = make_model(K, kind, seed)
    lb = make_emissions(1, T, K, seed, 0.0)
    off = core.viterbi(lb, lpi, lA, on_impossible="ignore")
    dec = OnlineViterbi(1, K, max_delay=max_delay)
    carry, states = None, []
    for a, z in zip(bounds[:-1], bounds[1:]):
        v = core.viterbi(
            lb[:, a:z], lpi, lA, carry=carry, return_carry=True, on_impossible="ignore"
        )
        carry = v.carry
        res, kill = dec.step(carry.back[-1], torch.tensor([z - a]), carry.scores, final=False)
        states += res.states[0].tolist()
        if kill.any():
            assert max_delay is not None
            carry = carry._replace(scores=carry.scores.masked_fill(kill, NINF))
    res, _ = dec.step(torch.zeros(1, 0, K, dtype=torch.long), torch.tensor([0]), carry.scores, True)
    states += res.states[0].tolist()
    assert len(states) == T
    if max_delay is None:
        # exact online Viterbi: the committed path is the offline path, and so is the traceback
        assert states == off.path[0].tolist()
        assert carry.traceback()[0].tolist() == off.path[0].tolist()
        assert close(carry.best()[1][0], off.score[0], 1e-10)
    elif math.isfinite(float(off.score[0])):
        # forced decisions: still one consistent path, never better than the best
        assert close(path_score(lb[0], lpi, lA, states), carry.best()[1][0], 1e-9)
        assert path_score(lb[0], lpi, lA, states) <= float(off.score[0]) + 1e-9


# ------------------------------------------------------------------------------------------
# backends agree


@pytest.mark.skipif(not HAS_KERNELS, reason="numba kernels not available")
@props(25)
@given(batch_problem(max_k=8, max_t=16))
def test_backends_agree(prob):
    lb, lpi, lA, lengths, lf = prob
    out = {}
    for be in ("torch", "numba"):
        kw = dict(backend=be, on_impossible="ignore", log_final=lf)
        out[be] = (
            core.log_likelihood(lb, lpi, lA, lengths, **kw),
            core.posteriors(lb, lpi, lA, lengths, **kw),
            core.viterbi(lb, lpi, lA, lengths, **kw),
        )
    (l0, p0, v0), (l1, p1, v1) = out["torch"], out["numba"]
    assert torch.equal(torch.isfinite(l0), torch.isfinite(l1))
    f = torch.isfinite(l0)
    assert torch.allclose(l0[f], l1[f], atol=1e-9, rtol=1e-9)
    for r in (p0, p1):  # the posteriors' log-likelihood is the same number
        assert torch.equal(torch.isfinite(r.log_likelihood), f)
    assert torch.allclose(p0.log_likelihood[f], l0[f], atol=1e-9, rtol=1e-9)
    assert torch.allclose(p1.log_likelihood[f], l1[f], atol=1e-9, rtol=1e-9)
    assert torch.allclose(p0.state_posteriors, p1.state_posteriors, atol=1e-9, rtol=1e-9)
    assert torch.allclose(p0.transition_counts, p1.transition_counts, atol=1e-8, rtol=1e-9)
    assert torch.equal(torch.isfinite(v0.score), torch.isfinite(v1.score))
    f = torch.isfinite(v0.score)
    assert torch.allclose(v0.score[f], v1.score[f], atol=1e-9, rtol=1e-9)
    for b, L in enumerate(lengths.tolist()):
        if f[b]:  # both paths optimal (ties may pick different ones)
            s1 = path_score(lb[b], lpi, lA, v1.path[b, :L].tolist(), lf)
            assert close(s1, v0.score[b], 1e-9)


# ------------------------------------------------------------------------------------------
# HSMM


@st.composite
def hsmm_problem(draw, max_k=3, max_t=5, max_d=3, max_b=3):
    K = draw(st.integers(1, max_k))
    T = draw(st.integers(1, max_t))
    Dm = draw(st.integers(1, max_d))
    B = draw(st.integers(1, max_b))
    lengths = torch.tensor(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    seed = draw(SEEDS)
    kind = draw(KINDS)
    lpi, lA = make_model(K, kind, seed)
    if K > 1 and draw(st.booleans()):  # the usual HSMM: no self-transition
        eye = torch.eye(K, dtype=torch.bool)
        off = torch.isfinite(lA) & ~eye
        off[off.sum(-1) == 0] = ~eye[off.sum(-1) == 0]
        lA = _log_normalise(torch.zeros(K, K, dtype=D), off)
    g = torch.Generator().manual_seed(seed + 3)
    dmask = torch.rand(K, Dm, generator=g) < 0.8
    dmask[:, 0] |= ~dmask.any(-1)
    ldur = _log_normalise(torch.randn(K, Dm, generator=g, dtype=D), dmask)
    lb = make_emissions(B, T, K, seed, draw(st.sampled_from([0.0, 0.1])))
    return lb, lpi, lA, ldur, lengths, draw(final_scores(K, seed)), draw(st.booleans())


@props(40)
@given(hsmm_problem())
def test_hsmm_bruteforce(prob):
    lb, lpi, lA, ldur, lengths, lf, cens = prob
    kw = dict(on_impossible="ignore", log_final=lf, right_censored=cens)
    ll = core.hsmm_log_likelihood(lb, lpi, lA, ldur, lengths, **kw)
    post = core.hsmm_posteriors(lb, lpi, lA, ldur, lengths, **kw)
    v = core.hsmm_viterbi(lb, lpi, lA, ldur, lengths, **kw)
    T = lb.shape[1]
    for b, L in enumerate(lengths.tolist()):
        lse, best = brute_hsmm(lb[b], lpi, lA, ldur, L, lf, cens)
        assert close(ll[b], lse), (b, float(ll[b]), lse)
        assert close(post.log_likelihood[b], lse)
        assert close(v.score[b], best), (b, float(v.score[b]), best)
        assert float(v.score[b]) <= float(ll[b]) + 1e-9
        if math.isfinite(lse):
            g = post.state_posteriors[b]
            assert torch.allclose(g[:L].sum(-1), torch.ones(()).double(), atol=1e-9, rtol=1e-9)
            assert (g[L:] == 0).all()
        if math.isfinite(best):
            segs = [(int(k), int(d)) for k, _, d in v.segments[b].tolist()]
            starts = [int(s) for _, s, _ in v.segments[b].tolist()]
            assert sum(d for _, d in segs) == L and starts[0] == 0
            assert close(segmentation_score(lb[b], lpi, lA, ldur, segs, lf, cens), best)
            frames = [k for k, d in segs for _ in range(d)]
            assert v.path[b, :L].tolist() == frames
            assert v.path[b, L:].tolist() == [-1] * (T - L)
        else:
            assert not bool(v.valid[b])


@props(25)
@given(hsmm_problem(max_k=4, max_t=10, max_d=4), PADDING)
def test_hsmm_padded_batch_equals_one_by_one(prob, how):
    lb, lpi, lA, ldur, lengths, lf, cens = prob
    padded = fill_padding(lb, lengths, how, int(lengths.sum()))
    kw = dict(on_impossible="ignore", log_final=lf, right_censored=cens)
    x = padded.clone().requires_grad_(True)
    ll = core.hsmm_log_likelihood(x, lpi, lA, ldur, lengths, **kw)
    ll.masked_fill(~torch.isfinite(ll), 0).sum().backward()
    assert torch.isfinite(x.grad).all()
    post = core.hsmm_posteriors(padded, lpi, lA, ldur, lengths, **kw)
    vit = core.hsmm_viterbi(padded, lpi, lA, ldur, lengths, **kw)
    for b, L in enumerate(lengths.tolist()):
        one = lb[b : b + 1, :L]
        assert close(ll[b], core.hsmm_log_likelihood(one, lpi, lA, ldur, **kw)[0], 1e-10)
        p1 = core.hsmm_posteriors(one, lpi, lA, ldur, **kw)
        assert torch.allclose(
            post.state_posteriors[b, :L], p1.state_posteriors[0], atol=1e-10, rtol=1e-9
        )
        assert torch.allclose(post.duration_counts[b], p1.duration_counts[0], atol=1e-10, rtol=1e-9)
        v1 = core.hsmm_viterbi(one, lpi, lA, ldur, **kw)
        assert close(vit.score[b], v1.score[0], 1e-10)
        assert vit.path[b, :L].tolist() == v1.path[0].tolist()
        assert (x.grad[b, L:] == 0).all()


@pytest.mark.skipif(not HAS_KERNELS, reason="numba kernels not available")
@props(20)
@given(hsmm_problem(max_k=5, max_t=12, max_d=5))
def test_hsmm_backends_agree(prob):
    lb, lpi, lA, ldur, lengths, lf, cens = prob
    out = {}
    for be in ("torch", "numba"):
        kw = dict(backend=be, on_impossible="ignore", log_final=lf, right_censored=cens)
        out[be] = (
            core.hsmm_posteriors(lb, lpi, lA, ldur, lengths, **kw),
            core.hsmm_viterbi(lb, lpi, lA, ldur, lengths, **kw),
        )
    (p0, v0), (p1, v1) = out["torch"], out["numba"]
    l0, l1 = p0.log_likelihood, p1.log_likelihood
    assert torch.equal(torch.isfinite(l0), torch.isfinite(l1))
    f = torch.isfinite(l0)
    assert torch.allclose(l0[f], l1[f], atol=1e-9, rtol=1e-9)
    for a, b in zip(p0[:4], p1[:4]):
        assert torch.allclose(a, b, atol=1e-8, rtol=1e-9)
    assert torch.equal(v0.valid, v1.valid)
    f = v0.valid
    assert torch.allclose(v0.score[f], v1.score[f], atol=1e-9, rtol=1e-9)
