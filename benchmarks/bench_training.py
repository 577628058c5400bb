"""Benchmark: 10 Baum-Welch EM iterations, ours against hmmlearn and pomegranate.

Run:  .venv/bin/python benchmarks/bench_training.py [--repeats 3] [--B 32 --T 1000 --K 64
      --D 80 --mix 4] [--skip-pomegranate] [--skip-gmm] [--threads N]

Two problems, each from the same initial parameters on every side:

1. GaussianHMM, diagonal covariances: ours (float64 and float32) vs ``hmmlearn.hmm.GaussianHMM
   .fit`` (implementation="scaling", init_params="", tol=-inf so all iterations run) and
   ``pomegranate.hmm.DenseHMM.fit`` (diagonal ``Normal`` states, tol=-inf).
2. GMM-HMM with ``--mix`` components per state: ours (``covariance_center="previous"``, as
   hmmlearn) vs ``hmmlearn.hmm.GMMHMM.fit``.

Prints median (``--stat min``: best) wall times of the whole ``fit`` (s), per-iteration
times, ratios peer/ours (> 1: ours faster) and the largest relative difference between our
float64 parameters and hmmlearn's after the 10 iterations. Peers run ``--peer-repeats``
times (default 1: they are slow). Timings on a shared machine are noisy: rerun and compare.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pytorch_hmm.models import GaussianHMM, MixtureGaussianHMM  # noqa: E402

N_ITER = 10
STAT = "median"


def _time(fn, repeats):
    """Median (or, with ``--stat min``, best) wall time of ``repeats`` calls, and the result."""
    out, ts = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return (min(ts) if STAT == "min" else statistics.median(ts)), out


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-8)))


def make_problem(B, T, K, D, seed=0):
    rng = np.random.default_rng(seed)
    tm = rng.dirichlet(np.ones(K), size=K) + 5 * np.eye(K)
    tm /= tm.sum(1, keepdims=True)
    true = GaussianHMM(
        K,
        D,
        startprob=rng.dirichlet(np.ones(K)),
        transmat=tm,
        means=rng.normal(size=(K, D)) * 2,
        covars=rng.uniform(0.5, 2.0, size=(K, D)),
        dtype=torch.float64,
    )
    x, _ = true.sample(T, num_sequences=B, generator=torch.Generator().manual_seed(seed))
    init = dict(
        startprob=np.full(K, 1.0 / K),
        transmat=rng.dirichlet(np.ones(K) * 10, size=K),
        means=true.means.detach().numpy() + rng.normal(size=(K, D)) * 0.7,
        covars=np.full((K, D), 1.5),
    )
    return x, init


def bench_gaussian(args):
    B, T, K, D = args.B, args.T, args.K, args.D
    x, init = make_problem(B, T, K, D)
    X = x.reshape(-1, D).numpy()
    lengths = [T] * B
    print(f"\n## GaussianHMM diag: {N_ITER} EM iterations, B={B}, T={T}, K={K}, D={D}")
    rows = []

    def ours(dtype):
        m = GaussianHMM(K, D, "diag", dtype=dtype, **init)
        m.fit(x.to(dtype), n_iter=N_ITER, tol=-math.inf, init_params="")
        return m

    t64, m64 = _time(lambda: ours(torch.float64), args.repeats)
    t32, m32 = _time(lambda: ours(torch.float32), args.repeats)
    rows.append(("pytorch_hmm float64", t64))
    rows.append(("pytorch_hmm float32", t32))
    # where the time goes (float64): one E-step (engine + emissions + stats) and one M-step
    m = GaussianHMM(K, D, "diag", dtype=torch.float64, **init)
    te, st = _time(lambda: m.accumulate(x), 3)
    tm, _ = _time(lambda: m.m_step(st), 3)
    from pytorch_hmm import core

    lb, lpi, lA, L = m._engine_inputs(x)
    tp, _ = _time(lambda: core.posteriors(lb.detach(), lpi.detach(), lA.detach(), L), 3)

    from hmmlearn import hmm

    ref = hmm.GaussianHMM(
        K,
        "diag",
        n_iter=N_ITER,
        tol=-np.inf,
        init_params="",
        params="stmc",
        implementation="scaling",
    )
    ref.n_features = D
    ref.startprob_, ref.transmat_ = init["startprob"], init["transmat"]
    ref.means_, ref.covars_ = init["means"], init["covars"]

    def run_hmmlearn():
        r = hmm.GaussianHMM(
            K, "diag", n_iter=N_ITER, tol=-np.inf, init_params="", implementation="scaling"
        )
        r.n_features = D
        r.startprob_, r.transmat_ = init["startprob"], init["transmat"]
        r.means_, r.covars_ = init["means"], init["covars"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return r.fit(X, lengths)

    th, ref = _time(run_hmmlearn, args.peer_repeats)
    rows.append(("hmmlearn GaussianHMM.fit (scaling)", th))

    def diff(m):
        return {
            "startprob": _rel(ref.startprob_, m.startprob),
            "transmat": _rel(ref.transmat_, m.transmat),
            "means": _rel(ref.means_, m.means.detach()),
            "covars": _rel(ref._covars_, m.covars),
            "loglik history": _rel(list(ref.monitor_.history), m.log_likelihood_history),
        }

    diffs, diffs32 = diff(m64), diff(m32)
    if not args.skip_pomegranate:
        try:
            from pomegranate.distributions import Normal
            from pomegranate.hmm import DenseHMM
        except ImportError:
            rows.append(("pomegranate DenseHMM.fit", None))
        else:

            def run_pomegranate():
                dists = [
                    Normal(
                        torch.tensor(init["means"][k], dtype=torch.float32),
                        torch.tensor(init["covars"][k], dtype=torch.float32),
                        covariance_type="diag",
                    )
                    for k in range(K)
                ]
                model = DenseHMM(
                    dists,
                    edges=torch.tensor(init["transmat"], dtype=torch.float32),
                    starts=torch.tensor(init["startprob"], dtype=torch.float32),
                    max_iter=N_ITER,
                    tol=0.0,  # its minimum: stop only if the likelihood decreases
                    verbose=False,
                )
                return model.fit(x.float())

            tpg, _ = _time(run_pomegranate, args.peer_repeats)
            rows.append(("pomegranate DenseHMM.fit (float32)", tpg))
    _table(rows, ours_time=t64, ours32=t32)
    print(
        f"\nours float64, one iteration: E-step (accumulate) {te * 1e3:.0f} ms, of which "
        f"core.posteriors {tp * 1e3:.0f} ms; M-step {tm * 1e3:.1f} ms"
    )
    print("max relative difference to hmmlearn after 10 iterations (ours float64 / float32):")
    for k, v in diffs.items():
        print(f"  {k:15s} {v:.2e}   {diffs32[k]:.2e}")


def bench_gmm(args):
    B, T, K, D, M = args.B, args.T, args.K, args.D, args.mix
    x, ginit = make_problem(B, T, K, D, seed=1)
    X = x.reshape(-1, D).numpy()
    lengths = [T] * B
    rng = np.random.default_rng(2)
    init = dict(
        startprob=ginit["startprob"],
        transmat=ginit["transmat"],
        weights=np.full((K, M), 1.0 / M),
        means=ginit["means"][:, None, :] + rng.normal(size=(K, M, D)) * 0.3,
        covars=np.full((K, M, D), 1.5),
    )
    print(f"\n## GMM-HMM diag, {M} mixtures: {N_ITER} EM iterations, B={B}, T={T}, K={K}, D={D}")

    def ours(dtype):
        m = MixtureGaussianHMM(K, D, M, "diag", dtype=dtype, covariance_center="previous", **init)
        m.fit(x.to(dtype), n_iter=N_ITER, tol=-math.inf, init_params="")
        return m

    t64, m64 = _time(lambda: ours(torch.float64), args.repeats)
    t32, _ = _time(lambda: ours(torch.float32), args.repeats)
    from hmmlearn import hmm

    def run_hmmlearn():
        r = hmm.GMMHMM(K, M, "diag", n_iter=N_ITER, tol=-np.inf, init_params="")
        r.n_features = D
        r.startprob_, r.transmat_ = init["startprob"], init["transmat"]
        r.weights_, r.means_, r.covars_ = init["weights"], init["means"], init["covars"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return r.fit(X, lengths)

    th, ref = _time(run_hmmlearn, args.peer_repeats)
    _table(
        [("pytorch_hmm float64", t64), ("pytorch_hmm float32", t32), ("hmmlearn GMMHMM.fit", th)],
        t64,
        t32,
    )
    print("max relative difference to hmmlearn after 10 iterations (float64):")
    for k, a, b in [
        ("weights", ref.weights_, m64.weights),
        ("means", ref.means_, m64.means.detach()),
        ("covars", ref.covars_, m64.covars),
        ("transmat", ref.transmat_, m64.transmat),
        ("loglik history", list(ref.monitor_.history), m64.log_likelihood_history),
    ]:
        print(f"  {k:15s} {_rel(a, b):.2e}")


def _table(rows, ours_time, ours32):
    head = ["fit (s)", "per iter (ms)", "vs ours f64", "vs ours f32"]
    print(f"\n| {'implementation':38s} | " + " | ".join(head) + " |")
    print(f"|{'-' * 40}|{'-' * 10}|{'-' * 15}|{'-' * 13}|{'-' * 13}|")
    for name, t in rows:
        if t is None:
            print(f"| {name:38s} | {'n/a':>8s} | {'':>13s} | {'':>11s} | {'':>11s} |")
            continue
        print(
            f"| {name:38s} | {t:8.2f} | {t / N_ITER * 1e3:13.1f} | {t / ours_time:10.1f}x |"
            f" {t / ours32:10.1f}x |"
        )


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--K", type=int, default=64)
    p.add_argument("--D", type=int, default=80)
    p.add_argument("--mix", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer-repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-pomegranate", action="store_true")
    p.add_argument("--skip-gmm", action="store_true")
    p.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="summary of the repeats: median, or min (best of N: the run least disturbed by "
        "other processes on a shared machine)",
    )
    args = p.parse_args()
    global STAT
    STAT = args.stat
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {STAT} of repeats")
    bench_gaussian(args)
    if not args.skip_gmm:
        bench_gmm(args)


if __name__ == "__main__":
    main()
