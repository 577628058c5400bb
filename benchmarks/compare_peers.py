"""Every workload of pytorch_hmm against its peers, in one process on the same data.

Run:  bash benchmarks/run_peers.sh [options]        (builds .venv-peers with every peer pinned)
      python benchmarks/compare_peers.py [--quick] [--only hmm,dtw] [--repeats 3]
          [--budget-s 10] [--threads 1] [--out benchmarks/results] [--update-readme]
      python benchmarks/compare_peers.py --update-readme --from-json benchmarks/results/peers.json

Groups (``--only``; sizes of the full run, ``--quick`` shrinks them to seconds):

- ``hmm``: log-likelihood and Viterbi of a dense GaussianHMM (diagonal covariances,
  B=32, T=1000, K=64, D=80) vs hmmlearn (``implementation="log"``, its default, and
  ``"scaling"``) and pomegranate (``DenseHMM``, float32, end probabilities set to 1 so that
  it scores the same model);
- ``hmm-lr``: the same on a left-to-right chain of K=200 states (B=4, T=1000);
- ``em``: one Baum-Welch iteration (``fit(n_iter=1)``, B=16, T=500, K=64, D=80) vs
  hmmlearn and pomegranate, from the same initial parameters (bench_training's problem);
- ``dtw``: DTW (symmetric2 steps, euclidean cost) of one pair 1000x1200, D=80, and of a
  batch of 16 pairs vs dtw-python and librosa (``weights_mul=(2, 1, 1)``: symmetric2),
  which loop over the pairs;
- ``mas``: monotonic alignment search, B=16, 100x800, vs monotonic-align (Glow-TTS);
- ``hsmm``: HSMM log-likelihood, Viterbi and one EM iteration (bench_hsmm's ergodic model,
  K=10, Dm=20, D=80, B=8, T=500) vs ChadHMM's GaussianHSMM (run by bench_hsmm's worker in a
  subprocess, float64; it has no HSMM Viterbi);
- ``neural``: one NeuralHMM training step (loss forward and backward, B=4, 50 symbols x 2
  states, T=300, train mode) vs the papers' per-frame autograd loop (bench_neural_hmm).

Every system's result is checked against ours in float64 (log-likelihoods, Viterbi scores
and paths, updated parameters, DTW costs and paths, MAS alignments, gradients) to a stated
tolerance; a disagreement is reported in the ``check`` column, not hidden. Timings: after a
warm-up call, the systems of a workload take turns call by call (a burst of load from other
processes hits them alike); median, min and max of ``--repeats`` calls; a system stops
repeating once it has used ``--budget-s`` seconds. ratio = system median / pytorch_hmm's
(the first row of the workload: > 1 means ours is faster). A peer that is not installed or
fails gets a row saying so. Writes ``peers.json`` (machine, versions, load average, rows)
and ``peers.md`` (from the JSON, :func:`render_markdown`) into ``--out``;
``--update-readme`` puts the same tables between the README's ``<!-- peers:begin -->`` and
``<!-- peers:end -->`` markers.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (HERE, ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_hsmm  # noqa: E402
import bench_neural_hmm  # noqa: E402
import bench_training  # noqa: E402

import pytorch_hmm  # noqa: E402
from pytorch_hmm.alignment import DTWAligner, monotonic_alignment_search  # noqa: E402
from pytorch_hmm.models import GaussianHMM  # noqa: E402

BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
OURS = "pytorch_hmm"
TOL64, TOL32 = 1e-9, 1e-4  # relative tolerances of the checks: float64 / a float32 side
REF = "reference of the checks"
PG = "pomegranate (float32)"
PEER_DISTS = {
    "hmmlearn": "hmmlearn",
    "pomegranate": "pomegranate",
    "dtw-python": "dtw-python",
    "librosa": "librosa",
    "monotonic-align": "monotonic-align",
    "ChadHMM": "chadhmm",
}
GROUPS = ("hmm", "hmm-lr", "em", "dtw", "mas", "hsmm", "neural")
# sizes at which the slowest peer (hmmlearn's "log" implementation, ChadHMM, the papers'
# loop) takes seconds per call: the whole run stays within about 10 minutes on 2 busy cores
FULL = dict(
    hmm=dict(B=32, T=1000, K=64, D=80),
    lr=dict(B=4, T=1000, K=200, D=80),
    em=dict(B=16, T=500, K=64, D=80),
    dtw=dict(N=1000, M=1200, D=80, B=16),
    mas=dict(B=16, Tx=100, Ty=800),
    hsmm=dict(B=8, T=500, K=10, Dm=20, D=80),
    neural=dict(B=4, N=50, T=300),
)
QUICK = dict(
    hmm=dict(B=2, T=60, K=4, D=3),
    lr=dict(B=2, T=60, K=6, D=3),
    em=dict(B=2, T=60, K=4, D=3),
    dtw=dict(N=40, M=50, D=4, B=3),
    mas=dict(B=2, Tx=6, Ty=30),
    hsmm=dict(B=2, T=30, K=3, Dm=4, D=3),
    neural=dict(B=2, N=4, T=30),
)


# ------------------------------------------------------------------------------------------
# systems, timing, rows


@dataclass
class System:
    """One implementation of a workload: ``fn(state)`` is timed (``state = setup()``, not
    timed), after ``warmup()``; ``status`` "ok", "not installed" or "failed: reason"."""

    name: str
    version: Optional[str]
    fn: Optional[Callable[[Any], Any]] = None
    check: str = ""
    check_ok: Optional[bool] = None
    status: str = "ok"
    setup: Optional[Callable[[], Any]] = None
    warmup: Optional[Callable[[], Any]] = None
    times: Optional[List[float]] = None  # measured elsewhere (ChadHMM's worker)


def dist_version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _reason(e: BaseException) -> str:
    msg = (str(e).strip().splitlines() or [""])[0][:120]
    return f"failed: {type(e).__name__}: {msg}"


def peer(name: str, build: Callable[[], System], module: Optional[str] = None) -> System:
    """``build()`` for an installed peer (its import inside), else a "not installed" row; an
    exception while building or checking becomes a "failed: ..." row."""
    ver = dist_version(PEER_DISTS.get(name, name))
    try:
        __import__(module or PEER_DISTS.get(name, name).replace("-", "_"))
    except ImportError as e:
        return System(name, ver, status="not installed" if ver is None else _reason(e))
    try:
        s = build()
    except Exception as e:  # report what the peer does, do not stop the comparison
        return System(name, ver, status=_reason(e))
    s.version = s.version or ver
    return s


def agree(what: str, diff: float, scale: float, tol: float) -> tuple:
    """(check text, ok) for |difference| ``diff`` against ``tol`` relative to ``scale``."""
    rel = diff / scale if scale > 0 else diff
    ok = bool(rel <= tol)
    return f"{what} {diff:.1e} (rel {rel:.1e}, tol {tol:.0e})", ok


def combine(*checks: tuple) -> tuple:
    return "; ".join(c[0] for c in checks), all(c[1] for c in checks)


def _normrel(a, b) -> float:
    """max |a - b| / max |b| (b: ours, float64)."""
    a = torch.as_tensor(np.asarray(a, dtype=np.float64))
    b = torch.as_tensor(np.asarray(b, dtype=np.float64))
    fin = torch.isfinite(b)
    d = bench_hsmm._maxdiff(a, b)
    return d / max(float(b[fin].abs().max()) if fin.any() else 1.0, 1e-300)


def measure(group: str, workload: str, systems: List[System], cfg) -> List[dict]:
    """Time the systems with a callable (round-robin, bench_hsmm.time_interleaved) and make
    one row per system; ratio = median / median of the first system (ours)."""
    live = [s for s in systems if s.status == "ok" and s.fn is not None]
    impls = [(s.name, s.fn, s.setup, s.warmup) for s in live]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timed = dict(bench_hsmm.time_interleaved(impls, cfg.repeats, cfg.budget_s))
    rows = []
    for s in systems:
        ts = timed.get(s.name) if s.status == "ok" else None
        if ts is None and s.times:
            ts = s.times
        row = dict(group=group, workload=workload, system=s.name, version=s.version)
        row.update(status=s.status, check=s.check or s.status, check_ok=s.check_ok)
        if ts:
            row.update(
                median_s=statistics.median(ts), min_s=min(ts), max_s=max(ts), repeats=len(ts)
            )
        else:
            row.update(median_s=None, min_s=None, max_s=None, repeats=0)
        rows.append(row)
    ref = rows[0]["median_s"]
    for row in rows:
        m = row["median_s"]
        row["ratio"] = m / ref if (m is not None and ref) else None
        ratio = f"x{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        line = f"  {workload:<30s} {row['system']:<24s} {fmt_s(m):>10s} {ratio:>7s}"
        print(f"{line}  {row['check']}", flush=True)
    return rows


def ours_name(dtype: torch.dtype) -> str:
    return f"{OURS} {str(dtype).replace('torch.', '')}"


def ours_version() -> str:
    return getattr(pytorch_hmm, "__version__", "?")


# ------------------------------------------------------------------------------------------
# HMM: log-likelihood and Viterbi (dense and left-to-right), EM


def hmm_problem(kind: str, B: int, T: int, K: int, D: int, seed: int = 0):
    """(params, x float64 (B, T, D)). "dense": bench_training's problem (the data sampled
    from a sticky model, the parameters its perturbed initialisation); "lr": a left-to-right
    chain (stay 0.8, advance 0.2, the last state absorbing), data sampled from it."""
    if kind == "dense":
        x, init = bench_training.make_problem(B, T, K, D, seed=seed)
        return init, x.double()
    rng = np.random.default_rng(seed)
    startprob = np.zeros(K)
    startprob[0] = 1.0
    transmat = 0.8 * np.eye(K) + 0.2 * np.eye(K, k=1)
    transmat[K - 1, K - 1] = 1.0
    params = dict(
        startprob=startprob,
        transmat=transmat,
        means=rng.normal(size=(K, D)),
        covars=rng.uniform(0.5, 1.5, size=(K, D)),
    )
    true = GaussianHMM(K, D, "diag", dtype=torch.float64, **params)
    x, _ = true.sample(T, num_sequences=B, generator=torch.Generator().manual_seed(seed))
    return params, x.double()


def path_score(p: dict, x: np.ndarray, path: np.ndarray) -> np.ndarray:
    """(B,) float64 log-probability of the state paths (B, T) under the parameters ``p``."""
    with np.errstate(divide="ignore"):
        lpi, lA = np.log(p["startprob"]), np.log(p["transmat"])
    mu, var = p["means"][path], p["covars"][path]  # (B, T, D)
    lb = -0.5 * (((x - mu) ** 2) / var + np.log(2 * np.pi * var)).sum(-1)
    return lpi[path[:, 0]] + lA[path[:, :-1], path[:, 1:]].sum(1) + lb.sum(1)


def _ours_hmm(p, dtype):
    K, D = p["means"].shape
    return GaussianHMM(K, D, "diag", dtype=dtype, **p)


def _hmmlearn_model(p, implementation="log", **kw):
    from hmmlearn import hmm

    K, D = p["means"].shape
    m = hmm.GaussianHMM(K, "diag", init_params="", implementation=implementation, **kw)
    m.n_features = D
    m.startprob_, m.transmat_ = p["startprob"], p["transmat"]
    m.means_, m.covars_ = p["means"], p["covars"]
    return m


def _pomegranate_model(p, **kw):
    """pomegranate DenseHMM, float32 (its default), with end probabilities 1 (log 0): the
    same model as ours (by default it adds log(1/K) end probabilities to every sequence)."""
    from pomegranate.distributions import Normal
    from pomegranate.hmm import DenseHMM

    def f(a):
        return torch.tensor(np.asarray(a), dtype=torch.float32)

    K = p["means"].shape[0]
    dists = [Normal(f(p["means"][k]), f(p["covars"][k]), covariance_type="diag") for k in range(K)]
    return DenseHMM(
        dists, edges=f(p["transmat"]), starts=f(p["startprob"]), ends=torch.ones(K), **kw
    )


def group_hmm(cfg, kind: str) -> List[dict]:
    s = cfg.sizes["hmm" if kind == "dense" else "lr"]
    B, T, K, D = s["B"], s["T"], s["K"], s["D"]
    p, x64 = hmm_problem(kind, B, T, K, D)
    x32 = x64.float()
    xn = x64.numpy()
    X, lengths = xn.reshape(-1, D), [T] * B
    xw32, xw64 = x32[:1, : min(T, 50)], x64[:1, : min(T, 50)]
    group = "hmm" if kind == "dense" else "hmm-lr"
    title = "dense" if kind == "dense" else "left-to-right"
    cfg.titles[group] = (
        f"HMM, {title}: diagonal Gaussians, B={B}, T={T}, K={K}, D={D}"
        + (" (stay 0.8 / advance 0.2)" if kind == "lr" else "")
    )
    m64, m32 = _ours_hmm(p, torch.float64), _ours_hmm(p, torch.float32)
    with torch.no_grad():
        ll64 = m64.log_likelihood(x64).double()
    v64 = m64.viterbi(x64)
    scale_ll = float(ll64.abs().max())
    best = v64.score.double()

    def ll_check(ll, tol):
        d = float((torch.as_tensor(np.asarray(ll), dtype=torch.float64) - ll64).abs().max())
        return agree("max |dLL| per sequence", d, scale_ll, tol)

    def path_check(path, score, tol):
        """score: the system's own Viterbi scores (None: score its path here, float64)."""
        path = np.asarray(path).reshape(B, T)
        differ = int((path != v64.path.numpy()).sum())
        own = path_score(p, xn, path)
        c1 = agree("its path's score vs the best", float(np.abs(own - best.numpy()).max()),
                   float(best.abs().max()), tol)  # fmt: skip
        checks = [c1]
        if score is not None:
            sc = np.atleast_1d(np.asarray(score, dtype=np.float64))
            ref = best.sum().item() if sc.size == 1 else best.numpy()
            checks.append(agree("score", float(np.abs(sc - ref).max()),
                                float(np.abs(ref).max()), tol))  # fmt: skip
        text, ok = combine(*checks)
        return f"path frames differing {differ}/{B * T}; {text}", ok

    rows = []
    # ---- log-likelihood
    def ours_ll(m, x):
        def f(_=None):
            with torch.no_grad():
                return m.log_likelihood(x)

        return f

    o32 = System(ours_name(torch.float32), ours_version(), ours_ll(m32, x32),
                 warmup=ours_ll(m32, xw32))  # fmt: skip
    o32.check, o32.check_ok = ll_check(ours_ll(m32, x32)(), TOL32)
    o64 = System(ours_name(torch.float64), ours_version(), ours_ll(m64, x64), REF, True,
                 warmup=ours_ll(m64, xw64))  # fmt: skip
    systems = [o32, o64]
    for impl in ("log", "scaling"):

        def build(impl=impl):
            h = _hmmlearn_model(p, impl, params="")
            per_seq = [h.score(xn[b]) for b in range(B)]  # the check (and the warm-up)
            c, ok = ll_check(per_seq, TOL64)
            return System(f"hmmlearn ({impl})", None, lambda _: h.score(X, lengths), c, ok)

        systems.append(peer("hmmlearn", build))
        systems[-1].name = f"hmmlearn ({impl})"

    def build_pg_ll():
        pm = _pomegranate_model(p)
        with torch.no_grad():
            c, ok = ll_check(pm.log_probability(x32), TOL32)

        def f(_):
            with torch.no_grad():
                return pm.log_probability(x32)

        return System(PG, None, f, c, ok)

    systems.append(peer("pomegranate", build_pg_ll))
    systems[-1].name = PG
    rows += measure(group, "log-likelihood", systems, cfg)

    # ---- Viterbi
    def ours_vit(m, x):
        return lambda _=None: m.viterbi(x)

    v32 = m32.viterbi(x32)
    o32 = System(ours_name(torch.float32), ours_version(), ours_vit(m32, x32),
                 warmup=ours_vit(m32, xw32))  # fmt: skip
    o32.check, o32.check_ok = path_check(v32.path.numpy(), v32.score.numpy(), TOL32)
    o64 = System(ours_name(torch.float64), ours_version(), ours_vit(m64, x64), REF, True,
                 warmup=ours_vit(m64, xw64))  # fmt: skip
    systems = [o32, o64]

    def build_hl_vit():
        h = _hmmlearn_model(p, "log", params="")
        score, states = h.decode(X, lengths)  # the check (and the warm-up)
        c, ok = path_check(states, score, TOL64)
        return System("hmmlearn", None, lambda _: h.decode(X, lengths), c, ok)

    def build_pg_vit():
        pm = _pomegranate_model(p)
        with torch.no_grad():
            c, ok = path_check(pm.viterbi(x32).numpy(), None, TOL32)

        def f(_):
            with torch.no_grad():
                return pm.viterbi(x32)

        return System(PG, None, f, c, ok)

    systems += [peer("hmmlearn", build_hl_vit), peer("pomegranate", build_pg_vit)]
    systems[-1].name = PG
    rows += measure(group, "Viterbi", systems, cfg)
    return rows


def group_em(cfg) -> List[dict]:
    s = cfg.sizes["em"]
    B, T, K, D = s["B"], s["T"], s["K"], s["D"]
    cfg.titles["em"] = (
        f"EM: one Baum-Welch iteration, diagonal Gaussians, B={B}, T={T}, K={K}, D={D} "
        "(updated startprob, transmat, means, covars compared)"
    )
    p, x64 = hmm_problem("dense", B, T, K, D)
    x32 = x64.float()
    X, lengths = x64.numpy().reshape(-1, D), [T] * B
    xw64 = x64[:1, : min(T, 50)]

    def ours_fit(dtype, x):
        def f(_=None):
            m = _ours_hmm(p, dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.fit(x, n_iter=1, tol=-math.inf, init_params="")
            return m

        return f

    def params_of(m):
        return dict(startprob=m.startprob, transmat=m.transmat, means=m.means.detach(),
                    covars=m.covars)  # fmt: skip

    ref64 = ours_fit(torch.float64, x64)()
    want = params_of(ref64)
    ref_ll = torch.tensor(ref64.log_likelihood_history[-1:] or [0.0]) / B
    ml = _ours_hmm(p, torch.float64)
    ml.covars_prior = 0.0  # plain maximum likelihood (ours and hmmlearn: a prior of 1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_ml = params_of(ml.fit(x64, n_iter=1, tol=-math.inf, init_params="") or ml)

    def em_check(got, tol, want=want):
        d = {k: _normrel(got[k], want[k]) for k in want}
        text = "max |d| / max |ours|: " + ", ".join(f"{k} {v:.1e}" for k, v in d.items())
        return f"{text} (tol {tol:.0e})", all(v <= tol for v in d.values())

    m32 = ours_fit(torch.float32, x32)()
    o32 = System(ours_name(torch.float32), ours_version(), ours_fit(torch.float32, x32),
                 warmup=ours_fit(torch.float32, xw64.float()))  # fmt: skip
    o32.check, o32.check_ok = em_check(params_of(m32), TOL32)
    o64 = System(ours_name(torch.float64), ours_version(), ours_fit(torch.float64, x64),
                 check=REF, check_ok=True,
                 warmup=ours_fit(torch.float64, xw64))  # fmt: skip
    systems = [o32, o64]
    for impl in ("log", "scaling"):

        def build(impl=impl):
            def f(_=None):
                h = _hmmlearn_model(p, impl, n_iter=1, tol=-np.inf, params="stmc")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return h.fit(X, lengths)

            h = f()
            got = dict(startprob=h.startprob_, transmat=h.transmat_, means=h.means_,
                       covars=h._covars_)  # fmt: skip
            c, ok = em_check(got, TOL64)
            return System(f"hmmlearn ({impl})", None, f, c, ok)

        systems.append(peer("hmmlearn", build))
        systems[-1].name = f"hmmlearn ({impl})"

    def build_pg():
        def f(_=None):
            pm = _pomegranate_model(p, max_iter=1, tol=0.0, verbose=False)
            return pm.fit(x32)

        pm = f()
        edges = pm.edges.detach().double().exp()
        got = dict(
            startprob=pm.starts.detach().exp(),
            transmat=edges / edges.sum(1, keepdim=True),
            means=torch.stack([d.means for d in pm.distributions]).detach(),
            covars=torch.stack([d.covs for d in pm.distributions]).detach(),
        )
        c, ok = em_check(got, TOL32, want_ml)
        c += ("; vs ours with covars_prior=0 (it has no prior); transmat: its edges "
              "renormalised without the end probabilities it learns")  # fmt: skip
        if not ok:
            ll = float(ref_ll.abs().max())
            cfg.notes.append(
                "pomegranate's EM update differs from exact EM beyond float32 rounding: it "
                "computes the expected transition counts as exp(logsumexp(f + b + log A + "
                "log b) - log p) in float32 from unnormalised forward/backward values (|log p| "
                f"about {ll:.0f} per sequence here, where a float32 ulp is "
                f"{float(np.spacing(np.float32(ll))):.0e}), so each sequence's counts are off "
                "by a factor exp(rounding error); its state posteriors, normalised per frame, "
                "and hence its means and covariances agree."
            )
        return System(PG, None, f, c, ok)

    systems.append(peer("pomegranate", build_pg))
    systems[-1].name = PG
    return measure("em", "EM iteration (fit, n_iter=1)", systems, cfg)


# ------------------------------------------------------------------------------------------
# DTW and MAS


def group_dtw(cfg) -> List[dict]:
    s = cfg.sizes["dtw"]
    N, M, D, B = s["N"], s["M"], s["D"], s["B"]
    cfg.titles["dtw"] = (
        f"DTW: symmetric2 steps, euclidean cost, {N}x{M} frames, D={D} (librosa with "
        "weights_mul=(2, 1, 1), i.e. symmetric2; peers loop over the pairs of a batch)"
    )
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((B, N, D)), rng.standard_normal((B, M, D))
    aligner = DTWAligner(step_pattern="symmetric2")
    rows = []
    for label, n in (("1 pair", 1), (f"batch of {B}", B)):
        xa, ya = xs[:n], ys[:n]
        x64, y64 = torch.from_numpy(xa), torch.from_numpy(ya)
        x32, y32 = x64.float(), y64.float()
        r64 = aligner.align(x64, y64)
        cost64 = r64.cost.double().reshape(-1)
        paths = [r64.path[i, : int(r64.path_lengths[i])].numpy() for i in range(n)]

        def dtw_check(costs, got_paths, tol, cost64=cost64, paths=paths):
            d = float((torch.tensor(costs, dtype=torch.float64) - cost64).abs().max())
            same = sum(np.array_equal(a, b) for a, b in zip(got_paths, paths))
            c, ok = agree("max |d cost|", d, float(cost64.abs().max()), tol)
            return f"paths identical {same}/{len(paths)}; {c}", ok and same == len(paths)

        r32 = aligner.align(x32, y32)
        o32 = System(ours_name(torch.float32), ours_version(),
                     lambda _, a=x32, b=y32: aligner.align(a, b),
                     warmup=lambda a=x32, b=y32: aligner.align(a[:1, :20], b[:1, :20]))  # fmt: skip
        o32.check, o32.check_ok = dtw_check(
            r32.cost.reshape(-1).tolist(),
            [r32.path[i, : int(r32.path_lengths[i])].numpy() for i in range(n)],
            TOL32,
        )

        def build_dtw(xa=xa, ya=ya, dtw_check=dtw_check):
            import dtw

            res = [dtw.dtw(a, b) for a, b in zip(xa, ya)]
            c, ok = dtw_check([r.distance for r in res],
                              [np.stack([r.index1, r.index2], 1) for r in res], TOL64)  # fmt: skip
            return System("dtw-python", None, lambda _: [dtw.dtw(a, b) for a, b in zip(xa, ya)],
                          c, ok)  # fmt: skip

        def build_librosa(xa=xa, ya=ya, dtw_check=dtw_check):
            import librosa

            steps, w = np.array([[1, 1], [0, 1], [1, 0]]), np.array([2.0, 1.0, 1.0])

            def f(_=None):
                return [librosa.sequence.dtw(X=a.T, Y=b.T, step_sizes_sigma=steps, weights_mul=w)
                        for a, b in zip(xa, ya)]  # fmt: skip

            res = f()
            c, ok = dtw_check([float(Dm[-1, -1]) for Dm, _ in res], [wp[::-1] for _, wp in res],
                              TOL64)  # fmt: skip
            return System("librosa", None, f, c, ok)

        systems = [o32, peer("dtw-python", build_dtw, "dtw"), peer("librosa", build_librosa)]
        rows += measure("dtw", f"DTW, {label}", systems, cfg)
    return rows


def group_mas(cfg) -> List[dict]:
    s = cfg.sizes["mas"]
    B, Tx, Ty = s["B"], s["Tx"], s["Ty"]
    cfg.titles["mas"] = f"MAS: monotonic alignment search, B={B}, {Tx} text x {Ty} mel frames"
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(B, Tx, Ty, generator=g)
    lp_t = lp.transpose(1, 2).contiguous()  # monotonic-align's (B, T_mel, T_text) layout
    mask = torch.ones(B, Ty, Tx)
    ref = monotonic_alignment_search(lp.double()).alignment

    def mas_check(al, tol):
        al = torch.as_tensor(al, dtype=torch.float64)
        same = int(sum(torch.equal(al[b], ref[b]) for b in range(B)))
        score = (al * lp.double()).sum((1, 2))
        best = (ref * lp.double()).sum((1, 2))
        c, ok = agree("max |d path score|", float((score - best).abs().max()),
                      float(best.abs().max()), tol)  # fmt: skip
        return f"alignments identical {same}/{B}; {c}", ok and same == B

    o32 = System(ours_name(torch.float32), ours_version(),
                 lambda _: monotonic_alignment_search(lp),
                 warmup=lambda: monotonic_alignment_search(lp[:1]))  # fmt: skip
    o32.check, o32.check_ok = mas_check(monotonic_alignment_search(lp).alignment, TOL32)

    def build():
        import monotonic_align as ma

        c, ok = mas_check(ma.maximum_path(lp_t, mask).transpose(1, 2), TOL32)
        return System("monotonic-align", None, lambda _: ma.maximum_path(lp_t, mask), c, ok)

    return measure("mas", "MAS", [o32, peer("monotonic-align", build)], cfg)


# ------------------------------------------------------------------------------------------
# HSMM (bench_hsmm's model and ChadHMM worker) and the neural HMM (bench_neural_hmm)


def group_hsmm(cfg) -> List[dict]:
    s = cfg.sizes["hsmm"]
    B, T, K, Dm, D = s["B"], s["T"], s["K"], s["Dm"], s["D"]
    # ergodic: on bench_hsmm's left-to-right model ChadHMM's EM step fails (NaN estimates)
    params = bench_hsmm.make_params("ergodic", K, Dm, D, seed=0)
    o32 = bench_hsmm.build_ours(params, torch.float32, "ergodic")
    o64 = bench_hsmm.build_ours(params, torch.float64, "ergodic")
    gen = torch.Generator().manual_seed(1)
    x64, _, lengths = o64.sample(n_frames=T, num_sequences=B, generator=gen)
    x32 = x64.float()
    cfg.titles["hsmm"] = (
        f"HSMM: ergodic, K={K}, max duration {Dm}, D={D}, B={B}, T={T}, nonparametric "
        "durations (bench_hsmm's model; ChadHMM: float64, full covariances, one sequence at "
        "a time, in a subprocess, so not interleaved with ours)"
    )
    with torch.no_grad():
        ll64 = o64.log_likelihood(x64, lengths).double()
    em64 = bench_hsmm.ours_em_iteration(copy.deepcopy(o64), x64, lengths)
    want = dict(startprob=em64.startprob, transmat=em64.transmat, durations=em64.durations,
                means=em64.means.detach())  # fmt: skip
    scale_ll = float(ll64.abs().max())

    def ll_check(ll, tol):
        d = float((torch.as_tensor(ll, dtype=torch.float64) - ll64).abs().max())
        return agree("max |dLL| per sequence", d, scale_ll, tol)

    def em_check(got, tol):
        d = {k: _normrel(got[k], want[k]) for k in want}
        text = "max |d| / max |ours|: " + ", ".join(f"{k} {v:.1e}" for k, v in d.items())
        return f"{text} (tol {tol:.0e})", all(v <= tol for v in d.values())

    def ll_fn(m, x):
        def f(_=None):
            with torch.no_grad():
                return m.log_likelihood(x, lengths)

        return f

    def em_fn(m, x):
        def f(mm=None):
            return bench_hsmm.ours_em_iteration(
                copy.deepcopy(m) if mm is None else mm, x, lengths
            )

        return f

    xw, lw = x32[:1], lengths[:1]
    ll_sys = [
        System(ours_name(torch.float32), ours_version(), ll_fn(o32, x32),
               *ll_check(ll_fn(o32, x32)(), TOL32),
               warmup=lambda: o32.log_likelihood(xw, lw)),
        System(ours_name(torch.float64), ours_version(), ll_fn(o64, x64),
               REF, True, warmup=ll_fn(o64, x64)),
    ]  # fmt: skip
    e32 = em_fn(o32, x32)()
    em_sys = [
        System(ours_name(torch.float32), ours_version(), em_fn(o32, x32),
               *em_check(dict(startprob=e32.startprob, transmat=e32.transmat,
                              durations=e32.durations, means=e32.means.detach()), TOL32),
               setup=lambda: copy.deepcopy(o32), warmup=em_fn(o32, x32)),
        System(ours_name(torch.float64), ours_version(), em_fn(o64, x64),
               REF, True, setup=lambda: copy.deepcopy(o64)),
    ]  # fmt: skip
    notes = []
    ver = dist_version("chadhmm")
    args = types.SimpleNamespace(chad_python=sys.executable, peer_repeats=cfg.repeats,
                                 budget_s=cfg.budget_s, chad_threads=cfg.threads)  # fmt: skip
    chad = bench_hsmm.run_chad(args, bench_hsmm.ours_tables(o64), params, x64, lengths)
    if isinstance(chad, str):
        status = "not installed" if ver is None else f"failed: {chad.splitlines()[0][:200]}"
        ll_sys.append(System("ChadHMM", ver, status=status))
        em_sys.append(System("ChadHMM", ver, status=status))
    else:
        errors = chad.get("errors", {})
        for sys_list, key, check in ((ll_sys, "loglik", "ll"), (em_sys, "em", "em")):
            if key not in chad["times"]:
                err = "; ".join(f"{k}: {v}" for k, v in errors.items() if k.startswith(key))
                sys_list.append(System("ChadHMM", chad["version"], status=f"failed: {err}"))
                continue
            if check == "ll":
                c, ok = ll_check(chad["log_likelihood"], TOL64)
            else:
                c, ok = em_check(chad["em"], TOL64)
                c += ("; its posteriors are not the exact ones (transition posteriors "
                      "normalised at every frame: bench_hsmm's docstring)")  # fmt: skip
            if key in errors:
                c += f"; {errors[key]}"
            sys_list.append(System("ChadHMM", chad["version"], None, c, ok,
                                   times=chad["times"][key]))  # fmt: skip
        if "viterbi" in errors:
            notes.append(
                f"ChadHMM {chad['version']} has no HSMM Viterbi ({errors['viterbi']}); its "
                "MAP decoding (argmax of its state posteriors) is another quantity, not timed."
            )
    v64 = o64.viterbi(x64, lengths)
    v32 = o32.viterbi(x32, lengths)
    valid = torch.arange(x64.shape[1])[None] < lengths[:, None]
    differ = int(((v32.path != v64.path) & valid).sum())
    c, ok = agree("score", float((v32.score.double() - v64.score).abs().max()),
                  float(v64.score.abs().max()), TOL32)  # fmt: skip
    vit_sys = [
        System(ours_name(torch.float32), ours_version(), lambda _: o32.viterbi(x32, lengths),
               f"path frames differing {differ}/{int(lengths.sum())}; {c}", ok and not differ,
               warmup=lambda: o32.viterbi(xw, lw)),
        System(ours_name(torch.float64), ours_version(), lambda _: o64.viterbi(x64, lengths),
               REF, True, warmup=lambda: o64.viterbi(x64[:1], lw)),
    ]  # fmt: skip
    if isinstance(chad, str):
        vit_sys.append(System("ChadHMM", ver, status=ll_sys[-1].status))
    else:
        err = chad.get("errors", {}).get("viterbi", "no Viterbi")
        vit_sys.append(System("ChadHMM", chad["version"], status=f"failed: {err}"))
    rows = measure("hsmm", "log-likelihood", ll_sys, cfg)
    rows += measure("hsmm", "Viterbi", vit_sys, cfg)
    rows += measure("hsmm", "EM iteration (fit, n_iter=1)", em_sys, cfg)
    cfg.notes += notes
    return rows


def neural_check(model, sym, sl, x, L) -> tuple:
    """Eval mode (no dropout): (max |dLL| / max |LL|, max |d grad| / max |grad|) of the
    papers' loop against ours, float64."""
    model = copy.deepcopy(model).double().eval()
    x = x.double()
    out = []
    for loop in (False, True):
        model.zero_grad(set_to_none=True)
        if loop:
            ll = bench_neural_hmm.loop_log_likelihood(model, sym, sl, x)
        else:
            ll = model.log_likelihood(sym, sl, x, L)
        ll.sum().backward()
        g = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out.append((ll.detach(), g))
    (l0, g0), (l1, g1) = out
    return (
        float((l1 - l0).abs().max() / l0.abs().max()),
        float((g1 - g0).abs().max() / g0.abs().max()),
    )


def group_neural(cfg) -> List[dict]:
    s = cfg.sizes["neural"]
    B, N, T = s["B"], s["N"], s["T"]
    cfg.titles["neural"] = (
        f"Neural HMM: one training step (loss forward + backward), B={B}, {N} symbols x 2 "
        f"states, T={T}, D=80, hidden 256, autoregressive, train mode, float32 (check: eval "
        "mode, float64, the same model and data)"
    )
    model, sym, sl, x, L = bench_neural_hmm.make_problem(B, N, T)
    dll, dg = neural_check(model, sym, sl, x, L)
    model.train()

    def step(method, small=False):
        args = (sym[:1, :2], sl[:1].clamp(max=2), x[:1, :8], L[:1].clamp(max=8)) if small else (
            sym, sl, x, L)  # fmt: skip

        def f(_=None):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(0)
            bench_neural_hmm.step_fn(method, model, *args).backward()

        return f

    with torch.no_grad():
        model.eval()
        ll32 = model.log_likelihood(sym, sl, x, L).double()
        ll64 = copy.deepcopy(model).double().log_likelihood(sym, sl, x.double(), L)
        model.train()
    c32, ok32 = agree("eval-mode LL vs float64", float((ll32 - ll64).abs().max()),
                      float(ll64.abs().max()), TOL32)  # fmt: skip
    ours = System(ours_name(torch.float32), ours_version(), step("ours"), c32, ok32,
                  warmup=step("ours", True))  # fmt: skip
    c, ok = combine(agree("LL", dll, 1.0, TOL64), agree("grad", dg, 1.0, 1e-7))
    loop = System("papers' autograd loop", "bench_neural_hmm", step("loop"),
                  f"rel. max |d|: {c}", ok, warmup=step("loop", True))  # fmt: skip
    rows = measure("neural", "training step", [ours, loop], cfg)
    if ours.status == "ok":  # where our step's time goes (the faster of two extra steps)
        sp = bench_neural_hmm.split_ours(model, sym, sl, x, L, repeats=2)
        cfg.notes.append(
            "Neural HMM, ours, where the step's time goes (the faster of two extra steps): "
            + ", ".join(f"{k.replace('_', ' ')} {fmt_s(v)}" for k, v in sp.items())
            + " (networks: the encoder and the emission network over chunks of "
            f"{model.chunk_frames} frames, recomputed in the backward pass under "
            "torch.utils.checkpoint; engine: the forward recursion and its explicit backward)."
        )
    return rows


# ------------------------------------------------------------------------------------------
# machine, output


def loadavg() -> Optional[List[float]]:
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numba_threads() -> Optional[int]:
    try:
        import numba

        return int(numba.get_num_threads())
    except Exception:
        return None


def machine_info(threads: Optional[int]) -> Dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip() or None  # fmt: skip
    except OSError:
        commit = None
    return dict(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        usable_cores=usable,
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        pytorch_hmm=ours_version(),
        numba=dist_version("numba"),
        peers={name: dist_version(dist) for name, dist in PEER_DISTS.items()},
        torch_threads=torch.get_num_threads(),
        numba_threads=_numba_threads(),
        threads_requested=threads,
        git_commit=commit,
    )


def fmt_s(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if v < 1e-3:
        return f"{v * 1e6:.0f} us"
    if v < 1.0:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(data: Dict[str, Any], level: int = 2) -> str:
    """The tables of ``data`` (the content of peers.json): a header naming the machine, the
    date and the versions, then one table per workload group."""
    m, h = data["machine"], "#" * level
    peers = ", ".join(f"{k} {v}" for k, v in m["peers"].items() if v) or "none"
    missing = [k for k, v in m["peers"].items() if not v]
    la0, la1 = data.get("loadavg_start"), data.get("loadavg_end")
    la = lambda v: " ".join(f"{x:.2f}" for x in v) if v else "?"  # noqa: E731
    out = [
        f"{h} pytorch_hmm against its peers"
        if level <= 2
        else "<!-- generated by benchmarks/compare_peers.py from benchmarks/results/peers.json "
        "(--update-readme --from-json): edit that, not this -->",
        "",
        f"Run {data['date']} on {m['cpu']} ({m['cores']} cores, {m['usable_cores']} usable), "
        f"Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, pytorch_hmm "
        f"{m['pytorch_hmm']}, numba {m['numba']}; {m['torch_threads']} torch thread(s), "
        f"{m['numba_threads']} numba thread(s); load average {la(la0)} at the start, "
        f"{la(la1)} at the end; {data['elapsed_s']:.0f} s in all"
        + (" (--quick sizes)" if data["config"].get("quick") else "")
        + ".",
        "",
        f"Peers: {peers}" + (f"; not installed: {', '.join(missing)}" if missing else "") + ".",
        "Median, min and max wall time of n calls after a warm-up; the systems of a workload "
        "take turns call by call. ratio = median / pytorch_hmm's first row (> 1: ours faster). "
        "agrees: the check (against pytorch_hmm in float64) holds.",
    ]
    for group in data["config"]["groups"]:
        rows = [r for r in data["rows"] if r["group"] == group]
        if not rows:
            continue
        out += ["", f"{h}# {data['titles'].get(group, group)}", ""]
        out.append("| workload | system | version | median | min | max | n | ratio | agrees "
                   "| check |")  # fmt: skip
        out.append("|---|---|---|---:|---:|---:|---:|---:|---|---|")
        for r in rows:
            ok = {True: "yes", False: "**no**", None: "-"}[r["check_ok"]]
            ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
            times = [fmt_s(r[k]) for k in ("median_s", "min_s", "max_s")]
            cells = [r["workload"], r["system"], r["version"] or "-", *times, r["repeats"],
                     ratio, ok, r["check"]]  # fmt: skip
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if data.get("notes"):
        out += [""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(out) + "\n"


def update_readme(readme: str, text: str) -> None:
    """Replace what lies between the markers in ``readme`` with ``text``."""
    with open(readme, encoding="utf-8") as f:
        src = f.read()
    i, j = src.find(BEGIN), src.find(END)
    if i < 0 or j < i:
        raise SystemExit(f"{readme}: markers {BEGIN} ... {END} not found")
    new = src[: i + len(BEGIN)] + "\n" + text.strip("\n") + "\n" + src[j:]
    with open(readme, "w", encoding="utf-8") as f:
        f.write(new)


# ------------------------------------------------------------------------------------------


RUNNERS = {
    "hmm": lambda cfg: group_hmm(cfg, "dense"),
    "hmm-lr": lambda cfg: group_hmm(cfg, "lr"),
    "em": group_em,
    "dtw": group_dtw,
    "mas": group_mas,
    "hsmm": group_hsmm,
    "neural": group_neural,
}


def run(args) -> Dict[str, Any]:
    groups = [g.strip() for g in args.only.split(",") if g.strip()] if args.only else GROUPS
    bad = [g for g in groups if g not in RUNNERS]
    if bad:
        raise SystemExit(f"--only: unknown {', '.join(bad)} (use {', '.join(GROUPS)})")
    cfg = types.SimpleNamespace(
        sizes=QUICK if args.quick else FULL,
        repeats=args.repeats,
        budget_s=args.budget_s,
        threads=args.threads,
        titles={},
        notes=[],
    )
    t0 = time.perf_counter()
    la0 = loadavg()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"compare_peers: {', '.join(groups)}; load average {la0}", flush=True)
    rows: List[dict] = []
    group_s = {}
    for g in groups:
        print(f"## {g}", flush=True)
        tg = time.perf_counter()
        try:
            rows += RUNNERS[g](cfg)
        except Exception as e:  # one broken group does not lose the others' rows
            cfg.notes.append(f"group {g}: {_reason(e)}")
            print(f"   {g}: {_reason(e)}", flush=True)
        group_s[g] = round(time.perf_counter() - tg, 1)
        print(f"   ({g}: {group_s[g]:.0f} s)", flush=True)
        if args.threads:  # launching numba's thread pool may reset torch's thread count
            torch.set_num_threads(args.threads)
    sizes = {k: cfg.sizes[k] for k in cfg.sizes}
    return dict(
        schema=1,
        date=date,
        machine=machine_info(args.threads),
        loadavg_start=la0,
        loadavg_end=loadavg(),
        elapsed_s=time.perf_counter() - t0,
        group_elapsed_s=group_s,
        config=dict(quick=args.quick, groups=groups, repeats=args.repeats,
                    budget_s=args.budget_s, sizes=sizes, tol_float64=TOL64,
                    tol_float32=TOL32),  # fmt: skip
        titles=cfg.titles,
        notes=cfg.notes,
        rows=rows,
    )


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds): a smoke test")
    p.add_argument("--only", default=None, help=f"comma-separated groups of {','.join(GROUPS)}")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="output folder")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per system")
    p.add_argument("--budget-s", type=float, default=10.0,
                   help="a system stops repeating once its calls took this long")  # fmt: skip
    p.add_argument("--threads", type=int, default=1,
                   help="torch and numba threads (default 1: steadiest on shared cores; "
                   "0: leave them as they start)")  # fmt: skip
    p.add_argument("--update-readme", action="store_true",
                   help=f"put the tables between {BEGIN} and {END} in --readme")  # fmt: skip
    p.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    p.add_argument("--from-json", default=None,
                   help="render (and --update-readme) from this JSON; run nothing")  # fmt: skip
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            data = json.load(f)
        if not args.update_readme:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "peers.md"), "w", encoding="utf-8") as f:
                f.write(render_markdown(data))
    else:
        if args.threads:
            os.environ["NUMBA_NUM_THREADS"] = str(args.threads)  # before numba's import
            torch.set_num_threads(args.threads)
        data = run(args)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "peers.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        with open(os.path.join(args.out, "peers.md"), "w", encoding="utf-8") as f:
            f.write(render_markdown(data))
        print(f"wrote {os.path.join(args.out, 'peers.json')} and peers.md "
              f"({data['elapsed_s']:.0f} s)")  # fmt: skip
    if args.update_readme:
        update_readme(args.readme, render_markdown(data, level=3))
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
