"""Streaming benchmark: per-chunk latency of StreamingHMMProcessor for 10 ms chunks.

Run:  .venv/bin/python benchmarks/bench_streaming.py [--chunks 1000] [--busy [N]]

K=8 states, D=80 log-mel features, 16 kHz audio, hop 160 samples (one frame per 10 ms
chunk). Rows: one stream and 64 streams, fed feature frames or raw audio (then the streaming
log-mel front end runs too: n_fft 400, 80 mels). Reports the median and 99th percentile time
of ``process_chunk`` over ``--chunks`` chunks after a warm-up, and the real-time factor
(seconds of audio in the batch / seconds of compute: 64 streams of 10 ms chunks in 2 ms is
320x). ``--busy`` runs it beside N busy-looping processes. Nothing is asserted here; the
figures go in the closing notes and the README.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

import pytorch_hmm as ph
from pytorch_hmm.streaming import StreamingHMMProcessor

SR, HOP, K, D = 16000, 160, 8, 80


def start_busy(n):
    """``n`` processes spinning in a Python loop (load from a second busy process)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    time.sleep(0.5)
    return procs


def _model(seed=0):
    g = np.random.default_rng(seed)
    return ph.GaussianHMM(
        K,
        D,
        "diag",
        startprob=g.dirichlet(np.ones(K)),
        transmat=g.dirichlet(np.ones(K), size=K),
        means=g.normal(size=(K, D)) * 3 - 40.0,
        covars=g.uniform(20, 60, size=(K, D)),
    )


def run_row(streams: int, audio: bool, chunks: int, warmup: int = 50):
    model = _model()
    fe = ph.LogMelSpectrogram(SR, n_fft=400, hop_length=HOP, n_mels=D, top_db=None)
    proc = StreamingHMMProcessor(
        model=model, feature_extractor=fe if audio else None, chunk_size=HOP if audio else 1
    )
    g = torch.Generator().manual_seed(0)
    n = chunks + warmup
    if audio:
        data = torch.randn(streams, n * HOP, generator=g) * 0.05
        chunk = [data[:, i * HOP : (i + 1) * HOP] for i in range(n)]
    else:
        data = torch.randn(streams, n, D, generator=g) * 5 - 40.0
        chunk = [data[:, i : i + 1] for i in range(n)]
    if streams == 1:
        chunk = [c[0] for c in chunk]
    times = []
    for i, c in enumerate(chunk):
        t0 = time.perf_counter()
        proc.process_chunk(c)
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    t = np.array(times) * 1e3
    med, p99 = float(np.median(t)), float(np.percentile(t, 99))
    rtf = streams * 10.0 / med  # ms of audio per ms of compute
    return med, p99, rtf


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--busy", type=int, nargs="?", const=1, default=0)
    ap.add_argument("--torch-threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    busy = start_busy(args.busy)
    try:
        print(
            f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
            f"cpus {os.cpu_count()}, busy processes {args.busy}, chunks {args.chunks}",
            flush=True,
        )
        print(f"{'row':<34} | median ms | p99 ms | real-time factor")
        for streams in (1, 64):
            for audio in (False, True):
                med, p99, rtf = run_row(streams, audio, args.chunks)
                what = "audio (log-mel inside)" if audio else "feature frames"
                print(
                    f"{streams:>2} stream(s), {what:<22} | {med:9.3f} | {p99:6.3f} | {rtf:8.0f}x",
                    flush=True,
                )
    finally:
        for p in busy:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
