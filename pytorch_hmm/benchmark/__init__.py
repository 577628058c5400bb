"""Benchmarks a user runs on their own machine.

- :func:`run_comprehensive_benchmark`: log-likelihood, Viterbi and one training step of every
  model type over a grid of batch sizes, lengths and feature dimensions, with real-time
  factors and peak memory (``pytorch-hmm benchmark``, ``python -m pytorch_hmm.benchmark``);
- :func:`memory_benchmark`: peak memory of the engine's explicit backward against plain
  autograd through the same recursion.

The side-by-side comparison with other libraries (hmmlearn, pomegranate, dtw-python,
librosa, monotonic-align, ChadHMM, the neural HMM papers' loop) is
``benchmarks/compare_peers.py`` in the repository: those libraries are not dependencies.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from .comprehensive import (
    MODEL_TYPES,
    TASKS,
    BenchmarkRecord,
    BenchmarkResult,
    device_name,
    run_comprehensive_benchmark,
)
from .memory import memory_benchmark

__all__ = [
    "MODEL_TYPES",
    "TASKS",
    "BenchmarkRecord",
    "BenchmarkResult",
    "device_name",
    "memory_benchmark",
    "run_comprehensive_benchmark",
    "add_arguments",
    "run_from_args",
    "main",
]


def _int_list(text: str) -> List[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,4,8, got {text!r}") from None


def _str_list(text: str) -> List[str]:
    return [v for v in text.replace(",", " ").split() if v]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``pytorch-hmm benchmark`` (those of :func:`run_comprehensive_benchmark`)."""
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 8, 32], help="e.g. 1,4,8,16,32")
    p.add_argument("--sequence-lengths", type=_int_list, default=[100, 500, 2000],
                   help="frames, e.g. 100,500,1000,2000")  # fmt: skip
    p.add_argument("--feature-dims", type=_int_list, default=[80], help="e.g. 80,128,256")
    p.add_argument("--model-types", type=_str_list, default=None,
                   help=f"subset of {','.join(MODEL_TYPES)} (default all)")  # fmt: skip
    p.add_argument("--tasks", type=_str_list, default=list(TASKS),
                   help=f"subset of {','.join(TASKS)}")  # fmt: skip
    p.add_argument("--num-states", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--frame-rate", type=float, default=100.0, help="frames per second of audio")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="total time budget; 0 for none (default 60)")  # fmt: skip
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory call")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--csv", help="write the records to this CSV file")
    p.add_argument("--json", help="write the records to this JSON file")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--engine-memory",
        action="store_true",
        help="also: explicit backward vs plain autograd peak memory (T=1000, 10000)",
    )


def run_from_args(a: argparse.Namespace) -> int:
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        run_comprehensive_benchmark(
            a.device, a.batch_sizes, a.sequence_lengths, a.feature_dims,
            model_types=a.model_types, tasks=a.tasks, num_states=a.num_states,
            repeats=a.repeats, warmup=a.warmup, frame_rate=a.frame_rate,
            max_seconds=a.max_seconds or None, dtype=getattr(torch, a.dtype),
            memory=not a.no_memory, progress=not a.no_progress, save_csv=a.csv,
            save_json=a.json,
        )  # fmt: skip
    except ValueError as e:
        print(f"pytorch-hmm benchmark: error: {e}")
        return 2
    if a.engine_memory:
        memory_benchmark()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pytorch_hmm.benchmark",
        description="time every model type of pytorch_hmm on a grid of sizes",
    )
    add_arguments(p)
    return run_from_args(p.parse_args(argv))
