"""Engine benchmark: pytorch_hmm vs hmmlearn and pomegranate (log-likelihood, Viterbi) and
peak memory of the explicit backward vs plain autograd. See pytorch_hmm/benchmark.py.

    python benchmarks/bench_engine.py [--repeats 5] [--threads 1] [--json out.json]
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
