"""Peak memory of the engine's explicit backward against plain autograd through the same
log-space forward recursion (log-likelihood forward + backward, each in a fresh process)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import List

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
