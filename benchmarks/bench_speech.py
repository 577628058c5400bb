"""Timings for the speech utilities: MLPG (banded torch solve vs a dense numpy solve) and MFCC.

Run: python benchmarks/bench_speech.py [--device cuda]. Prints wall-clock times; nothing here is
asserted (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pytorch_hmm.speech import MFCC, load_audio, mlpg

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def dense_mlpg(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Dense (T x T) reference with the HTS boundary, one solve per dimension."""
    T, F = mean.shape
    D = F // 3
    eye = np.eye(T)
    d1 = 0.5 * (np.roll(eye, 1, 1) - np.roll(eye, -1, 1))
    d2 = np.roll(eye, 1, 1) - 2 * eye + np.roll(eye, -1, 1)
    Ws = [eye, d1, d2]
    keep = np.ones(T)
    keep[[0, -1]] = 0
    out = np.zeros((T, D))
    for d in range(D):
        A = np.zeros((T, T))
        b = np.zeros(T)
        for m, W in enumerate(Ws):
            p = 1.0 / var[:, m * D + d] * (keep if m else 1.0)
            A += W.T @ (p[:, None] * W)
            b += W.T @ (p * mean[:, m * D + d])
        out[:, d] = np.linalg.solve(A, b)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    rng = np.random.default_rng(0)
    for B, T, D in [(1, 500, 60), (8, 1000, 60)]:
        mean = rng.normal(size=(B, T, 3 * D))
        var = rng.uniform(0.1, 1.0, size=(B, T, 3 * D))
        m = torch.tensor(mean, dtype=torch.float32, device=dev)
        v = torch.tensor(var, dtype=torch.float32, device=dev)
        t = _time(
            lambda m=m, v=v: (
                mlpg(m, v) if dev.type == "cpu" else (mlpg(m, v), torch.cuda.synchronize())
            )
        )
        line = f"mlpg banded B={B} T={T} D={D}: {t * 1e3:8.1f} ms"
        if B == 1:
            td = _time(lambda a=mean[0], b=var[0]: dense_mlpg(a, b), repeat=1)
            line += f"   dense numpy: {td * 1e3:8.1f} ms"
        print(line)
    wav, sr = load_audio(ROOT / "data" / "arctic" / "arctic_a0009.wav")
    front = MFCC(sr, delta_order=2, cmvn=True).to(dev)
    batch = wav.to(dev).repeat(16, 1)
    t = _time(lambda: front(batch))
    print(f"MFCC+deltas+CMVN, 16 x {wav.shape[0] / sr:.2f} s: {t * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
