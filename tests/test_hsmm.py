"""Hidden semi-Markov models (pytorch_hmm.core.semimarkov and pytorch_hmm.HSMM) against
independent references.

- ``brute_force``: every segmentation of a tiny sequence enumerated with itertools, in
  float64 Python arithmetic (log-likelihood, posteriors, expected counts, best segmentation).
- ``expand``: the same HSMM as an ordinary HMM with one state per (state k, r frames left
  including this one), run through the HMM engine (pytorch_hmm.core.log_likelihood /
  posteriors / viterbi); for medium sizes where enumeration is out of reach.
- geometric durations: an HSMM whose durations are geometric is the plain HMM with
  self-loops.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from pytorch_hmm import core
from pytorch_hmm.core import semimarkov as sm

NEG = -math.inf
BACKENDS = ["numba", "torch"]
# the HMM engine runs the references on its torch code (its compiled kernels are checked by
# test_core; compiling them here would cost this file half a minute on a cold cache)
ENGINE_BACKENDS = ["torch"]
F64 = torch.float64


# ------------------------------------------------------------------------------------------
# reference 1: enumerate every segmentation


def _lse(xs) -> float:
    xs = [x for x in xs if x != NEG]
    if not xs:
        return NEG
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


@functools.cache
def _tilings(L: int, Dm: int):
    """Every tuple of durations in 1..Dm that sums to L."""
    if L == 0:
        return ((),)
    out = []
    for d in range(1, min(Dm, L) + 1):
        out.extend((d,) + rest for rest in _tilings(L - d, Dm))
    return tuple(out)


def brute_force_one(lb, lpi, lA, ldur, lf=None, right_censored=False):
    """One sequence: ``lb`` (L, K) emission scores of its real frames, ``lpi`` (K,),
    ``lA`` (K, K), ``ldur`` (K, Dm), ``lf`` (K,) or None; plain float64 Python lists/arrays.

    Returns a dict: ``ll``; ``post`` (L, K); ``init`` (K,); ``trans`` (K, K); ``dur`` (K, Dm)
    (expected segments of state k lasting d frames, the last one at its length in the data);
    ``dur_grad`` (K, Dm) (d ll / d ldur: with censoring the last segment is spread over the
    durations >= its length, in proportion to p(d)); ``final`` (K,); ``best`` (score,
    [(state, start, duration), ...]) or (-inf, [])."""
    lb = np.asarray(lb, dtype=np.float64)
    L, K = lb.shape
    ldur = np.asarray(ldur, dtype=np.float64)
    Dm = ldur.shape[1]
    lf = np.zeros(K) if lf is None else np.asarray(lf, dtype=np.float64)
    lpi = np.asarray(lpi, dtype=np.float64)
    lA = np.asarray(lA, dtype=np.float64)
    if right_censored:
        dend = np.array([[_lse(ldur[k, d:]) for d in range(Dm)] for k in range(K)])
    else:
        dend = ldur
    seg = {}
    for s in range(L):
        for d in range(1, min(Dm, L - s) + 1):
            for k in range(K):
                seg[s, d, k] = sum(float(v) for v in lb[s : s + d, k])
    entries = []
    for durs in _tilings(L, Dm):
        starts = [0]
        for d in durs[:-1]:
            starts.append(starts[-1] + d)
        n = len(durs)
        for states in itertools.product(range(K), repeat=n):
            sc = float(lpi[states[0]])
            for i in range(n):
                k, s, d = states[i], starts[i], durs[i]
                if i:
                    sc += float(lA[states[i - 1], k])
                table = dend if i == n - 1 else ldur
                sc += float(table[k, d - 1]) + seg[s, d, k]
                if sc == NEG:
                    break
            if sc == NEG:
                continue
            sc += float(lf[states[-1]])
            if sc != NEG:
                entries.append((sc, states, durs, starts))
    ll = _lse([e[0] for e in entries])
    post = np.zeros((L, K))
    init = np.zeros(K)
    trans = np.zeros((K, K))
    dur = np.zeros((K, Dm))
    dur_grad = np.zeros((K, Dm))
    final = np.zeros(K)
    best = (NEG, [])
    for sc, states, durs, starts in entries:
        w = math.exp(sc - ll)
        init[states[0]] += w
        final[states[-1]] += w
        n = len(durs)
        for i in range(n):
            k, s, d = states[i], starts[i], durs[i]
            post[s : s + d, k] += w
            dur[k, d - 1] += w
            if i:
                trans[states[i - 1], k] += w
            if right_censored and i == n - 1:
                for e in range(d, Dm + 1):  # d/d ldur[k, e-1] of log P(D >= d)
                    dur_grad[k, e - 1] += w * math.exp(ldur[k, e - 1] - dend[k, d - 1])
            else:
                dur_grad[k, d - 1] += w
        if sc > best[0]:
            best = (sc, [(states[i], starts[i], durs[i]) for i in range(n)])
    return dict(
        ll=ll,
        post=post,
        init=init,
        trans=trans,
        dur=dur,
        dur_grad=dur_grad,
        final=final,
        best=best,
    )


def _per_seq(x, b, B, dims):
    """Sequence b's copy of a parameter given shared (``dims`` dims) or per sequence."""
    if x is None:
        return None
    x = x.detach().double().numpy()
    return x[b] if x.ndim == dims + 1 else x


def brute_force(lb, lpi, lA, ldur, lengths=None, lf=None, right_censored=False):
    """:func:`brute_force_one` over a padded batch (torch inputs in the engine's layouts);
    numpy results in the layouts of HSMMPosteriorResult / HSMMViterbiResult."""
    B, T, K = lb.shape
    Dm = ldur.shape[-1]
    lengths = [T] * B if lengths is None else [int(v) for v in lengths]
    out = dict(
        ll=np.zeros(B),
        post=np.zeros((B, T, K)),
        init=np.zeros((B, K)),
        trans=np.zeros((B, K, K)),
        dur=np.zeros((B, K, Dm)),
        dur_grad=np.zeros((B, K, Dm)),
        final=np.zeros((B, K)),
        score=np.zeros(B),
        path=np.full((B, T), -1),
        segments=[],
        valid=np.zeros(B, dtype=bool),
    )
    for b in range(B):
        L = lengths[b]
        r = brute_force_one(
            lb[b, :L].detach().double().numpy(),
            _per_seq(lpi, b, B, 1),
            _per_seq(lA, b, B, 2),
            _per_seq(ldur, b, B, 2),
            _per_seq(lf, b, B, 1),
            right_censored,
        )
        out["ll"][b] = r["ll"]
        out["post"][b, :L] = r["post"]
        for key in ("init", "trans", "dur", "dur_grad", "final"):
            out[key][b] = r[key]
        score, segs = r["best"]
        out["score"][b] = score
        out["valid"][b] = score > NEG
        for k, s, d in segs:
            out["path"][b, s : s + d] = k
        out["segments"].append(np.array(segs, dtype=np.int64).reshape(-1, 3))
    return out


# ------------------------------------------------------------------------------------------
# reference 2: the HSMM as an HMM over (state, frames remaining)


def expand(lpi, lA, ldur, lf=None, right_censored=False):
    """The expanded HMM of an HSMM: state ``k * Dm + r - 1`` is (state k, r frames left,
    this one included). Returns (log_initial, log_transitions, log_final, emission_index) for
    the HMM engine (check_stochastic=False: rows of states without successors are empty)."""
    K, Dm = ldur.shape[-2:]
    batched = lpi.dim() == 2 or lA.dim() == 3 or ldur.dim() == 3
    batched = batched or (lf is not None and lf.dim() == 2)
    Bp = max(x.shape[0] if x.dim() == n + 1 else 1 for x, n in ((lpi, 1), (lA, 2), (ldur, 2)))
    if lf is not None and lf.dim() == 2:
        Bp = max(Bp, lf.shape[0])
    dt = ldur.dtype
    pi = lpi.expand(Bp, K)
    A = lA.expand(Bp, K, K)
    dur = ldur.expand(Bp, K, Dm)
    fin = torch.zeros(Bp, K, dtype=dt) if lf is None else lf.expand(Bp, K)
    S = K * Dm
    init = torch.full((Bp, S), NEG, dtype=dt)
    trans = torch.full((Bp, S, S), NEG, dtype=dt)
    final = torch.full((Bp, S), NEG, dtype=dt)
    for k in range(K):
        for r in range(1, Dm + 1):
            i = k * Dm + r - 1
            init[:, i] = pi[:, k] + dur[:, k, r - 1]
            if r >= 2:
                trans[:, i, i - 1] = 0.0
            else:
                for j in range(K):
                    for r2 in range(1, Dm + 1):
                        trans[:, i, j * Dm + r2 - 1] = A[:, k, j] + dur[:, j, r2 - 1]
            if right_censored or r == 1:
                final[:, i] = fin[:, k]
    if not batched:
        init, trans, final = init[0], trans[0], final[0]
    eidx = torch.arange(K).repeat_interleave(Dm)
    return init, trans, final, eidx


def expanded_reference(lb, lpi, lA, ldur, lengths, lf=None, right_censored=False, backend="torch"):
    """The HSMM's results computed by the HMM engine on the expanded model (torch, (B, ...)):
    ll, state posteriors, initial / transition / duration counts (duration counts only
    without censoring), Viterbi score, path and segments (only without censoring: a censored
    Viterbi segment scores log P(D >= d), not the best of its continuations)."""
    K, Dm = ldur.shape[-2:]
    init, trans, final, eidx = expand(lpi, lA, ldur, lf, right_censored)
    kw = dict(log_final=final, emission_index=eidx, check_stochastic=False, backend=backend)
    kw["on_impossible"] = "ignore"
    ll = core.log_likelihood(lb, init, trans, lengths, **kw)
    p = core.posteriors(lb, init, trans, lengths, **kw)
    B, T = lb.shape[:2]
    g = p.state_posteriors.view(B, T, K, Dm)
    xi = p.transition_counts.view(B, K, Dm, K, Dm)
    out = dict(ll=ll, post=g.sum(-1), init=g[:, 0].sum(-1), trans=xi[:, :, 0].sum(-1))
    # a segment of state j lasting d frames starts in (j, d): first frame or after a (k, 1)
    out["dur"] = g[:, 0] + xi[:, :, 0].sum(1)
    v = core.viterbi(lb, init, trans, lengths, **kw)
    out["score"] = v.score
    out["path"] = torch.where(v.path >= 0, v.path // Dm, -1)
    segs = []
    for b in range(B):
        rows = []
        for t in range(int(lengths[b]) if lengths is not None else T):
            s = int(v.path[b, t])
            if s < 0:
                break
            k, r = divmod(s, Dm)
            if t == 0 or int(v.path[b, t - 1]) % Dm == 0:
                rows.append((k, t, r + 1))
        segs.append(np.array(rows, dtype=np.int64).reshape(-1, 3))
    out["segments"] = segs
    return out


# ------------------------------------------------------------------------------------------
# random problems


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def rand_problem(
    B,
    T,
    K,
    Dm,
    seed=0,
    topology="ergodic",
    per_batch=False,
    final=False,
    lengths=None,
    dtype=F64,
    zero_diag=True,
):
    """Random normalised HSMM inputs: dict of the hsmm_* arguments (log_final only with
    ``final``; unnormalised random scores then, -inf for left-to-right but the last)."""
    g = _gen(seed)
    pb = (B,) if per_batch else ()

    def rn(*shape):
        return torch.randn(*shape, generator=g, dtype=F64)

    lb = rn(B, T, K) * 1.5 - 1.0
    ldur = torch.log_softmax(rn(*pb, K, Dm) * 1.2, -1)
    if topology == "ergodic":
        lpi = torch.log_softmax(rn(*pb, K), -1)
        x = rn(*pb, K, K)
        if zero_diag:
            x = x.masked_fill(torch.eye(K, dtype=torch.bool), NEG)
        lA = torch.log_softmax(x, -1)
        lf = rn(*pb, K) if final else None
    elif topology == "left_to_right":
        lpi = torch.full((*pb, K), NEG, dtype=F64)
        lpi[..., 0] = 0.0
        lA = torch.full((*pb, K, K), NEG, dtype=F64)
        for k in range(K - 1):
            lA[..., k, k + 1] = 0.0
        lf = None
        if final:
            lf = torch.full((*pb, K), NEG, dtype=F64)
            lf[..., K - 1] = 0.0
    else:
        raise ValueError(topology)
    if lengths is not None:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
    args = dict(
        log_emissions=lb,
        log_initial=lpi,
        log_transitions=lA,
        log_durations=ldur,
        lengths=lengths,
        log_final=lf,
    )
    return {
        k: (v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v)
        for k, v in args.items()
    }


def call(fn, args, backend, right_censored=False, **kw):
    a = dict(args)
    lb, lpi, lA, ldur = (
        a.pop(k) for k in ("log_emissions", "log_initial", "log_transitions", "log_durations")
    )
    return fn(
        lb,
        lpi,
        lA,
        ldur,
        a.pop("lengths"),
        log_final=a.pop("log_final"),
        right_censored=right_censored,
        backend=backend,
        **kw,
    )


def bf(args, right_censored=False):
    return brute_force(
        args["log_emissions"],
        args["log_initial"],
        args["log_transitions"],
        args["log_durations"],
        args["lengths"],
        args["log_final"],
        right_censored,
    )


def close(got, want, atol=1e-10, what=""):
    got = got.detach().double().numpy() if torch.is_tensor(got) else np.asarray(got)
    want = want.detach().double().numpy() if torch.is_tensor(want) else np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def check_against(ref, args, backend, right_censored, atol=1e-10, counts=True):
    """Compare every hsmm_* output with a reference dict (brute force)."""
    ll = call(sm.hsmm_log_likelihood, args, backend, right_censored)
    p = call(sm.hsmm_posteriors, args, backend, right_censored, on_impossible="ignore")
    v = call(sm.hsmm_viterbi, args, backend, right_censored, on_impossible="ignore")
    tag = f"backend={backend} right_censored={right_censored}"
    close(ll, ref["ll"], atol, f"log_likelihood {tag}")
    close(p.log_likelihood, ref["ll"], atol, f"posteriors.log_likelihood {tag}")
    close(p.state_posteriors, ref["post"], atol, f"state_posteriors {tag}")
    if counts:
        close(p.initial_counts, ref["init"], atol, f"initial_counts {tag}")
        close(p.transition_counts, ref["trans"], atol, f"transition_counts {tag}")
        # right-censored: the last segment's count is spread over every longer duration
        want = ref["dur_grad"] if right_censored else ref["dur"]
        close(p.duration_counts, want, atol, f"duration_counts {tag}")
    close(v.score, ref["score"], atol, f"viterbi score {tag}")
    assert v.path.dtype == torch.long
    np.testing.assert_array_equal(v.path.numpy(), ref["path"], err_msg=f"viterbi path {tag}")
    np.testing.assert_array_equal(v.valid.numpy(), ref["valid"], err_msg=f"valid {tag}")
    assert len(v.segments) == len(ref["segments"])
    for b, (got, want) in enumerate(zip(v.segments, ref["segments"])):
        np.testing.assert_array_equal(
            got.numpy().reshape(-1, 3), want, err_msg=f"segments of sequence {b} {tag}"
        )
    return ll, p, v


# ------------------------------------------------------------------------------------------
# the references agree with each other (no implementation needed)


REF_CASES = {
    # name: (rand_problem kwargs, right_censored)
    "ergodic": (dict(B=3, T=6, K=3, Dm=4, lengths=[6, 4, 1]), False),
    "ergodic_censored": (dict(B=3, T=6, K=3, Dm=4, lengths=[6, 5, 2], seed=1), True),
    "ergodic_final": (dict(B=2, T=6, K=3, Dm=3, final=True, lengths=[6, 3], seed=2), False),
    "per_batch_censored_final": (
        dict(B=3, T=6, K=2, Dm=4, final=True, per_batch=True, lengths=[5, 6, 3], seed=3),
        True,
    ),
    "self_transitions": (dict(B=2, T=7, K=2, Dm=4, zero_diag=False, seed=4), False),
    "left_to_right": (
        dict(B=3, T=7, K=3, Dm=3, topology="left_to_right", final=True, lengths=[7, 5, 3], seed=5),
        False,
    ),
    "left_to_right_censored": (
        dict(B=3, T=7, K=3, Dm=4, topology="left_to_right", final=True, lengths=[7, 4, 3], seed=6),
        True,
    ),
    "max_duration_over_T": (dict(B=2, T=5, K=2, Dm=9, lengths=[5, 3], seed=7), False),
    "max_duration_over_T_censored": (dict(B=2, T=5, K=2, Dm=9, lengths=[5, 2], seed=8), True),
}


def ref_problem(name):
    kw, rc = REF_CASES[name]
    return rand_problem(**kw), rc


@pytest.mark.parametrize(
    "name", ["ergodic_censored", "per_batch_censored_final", "left_to_right", "self_transitions"]
)
def test_references_agree(name):
    """Brute force == expanded HMM (through the HMM engine), both engine backends."""
    args, rc = ref_problem(name)
    ref = bf(args, rc)
    for backend in ENGINE_BACKENDS:
        ex = expanded_reference(
            args["log_emissions"],
            args["log_initial"],
            args["log_transitions"],
            args["log_durations"],
            args["lengths"],
            args["log_final"],
            rc,
            backend,
        )
        for key in ("ll", "post", "init", "trans"):
            close(ex[key], ref[key], 1e-10, f"{key} {backend}")
        if not rc:
            close(ex["dur"], ref["dur"], 1e-10, f"dur {backend}")
            close(ex["score"], ref["score"], 1e-10, f"score {backend}")
            np.testing.assert_array_equal(ex["path"].numpy(), ref["path"])
            for a, b in zip(ex["segments"], ref["segments"]):
                np.testing.assert_array_equal(a, b)
    # the brute force's own bookkeeping: posteriors sum to one on real frames, every
    # segment but the first follows a transition, the duration counts sum to the segments
    B, T = args["log_emissions"].shape[:2]
    L = args["lengths"] if args["lengths"] is not None else [T] * B
    for b, n in enumerate(L):
        np.testing.assert_allclose(ref["post"][b, :n].sum(-1), 1.0, atol=1e-12)
        np.testing.assert_allclose(ref["init"][b].sum(), 1.0, atol=1e-12)
        np.testing.assert_allclose(ref["dur"][b].sum(), ref["trans"][b].sum() + 1, atol=1e-12)
        np.testing.assert_allclose(
            (ref["dur"][b] * np.arange(1, ref["dur"].shape[-1] + 1)).sum(), n, atol=1e-10
        )


def test_brute_force_by_hand():
    """One state, durations {1: 0.25, 2: 0.75}, three frames: segmentations 1+1+1, 1+2, 2+1."""
    lb = torch.tensor([[[0.1], [-0.2], [0.3]]], dtype=F64)
    ldur = torch.tensor([[0.25, 0.75]], dtype=F64).log()
    lA = torch.zeros(1, 1, dtype=F64)
    lpi = torch.zeros(1, dtype=F64)
    r = brute_force(lb, lpi, lA, ldur)
    want = 0.25**3 + 2 * 0.25 * 0.75
    assert r["ll"][0] == pytest.approx(math.log(want) + 0.2, abs=1e-14)
    np.testing.assert_allclose(
        r["dur"][0, 0], [(3 * 0.25**3 + 2 * 0.25 * 0.75) / want, 2 * 0.25 * 0.75 / want], atol=1e-14
    )
    # censored: the last segment may be cut: 1+1+(>=1), 1+(>=2), 2+(>=1), (>=3) impossible
    rc = brute_force(lb, lpi, lA, ldur, right_censored=True)
    want_c = 0.25 * 0.25 * 1.0 + 0.25 * 0.75 + 0.75 * 1.0
    assert rc["ll"][0] == pytest.approx(math.log(want_c) + 0.2, abs=1e-14)
    assert rc["segments"][0].tolist() == [[0, 0, 2], [0, 2, 1]]


def geometric(a, Dm, dtype=F64):
    """log p(d) = log((1 - a) a^(d-1)), d = 1..Dm, renormalised (left-over mass < 1e-12)."""
    a = torch.as_tensor(a, dtype=F64)
    d = torch.arange(1, Dm + 1, dtype=F64)
    assert bool((a**Dm < 1e-12).all())
    p = (1 - a).unsqueeze(-1) * a.unsqueeze(-1) ** (d - 1)
    return (p / p.sum(-1, keepdim=True)).log().to(dtype)


def geometric_hmm(lpi, lA, a, lf, right_censored):
    """The plain HMM of an HSMM with geometric durations and a zero-diagonal ``lA``:
    self-loop a_j, j -> k: (1 - a_j) A[j, k]; without censoring a sequence ends by leaving
    its last state (final score log(1 - a_k))."""
    a = torch.as_tensor(a, dtype=F64)
    K = a.shape[0]
    eye = torch.eye(K, dtype=torch.bool)
    T = torch.where(eye, a.log().expand(K, K), torch.log1p(-a).unsqueeze(-1) + lA)
    fin = torch.zeros(K, dtype=F64) if lf is None else lf
    if not right_censored:
        fin = fin + torch.log1p(-a)
    return lpi, T, fin


@pytest.mark.parametrize("right_censored", [False, True])
def test_geometric_reference_against_brute_force(right_censored):
    a = [0.2, 0.45, 0.6]
    Dm = 60
    args = rand_problem(2, 6, 3, 4, seed=11, final=True, lengths=[6, 4])
    args["log_durations"] = geometric(a, Dm)
    ref = bf(args, right_censored)
    lpi, T, fin = geometric_hmm(
        args["log_initial"], args["log_transitions"], a, args["log_final"], right_censored
    )
    ll = core.log_likelihood(
        args["log_emissions"], lpi, T, args["lengths"], log_final=fin, backend="torch"
    )
    close(ll, ref["ll"], 1e-10)


# ------------------------------------------------------------------------------------------
# the implementation against the brute force


def _with_impossible_frames(seed):
    """-inf emissions (impossible frames for some states; the prefix-sum trap), moderate
    outliers, and one sequence (the last) with a frame no state can emit."""
    args = rand_problem(3, 7, 3, 3, seed=seed, final=True, lengths=[7, 6, 5])
    lb = args["log_emissions"].clone()
    g = _gen(seed + 100)
    hole = torch.rand(lb.shape, generator=g) < 0.3
    hole[:, :, 0] &= ~hole[:, :, 1]  # (some frames lose two states, none all three)
    hole[:, :, 2] &= ~(hole[:, :, 0] & hole[:, :, 1])
    lb = lb.masked_fill(hole, NEG)
    lb[0, 3, 1] = -40.0
    lb[1, 0] = torch.tensor([NEG, 0.5, NEG], dtype=F64)  # only state 1 may start
    lb[2, 2] = NEG  # sequence 2: nothing can emit frame 2
    lb[0, 6:] = NEG  # (padding of nothing: sequence 0 is full length; its last frame)
    lb[0, 6, 2] = 0.0
    args["log_emissions"] = lb
    return args


BF_CASES = list(REF_CASES) + ["impossible_frames", "impossible_frames_censored", "duration_holes"]


@functools.cache
def bf_case(name):
    """(args, right_censored, brute-force results) of a named tiny case (computed once)."""
    if name.startswith("impossible_frames"):
        args, rc = _with_impossible_frames(20), name.endswith("censored")
    elif name == "duration_holes":
        # durations with structural zeros: state 0 never lasts 1 frame, state 1 never 2
        args, rc = rand_problem(2, 7, 2, 4, seed=21, lengths=[7, 6]), False
        ld = args["log_durations"].clone()
        ld[0, 0] = NEG
        ld[1, 1] = NEG
        args["log_durations"] = ld
    else:
        args, rc = ref_problem(name)
    return args, rc, bf(args, rc)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", BF_CASES)
def test_matches_brute_force(name, backend):
    args, rc, ref = bf_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on_impossible="ignore": no warning, even at -inf
        ll, p, v = check_against(ref, args, backend, rc)
    for x in (ll, p.state_posteriors, p.transition_counts, p.duration_counts, v.score):
        assert not torch.isnan(x).any()
    assert ll.dtype == F64 and p.state_posteriors.shape == args["log_emissions"].shape
    assert p.duration_counts.shape == (ll.shape[0], *args["log_durations"].shape[-2:])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "name",
    [
        "ergodic_final",
        "per_batch_censored_final",
        "left_to_right_censored",
        "impossible_frames_censored",
        "duration_holes",
    ],
)
def test_gradients_are_expected_counts(name, backend):
    """d ll / d inputs: emissions -> state posteriors, initial -> initial counts,
    transitions -> transition counts, durations -> duration counts (censored: the last
    segment spread over the durations >= its length), final -> last state posterior; the
    impossible sequence (if any) contributes nothing and nothing is NaN."""
    args, rc, ref = bf_case(name)
    leaves = {
        k: v.detach().clone().requires_grad_()
        for k, v in args.items()
        if torch.is_tensor(v) and v.is_floating_point()
    }
    a = dict(args, **leaves)
    ll = call(sm.hsmm_log_likelihood, a, backend, rc)
    close(ll, ref["ll"], 1e-10)
    ll[torch.isfinite(ll)].sum().backward()
    g = {k: v.grad for k, v in leaves.items()}
    for k, v in g.items():
        assert v is not None and not torch.isnan(v).any(), k
    ok = np.isfinite(ref["ll"])

    def summed(x, like):  # shared parameters get the batch's sum
        x = x * ok.reshape(-1, *([1] * (x.ndim - 1)))
        return x if like.dim() == x.ndim else x.sum(0)

    close(g["log_emissions"], ref["post"], 1e-10, "emissions")
    close(g["log_initial"], summed(ref["init"], args["log_initial"]), 1e-10, "initial")
    close(g["log_transitions"], summed(ref["trans"], args["log_transitions"]), 1e-10, "trans")
    close(g["log_durations"], summed(ref["dur_grad"], args["log_durations"]), 1e-10, "dur")
    if "log_final" in g:
        close(g["log_final"], summed(ref["final"], args["log_final"]), 1e-10, "final")
    if not rc:  # the counts hsmm_posteriors returns are these gradients
        p = call(sm.hsmm_posteriors, args, backend, rc, on_impossible="ignore")
        close(
            g["log_durations"],
            summed(p.duration_counts.numpy(), args["log_durations"]),
            1e-10,
            "duration_counts",
        )
        close(g["log_emissions"], p.state_posteriors, 1e-10, "state_posteriors")


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    """torch.autograd.gradcheck in float64 (unnormalised random scores: the engine must not
    assume normalisation) w.r.t. emissions, initial, transitions, durations and final."""
    g = _gen(30)
    B, T, K, Dm = 2, 5, 2, 3
    lb = torch.randn(B, T, K, generator=g, dtype=F64)
    lpi = torch.randn(K, generator=g, dtype=F64)
    lA = torch.randn(K, K, generator=g, dtype=F64)
    ld = torch.randn(K, Dm, generator=g, dtype=F64)
    lf = torch.randn(B, K, generator=g, dtype=F64)
    lengths = torch.tensor([5, 3])
    ins = tuple(x.requires_grad_() for x in (lb, lpi, lA, ld, lf))
    for rc in (False, True):

        def f(lb, lpi, lA, ld, lf, rc=rc):
            return sm.hsmm_log_likelihood(
                lb, lpi, lA, ld, lengths, log_final=lf, right_censored=rc, backend=backend
            )

        assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------
# medium sizes: the expanded HMM


@functools.cache
def medium_case(rc):
    args = rand_problem(3, 40, 4, 6, seed=40 + rc, final=True, lengths=[40, 23, 31])
    ex = expanded_reference(
        args["log_emissions"],
        args["log_initial"],
        args["log_transitions"],
        args["log_durations"],
        args["lengths"],
        args["log_final"],
        rc,
    )
    return args, ex


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("right_censored", [False, True])
def test_matches_expanded_hmm(right_censored, backend):
    args, ex = medium_case(right_censored)
    rc = right_censored
    ll = call(sm.hsmm_log_likelihood, args, backend, rc)
    p = call(sm.hsmm_posteriors, args, backend, rc)
    v = call(sm.hsmm_viterbi, args, backend, rc)
    close(ll, ex["ll"], 1e-9, "log_likelihood")
    close(p.state_posteriors, ex["post"], 1e-9, "state_posteriors")
    close(p.initial_counts, ex["init"], 1e-9, "initial_counts")
    close(p.transition_counts, ex["trans"], 1e-9, "transition_counts")
    assert bool(v.valid.all())
    if not rc:
        close(p.duration_counts, ex["dur"], 1e-9, "duration_counts")
        close(v.score, ex["score"], 1e-9, "viterbi score")
        np.testing.assert_array_equal(v.path.numpy(), ex["path"].numpy())
        for got, want in zip(v.segments, ex["segments"]):
            np.testing.assert_array_equal(got.numpy(), want)
    else:  # the best censored segmentation scores at least its best uncensored reading
        assert bool((v.score >= ex["score"] - 1e-9).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("right_censored", [False, True])
def test_geometric_durations_are_the_hmm(right_censored, backend):
    """Geometric durations (1 - a) a^(d-1) and a zero diagonal == the HMM with self-loops a_j
    and j -> k = (1 - a_j) A[j, k] (core.log_likelihood / posteriors / viterbi)."""
    a = [0.2, 0.45, 0.6]
    args = rand_problem(3, 30, 3, 4, seed=50, final=True, lengths=[30, 17, 24])
    args["log_durations"] = geometric(a, 60)
    lpi, T, fin = geometric_hmm(
        args["log_initial"], args["log_transitions"], a, args["log_final"], right_censored
    )
    lb, lengths = args["log_emissions"], args["lengths"]
    kw = dict(log_final=fin, backend="torch")
    hp = core.posteriors(lb, lpi, T, lengths, **kw)
    hv = core.viterbi(lb, lpi, T, lengths, **kw)
    ll = call(sm.hsmm_log_likelihood, args, backend, right_censored)
    p = call(sm.hsmm_posteriors, args, backend, right_censored)
    v = call(sm.hsmm_viterbi, args, backend, right_censored)
    close(ll, hp.log_likelihood, 1e-9, "log_likelihood")
    close(p.state_posteriors, hp.state_posteriors, 1e-9, "state_posteriors")
    close(v.score, hv.score, 1e-9, "viterbi score")
    np.testing.assert_array_equal(v.path.numpy(), hv.path.numpy())
    # HSMM transitions are the HMM's moves between different states
    off = ~torch.eye(3, dtype=torch.bool)
    close(p.transition_counts * off, hp.transition_counts * off, 1e-9, "transition_counts")


# ------------------------------------------------------------------------------------------
# batches, long sequences, impossible sequences


@pytest.mark.parametrize("backend", BACKENDS)
def test_padded_batch_equals_each_alone(backend):
    args = rand_problem(4, 16, 3, 5, seed=60, final=True, lengths=[16, 1, 9, 13])
    lb = args["log_emissions"].clone()
    for b, n in enumerate(args["lengths"].tolist()):  # padding holds junk, never read
        lb[b, n:] = torch.linspace(-1e4, 1e4, 16 - n, dtype=F64).unsqueeze(-1)
        if n < 15:
            lb[b, n + 1, 0] = NEG
    args["log_emissions"] = lb
    for rc in (False, True):
        ll = call(sm.hsmm_log_likelihood, args, backend, rc)
        p = call(sm.hsmm_posteriors, args, backend, rc)
        v = call(sm.hsmm_viterbi, args, backend, rc)
        for b, n in enumerate(args["lengths"].tolist()):
            one = dict(args, log_emissions=lb[b : b + 1, :n], lengths=None)
            l1 = call(sm.hsmm_log_likelihood, one, backend, rc)
            p1 = call(sm.hsmm_posteriors, one, backend, rc)
            v1 = call(sm.hsmm_viterbi, one, backend, rc)
            close(ll[b], l1[0], 1e-10)
            close(p.state_posteriors[b, :n], p1.state_posteriors[0], 1e-10)
            assert bool((p.state_posteriors[b, n:] == 0).all())
            for f in ("initial_counts", "transition_counts", "duration_counts"):
                close(getattr(p, f)[b], getattr(p1, f)[0], 1e-10, f)
            close(v.score[b], v1.score[0], 1e-10)
            assert v.path[b, :n].tolist() == v1.path[0].tolist()
            assert bool((v.path[b, n:] == -1).all())
            assert v.segments[b].tolist() == v1.segments[0].tolist()


@functools.cache
def long_case(topology):
    """T=5000, B=8, K=5, Dm=20 float64 inputs and their log-likelihood (compiled kernels).
    A strictly left-to-right chain of 5 states lasting at most 20 frames covers at most 100
    frames, so the long chains are the cyclic left-to-right one (0 -> 1 -> .. -> 4 -> 0) and
    an ergodic one (zero diagonal)."""
    B, T, K, Dm = 8, 5000, 5, 20
    g = _gen(70)
    lengths = torch.randint(4000, T + 1, (B,), generator=g)
    lengths[0] = T
    means = torch.arange(K, dtype=F64) * 1.5
    states = torch.randint(0, K, (B, T), generator=g)
    x = means[states] + torch.randn(B, T, generator=g, dtype=F64)
    lb = -0.5 * (x.unsqueeze(-1) - means) ** 2 - 0.5 * math.log(2 * math.pi)
    if topology == "cyclic":
        lA = torch.full((K, K), NEG, dtype=F64)
        for k in range(K):
            lA[k, (k + 1) % K] = 0.0
        lpi = torch.full((K,), NEG, dtype=F64)
        lpi[0] = 0.0
    else:
        eye = torch.eye(K, dtype=torch.bool)
        lA = torch.log_softmax(torch.randn(K, K, generator=g, dtype=F64).masked_fill(eye, NEG), -1)
        lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=F64), -1)
    ld = torch.log_softmax(torch.randn(K, Dm, generator=g, dtype=F64), -1)
    args = (lb, lpi, lA, ld)
    ref = sm.hsmm_log_likelihood(*args, lengths, backend="numba")
    assert bool(torch.isfinite(ref).all())
    return args, lengths, ref


@pytest.mark.parametrize(
    ("backend", "topology"), [("numba", "cyclic"), ("numba", "ergodic"), ("torch", "cyclic")]
)
def test_long_float32_sequences(backend, topology):
    """T=5000, B=8, K=5, Dm=20 in float32: finite and within 1e-4 (relative) of float64;
    gradients (the state posteriors) sum to one on every real frame (the torch backend's
    5000-frame loops: forward only, to keep the file fast)."""
    args, lengths, ref = long_case(topology)
    T = args[0].shape[1]
    f32 = [t.float() for t in args]
    f32[0].requires_grad_(backend == "numba")
    ll = sm.hsmm_log_likelihood(*f32, lengths, backend=backend)
    assert ll.dtype == torch.float32 and bool(torch.isfinite(ll).all())
    np.testing.assert_allclose(ll.detach().double().numpy(), ref.numpy(), rtol=1e-4)
    if backend != "numba":
        return
    ll.sum().backward()
    gsum = f32[0].grad.double().sum(-1)  # state posteriors: 1 on real frames, 0 on padding
    mask = torch.arange(T) < lengths.unsqueeze(1)
    assert bool(torch.isfinite(f32[0].grad).all())
    np.testing.assert_allclose(gsum[mask].numpy(), 1.0, atol=1e-4)
    assert bool((gsum[~mask] == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_short_for_left_to_right(backend):
    """Five left-to-right states that must all be visited: 3 frames is impossible. That
    sequence gets -inf, valid False, path -1; the others are unaffected, gradients clean."""
    args = rand_problem(
        4, 9, 5, 3, seed=80, topology="left_to_right", final=True, lengths=[3, 9, 6, 5]
    )
    lb = args["log_emissions"].clone().requires_grad_()
    a = dict(args, log_emissions=lb)
    with pytest.raises(core.NoValidPathError):
        call(sm.hsmm_log_likelihood, a, backend, on_impossible="raise")
    with pytest.warns(RuntimeWarning):
        call(sm.hsmm_log_likelihood, a, backend, on_impossible="warn")
    ll = call(sm.hsmm_log_likelihood, a, backend)  # default: ignore
    assert ll[0].item() == NEG and bool(torch.isfinite(ll[1:]).all())
    ll[1:].sum().backward()
    assert not torch.isnan(lb.grad).any() and bool((lb.grad[0] == 0).all())
    with pytest.warns(RuntimeWarning):
        p = call(sm.hsmm_posteriors, args, backend)
    with pytest.warns(RuntimeWarning):
        v = call(sm.hsmm_viterbi, args, backend)
    assert v.valid.tolist() == [False, True, True, True]
    assert bool((v.path[0] == -1).all()) and v.segments[0].numel() == 0
    assert v.score[0].item() == NEG
    assert bool((p.state_posteriors[0] == 0).all()) and bool((p.duration_counts[0] == 0).all())
    assert not torch.isnan(p.state_posteriors).any()
    for b in (1, 2, 3):
        n = int(args["lengths"][b])
        one = dict(args, log_emissions=args["log_emissions"][b : b + 1, :n], lengths=None)
        close(ll[b], call(sm.hsmm_log_likelihood, one, backend)[0], 1e-10)
        v1 = call(sm.hsmm_viterbi, one, backend)
        assert v.path[b, :n].tolist() == v1.path[0].tolist()
        segs = v.segments[b].tolist()
        assert [s[0] for s in segs] == [0, 1, 2, 3, 4]  # every state, in order
        # and the brute force agrees on the shortest possible one (5 frames, 5 states)
    r = brute_force_one(
        args["log_emissions"][3, :5].numpy(),
        args["log_initial"].numpy(),
        args["log_transitions"].numpy(),
        args["log_durations"].numpy(),
        args["log_final"].numpy(),
    )
    close(ll[3], r["ll"], 1e-10)


def test_backends_agree_and_exports():
    import pytorch_hmm

    for name in ("hsmm_log_likelihood", "hsmm_posteriors", "hsmm_viterbi"):
        assert getattr(core, name) is getattr(sm, name)
    assert core.HSMMPosteriorResult is sm.HSMMPosteriorResult
    assert core.HSMMViterbiResult is sm.HSMMViterbiResult
    from pytorch_hmm.models.hsmm import HSMM

    assert pytorch_hmm.HSMM is HSMM
    args = rand_problem(2, 30, 3, 5, seed=90, lengths=[30, 11])
    a = call(sm.hsmm_posteriors, args, "numba")
    b = call(sm.hsmm_posteriors, args, "torch")
    for x, y in zip(a, b):
        close(x, y, 1e-10)


def test_bad_core_inputs():
    args = rand_problem(2, 6, 3, 4, seed=91)
    with pytest.raises(ValueError, match="log_durations"):
        call(sm.hsmm_log_likelihood, dict(args, log_durations=args["log_durations"][:2]), None)
    nan = args["log_durations"].clone()
    nan[0, 1] = math.nan
    with pytest.raises(ValueError, match="log_durations"):
        call(sm.hsmm_log_likelihood, dict(args, log_durations=nan), None)
    with pytest.raises(ValueError, match="log_transitions"):
        call(sm.hsmm_log_likelihood, dict(args, log_transitions=args["log_transitions"][:2]), None)
    with pytest.raises(ValueError, match="on_impossible"):
        call(sm.hsmm_log_likelihood, args, None, on_impossible="maybe")
    with pytest.raises(ValueError, match="backend"):
        call(sm.hsmm_log_likelihood, args, "cuda-ish")


# ------------------------------------------------------------------------------------------
# the model


def _HSMM(*args, **kw):
    from pytorch_hmm.models.hsmm import HSMM

    return HSMM(*args, **kw)


def _random_model(
    topology="ergodic", duration="nonparametric", right_censored=False, K=3, D=2, Dm=6, seed=0
):
    rng = np.random.default_rng(seed)
    m = _HSMM(
        K, D, Dm, duration=duration, topology=topology, right_censored=right_censored, dtype=F64
    )
    if topology == "ergodic":
        m.set_startprob(rng.dirichlet(np.ones(K)))
        A = rng.dirichlet(np.ones(K - 1), size=K)
        m.set_transmat(np.stack([np.insert(A[k], k, 0.0) for k in range(K)]))
    m.set_durations(rng.dirichlet(np.ones(Dm) * 2, size=K))
    m.set_means(rng.normal(size=(K, D)) * 2)
    m.set_covars(rng.uniform(0.5, 2.0, size=(K, D)))
    return m


def diag_gaussian(x, means, covars):
    """log N(x_t; mu_k, diag(var_k)) written out: (B, T, D) -> (B, T, K)."""
    diff = x.unsqueeze(2) - means
    return -0.5 * ((diff**2 / covars).sum(-1) + torch.log(2 * math.pi * covars).sum(-1))


@pytest.mark.parametrize("topology", ["ergodic", "left_to_right"])
@pytest.mark.parametrize("right_censored", [False, True])
def test_model_log_likelihood_is_the_core(topology, right_censored):
    m = _random_model(topology, right_censored=right_censored, seed=1)
    g = _gen(101)
    x = torch.randn(3, 14, 2, generator=g, dtype=F64) * 2
    lengths = torch.tensor([14, 9, 5])
    lb = m.emission_log_likelihood(x)
    close(lb, diag_gaussian(x, m.means, m.covars), 1e-10, "emission_log_likelihood")
    K = 3
    if topology == "left_to_right":  # the structure: start in 0, k -> k+1, end in K-1
        assert m.log_initial().tolist() == [0.0, NEG, NEG]
        assert torch.isfinite(m.log_transitions()).tolist() == [
            [False, True, False],
            [False, False, True],
            [False, False, False],
        ]
        assert m.log_final().tolist() == [NEG, NEG, 0.0]
    else:
        assert bool(torch.isinf(m.log_transitions().diagonal()).all())  # zero diagonal
        close(m.log_transitions().exp().sum(-1), np.ones(K), 1e-12)
    close(m.log_durations().exp().sum(-1), np.ones(K), 1e-12, "durations sum to one")
    assert m.log_durations().shape == (K, 6)
    want = sm.hsmm_log_likelihood(
        lb,
        m.log_initial(),
        m.log_transitions(),
        m.log_durations(),
        lengths,
        right_censored=right_censored,
        log_final=m.log_final(),
    )
    ll = m.log_likelihood(x, lengths)
    close(ll, want, 1e-10, "log_likelihood")
    close(m(x, lengths), want, 1e-10, "forward")
    assert m.score(x, lengths) == pytest.approx(float(want.detach().sum()), abs=1e-9)
    # and the brute force on the model's own numbers for the shortest sequence
    r = brute_force_one(
        lb[2, :5].detach().numpy(),
        m.log_initial().detach().numpy(),
        m.log_transitions().detach().numpy(),
        m.log_durations().detach().numpy(),
        m.log_final().detach().numpy(),
        right_censored,
    )
    close(ll[2], r["ll"], 1e-10, "brute force")
    # posteriors / viterbi go through the same inputs
    p = m.posteriors(x, lengths)
    close(p.state_posteriors[2, :5], r["post"], 1e-10, "posteriors")
    v = m.viterbi(x, lengths)
    close(v.score[2], r["best"][0], 1e-10, "viterbi")
    score, path = m.decode(x, lengths)
    assert torch.equal(path, v.path) and torch.equal(m.predict(x, lengths), v.path)
    close(score, v.score, 0.0)
    # gradient training: every trainable parameter gets a finite gradient
    ll.sum().backward()
    for name, prm in m.named_parameters():
        if prm.requires_grad:
            assert prm.grad is not None and bool(torch.isfinite(prm.grad).all()), name


@pytest.mark.parametrize("duration", ["nonparametric", "gamma"])
def test_model_state_dict_round_trip(duration):
    m = _random_model("ergodic", duration=duration, seed=2)
    fresh = _HSMM(3, 2, 6, duration=duration, topology="ergodic", dtype=F64)
    x = torch.randn(2, 10, 2, generator=_gen(102), dtype=F64)
    assert not torch.allclose(fresh.log_likelihood(x), m.log_likelihood(x))
    fresh.load_state_dict(m.state_dict())
    close(fresh.log_likelihood(x), m.log_likelihood(x), 0.0)
    close(fresh.log_durations(), m.log_durations(), 0.0)


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_model_bad_input():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_duration"):
            _HSMM(3, 2, bad)
    for duration in ("nonparametric", "poisson"):
        m = _random_model("left_to_right", duration=duration, seed=3)
        before = _state(m)
        ok = np.full((3, 6), 1 / 6)
        neg = ok.copy()
        neg[1, 2], neg[1, 3] = -0.1, 1 / 6 + 0.1
        nan = ok.copy()
        nan[0, 0] = math.nan
        for bad in (neg, nan, np.full((3, 7), 1 / 7), np.full((2, 6), 1 / 6), ok[0]):
            with pytest.raises(ValueError, match="durations"):
                m.set_durations(bad)
            _same_state(before, _state(m))
        m.set_durations(ok)  # and the good one does change it
        if duration == "nonparametric":
            close(m.log_durations().exp(), ok, 1e-12)


@functools.cache
def em_data(seed=3, n=30):
    """Sequences from a known left-to-right HSMM: K=3 states, 2-d features with means far
    apart (sd 0.5), durations 1 + Poisson(m - 1) for m = 4, 7, 5 frames. Returns padded
    x (N, T, 2), lengths (N,), the true segment durations (N, 3) and the means."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 3.0]])
    durs = 1 + rng.poisson(np.array([4, 7, 5]) - 1, size=(n, 3))
    durs = np.minimum(durs, 16)
    lengths = durs.sum(1)
    T = int(lengths.max())
    x = np.zeros((n, T, 2))
    for i in range(n):
        z = np.repeat(np.arange(3), durs[i])
        x[i, : lengths[i]] = means[z] + 0.5 * rng.normal(size=(lengths[i], 2))
    return torch.tensor(x), torch.tensor(lengths), durs, means


def test_model_em_recovers_left_to_right():
    x, lengths, durs, means = em_data()
    assert np.abs(durs.mean(0) - [4, 7, 5]).max() < 0.3  # (a sample close to its law)
    m = _HSMM(3, 2, 16, topology="left_to_right", dtype=F64)
    m.fit(x, lengths, n_iter=25, tol=1e-6)
    hist = np.array(m.log_likelihood_history, dtype=np.float64)
    assert len(hist) >= 3 and np.isfinite(hist).all()
    assert (np.diff(hist) >= -1e-6 * np.abs(hist[:-1])).all(), hist
    # durations: the data's own mean durations (what a perfect segmentation gives) and the
    # generating means 4, 7, 5
    got = m.expected_durations().double().numpy()
    np.testing.assert_allclose(got, durs.mean(0), atol=0.5)
    np.testing.assert_allclose(got, [4, 7, 5], atol=0.5)
    np.testing.assert_allclose(m.means.detach().double().numpy(), means, atol=0.2)
    # and the segmentation found is the true one on (nearly) every sequence
    v = m.viterbi(x, lengths)
    found = np.array([s[:, 2].tolist() for s in v.segments])
    assert (np.abs(found - durs) <= 1).mean() > 0.9


def test_model_em_right_censored_never_decreases():
    """EM with right_censored=True on sequences cut short: the likelihood must still never
    decrease (the E-step's duration statistics of the cut segment must be those of
    log P(D >= d), i.e. d ll / d log_durations, not the cut length itself)."""
    x, lengths, _, _ = em_data()
    cut = (lengths - torch.arange(30) % 5).clamp(min=4)
    m = _HSMM(3, 2, 16, topology="left_to_right", right_censored=True, dtype=F64)
    m.fit(x, cut, n_iter=15, tol=0.0)
    hist = np.array(m.log_likelihood_history, dtype=np.float64)
    assert np.isfinite(hist).all()
    assert (np.diff(hist) >= -1e-6 * np.abs(hist[:-1])).all(), np.diff(hist)


@pytest.mark.parametrize("duration", ["nonparametric", "poisson", "gaussian", "gamma"])
def test_duration_families_fit(duration):
    x, lengths, _, _ = em_data()
    m = _HSMM(3, 2, 12, duration=duration, topology="left_to_right", dtype=F64)
    close(m.log_durations().exp().sum(-1), np.ones(3), 1e-10)
    # set_durations: a table peaked at 5 frames (parametric: moment fit of it)
    d = np.arange(1, 13)
    table = np.exp(-0.5 * (d - 5.0) ** 2)
    m.set_durations(np.tile(table / table.sum(), (3, 1)))
    np.testing.assert_allclose(m.expected_durations().numpy(), 5.0, atol=0.5)
    m.fit(x, lengths, n_iter=1)
    ld = m.log_durations()
    assert ld.shape == (3, 12) and not torch.isnan(ld).any()
    close(ld.exp().sum(-1), np.ones(3), 1e-10, "durations sum to one")
    assert len(m.log_likelihood_history) == 1 and np.isfinite(m.log_likelihood_history[0])
    assert bool(torch.isfinite(m.log_likelihood(x, lengths)).all())


def test_model_viterbi_segments_and_sampling():
    m = _random_model("left_to_right", Dm=5, seed=4)
    g = torch.Generator().manual_seed(5)
    x, z, L = m.sample(num_sequences=6, generator=g)
    assert x.shape[:2] == z.shape and x.shape[2] == 2 and L.shape == (6,)
    for b in range(6):
        n = int(L[b])
        zb = z[b, :n]
        assert bool((z[b, n:] == -1).all()) and 3 <= n <= 15
        assert torch.unique_consecutive(zb).tolist() == [0, 1, 2]  # each state once, in order
    ergodic = _random_model("ergodic", Dm=5, seed=6)
    xe, ze, Le = ergodic.sample(n_frames=20, num_sequences=3, generator=g)
    assert xe.shape == (3, 20, 2) and Le.tolist() == [20, 20, 20]
    x1, z1 = ergodic.sample(n_frames=9, generator=g)
    assert x1.shape == (9, 2) and z1.shape == (9,)
    for model, xx, ll in ((m, x, L), (ergodic, xe, Le)):
        v = model.viterbi(xx, ll)
        ref = sm.hsmm_viterbi(
            model.emission_log_likelihood(xx),
            model.log_initial(),
            model.log_transitions(),
            model.log_durations(),
            ll,
            log_final=model.log_final(),
        )
        close(v.score, ref.score, 1e-10)
        assert bool(v.valid.all())
        for b in range(xx.shape[0]):
            n = int(ll[b])
            segs = v.segments[b].tolist()
            assert segs[0][1] == 0
            pos = 0
            for k, s, d in segs:
                assert s == pos and 1 <= d <= 5
                assert v.path[b, s : s + d].tolist() == [k] * d
                pos += d
            assert pos == n and bool((v.path[b, n:] == -1).all())
            assert all(a[0] != b_[0] for a, b_ in zip(segs, segs[1:]))  # zero diagonal
    gen = m.generate_sequence([2, 3, 1])
    assert gen.shape == (6, 2)
    close(gen, m.means[[0, 0, 1, 1, 1, 2]], 1e-12)
    assert m.generate_sequence().shape[0] == int((m.durations.argmax(-1) + 1).sum())
