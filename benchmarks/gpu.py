"""GPU check: CUDA tests, the comprehensive benchmark on the seed's grid, and the engine's
throughput next to the card's own limits, measured in the same run (under 5 minutes).

Run on a CUDA machine, from the repository root, with the package importable (it installs
nothing):

    python benchmarks/gpu.py [--device cuda] [--max-seconds 150] [--out benchmarks/results]
                             [--no-tests] [--quick]

and on a CPU (to check the script itself): ``python benchmarks/gpu.py --device cpu --quick``.

Steps, each printed as it ends:

1. the test suite's CUDA tests (``pytest -k "cuda or gpu"``: each compares a CUDA result with
   the CPU one);
2. the card's limits: bandwidth of a large device-to-device copy (bytes read + written per
   second), matmul throughput (float32 with TF32 allowed and bfloat16, 8192^3), and the
   per-frame kernel-launch floor (a loop of T tiny kernels, microseconds each);
3. the engine on emission scores alone (no emission model): log-likelihood and Viterbi of a
   dense K=64 and a left-to-right K=200 HMM, B=32, T=2000: state-frames per second (B*T*K
   over the time), GB/s of emissions read (B*T*K*4 bytes over the time) as a fraction of the
   copy bandwidth, and the time per frame against the launch floor (a torch loop over frames
   is launch-bound when these are close);
4. ``run_comprehensive_benchmark`` on the seed's grid (B 1,4,8,16,32; T 100,500,1000,2000;
   D 80,128,256) within ``--max-seconds``.

Writes ``gpu-<device>.json`` and ``gpu-<device>.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pytorch_hmm import core  # noqa: E402
from pytorch_hmm.benchmark import device_name, run_comprehensive_benchmark  # noqa: E402
from pytorch_hmm.core.transitions import Transitions  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn, dev, repeats=5, warmup=1):
    for _ in range(warmup):
        fn()
    _sync(dev)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run_tests(timeout_s: int) -> dict:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-k", "cuda or gpu", "tests"]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        tail = (p.stdout + p.stderr).strip().splitlines()
        summary = tail[-1] if tail else ""
        rc = p.returncode
    except subprocess.TimeoutExpired:
        summary, rc = f"timed out after {timeout_s} s", -1
    out = {"command": " ".join(cmd[2:]), "returncode": rc, "summary": summary,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    print(f"[1] CUDA tests: {summary} (rc={rc}, {out['seconds']:.0f} s)", flush=True)
    return out


def card_limits(dev, quick: bool) -> dict:
    n_bytes = (256 if quick or dev.type != "cuda" else 2048) * 2**20
    bufs = [torch.empty(n_bytes // 4, dtype=torch.float32, device=dev).uniform_()]
    bufs.append(torch.empty_like(bufs[0]))
    t_copy = _time(lambda: bufs[1].copy_(bufs[0]), dev)
    bandwidth = 2 * n_bytes / t_copy / 1e9  # read + write
    bufs.clear()
    n = 1024 if quick or dev.type != "cuda" else 8192
    res = {"copy_bytes": n_bytes, "copy_GBps": bandwidth, "matmul_n": n}
    for dt in (torch.float32, torch.bfloat16):
        if dt == torch.bfloat16 and dev.type != "cuda":
            continue
        x = torch.randn(n, n, device=dev, dtype=dt)
        y = torch.randn(n, n, device=dev, dtype=dt)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            t_mm = _time(lambda x=x, y=y: x @ y, dev)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        res[f"matmul_{str(dt).replace('torch.', '')}_TFLOPs"] = 2 * n**3 / t_mm / 1e12
        del x, y
    T = 2000
    z = torch.zeros(1, device=dev)

    def launches():
        for _ in range(T):
            z.add_(1.0)

    res["launch_us"] = _time(launches, dev, repeats=3) / T * 1e6
    print(
        f"[2] card: copy {bandwidth:.0f} GB/s, matmul "
        + ", ".join(f"{k.split('_')[1]} {v:.1f} TFLOP/s" for k, v in res.items()
                    if k.endswith("TFLOPs"))  # fmt: skip
        + f", launch floor {res['launch_us']:.1f} us per kernel",
        flush=True,
    )
    return res


def engine_throughput(dev, limits: dict, quick: bool) -> list:
    B, T = (8, 500) if quick else (32, 2000)
    g = torch.Generator().manual_seed(0)
    rows = []
    for name, K in (("dense", 64), ("left-to-right", 200)):
        lb = torch.randn(B, T, K, generator=g).mul_(3.0).to(dev)
        lpi = torch.full((K,), -float("inf"))
        if name == "dense":
            lpi = torch.log_softmax(torch.randn(K, generator=g), -1)
            trans = torch.log_softmax(torch.randn(K, K, generator=g), -1).to(dev)
        else:
            lpi[0] = 0.0
            band = torch.log(torch.tensor([0.7, 0.3])).repeat(K, 1)
            band[-1] = torch.tensor([0.0, -float("inf")])
            trans = Transitions.banded(band.to(dev), lo=0)
        lpi = lpi.to(dev)
        for task, fn in (
            ("log_likelihood", lambda lb=lb, lpi=lpi, tr=trans: core.log_likelihood(lb, lpi, tr)),
            ("viterbi", lambda lb=lb, lpi=lpi, tr=trans: core.viterbi(lb, lpi, tr)),
        ):
            with torch.no_grad():
                t = _time(fn, dev, repeats=3)
            gbps = B * T * K * 4 / t / 1e9
            row = dict(
                workload=name, task=task, B=B, T=T, K=K, seconds=t,
                state_frames_per_s=B * T * K / t, emissions_GBps=gbps,
                fraction_of_copy_bandwidth=gbps / limits["copy_GBps"],
                us_per_frame=t / T * 1e6,
                frames_per_launch_floor=t / T * 1e6 / limits["launch_us"],
            )  # fmt: skip
            rows.append(row)
            print(
                f"[3] {name:13s} {task:14s} K={K:3d}: {t * 1e3:8.1f} ms, "
                f"{row['state_frames_per_s'] / 1e9:.2f} G state-frames/s, "
                f"{gbps:.1f} GB/s of emissions ({100 * row['fraction_of_copy_bandwidth']:.1f}% "
                f"of copy), {row['us_per_frame']:.1f} us/frame = "
                f"{row['frames_per_launch_floor']:.1f} launch floors",
                flush=True,
            )
    return rows


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"# GPU check: {m['device_name']} ({m['device']}), torch {m['torch']}, {res['date']}",
        "",
        f"CUDA tests: {res['tests'].get('summary', 'not run')}",
        "",
        "| card limit | value |",
        "|---|---|",
        f"| device-to-device copy | {res['limits']['copy_GBps']:.0f} GB/s |",
    ]
    for k, v in res["limits"].items():
        if k.endswith("TFLOPs"):
            lines.append(f"| matmul {k.split('_')[1]} n={res['limits']['matmul_n']} | "
                         f"{v:.1f} TFLOP/s |")  # fmt: skip
    lines += [
        f"| kernel launch floor | {res['limits']['launch_us']:.1f} us |",
        "",
        "| engine workload | task | B x T x K | ms | G state-frames/s | emissions GB/s (% of "
        "copy) | us per frame (launch floors) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["engine"]:
        lines.append(
            f"| {r['workload']} | {r['task']} | {r['B']}x{r['T']}x{r['K']} | "
            f"{r['seconds'] * 1e3:.1f} | {r['state_frames_per_s'] / 1e9:.2f} | "
            f"{r['emissions_GBps']:.1f} ({100 * r['fraction_of_copy_bandwidth']:.1f}%) | "
            f"{r['us_per_frame']:.1f} ({r['frames_per_launch_floor']:.1f}) |"
        )
    lines += ["", "```", res["benchmark_table"], "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--max-seconds", type=float, default=150.0,
                    help="budget of the comprehensive benchmark")  # fmt: skip
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--no-tests", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small sizes (a check of the script)")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu.py: CUDA is not available here; run with --device cpu to check the script")
        return 2
    t0 = time.perf_counter()
    res = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"device": str(dev), "device_name": device_name(dev),
                    "torch": torch.__version__, "cuda": torch.version.cuda,
                    "python": platform.python_version(), "cpu_threads": torch.get_num_threads()},
    }  # fmt: skip
    print(f"gpu.py: {res['machine']}", flush=True)
    res["tests"] = {} if a.no_tests else run_tests(timeout_s=90 if dev.type == "cuda" else 600)
    res["limits"] = card_limits(dev, a.quick)
    res["engine"] = engine_throughput(dev, res["limits"], a.quick)
    grid = (
        dict(batch_sizes=[1, 4], sequence_lengths=[100, 200], feature_dims=[80])
        if a.quick
        else dict(batch_sizes=[1, 4, 8, 16, 32], sequence_lengths=[100, 500, 1000, 2000],
                  feature_dims=[80, 128, 256])  # fmt: skip
    )
    bench = run_comprehensive_benchmark(
        dev, **grid, max_seconds=a.max_seconds, progress=False, verbose=False
    )
    res["benchmark_table"] = bench.table()
    res["benchmark"] = bench.to_dicts()
    print("[4] comprehensive benchmark:\n" + res["benchmark_table"], flush=True)
    res["seconds"] = time.perf_counter() - t0
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, f"gpu-{dev.type}")
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(res))
    print(f"gpu.py: {res['seconds']:.0f} s in all; wrote {stem}.json and {stem}.md")
    ok = a.no_tests or res["tests"]["returncode"] in (0, 5)  # 5: no test selected
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
