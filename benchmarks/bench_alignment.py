"""Benchmark: DTW, soft-DTW, CTC forced alignment and MAS against their usual peers.

Run:  .venv/bin/python benchmarks/bench_alignment.py [--repeats 7] [--no-jit-timing]
      [--torch-threads N] [--busy [N]] [--dtw-batch-only]

``--busy`` starts N (default 1) busy-looping processes for the duration of the run (killed at
the end) to measure under load; ``--dtw-batch-only`` runs only the batched DTW rows against
librosa (the requirement: 16 pairs 1000x1200, D=80, default settings, >= 5x faster than a
librosa loop, one pair at a time).

Peers (skipped with "n/a" when not installed): dtw-python, librosa, torchaudio
(``forced_align``), monotonic-align. Prints median wall times (ms) and ratios peer/ours
(> 1 means ours is faster). Ours runs warm (numba kernels compiled and cached); the cold JIT
compile time of each kernel is measured separately in a subprocess with an empty numba cache.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, ROOT)

from pytorch_hmm.alignment import (  # noqa: E402
    CTCAligner,
    DTWAligner,
    monotonic_alignment_search,
    soft_dtw_distance,
)
from pytorch_hmm.alignment.dtw import _load_kernels  # noqa: E402


def compare(task, entries, repeats):
    """Time ``entries`` [(label, fn or None)] round-robin (so background load hits all alike).

    The first entry is ours; prints its median and, per peer, the median and peer/ours ratio.
    """
    live = [(name, fn) for name, fn in entries if fn is not None]
    for _, fn in live:
        fn()  # warm-up
    times = {name: [] for name, _ in live}
    for _ in range(repeats):
        for name, fn in live:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ours_name = entries[0][0]
    ours = med[ours_name]
    cells = []
    for name, fn in entries[1:]:
        if fn is None:
            cells.append(f"{name}: n/a")
        else:
            cells.append(f"{name} {med[name]:8.2f} ms (x{med[name] / ours:5.2f})")
    print(f"{task:<30} | {ours_name:<18} {ours:8.2f} ms | " + " | ".join(cells), flush=True)
    return med


def start_busy(n):
    """``n`` processes spinning in a Python loop (load from a second busy process)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    time.sleep(0.5)  # let them get scheduled
    return procs


def stop_busy(procs):
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def try_import(name):
    try:
        return __import__(name, fromlist=["_"])
    except Exception:
        return None


def jit_times():
    """Cold numba compile + first call per kernel, in a fresh process with an empty cache."""
    code = r"""
import time, torch
from pytorch_hmm.alignment import DTWAligner, soft_dtw_cost, CTCAligner, monotonic_alignment_search
def t(f):
    t0 = time.perf_counter(); f(); return time.perf_counter() - t0
C = torch.rand(2, 20, 25)
c = torch.rand(2, 20, 25, requires_grad=True)
lp = torch.randn(2, 30, 6).log_softmax(-1)
out = {
  "dtw (float32)": t(lambda: DTWAligner().align_cost(C)),
  "soft-dtw fwd+bwd (float32)": t(lambda: soft_dtw_cost(c, 1.0).sum().backward()),
  "ctc (float32)": t(lambda: CTCAligner().align(lp, torch.tensor([[1, 2], [3, 4]]))),
  "mas (float32)": t(lambda: monotonic_alignment_search(torch.randn(2, 5, 20))),
}
print(repr(out))
"""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d, PYTHONPATH=ROOT)
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT
        )
        total = time.perf_counter() - t0
    if res.returncode != 0:
        print("JIT timing failed:", res.stderr[-500:])
        return
    out = eval(res.stdout.strip().splitlines()[-1])
    print(
        "\nCold numba JIT (first call, empty cache; cached afterwards): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in out.items())
        + f"; whole subprocess {total:.1f} s"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-jit-timing", action="store_true")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch.set_num_threads(N) first (0: leave as is). On a loaded machine torch's "
        "OpenMP threads (torch.cdist) can slow down by 10x+; 1 avoids that",
    )
    ap.add_argument(
        "--busy",
        type=int,
        nargs="?",
        const=1,
        default=0,
        help="run with N busy-looping processes in the background (default 1 when given)",
    )
    ap.add_argument("--dtw-batch-only", action="store_true", help="only the batched DTW rows")
    args = ap.parse_args()
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    busy = start_busy(args.busy)
    try:
        run(args)
    finally:
        stop_busy(busy)


def run(args):
    R = args.repeats
    warnings.simplefilter("ignore")
    dtw_py = try_import("dtw")
    librosa = try_import("librosa")
    ta_f = try_import("torchaudio.functional")
    ma = try_import("monotonic_align")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"numba kernels: {'yes' if _load_kernels() is not None else 'no'}, "
        f"cpus {os.cpu_count()}, busy processes {args.busy}"
    )
    print(f"medians of {R} runs after a warm-up, round-robin; (xR) = peer time / ours\n")

    rng = np.random.default_rng(0)
    # ---------------------------------------------------------------- DTW single pair
    x = rng.standard_normal((1000, 80))
    y = rng.standard_normal((1200, 80))
    xt32, yt32 = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    xt64, yt64 = torch.from_numpy(x), torch.from_numpy(y)
    sym2 = DTWAligner(step_pattern="symmetric2")
    sym1 = DTWAligner(step_pattern="symmetric1")
    if not args.dtw_batch_only:
        dtw_single(args, R, dtw_py, librosa, x, y, xt32, yt32, xt64, yt64, sym1, sym2)
    dtw_batch(R, dtw_py, librosa, rng, sym1, sym2, only_librosa=args.dtw_batch_only)
    if args.dtw_batch_only:
        return
    rest(args, R, ta_f, ma)


def dtw_single(args, R, dtw_py, librosa, x, y, xt32, yt32, xt64, yt64, sym1, sym2):
    if dtw_py:
        ref = dtw_py.dtw(x, y)
        ours = sym2.align(xt64, yt64)
        same = np.array_equal(ours.path.numpy(), np.stack([ref.index1, ref.index2], 1))
        print(
            f"(check: path identical to dtw-python: {same}, "
            f"cost rel. diff {abs(float(ours.cost) - ref.distance) / ref.distance:.1e})"
        )
    compare(
        "DTW 1000x1200 D=80 sym2",
        [
            ("ours float32", lambda: sym2.align(xt32, yt32)),
            ("ours float64", lambda: sym2.align(xt64, yt64)),
            ("dtw-python", (lambda: dtw_py.dtw(x, y)) if dtw_py else None),
        ],
        R,
    )
    compare(
        "DTW 1000x1200 D=80 sym1",
        [
            ("ours float32", lambda: sym1.align(xt32, yt32)),
            ("librosa", (lambda: librosa.sequence.dtw(X=x.T, Y=y.T)) if librosa else None),
        ],
        R,
    )


def dtw_batch(R, dtw_py, librosa, rng, sym1, sym2, only_librosa=False):
    # ---------------------------------------------------------------- DTW batch of 16
    B = 16
    xs = [rng.standard_normal((1000, 80)) for _ in range(B)]
    ys = [rng.standard_normal((1200, 80)) for _ in range(B)]
    xb = torch.from_numpy(np.stack(xs)).float()
    yb = torch.from_numpy(np.stack(ys)).float()
    R2 = max(3, R // 2)
    default = DTWAligner()  # the requirement's row: default settings (symmetric2, euclidean)
    med = compare(
        "DTW batch 16x(1000x1200) deflt",
        [
            ("ours default f32", lambda: default.align(xb, yb)),
            (
                "librosa loop",
                (lambda: [librosa.sequence.dtw(X=a.T, Y=b.T) for a, b in zip(xs, ys)])
                if librosa
                else None,
            ),
        ],
        R,
    )
    if librosa:
        ratio = med["librosa loop"] / med["ours default f32"]
        verdict = "ok" if ratio >= 5 else "FAIL"
        print(f"  requirement: >= 5x faster than librosa: x{ratio:.2f} {verdict}", flush=True)
    if not only_librosa:
        compare(
            "DTW batch 16x(1000x1200) sym2",
            [
                ("ours float32", lambda: sym2.align(xb, yb)),
                (
                    "dtw-python loop",
                    (lambda: [dtw_py.dtw(a, b) for a, b in zip(xs, ys)]) if dtw_py else None,
                ),
            ],
            R2,
        )
    compare(
        "DTW batch 16x(1000x1200) sym1",
        [
            ("ours float32", lambda: sym1.align(xb, yb)),
            (
                "librosa loop",
                (lambda: [librosa.sequence.dtw(X=a.T, Y=b.T) for a, b in zip(xs, ys)])
                if librosa
                else None,
            ),
        ],
        R2,
    )
    if only_librosa:
        return
    xq, yq = xb[:, :250], yb[:, :300]
    compare(
        "DTW batch 16x(250x300) sym2",
        [
            ("ours (numba)", lambda: sym2.align(xq, yq)),
            ("ours torch backend", lambda: DTWAligner(backend="torch").align(xq, yq)),
        ],
        3,
    )


def rest(args, R, ta_f, ma):
    # ---------------------------------------------------------------- soft-DTW batch
    Bs, N, M, D = 16, 256, 256, 80
    sx = torch.randn(Bs, N, D, requires_grad=True)
    sy = torch.randn(Bs, M, D)

    def sdtw(backend):
        def f():
            v = soft_dtw_distance(sx, sy, 1.0, backend=backend)
            v.sum().backward()
            sx.grad = None

        return f

    def sdtw_tape():
        # baseline: the same wavefront recursion differentiated by autograd (tape of steps)
        from pytorch_hmm.alignment.dtw import pairwise_distance
        from pytorch_hmm.alignment.soft_dtw import _torch_forward

        C = pairwise_distance(sx, sy, "sqeuclidean")
        Rm = _torch_forward(C, None, None, 1.0, -1)
        Rm[:, N, M].sum().backward()
        sx.grad = None

    compare(
        f"soft-DTW fwd+bwd B={Bs} {N}x{M}",
        [
            ("ours (numba)", sdtw("auto")),
            ("autograd tape", sdtw_tape),
            ("ours torch backend", sdtw("torch")),
        ],
        max(3, R // 2),
    )

    # ---------------------------------------------------------------- CTC
    Bc, T, S, Cc = 16, 500, 100, 40
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(Bc, T, Cc, generator=g).log_softmax(-1)
    tg = torch.randint(1, Cc, (Bc, S), generator=g)
    il = torch.full((Bc,), T)
    tl = torch.full((Bc,), S)
    tg32 = tg.int()
    compare(
        f"CTC B={Bc} T={T} S={S}",
        [
            ("ours (numba)", lambda: CTCAligner().align(lp, tg, il, tl)),
            (
                "torchaudio loop",
                (
                    lambda: [
                        ta_f.forced_align(lp[b : b + 1], tg32[b : b + 1], blank=0)
                        for b in range(Bc)
                    ]
                )
                if ta_f
                else None,
            ),
            ("ours torch backend", lambda: CTCAligner(backend="torch").align(lp, tg, il, tl)),
        ],
        R,
    )

    # ---------------------------------------------------------------- MAS
    Bm, Tx, Ty = 16, 100, 800
    lpm = torch.randn(Bm, Tx, Ty)
    lpm_t = lpm.transpose(1, 2).contiguous()  # the package's (B, T_mel, T_text) layout
    mask = torch.ones(Bm, Ty, Tx)
    if ma is not None:
        same = torch.equal(
            ma.maximum_path(lpm_t, mask).transpose(1, 2), monotonic_alignment_search(lpm).alignment
        )
        print(f"(check: MAS identical to monotonic-align: {same})")
    compare(
        f"MAS B={Bm} {Tx}x{Ty}",
        [
            ("ours (numba)", lambda: monotonic_alignment_search(lpm)),
            ("monotonic-align", (lambda: ma.maximum_path(lpm_t, mask)) if ma else None),
            ("ours torch backend", lambda: monotonic_alignment_search(lpm, backend="torch")),
        ],
        R,
    )

    if not args.no_jit_timing and _load_kernels() is not None:
        jit_times()


if __name__ == "__main__":
    main()
