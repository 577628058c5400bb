"""HSMM benchmark: pytorch_hmm.HSMM against the same model expanded into an HMM of K*Dm states
(run through our own engine) and against ChadHMM's GaussianHSMM.

Run (repository root):
    .venv/bin/python benchmarks/bench_hsmm.py --chad-python /work/venv-chad/bin/python
        [--threads 1] [--repeats 3] [--quick] [--no-peers] [--chad-threads 1] [--budget-s 30]

(``--threads 1`` on a machine whose cores other processes share: with 2 threads every
parallel step waits for a thread that is not running, measured 5-30x slower beside a busy
process, for ours, the expansion and ChadHMM alike.)

Workload: K=10 states, max_duration Dm=20, D=80 features (diagonal Gaussians), B=16
sequences, nonparametric durations, not right-censored, every parameter set explicitly from
a fixed seed, data drawn by ``HSMM.sample``. Three models:

- "l2r": ``topology="left_to_right"`` (each state once from state 0, ending in state K-1):
  its sequences last at most K*Dm = 200 frames, so they keep their sampled lengths (padded);
- "loop": state k -> k+1 and the last back to the first, through ``topology="ergodic"``
  with that transmat (the model's left-to-right allows no loop), T in {500, 2000};
- "ergodic": any k -> j != k, T in {500, 2000}.

Rows: log-likelihood, Viterbi and one EM iteration (E-step and M-step), each timed end to
end from the features (emissions included), float32 (the model's default):

- ours: the public ``pytorch_hmm.HSMM`` API (``log_likelihood``, ``viterbi``, ``fit`` with
  ``n_iter=1, init_params=""``);
- expanded: the HSMM written as an HMM over states (k, r) = "in state k with r frames left,
  this one included" (entry pi[k] p_k(r); (k, r) -> (k, r-1) with probability 1;
  (k, 1) -> (j, r') with A[k, j] p_j(r'); it must end in some (k, 1)), tied emissions
  (``emission_index`` (k, r) -> k) and ``log_final``, run by ``core.log_likelihood``,
  ``core.viterbi`` and ``core.posteriors`` (EM: posteriors, counts folded back to the HSMM's,
  the ML M-step). Timed with dense (N x N) transitions and, when a state order gives a band
  narrower than N/2, banded ones (the loop's states are folded, 0, N-1, 1, N-2, ..., so that
  its wrap-around edge stays short); the faster is compared;
- ChadHMM 0.3.10 (``chadhmm.GaussianHSMM``), in its own interpreter (``--chad-python``) as a
  subprocess of this script (parameters and data go through a temporary .npz). Its
  log-likelihood is checked against ours on the same parameters first. It has no HSMM
  Viterbi (``predict(algorithm="viterbi")`` raises NotImplementedError): its MAP decoding
  (argmax of its state posteriors) is timed instead. No batching (Python loops over
  sequences and frames), full covariances only (ours passed as diagonal matrices), float64.
  Its posteriors are not the exact ones (transition posteriors normalised to one at every
  frame, state posteriors rebuilt from them), so its MAP paths and EM updates differ from
  ours and the expanded HMM's, which agree: those rows time what it does.

Prints the agreement checks (max over sequences of |difference| of log-likelihoods, Viterbi
scores, expected counts and EM updates), then per model ms per call (median of ``--repeats``
after a warm-up call that compiles the numba kernels; min-max), the real-time factor at 100
frames/s (seconds of audio, frames/100, per wall second) and the ratio to ours (> 1: ours is
faster). The implementations of an operation take turns repeat by repeat (a burst of load
from other processes then hits them alike); a row stops repeating once it has used
``--budget-s`` seconds; ChadHMM runs
``--peer-repeats`` (1) times. ``--quick``: T=500 only, B=4, 2 repeats. Without chadhmm
importable by ``--chad-python`` (default: this interpreter) its rows are skipped with the
reason. Timings on a shared machine are noisy: rerun and compare.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

NEG_INF = float("-inf")
MIN_COVAR = 1e-3
FPS = 100.0
TOPOLOGIES = {
    "l2r": "left-to-right (topology='left_to_right')",
    "loop": "left-to-right loop (topology='ergodic', loop transmat)",
    "ergodic": "ergodic",
}
# the model stores a structural zero set by set_transmat / set_startprob under the ergodic
# topology as a logit of -1e4 (finite); below this the tables given to the expansion and to
# ChadHMM say -inf (exp underflows to exactly 0 in float64 either way)
ZERO_LOG = -1e3


# ------------------------------------------------------------------------------------------
# timing


def time_calls(fn, repeats, budget_s, setup=None, warmup=None):
    """Wall times (s) of up to ``repeats`` calls of ``fn(state)`` (``state = setup()``, not
    timed), after one untimed ``warmup()`` call; stops early once ``budget_s`` is spent."""
    if warmup is not None:
        warmup()
    ts, out = [], None
    for _ in range(max(1, repeats)):
        state = setup() if setup is not None else None
        t0 = time.perf_counter()
        out = fn(state)
        ts.append(time.perf_counter() - t0)
        if sum(ts) > budget_s:
            break
    return ts, out


def time_interleaved(impls, repeats, budget_s):
    """``[(label, times)]`` for ``impls`` = ``[(label, fn, setup, warmup)]`` (as in
    :func:`time_calls`): all warmed up first, then repeat r of each in turn; an
    implementation stops repeating once it has used ``budget_s``."""
    for _, _, _, warmup in impls:
        if warmup is not None:
            warmup()
    times = [[] for _ in impls]
    for _ in range(max(1, repeats)):
        for (_, fn, setup, _), ts in zip(impls, times):
            if ts and sum(ts) > budget_s:
                continue
            state = setup() if setup is not None else None
            t0 = time.perf_counter()
            fn(state)
            ts.append(time.perf_counter() - t0)
    return [(impl[0], ts) for impl, ts in zip(impls, times)]


# ------------------------------------------------------------------------------------------
# the problem


def make_params(topology, K, Dm, D, seed=0):
    """Explicit float64 parameters: startprob (K,), transmat (K, K) (zero diagonal; "l2r":
    k -> k+1, the last state without successor; "loop": k -> k+1 mod K; "ergodic": random),
    durations (K, Dm) (entry d-1 = p(d frames), every duration possible), means, covars."""
    g = np.random.default_rng(seed)
    if topology in ("l2r", "loop"):
        startprob = np.zeros(K)
        startprob[0] = 1.0
        transmat = np.zeros((K, K))
        nxt = np.arange(K - 1) + 1 if topology == "l2r" else (np.arange(K) + 1) % K
        transmat[np.arange(len(nxt)), nxt] = 1.0
    else:
        startprob = g.dirichlet(np.ones(K))
        transmat = g.dirichlet(np.ones(K), size=K)
        np.fill_diagonal(transmat, 0.0)
        transmat /= transmat.sum(1, keepdims=True)
    d = np.arange(1, Dm + 1)
    mu = g.uniform(3.0, 0.75 * Dm, size=(K, 1))
    sd = g.uniform(1.5, 4.0, size=(K, 1))
    durations = np.exp(-0.5 * ((d - mu) / sd) ** 2) + 1e-3
    durations /= durations.sum(1, keepdims=True)
    means = g.normal(size=(K, D))
    covars = g.uniform(0.5, 2.0, size=(K, D))
    return dict(
        startprob=startprob, transmat=transmat, durations=durations, means=means, covars=covars
    )


# ------------------------------------------------------------------------------------------
# ours: pytorch_hmm.HSMM


def build_ours(params, dtype, topology):
    from pytorch_hmm import HSMM

    K, Dm = params["durations"].shape
    D = params["means"].shape[1]
    # the loop is not a left-to-right model in the model's sense (each state once, ending
    # in the last): "ergodic" takes any zero-diagonal matrix
    topo = "left_to_right" if topology == "l2r" else "ergodic"
    m = HSMM(K, D, Dm, topology=topo, dtype=dtype)
    m.set_startprob(params["startprob"])
    m.set_transmat(params["transmat"])
    m.set_durations(params["durations"])
    m.set_means(params["means"])
    m.set_covars(params["covars"])
    return m


def ours_tables(m):
    """The model's own log tables, float64: what the expansion and ChadHMM are given."""

    def z(t):
        t = t.detach().double()
        return torch.where(t < ZERO_LOG, NEG_INF, t)

    with torch.no_grad():
        lf = z(m.log_final())
        return dict(
            log_initial=z(m.log_initial()),
            log_transitions=z(m.log_transitions()),
            log_durations=m.log_durations().detach().double(),
            log_final=None if bool((lf == 0).all()) else lf,  # None: any state may end
            right_censored=bool(m.right_censored),
        )


def ours_em_iteration(m, x, lengths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a single iteration cannot "converge"
        m.fit(x, lengths, n_iter=1, tol=-math.inf, init_params="")
    return m


# ------------------------------------------------------------------------------------------
# the expanded HMM: state (k, r) = in state k with r frames left, this one included


class Expanded:
    """An HSMM as an HMM over N = K*Dm states for ``core.log_likelihood`` / ``viterbi`` /
    ``posteriors``. Canonical index of (k, r): ``k*Dm + (Dm - r)``, so (k, r) -> (k, r-1)
    is +1 and (k, 1) -> (k+1, r') is +1..+Dm. ``order``: "canonical", or "folded" (position
    2c for c < N/2, 2(N-1-c)+1 above: a ring i -> i+1..Dm (mod N) then spans +-(2Dm+1))."""

    def __init__(self, tables, dtype, kind="dense", order="canonical"):
        lpi = tables["log_initial"]
        lA = tables["log_transitions"]
        ldur = tables["log_durations"]
        lf = tables["log_final"]
        K, Dm = ldur.shape
        N = K * Dm
        self.K, self.Dm, self.N, self.kind, self.order = K, Dm, N, kind, order
        self.dtype = dtype
        r = torch.arange(Dm, 0, -1)  # r at block position q = 0..Dm-1
        dur_q = ldur[:, r - 1]  # (K, Dm): log p_k(r) at position q
        init = (lpi[:, None] + dur_q).reshape(N)
        M = torch.full((N, N), NEG_INF, dtype=torch.float64)
        c = torch.arange(N).view(K, Dm)
        M[c[:, :-1].reshape(-1), c[:, 1:].reshape(-1)] = 0.0  # (k, r) -> (k, r-1)
        ends = c[:, -1]  # (k, 1)
        M[ends[:, None], c.reshape(1, N)] = (lA[:, :, None] + dur_q[None]).reshape(K, N)
        lf_k = torch.zeros(K, dtype=torch.float64) if lf is None else lf
        if tables["right_censored"]:
            final = lf_k[:, None].expand(K, Dm).reshape(N)
        else:
            final = torch.full((K, Dm), NEG_INF, dtype=torch.float64)
            final[:, -1] = lf_k
            final = final.reshape(N)
        if order == "folded":
            cc = torch.arange(N)
            pos = torch.where(cc < (N + 1) // 2, 2 * cc, 2 * (N - 1 - cc) + 1)
        else:
            pos = torch.arange(N)
        perm = torch.empty(N, dtype=torch.long)
        perm[pos] = torch.arange(N)  # perm[position] = canonical index
        self.perm, self.pos = perm, pos
        Mp = M[perm][:, perm]
        self.log_initial = init[perm].to(dtype)
        self.log_final = final[perm].to(dtype)
        self.emission_index = (perm // Dm).contiguous()
        ij = torch.nonzero(torch.isfinite(Mp))
        off = ij[:, 1] - ij[:, 0]
        self.lo, self.hi = min(int(off.min()), 0), max(int(off.max()), 0)
        self.width = self.hi - self.lo + 1
        from pytorch_hmm.core import Transitions

        if kind == "banded":
            slot = torch.arange(self.width)
            dst = torch.arange(N)[:, None] + self.lo + slot[None]
            ok = (dst >= 0) & (dst < N)
            band = torch.full((N, self.width), NEG_INF, dtype=torch.float64)
            band[ok] = Mp[torch.arange(N)[:, None].expand(N, self.width)[ok], dst[ok]]
            self.trans = Transitions.banded(band.to(dtype), lo=self.lo)
        else:
            self.trans = Transitions.dense(Mp.to(dtype))

    def label(self):
        if self.kind == "banded":
            return f"expanded N={self.N} banded W={self.width} ({self.order})"
        return f"expanded N={self.N} dense"

    def _kw(self):
        return dict(
            log_final=self.log_final,
            emission_index=self.emission_index,
            check_stochastic=False,
        )

    def log_likelihood(self, lb, lengths):
        from pytorch_hmm import core

        return core.log_likelihood(lb, self.log_initial, self.trans, lengths, **self._kw())

    def viterbi(self, lb, lengths):
        """(HSMM state path (B, T), -1 on padding / impossible; score (B,))."""
        from pytorch_hmm import core

        v = core.viterbi(lb, self.log_initial, self.trans, lengths, **self._kw())
        path = torch.where(v.path >= 0, self.perm[v.path.clamp(min=0)] // self.Dm, -1)
        return path, v.score

    def counts(self, lb, lengths):
        """Expected HSMM counts from the expanded posteriors: dict of gamma (B, T, K),
        initial (B, K), trans (B, K, K), dur (B, K, Dm) (index d-1), log_likelihood (B,)."""
        from pytorch_hmm import core

        post = core.posteriors(lb, self.log_initial, self.trans, lengths, **self._kw())
        B, T = lb.shape[:2]
        K, Dm, N = self.K, self.Dm, self.N
        sp = post.state_posteriors[..., self.pos]  # canonical order (B, T, N)
        tc = post.transition_counts
        if self.kind == "banded":  # (B, N, W) slots -> dense (B, N, N)
            W = self.width
            dst = (torch.arange(N)[:, None] + self.lo + torch.arange(W)[None]).clamp(0, N - 1)
            dense = torch.zeros(B, N, N, dtype=tc.dtype)
            dense.scatter_add_(2, dst.expand(B, N, W), tc)
            tc = dense
        tc = tc[:, self.pos][:, :, self.pos]  # canonical
        ends = torch.arange(N).view(K, Dm)[:, -1]
        into = tc[:, ends].view(B, K, K, Dm)  # (k, 1) -> (j, position q)
        first = sp[:, 0].view(B, K, Dm)
        dur_q = first + into.sum(1)  # segments entered, by state j and position q = Dm - r
        return dict(
            gamma=sp.view(B, T, K, Dm).sum(-1),
            initial=first.sum(-1),
            trans=into.sum(-1),
            dur=dur_q.flip(-1),
            log_likelihood=post.log_likelihood,
        )


def m_step(x, lengths, c, min_covar=MIN_COVAR):
    """ML updates from expected counts (summed over the batch): startprob, transmat,
    durations, means, diagonal variances (+ min_covar)."""
    dt = torch.float64
    mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).to(dt)
    g = c["gamma"].to(dt) * mask[..., None]
    xf = x.to(dt)
    w = g.sum((0, 1))
    means = torch.einsum("btk,btd->kd", g, xf) / w[:, None]
    ex2 = torch.einsum("btk,btd->kd", g, xf * xf) / w[:, None]

    def norm(a):
        s = a.sum(-1, keepdim=True)
        return torch.where(s > 0, a / s.clamp(min=1e-300), 0.0)

    return dict(
        startprob=norm(c["initial"].to(dt).sum(0)),
        transmat=norm(c["trans"].to(dt).sum(0)),
        durations=norm(c["dur"].to(dt).sum(0)),
        means=means,
        covars=(ex2 - means * means).clamp(min=0) + min_covar,
    )


# ------------------------------------------------------------------------------------------
# ChadHMM worker (runs under --chad-python; needs chadhmm and torch only)


def chad_worker(inp, out):
    from torch.distributions import Categorical, MultivariateNormal

    z = np.load(inp, allow_pickle=False)
    cfg = json.loads(str(z["cfg"]))
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    import chadhmm
    from chadhmm import GaussianHSMM

    lpi = torch.from_numpy(z["log_initial"])
    lA = torch.from_numpy(z["log_transitions"])
    ldur = torch.from_numpy(z["log_durations"])
    lf = torch.from_numpy(z["log_final"]) if "log_final" in z.files else None
    censored = bool(cfg["right_censored"])
    means = torch.from_numpy(z["means"])
    covars = torch.from_numpy(z["covars"])
    x = torch.from_numpy(z["x"])  # (B, T, D) float64
    lengths = [int(v) for v in z["lengths"]]
    K, Dm = ldur.shape
    D = means.shape[1]

    def cat(logits):
        # Categorical renormalises its logits: a row of all -inf (a state without successor)
        # would become NaN, so such rows are put back afterwards
        dead = torch.isinf(logits).all(-1, keepdim=True)
        c = Categorical(logits=torch.where(dead, 0.0, logits))
        c.logits = torch.where(dead, NEG_INF, c.logits)
        return c

    def fresh():
        m = GaussianHSMM(K, D, Dm, seed=0)
        # the property setters assert logsumexp(logits) == 1 (not 0), so valid log-probs
        # are refused: set the Categoricals the way its own fit() does
        m._params.update(
            {
                "pi": cat(lpi.clone()),
                "A": cat(lA.clone()),
                "D": cat(ldur.clone()),
                "emission_pdf": MultivariateNormal(means.clone(), torch.diag_embed(covars)),
            }
        )
        return m

    def frames(xb, lens):
        return torch.cat([xb[i, :n] for i, n in enumerate(lens)]), list(lens)

    X, L = frames(x, lengths)
    Xw, Lw = frames(x[:1], lengths[:1])  # warm-up: the first sequence

    def loglik(m, X, L):
        # ChadHMM's score() is (n_sequences, Dm): log sum_k alpha_T[k, r] by r = frames
        # still to go after the last one; r = 0 is a segment ending exactly at the last
        # frame, the sum over r the right-censored likelihood. With a log_final the last
        # frame of its forward table is combined here.
        if lf is None:
            s = m.score(X, L)
            return s.logsumexp(-1) if censored else s[:, 0]
        obs = m.to_observations(X, L)
        last = torch.stack([a[-1] for a in m._forward(obs)])  # (n, K, Dm)
        end = last.logsumexp(-1) if censored else last[..., 0]
        return (end + lf).logsumexp(-1)

    def em(m, X, L):
        obs = m.to_observations(X, L)  # emissions
        m._params.update(m._estimate_model_params(obs, None))  # E-step and M-step
        return m

    def attempt(name, fn):
        try:
            return fn()
        except Exception as e:  # report what ChadHMM does, do not stop the benchmark
            res["errors"][name] = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
            return None

    try:
        from importlib.metadata import version

        ver = version("chadhmm")
    except Exception:
        ver = getattr(chadhmm, "__version__", "?")
    res = {"version": ver, "times": {}, "errors": {}}
    reps, budget = cfg["repeats"], cfg["budget_s"]
    m = fresh()
    with torch.no_grad():
        ll = attempt("loglik", lambda: loglik(m, X, L))
        res["log_likelihood"] = None if ll is None else ll.tolist()
        out_ = attempt(
            "loglik",
            lambda: time_calls(
                lambda _: loglik(m, X, L), reps, budget, warmup=lambda: loglik(m, Xw, Lw)
            ),
        )
        if out_ is not None:
            res["times"]["loglik"] = out_[0]
        attempt("viterbi", lambda: m.predict(Xw, Lw, algorithm="viterbi"))
        out_ = attempt(
            "map",
            lambda: time_calls(
                lambda _: m.predict(X, L, algorithm="map"),
                reps,
                budget,
                warmup=lambda: m.predict(Xw, Lw, algorithm="map"),
            ),
        )
        if out_ is not None:
            res["times"]["map"] = out_[0]
            Tm = max(L)
            res["map_path"] = [p.tolist() + [-1] * (Tm - len(p)) for p in out_[1]]

        def time_em():
            return time_calls(
                lambda mm: em(mm, X, L),
                reps,
                budget,
                setup=fresh,
                warmup=lambda: em(fresh(), Xw, Lw),
            )

        out_ = attempt("em", time_em)
        if out_ is None:
            # its M-step builds distributions from NaN estimates, which torch's argument
            # validation refuses: time the same arithmetic with validation off
            torch.distributions.Distribution.set_default_validate_args(False)
            out_ = attempt("em (validate_args off)", time_em)
            if out_ is not None:
                res["errors"]["em"] += "; timed with torch.distributions validation off"
        if out_ is not None:
            res["times"]["em"] = out_[0]
            m1 = out_[1]
            res["em"] = {
                "startprob": m1.pi.exp().tolist(),
                "transmat": m1.A.exp().tolist(),
                "durations": m1.D.exp().tolist(),
                "means": m1.pdf.loc.tolist(),
            }
    with open(out, "w") as f:
        json.dump(res, f)


def run_chad(args, tables, params, x, lengths):
    """Run the ChadHMM worker; returns its result dict, or a string saying why not."""
    exe = args.chad_python or sys.executable
    probe = subprocess.run(
        [exe, "-c", "import chadhmm, torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"chadhmm cannot be imported by {exe} ({last}); pass --chad-python"
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.npz"), os.path.join(d, "out.json")
        arrays = {
            "log_initial": tables["log_initial"].numpy(),
            "log_transitions": tables["log_transitions"].numpy(),
            "log_durations": tables["log_durations"].numpy(),
            "means": np.asarray(params["means"], np.float64),
            "covars": np.asarray(params["covars"], np.float64),
            "x": x.double().numpy(),
            "lengths": lengths.numpy(),
        }
        if tables["log_final"] is not None:
            arrays["log_final"] = tables["log_final"].numpy()
        cfg = dict(
            repeats=args.peer_repeats,
            budget_s=args.budget_s,
            threads=args.chad_threads,
            right_censored=tables["right_censored"],
        )
        np.savez(inp, cfg=json.dumps(cfg), **arrays)
        p = subprocess.run(
            [exe, os.path.abspath(__file__), "--chad-worker", inp, out],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0 or not os.path.exists(out):
            tail = "\n    ".join(p.stderr.strip().splitlines()[-6:])
            return f"ChadHMM worker failed (rc={p.returncode}):\n    {tail}"
        with open(out) as f:
            res = json.load(f)
        res["torch"] = probe.stdout.strip()
        res["threads"] = args.chad_threads
        return res


# ------------------------------------------------------------------------------------------
# one configuration


def _fmt_ms(ts):
    ms = sorted(t * 1e3 for t in ts)
    return statistics.median(ms), ms[0], ms[-1]


def _maxdiff(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    same_inf = torch.isinf(a) & torch.isinf(b) & (torch.sign(a) == torch.sign(b))
    d = torch.where(same_inf, 0.0, (a - b).abs())
    return float(d.max()) if d.numel() else 0.0


def _choose_expansions(tables):
    """The dense expansion, and a banded one when some state order gives a band narrower
    than N/2 (the narrower of the canonical and the folded order)."""
    exps = [Expanded(tables, torch.float32, "dense")]
    banded = [Expanded(tables, torch.float32, "banded", o) for o in ("canonical", "folded")]
    best = min(banded, key=lambda e: e.width)
    if best.width < best.N // 2:
        exps.append(best)
    return exps


def bench_config(args, topology, T, B):
    K, Dm, D = args.K, args.Dm, args.D
    params = make_params(topology, K, Dm, D, seed=0)
    ours32 = build_ours(params, torch.float32, topology)
    ours64 = build_ours(params, torch.float64, topology)
    gen = torch.Generator().manual_seed(1)
    if topology == "l2r":  # every state once: each sequence has its own length <= K*Dm
        x64, _, lengths = ours64.sample(num_sequences=B, generator=gen)
    else:
        x64, _, lengths = ours64.sample(n_frames=T, num_sequences=B, generator=gen)
    x32 = x64.float()
    T = x64.shape[1]
    n_frames = int(lengths.sum())
    audio_s = n_frames / FPS
    span = f"T={T}" if topology != "l2r" else f"lengths {int(lengths.min())}..{T} (sampled)"
    print(
        f"\n## {TOPOLOGIES[topology]}, {span} (B={B}, K={K}, Dm={Dm}, D={D}; "
        f"{audio_s:.0f} s of audio at 100 fps)"
    )
    tables = ours_tables(ours64)
    exps = _choose_expansions(tables)
    lf = tables["log_final"]
    print(
        "expanded HMM: "
        + "; ".join(f"{e.label()} (band {e.lo}..{e.hi})" for e in exps)
        + "; ends in (k, 1) for "
        + (
            "any k"
            if lf is None
            else f"k in {torch.nonzero(torch.isfinite(lf)).flatten().tolist()}"
        )
        + f"; right_censored={tables['right_censored']}"
    )

    # ---- agreement (float64)
    print("agreement, float64, max over sequences of |difference|:")
    with torch.no_grad():
        ll64 = ours64.log_likelihood(x64, lengths)
        ll32 = ours32.log_likelihood(x32, lengths)
        lb64 = ours64.emission_log_likelihood(x64)
        print(
            f"  ours: log-likelihood {float(ll64.sum()) / n_frames:.3f} per frame; "
            f"float32 vs float64 {_maxdiff(ll32, ll64):.2e}"
        )
        v_ours = ours64.viterbi(x64, lengths)
        for e in exps:
            e64 = Expanded(tables, torch.float64, e.kind, e.order)
            lle = e64.log_likelihood(lb64, lengths)
            pe, se = e64.viterbi(lb64, lengths)
            print(
                f"  ours vs {e64.label()}: log-likelihood {_maxdiff(ll64, lle):.2e}; Viterbi "
                f"score {_maxdiff(v_ours.score, se):.2e}, path frames differing "
                f"{int((v_ours.path != pe).sum())}/{n_frames}"
            )
        post = ours64.posteriors(x64, lengths)
        ce = Expanded(tables, torch.float64, "dense").counts(lb64, lengths)
        print(
            "  ours vs expanded, expected counts: state posteriors "
            f"{_maxdiff(post.state_posteriors, ce['gamma']):.2e}, initial "
            f"{_maxdiff(post.initial_counts, ce['initial']):.2e}, transitions "
            f"{_maxdiff(post.transition_counts, ce['trans']):.2e}, durations "
            f"{_maxdiff(post.duration_counts, ce['dur']):.2e}"
        )
        m1 = ours_em_iteration(copy.deepcopy(ours64), x64, lengths)
        upd_exp = m_step(x64, lengths, ce)
        ours_upd = dict(
            startprob=m1.startprob.double(),
            transmat=m1.transmat.double(),
            durations=m1.durations.double(),
            means=m1.means.detach().double(),
        )
        print(
            "  one EM iteration, ours vs expanded counts + M-step here: "
            + ", ".join(f"{k} {_maxdiff(ours_upd[k], upd_exp[k]):.2e}" for k in ours_upd)
        )

    # ---- timings (float32): the implementations of an operation take turns, repeat by
    # repeat, so that a burst of load from other processes hits them alike
    xw, lw = x32[:2], lengths[:2]  # warm-up of the expansions: compiles the kernels
    ours_ops = {
        "log-likelihood": (
            "ours HSMM.log_likelihood",
            lambda _: ours32.log_likelihood(x32, lengths),
            None,
            lambda: ours32.log_likelihood(x32, lengths),
        ),
        "Viterbi": (
            "ours HSMM.viterbi",
            lambda _: ours32.viterbi(x32, lengths),
            None,
            lambda: ours32.viterbi(x32, lengths),
        ),
        "EM iteration": (
            "ours HSMM.fit(n_iter=1)",
            lambda m: ours_em_iteration(m, x32, lengths),
            lambda: copy.deepcopy(ours32),
            lambda: ours_em_iteration(copy.deepcopy(ours32), x32, lengths),
        ),
    }

    def lb(xx):
        return ours32.emission_log_likelihood(xx)

    def exp_ops(e):
        def em(xx, ll):
            return m_step(xx, ll, e.counts(lb(xx), ll))

        return {
            "log-likelihood": lambda xx, ll: e.log_likelihood(lb(xx), ll),
            "Viterbi": lambda xx, ll: e.viterbi(lb(xx), ll),
            "EM iteration": em,
        }

    rows = []  # (op, impl, times)
    for op, ours_impl in ours_ops.items():
        impls = [ours_impl]
        for e in exps:
            fn = exp_ops(e)[op]
            impls.append(
                (e.label(), lambda _, fn=fn: fn(x32, lengths), None, lambda fn=fn: fn(xw, lw))
            )
        with torch.no_grad():
            for label, ts in time_interleaved(impls, args.repeats, args.budget_s):
                rows.append((op, label, ts))

    if args.no_peers:
        print("ChadHMM: skipped (--no-peers)")
    else:
        chad = run_chad(args, tables, params, x64, lengths)
        if isinstance(chad, str):
            print(f"ChadHMM: skipped: {chad}")
        else:
            _report_chad(chad, tables, ll64, post, ours_upd, lengths, n_frames, rows)

    _table(rows, audio_s)


def _report_chad(chad, tables, ll64, post, ours_upd, lengths, n_frames, rows):
    how = "log-likelihood = score()[:, 0] (its (n, Dm) score's column 'segment ends at the "
    how += "last frame'; not right-censored)"
    if tables["right_censored"]:
        how = "log-likelihood = score().logsumexp(-1) (right-censored)"
    if tables["log_final"] is not None:
        how = "log-likelihood from its forward table's last frame (column r=0) + our log_final"
    print(
        f"ChadHMM {chad['version']} (torch {chad['torch']}, {chad['threads']} thread(s)), "
        "float64, one sequence at a time; "
        "mapped: our log tables as its Categorical logits (same duration index: d-1), "
        f"diagonal covariances as full matrices; {how}"
    )
    errors = chad["errors"]
    if chad.get("log_likelihood") is not None:
        d = (torch.tensor(chad["log_likelihood"], dtype=torch.float64) - ll64).abs()
        print(
            f"  ChadHMM vs ours, log-likelihood: max {float(d.max()):.2e}; per sequence "
            + " ".join(f"{v:.0e}" for v in d.tolist())
        )
    for what, err in errors.items():
        extra = "; its MAP decoding (argmax of its state posteriors) is timed" * (what == "viterbi")
        print(f"  ChadHMM {what}: {err}{extra}")
    if chad.get("map_path") is not None:
        valid = torch.arange(post.state_posteriors.shape[1])[None] < lengths[:, None]
        ours_map = post.state_posteriors.argmax(-1)
        theirs = torch.tensor(chad["map_path"])
        diff = int(((theirs != ours_map) & valid).sum())
        print(
            f"  ChadHMM MAP path vs argmax of our state posteriors: {diff}/{n_frames} frames "
            "differ (its posteriors are not the exact ones: see the module docstring)"
        )
    if chad.get("em") is not None:
        print(
            "  one EM iteration, ChadHMM vs ours (max |difference| of the updated parameters): "
            + ", ".join(f"{k} {_maxdiff(chad['em'][k], ours_upd[k]):.2e}" for k in chad["em"])
        )
    for op, impl, key in (
        ("log-likelihood", "ChadHMM score (loop over sequences)", "loglik"),
        ("Viterbi", "ChadHMM: none; MAP decode (predict 'map')", "map"),
        ("EM iteration", "ChadHMM E+M step (full covariances)", "em"),
    ):
        if key in chad["times"]:
            rows.append((op, impl, chad["times"][key]))
        else:
            print(f"  ChadHMM {op}: not timed (it fails, above)")


def _table(rows, audio_s):
    ours = {op: statistics.median(ts) for op, impl, ts in rows if impl.startswith("ours")}
    best_exp = {}
    for op, impl, ts in rows:
        if impl.startswith("expanded"):
            best_exp[op] = min(best_exp.get(op, math.inf), statistics.median(ts))
    print(
        f"\n| {'operation':14s} | {'implementation':44s} | {'ms/call':>9s} | {'min-max ms':>17s} "
        f"| {'n':>2s} | {'x real time':>11s} | {'vs ours':>8s} |"
    )
    print(f"|{'-' * 16}|{'-' * 46}|{'-' * 11}|{'-' * 19}|{'-' * 4}|{'-' * 13}|{'-' * 10}|")
    for op in ("log-likelihood", "Viterbi", "EM iteration"):
        for o, impl, ts in rows:
            if o != op:
                continue
            med, lo, hi = _fmt_ms(ts)
            ratio = statistics.median(ts) / ours[op] if op in ours else math.nan
            print(
                f"| {op:14s} | {impl:44s} | {med:9.1f} | {lo:8.1f}-{hi:8.1f} | {len(ts):2d} "
                f"| {audio_s / (med / 1e3):11.1f} | {ratio:7.2f}x |"
            )
    chad = {op: statistics.median(ts) for op, impl, ts in rows if impl.startswith("ChadHMM")}
    for name, other in (("fastest expanded", best_exp), ("ChadHMM", chad)):
        if other:
            print(
                f"ours vs {name} ({name} time / ours): "
                + ", ".join(f"{op} {other[op] / ours[op]:.2f}x" for op in other if op in ours)
            )


def _loadavg(when):
    """The machine's load average (other processes skew timings on shared cores)."""
    try:
        with open("/proc/loadavg") as f:
            print(f"\nload average at {when}: {' '.join(f.read().split()[:3])}")
    except OSError:
        pass


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per row (ours, expanded)")
    p.add_argument("--peer-repeats", type=int, default=1, help="timed calls per ChadHMM row")
    p.add_argument("--budget-s", type=float, default=30.0, help="stop repeating a row after this")
    p.add_argument("--quick", action="store_true", help="T=500 only, B=4, 2 repeats")
    p.add_argument("--no-peers", action="store_true", help="skip ChadHMM")
    p.add_argument(
        "--chad-python",
        default=None,
        help="interpreter with chadhmm installed (default: this one; skipped if it lacks it)",
    )
    p.add_argument("--topologies", default="l2r,loop,ergodic", help="of l2r, loop, ergodic")
    p.add_argument("--T", default="500,2000", help="comma-separated sequence lengths")
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--Dm", type=int, default=20)
    p.add_argument("--D", type=int, default=80)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and numba threads for ours and the expansion (default: as they start); "
        "1 is far steadier when other processes share the cores",
    )
    p.add_argument(
        "--chad-threads",
        type=int,
        default=1,
        help="torch threads for ChadHMM (1: its per-frame ops are tiny; a second thread "
        "measured no faster idle and 5-30x slower beside another busy process)",
    )
    p.add_argument("--chad-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.chad_worker:
        chad_worker(*args.chad_worker)
        return
    numba_threads = "-"
    try:
        import numba

        if args.threads:
            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        numba_threads = numba.get_num_threads()
    except ImportError:
        pass
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.T, args.B, args.repeats = "500", 4, min(args.repeats, 2)
    torch.manual_seed(0)
    import pytorch_hmm

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads (numba "
        f"{numba_threads}), pytorch_hmm "
        f"{getattr(pytorch_hmm, '__version__', '?')}, backend "
        f"{pytorch_hmm.core.resolve_backend(torch.device('cpu'))}; median of up to "
        f"{args.repeats} calls (ChadHMM {args.peer_repeats}) after a warm-up call"
    )
    _loadavg("start")
    for topology in args.topologies.split(","):
        if topology not in TOPOLOGIES:
            p.error(f"unknown topology {topology!r}: use {', '.join(TOPOLOGIES)}")
        for T in [None] if topology == "l2r" else [int(t) for t in args.T.split(",")]:
            bench_config(args, topology, T, args.B)
    _loadavg("end")


if __name__ == "__main__":
    main()
