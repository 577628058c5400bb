"""Benchmarks of the inference engine against peer libraries, in one run on the same data.

``run_comprehensive_benchmark()`` times log-likelihood and Viterbi of :class:`GaussianHMM`
against hmmlearn (``GaussianHMM``, diag) and pomegranate (``DenseHMM``) where installed, on

- ``dense``: B=32 sequences, T=1000 frames, K=64 states, D=80 features, dense transitions;
- ``dense-peaked``: the same with well-separated state means (peaked posteriors, where
  float32 ``exp`` of very negative values can hit slow denormals);
- ``left-to-right``: a chain of K=200 states (B=8, T=1000).

It prints medians and ratios (peer time / ours) and returns the rows. Peak memory of forward
plus backward (the custom backward against plain autograd through the same recursion) is
measured by :func:`memory_benchmark`. Command line: ``python -m pytorch_hmm.benchmark`` or
``pytorch-hmm benchmark``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .models import GaussianHMM


@dataclass
class BenchRow:
    workload: str
    task: str
    library: str
    seconds: float
    ratio_vs_ours: Optional[float] = None  # peer seconds / our seconds


def _median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _workload(name: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    if name.startswith("dense"):
        B, T, K, D = 32, 1000, 64, 80
        startprob = rng.dirichlet(np.ones(K))
        transmat = rng.dirichlet(np.ones(K), size=K)
        spread = 4.0 if name == "dense-peaked" else 0.3
    elif name == "left-to-right":
        B, T, K, D = 8, 1000, 200, 80
        startprob = np.zeros(K)
        startprob[0] = 1.0
        transmat = np.zeros((K, K))
        for i in range(K - 1):
            transmat[i, i], transmat[i, i + 1] = 0.8, 0.2
        transmat[K - 1, K - 1] = 1.0
        spread = 1.0
    else:
        raise ValueError(f"unknown workload {name!r}")
    means = rng.normal(size=(K, D)) * spread
    covars = rng.uniform(0.5, 1.5, size=(K, D))
    # data: sample states from the chain, features from their Gaussians
    z = np.zeros((B, T), dtype=np.int64)
    z[:, 0] = rng.choice(K, size=B, p=startprob)
    cum = np.cumsum(transmat, 1)
    for t in range(1, T):
        u = rng.random(B)
        z[:, t] = np.minimum((u[:, None] > cum[z[:, t - 1]]).sum(1), K - 1)
    x = means[z] + rng.normal(size=(B, T, D)) * np.sqrt(covars[z])
    return dict(
        B=B,
        T=T,
        K=K,
        D=D,
        startprob=startprob,
        transmat=transmat,
        means=means,
        covars=covars,
        x=x.astype(np.float32),
    )


def engine_benchmark(
    workloads=("dense", "dense-peaked", "left-to-right"),
    repeats: int = 5,
    peers: bool = True,
    device: str = "cpu",
    verbose: bool = True,
) -> List[BenchRow]:
    """Time log-likelihood and Viterbi (emissions included) for each workload."""
    rows: List[BenchRow] = []
    for name in workloads:
        w = _workload(name)
        model = GaussianHMM(
            w["K"],
            w["D"],
            "diag",
            startprob=w["startprob"],
            transmat=w["transmat"],
            means=w["means"],
            covars=w["covars"],
            dtype=torch.float32,
        ).to(device)
        x = torch.from_numpy(w["x"]).to(device)

        def sync():
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        def ours_ll(model=model, x=x):
            with torch.no_grad():
                model.log_likelihood(x)
            sync()

        def ours_vit(model=model, x=x):
            model.viterbi(x)
            sync()

        timings: Dict[str, Dict[str, float]] = {"log-likelihood": {}, "viterbi": {}}
        timings["log-likelihood"]["pytorch_hmm"] = _median_time(ours_ll, repeats)
        timings["viterbi"]["pytorch_hmm"] = _median_time(ours_vit, repeats)
        if peers:
            _time_hmmlearn(w, timings, max(1, repeats // 2))
            _time_pomegranate(w, timings, max(1, repeats // 2))
        for task, libs in timings.items():
            ours = libs["pytorch_hmm"]
            for lib, sec in libs.items():
                rows.append(
                    BenchRow(name, task, lib, sec, None if lib == "pytorch_hmm" else sec / ours)
                )
        if verbose:
            _print_rows([r for r in rows if r.workload == name])
    return rows


def _time_hmmlearn(w, timings, repeats):
    try:
        from hmmlearn import hmm
    except ImportError:
        return
    X = w["x"].reshape(-1, w["D"]).astype(np.float64)
    lengths = [w["T"]] * w["B"]
    # hmmlearn's default implementation ("log") and its faster "scaling" one
    for impl, label in (("log", "hmmlearn"), ("scaling", "hmmlearn-scal")):
        m = hmm.GaussianHMM(w["K"], "diag", init_params="", params="", implementation=impl)
        m.n_features = w["D"]
        m.startprob_, m.transmat_ = w["startprob"], w["transmat"]
        m.means_, m.covars_ = w["means"], w["covars"]
        timings["log-likelihood"][label] = _median_time(lambda m=m: m.score(X, lengths), repeats, 0)
        if impl == "log":  # Viterbi has one implementation
            timings["viterbi"][label] = _median_time(lambda m=m: m.decode(X, lengths), repeats, 0)


def _time_pomegranate(w, timings, repeats):
    try:
        from pomegranate.distributions import Normal
        from pomegranate.hmm import DenseHMM
    except ImportError:
        return
    dists = [
        Normal(
            means=w["means"][k].astype(np.float32),
            covs=w["covars"][k].astype(np.float32),
            covariance_type="diag",
        )
        for k in range(w["K"])
    ]
    m = DenseHMM(
        dists, edges=w["transmat"].astype(np.float32), starts=w["startprob"].astype(np.float32)
    )
    X = torch.from_numpy(w["x"])
    with torch.no_grad():
        timings["log-likelihood"]["pomegranate"] = _median_time(
            lambda: m.log_probability(X), repeats
        )
        timings["viterbi"]["pomegranate"] = _median_time(lambda: m.viterbi(X), repeats)


def _print_rows(rows: List[BenchRow]) -> None:
    for r in rows:
        ratio = "" if r.ratio_vs_ours is None else f"{r.ratio_vs_ours:8.1f}x"
        print(f"{r.workload:14s} {r.task:15s} {r.library:12s} {r.seconds * 1e3:10.1f} ms {ratio}")


# ------------------------------------------------------------------------------------------
# memory


_MEM_SCRIPT = r"""
import resource, sys, torch
from pytorch_hmm import core
mode, T, B, K = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
lb = torch.randn(B, T, K)
lpi = torch.log_softmax(torch.randn(K), -1)
lA = torch.log_softmax(torch.randn(K, K), -1)
lb.requires_grad_()
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
def peak():
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    try:
        return _status("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def reset_peak():
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    try:  # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status("VmRSS")
    except OSError:
        return peak()
dev = "cuda" if torch.cuda.is_available() else "cpu"
lb, lpi, lA = lb.detach().to(dev).requires_grad_(), lpi.to(dev), lA.to(dev)
# warm up allocators and kernels on a short sequence, then take the baseline
core.log_likelihood(lb[:, :8], lpi, lA).sum().backward()
base = reset_peak()
if mode == "ours":
    ll = core.log_likelihood(lb, lpi, lA)
else:  # plain autograd through the same log-space recursion
    a = lpi + lb[:, 0]
    for t in range(1, T):
        a = torch.logsumexp(a.unsqueeze(2) + lA, 1) + lb[:, t]
    ll = torch.logsumexp(a, -1)
ll.sum().backward()
print(peak() - base)
"""


def memory_benchmark(
    lengths=(1000, 10000), B: int = 8, K: int = 64, verbose: bool = True
) -> List[dict]:
    """Peak memory (bytes above a warmed-up baseline) of log-likelihood forward + backward,
    the engine's explicit backward against plain autograd through the same recursion. Each
    measurement runs in a fresh process (on Linux CPUs the peak RSS, reset after warm-up
    through /proc/self/clear_refs; ``max_memory_allocated`` on CUDA)."""
    out = []
    for T in lengths:
        row = {"T": T, "B": B, "K": K}
        for mode in ("ours", "autograd"):
            r = subprocess.run(
                [sys.executable, "-c", _MEM_SCRIPT, mode, str(T), str(B), str(K)],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
            )
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-2000:])
            row[mode] = int(r.stdout.strip().splitlines()[-1])
        row["ratio"] = row["autograd"] / max(1, row["ours"])
        out.append(row)
        if verbose:
            print(
                f"T={T:6d} B={B} K={K}: engine {row['ours'] / 2**20:8.1f} MiB, plain autograd "
                f"{row['autograd'] / 2**20:8.1f} MiB ({row['ratio']:.1f}x)"
            )
    return out


def run_comprehensive_benchmark(
    workloads=("dense", "dense-peaked", "left-to-right"),
    repeats: int = 5,
    peers: bool = True,
    memory: bool = True,
    device: str = "cpu",
    verbose: bool = True,
) -> dict:
    """Run the engine benchmark (and the memory benchmark); print and return the results.

    Returns ``{"engine": [BenchRow as dict, ...], "memory": [...], "torch": version,
    "threads": n}``.
    """
    if verbose:
        print(
            f"pytorch_hmm benchmark: torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads, device {device}"
        )
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device}
    res["engine"] = [
        asdict(r) for r in engine_benchmark(workloads, repeats, peers, device, verbose)
    ]
    if memory:
        res["memory"] = memory_benchmark(verbose=verbose)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-peers", action="store_true", help="time pytorch_hmm only")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--workloads", nargs="+", default=["dense", "dense-peaked", "left-to-right"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the results to this file")
    a = p.parse_args(argv)
    res = run_comprehensive_benchmark(
        a.workloads, a.repeats, not a.no_peers, not a.no_memory, a.device
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
