"""The library's own benchmark (``pytorch_hmm.benchmark.main``, the same as
``pytorch-hmm benchmark``): log-likelihood, Viterbi and one training step of every model type
over a grid of batch sizes, lengths and feature dimensions (median/min/max, real-time factor,
peak memory); ``--engine-memory`` adds the explicit backward's peak memory against plain
autograd. It times pytorch_hmm alone: the comparison with hmmlearn, pomegranate and the other
peers is ``benchmarks/compare_peers.py``.

    python benchmarks/bench_engine.py [--threads 1] [--repeats 3] [--batch-sizes 1,8,32]
        [--json out.json] [--csv out.csv] [--engine-memory]   (--help: every option)
"""

import argparse
import sys

import torch

from pytorch_hmm.benchmark import main

if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--threads", type=int, default=None)
    known, rest = ap.parse_known_args()
    if known.threads:
        torch.set_num_threads(known.threads)
    sys.exit(main(rest))
