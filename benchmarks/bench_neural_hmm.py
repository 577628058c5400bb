"""Benchmark: one NeuralHMM training step (loss forward + backward), ours against the papers'
per-frame autograd loop, plain and checkpointed.

Run:  .venv/bin/python benchmarks/bench_neural_hmm.py [--repeats 3] [--T 500,1000,2000]
      [--B 8] [--N 100] [--threads N] [--max-gb 8] [--max-step-s 180] [--ours-chunks 128]
      [--no-live] [--no-split] [--json PATH [--resume]] [--quick]

Problem: B utterances of N symbols x 2 states (S = 2N = 200), T frames of 80 dims, the model
``NeuralHMM(num_symbols=N, feature_dim=80, hidden_dim=256, autoregressive=True)`` (conv
encoder, pre-net with dropout) in train mode, the same seed for the model and the data.

- ``ours``: ``model.loss(symbols, symbol_lengths, x, lengths).backward()`` (the defaults: the
  emission network over chunks of ``chunk_frames`` frames, printed, under
  ``torch.utils.checkpoint``; the engine's explicit backward pass).
- ``loop``: the papers' training recursion (Mehta et al., ICASSP 2022, and the public
  Neural-HMM code): a Python loop over frames under autograd, the emission network evaluated
  per frame inside the loop (the model's own ``encode_states``, ``prenet``, ``frame_proj``,
  ``_outputs``, so the arithmetic is the same), the log-space forward recursion
  ``alpha_t = logaddexp(alpha_{t-1} + stay_{t-1}, shift(alpha_{t-1} + advance_{t-1})) + log_b_t``
  over the S states, the score at the last state at the last frame.
- ``loop+ckpt``: the same loop with ``torch.utils.checkpoint`` (non-reentrant) over blocks of
  ceil(sqrt(T)) frames.

Also ``ours c=N`` rows (``--ours-chunks``, default 128): ours with ``chunk_frames=N``.

First checks (eval mode, no dropout) that the loop gives our log-likelihood and gradients,
in float64 and float32. Then each (method, T) runs in a fresh subprocess of this script
(``--worker METHOD T``), which first makes one tiny engine call (numba's import and kernel
loading are one-off costs, kept out of the figures), then builds the model and data and
runs ``--repeats`` steps (the first excluded from the times as a warm-up when repeats > 1).
Memory, three figures:

- RSS MB: the peak resident set size (VmHWM, reset before each step by writing 5 to
  /proc/self/clear_refs; ``ru_maxrss`` where that is refused) minus the resident size after
  the model and data were built, the largest over the steps. It counts what glibc's
  allocator keeps resident after a free: freed heap memory stays resident for reuse (blocks
  above a threshold, which rises up to 32 MiB as mapped blocks are freed, are mapped afresh
  on each allocation, a page fault per 4 KiB touched, and unmapped when freed).
- live MB: one more step with glibc's mmap threshold fixed at 128 KiB (``mallopt``), so that
  every tensor of 128 KiB or more is mapped when allocated and unmapped when freed: the
  resident size then follows the live tensor bytes, whatever the allocator would keep.
- saved MB: the bytes of the distinct tensors autograd saved for the backward pass on the
  first step (outside checkpointed regions; parameters and data left out).

A plain-loop row whose RSS or step time, extrapolated linearly from the previous T, would
exceed ``--max-gb`` / ``--max-step-s`` is not run (the table says so, with the
extrapolation). Finally a split of our step into network and engine time (one extra step).

Timings on shared cores are noisy (the load average is printed): ``--threads 1`` is the
steadiest there. With ``--threads``, the workers also get ``NUMBA_NUM_THREADS``: launching
numba's OpenMP layer (the engine's first call) otherwise resets torch's thread count to
numba's.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from pytorch_hmm import core  # noqa: E402
from pytorch_hmm.models import NeuralHMM  # noqa: E402

LOG_2PI = math.log(2 * math.pi)
# a finite "log 0" for the loop's unreachable states: logaddexp(-inf, -inf) has a NaN
# gradient under autograd, which would poison every parameter's gradient
NEG = -1e30
METHODS = ("ours", "loop", "loop+ckpt")


# ------------------------------------------------------------------------------------------
# the problem


def make_problem(B, N, T, D=80, H=256, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = NeuralHMM(num_symbols=N, feature_dim=D, hidden_dim=H, autoregressive=True)
    model = model.to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    symbols = torch.randint(0, N, (B, N), generator=g)
    symbol_lengths = torch.full((B,), N, dtype=torch.long)
    x = torch.randn(B, T, D, generator=g).to(dtype)
    lengths = torch.full((B,), T, dtype=torch.long)
    return model, symbols, symbol_lengths, x, lengths


# ------------------------------------------------------------------------------------------
# the papers' recursion: a Python loop over frames under autograd


def _frame(model, states, last, pad, prev_t, x_t):
    """Log emissions (B, S) and log stay / advance (B, S) of one frame (prev_t, x_t: (B, D))."""
    fp = model.frame_proj(model.prenet(prev_t.unsqueeze(1)))  # (B, 1, H)
    mean, var, adv = model._outputs(states, fp)  # (B, 1, S, D), (B, 1, S)
    lb = -0.5 * (((x_t[:, None, None] - mean) ** 2 / var) + var.log() + LOG_2PI).sum(-1)[:, 0]
    adv = adv[:, 0]
    stay = torch.where(last, 0.0, nn.functional.logsigmoid(-adv))  # the last state absorbs
    move = nn.functional.logsigmoid(adv)
    return lb.masked_fill(pad, NEG), stay, move


def _frames(model, states, last, pad, prev, x, alpha, stay, move, t0, t1):
    """The recursion over frames t0..t1-1 from alpha at t0-1 (and its stay/advance)."""
    for t in range(t0, t1):
        lb, s_new, m_new = _frame(model, states, last, pad, prev[:, t], x[:, t])
        if t == 0:
            alpha = alpha + lb
        else:
            go = alpha + move  # shift: state s-1 -> s
            go = torch.cat([torch.full_like(go[:, :1], NEG), go[:, :-1]], 1)
            alpha = torch.logaddexp(alpha + stay, go) + lb
        stay, move = s_new, m_new
    return alpha, stay, move


def loop_log_likelihood(model, symbols, symbol_lengths, x, block=None):
    """(B,) log-likelihoods by the per-frame loop (all utterances T frames long); ``block``:
    frames per ``torch.utils.checkpoint`` block (None: plain autograd)."""
    states, S_b = model.encode_states(symbols, symbol_lengths)
    B, T, D = x.shape
    S = states.shape[1]
    s_idx = torch.arange(S).view(1, S)
    last = s_idx >= (S_b - 1).view(B, 1)
    pad = s_idx >= S_b.view(B, 1)
    prev = torch.cat([x.new_zeros(B, 1, D), x[:, :-1]], 1)
    alpha = torch.full((B, S), NEG, dtype=x.dtype)
    alpha[:, 0] = 0.0
    stay = move = torch.zeros(B, S, dtype=x.dtype)
    if block is None:
        alpha, _, _ = _frames(model, states, last, pad, prev, x, alpha, stay, move, 0, T)
    else:
        for t0 in range(0, T, block):
            t1 = min(T, t0 + block)

            def run(a, s, m, t0=t0, t1=t1):
                return _frames(model, states, last, pad, prev, x, a, s, m, t0, t1)

            alpha, stay, move = checkpoint(run, alpha, stay, move, use_reentrant=False)
    return alpha.gather(1, (S_b - 1).view(B, 1)).squeeze(1)


def step_fn(method, model, symbols, symbol_lengths, x, lengths):
    """The loss of one training step (a scalar; the caller calls backward)."""
    T = x.shape[1]
    if method.startswith("ours"):
        return model.loss(symbols, symbol_lengths, x, lengths)
    block = None if method == "loop" else int(math.ceil(math.sqrt(T)))
    ll = loop_log_likelihood(model, symbols, symbol_lengths, x, block)
    return -ll.sum() / lengths.sum().to(ll.dtype)


# ------------------------------------------------------------------------------------------
# the check: the loop computes our log-likelihood and gradients


def check(B, N, T, dtype):
    model, sym, sl, x, L = make_problem(B, N, T, dtype=dtype)
    model.eval()
    res = {}
    for method in METHODS:
        model.zero_grad(set_to_none=True)
        if method == "ours":
            ll = model.log_likelihood(sym, sl, x, L)
        else:
            block = None if method == "loop" else int(math.ceil(math.sqrt(T)))
            ll = loop_log_likelihood(model, sym, sl, x, block)
        ll.sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        res[method] = (ll.detach(), grads)
    ll0, g0 = res["ours"]
    print(
        f"check ({str(dtype).replace('torch.', '')}, eval mode, B={B}, N={N}, S={2 * N}, "
        f"T={T}): log-likelihood of ours {ll0.mean().item():.4f} (mean over the batch)"
    )
    for method in METHODS[1:]:
        ll, g = res[method]
        d = (ll - ll0).abs().max().item()
        rel = d / ll0.abs().max().item()
        gd = ((g - g0).abs().max() / g0.abs().max()).item()
        print(
            f"  {method:11s} vs ours: max |d log-lik| {d:.3e} (relative {rel:.1e}); "
            f"max |d grad| / max |grad| {gd:.1e}"
        )


# ------------------------------------------------------------------------------------------
# the worker: one (method, T) in a fresh process


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_hwm():
    """Reset the peak RSS (VmHWM) to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _warm_library():
    """One tiny engine call (forward and backward): numba's import, kernel loading and thread
    pool start are one-off costs of the process, kept out of the per-step memory."""
    m = NeuralHMM(num_symbols=3, feature_dim=4, hidden_dim=8)
    m.loss(torch.tensor([[0, 1]]), torch.tensor([2]), torch.randn(1, 12, 4)).backward()


def _one_step(method, model, sym, sl, x, L, seed, hooks=None):
    model.zero_grad(set_to_none=True)
    gc.collect()
    torch.manual_seed(seed)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if hooks is not None:
        with torch.autograd.graph.saved_tensors_hooks(*hooks):
            loss = step_fn(method, model, sym, sl, x, L)
    else:
        loss = step_fn(method, model, sym, sl, x, L)
    loss.backward()
    dt = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return dt, ru1.ru_minflt - ru0.ru_minflt, ru1.ru_stime - ru0.ru_stime


def worker(method, T, args):
    if args.threads:
        torch.set_num_threads(args.threads)
    _warm_library()
    if args.threads:  # launching numba's OpenMP layer may have reset it
        torch.set_num_threads(args.threads)
    model, sym, sl, x, L = make_problem(args.B, args.N, T)
    model.train()
    if method.startswith("ours c="):
        model.chunk_frames = int(method.split("=")[1])
    known = {p.untyped_storage().data_ptr() for p in model.parameters()}
    known |= {t.untyped_storage().data_ptr() for t in (sym, sl, x, L)}
    saved = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in known:
            saved[st.data_ptr()] = st.nbytes()
        return t

    gc.collect()
    base_kb = _status_kb("VmRSS")
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, peaks, faults, sys_s, hwm = [], [], [], [], True
    for i in range(args.repeats):
        hwm = _reset_hwm() and hwm
        hooks = (pack, lambda t: t) if i == 0 else None
        dt, flt, st = _one_step(method, model, sym, sl, x, L, 1234 + i, hooks)
        times.append(dt)
        faults.append(flt)
        sys_s.append(st)
        if hwm:
            peaks.append(_status_kb("VmHWM") - base_kb)
    maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "method": method,
        "T": T,
        "times": times[1:] if len(times) > 1 else times,
        "peak_mb": (max(peaks) if hwm else maxrss1 - base_kb) / 1024,
        "peaks_mb": [k / 1024 for k in peaks],
        "minor_faults": faults,
        "sys_s": sys_s,
        "peak_how": "VmHWM" if hwm else "ru_maxrss",
        "maxrss_delta_mb": (maxrss1 - maxrss0) / 1024,
        "saved_mb": sum(saved.values()) / 2**20,
        "threads": torch.get_num_threads(),
    }
    if method == "ours" and args.split:
        out["split"] = split_ours(model, sym, sl, x, L)
    if args.live and hwm:
        out["live_mb"] = live_peak(method, model, sym, sl, x, L)
    print("RESULT " + json.dumps(out), flush=True)


def live_peak(method, model, sym, sl, x, L):
    """Peak RSS increase (MB) of one more step with glibc's mmap threshold fixed at 128 KiB:
    every tensor of 128 KiB or more is then mapped on allocation and unmapped when freed, so
    the resident size follows the live tensor bytes (the default allocator keeps freed heap
    memory resident and reuses it, which the VmHWM figure counts). None without glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return None
    model.zero_grad(set_to_none=True)
    gc.collect()
    libc.malloc_trim(0)
    before = _status_kb("VmRSS")
    if not _reset_hwm():
        return None
    _one_step(method, model, sym, sl, x, L, 4321)
    return (_status_kb("VmHWM") - before) / 1024


def split_ours(model, sym, sl, x, L, repeats=1):
    """Seconds of our step by part (the fastest of ``repeats``): networks forward (encoder and
    emission chunks), engine forward, engine backward, networks backward (with the chunks'
    recomputation); one extra step by default."""
    best = None
    for i in range(repeats):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(99 + i)
        t = [time.perf_counter()]
        o = model.network_outputs(sym, sl, x, L)
        t.append(time.perf_counter())
        ll = core.log_likelihood(
            o.log_emissions, o.log_initial, o.transitions, o.lengths, log_final=o.log_final,
            check_stochastic=False,
        )  # fmt: skip
        loss = -ll.sum() / L.sum()
        t.append(time.perf_counter())
        leaves = [o.log_emissions, o.transitions.values]
        g = torch.autograd.grad(loss, leaves, retain_graph=True)
        t.append(time.perf_counter())
        torch.autograd.backward(leaves, g)
        t.append(time.perf_counter())
        parts = [b - a for a, b in zip(t, t[1:])]
        best = parts if best is None else [min(a, b) for a, b in zip(best, parts)]
        del o, ll, loss, g, leaves
    return dict(zip(("net_fwd", "engine_fwd", "engine_bwd", "net_bwd"), best))


def run_worker(method, T, args):
    cmd = [
        sys.executable, os.path.abspath(__file__), "--worker", method, str(T),
        "--repeats", str(args.repeats), "--B", str(args.B), "--N", str(args.N),
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if not args.split:
        cmd += ["--no-split"]
    if not args.live:
        cmd += ["--no-live"]
    env = dict(os.environ)
    if args.threads:  # else launching numba's OpenMP layer resets torch's thread count
        env["NUMBA_NUM_THREADS"] = str(args.threads)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.worker_timeout, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
    return f"worker failed (rc={p.returncode}): " + " | ".join(tail)


# ------------------------------------------------------------------------------------------
# the report


def _ms(ts):
    ms = [t * 1e3 for t in ts]
    return statistics.median(ms), min(ms), max(ms)


def _loadavg(when):
    """The machine's load average (other processes skew timings on shared cores)."""
    try:
        with open("/proc/loadavg") as f:
            print(f"load average at {when}: {' '.join(f.read().split()[:3])}", flush=True)
    except OSError:
        pass


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=3, help="steps per row (first = warm-up)")
    p.add_argument("--T", default="500,1000,2000", help="comma-separated frame counts")
    p.add_argument("--B", type=int, default=8)
    p.add_argument("--N", type=int, default=100, help="symbols per utterance (S = 2N)")
    p.add_argument("--check-T", type=int, default=300, help="frames for the equality check")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--max-gb", type=float, default=8.0, help="cap for a plain-loop row")
    p.add_argument("--max-step-s", type=float, default=180.0, help="cap for a plain-loop row")
    p.add_argument("--worker-timeout", type=float, default=1800.0)
    p.add_argument("--no-split", dest="split", action="store_false", help="skip our split")
    p.add_argument(
        "--no-live", dest="live", action="store_false", help="skip the extra live-memory step"
    )
    p.add_argument(
        "--ours-chunks",
        default="128",
        help="extra rows of ours with these chunk_frames (comma-separated; '' for none)",
    )
    p.add_argument("--json", default=None, help="write the raw results here (after each row)")
    p.add_argument(
        "--resume", action="store_true", help="reuse the rows of --json run with this setup"
    )
    p.add_argument("--quick", action="store_true", help="T=250,400, B=4, N=50, 2 repeats")
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.T, args.B, args.N, args.repeats, args.check_T = "250,400", 4, 50, 2, 150
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    Ts = [int(t) for t in args.T.split(",")]
    S = 2 * args.N
    default_chunk = NeuralHMM(num_symbols=2).chunk_frames
    print(
        f"# NeuralHMM training step: B={args.B}, N={args.N} symbols x 2 states (S={S}), D=80, "
        f"H=256, autoregressive; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"ours = the defaults (chunk_frames={default_chunk})"
    )
    check(min(4, args.B), min(20, args.N), min(60, args.check_T), torch.float64)
    check(args.B, args.N, args.check_T, torch.float32)
    gc.collect()

    methods = list(METHODS)
    methods[1:1] = [f"ours c={int(c)}" for c in args.ours_chunks.split(",") if c.strip()]
    _loadavg("start")
    config = {k: getattr(args, k) for k in ("B", "N", "repeats", "threads", "live", "split")}
    config["chunk_frames"] = default_chunk
    res, done = {}, {}
    if args.resume and args.json and os.path.exists(args.json):
        with open(args.json) as f:
            old = json.load(f)
        if old.get("config") == config:
            done = {k: v for k, v in old.get("rows", {}).items() if isinstance(v, dict)}
        else:
            print(f"--resume: {args.json} has another configuration, not reused")
    for method in methods:
        for T in Ts:
            if f"{method} {T}" in done:
                r = res[(method, T)] = done[f"{method} {T}"]
                med = statistics.median(r["times"]) * 1e3
                print(f"{method:11s} T={T:5d}: {med:9.0f} ms/step (from {args.json})")
                continue
            prev = [r for (m, t), r in res.items() if m == method and isinstance(r, dict)]
            if method == "loop" and prev:
                r = prev[-1]
                gb = r["peak_mb"] * T / r["T"] / 1024
                sec = statistics.median(r["times"]) * T / r["T"]
                if gb > args.max_gb or sec > args.max_step_s:
                    ours = res.get(("ours", T))
                    vs = ""
                    if isinstance(ours, dict):
                        vs = f"; loop/ours memory ~{gb * 1024 / ours['peak_mb']:.0f}x"
                    res[(method, T)] = (
                        f"not run (capped): extrapolated from T={r['T']}: {gb:.1f} GB, "
                        f"{sec:.0f} s per step (caps {args.max_gb:g} GB, {args.max_step_s:g} s)"
                        + vs
                    )
                    print(f"{method:11s} T={T:5d}: {res[(method, T)]}", flush=True)
                    continue
            t0 = time.perf_counter()
            r = run_worker(method, T, args)
            res[(method, T)] = r
            if args.json:  # after every row: --resume picks up from here
                rows = {f"{m} {t}": v for (m, t), v in res.items()}
                with open(args.json, "w") as f:
                    json.dump({"config": config, "rows": rows}, f, indent=1)
            if isinstance(r, dict):
                med = statistics.median(r["times"]) * 1e3
                print(
                    f"{method:11s} T={T:5d}: {med:9.0f} ms/step, peak {r['peak_mb']:7.0f} MB "
                    f"(worker {time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            else:
                print(f"{method:11s} T={T:5d}: {r}", flush=True)

    how = next((r["peak_how"] for r in res.values() if isinstance(r, dict)), "?")
    n_t = max(1, args.repeats - 1) if args.repeats > 1 else 1
    print(
        f"\nms/step: median and min-max over {n_t} step(s) "
        f"({'first step excluded' if args.repeats > 1 else 'no warm-up'}). RSS MB: {how} "
        "increase over the RSS after model and data creation, max over the steps (glibc's "
        "default allocator: freed memory it keeps resident counts). live MB: one more step "
        "with glibc's mmap threshold fixed at 128 KiB (the RSS then follows the live tensor "
        "bytes). saved MB: tensors autograd kept for the backward pass on step 1 (outside "
        "checkpointed regions). Ratios on the ours rows: plain loop / this row (memory, RSS "
        "and live), checkpointed loop / this row (time)."
    )

    def mb(r, k):
        v = r.get(k)
        return f"{v:8.0f}" if v is not None else f"{'n/a':>8s}"

    def ratio(a, b, k):
        if not (isinstance(a, dict) and a.get(k) and b.get(k)):
            return "-"
        return f"{a[k] / b[k]:.1f}x"

    print(
        f"| {'method':11s} | {'T':>5s} | {'ms/step':>9s} | {'min-max':>17s} | {'RSS MB':>8s} "
        f"| {'live MB':>8s} | {'saved MB':>8s} | {'loop/ours mem':>13s} | {'ckpt/ours time':>14s} |"
    )
    print("|" + "|".join("-" * w for w in (13, 7, 11, 19, 10, 10, 10, 15, 16)) + "|")
    for method in methods:
        for T in Ts:
            r = res[(method, T)]
            if not isinstance(r, dict):
                print(f"| {method:11s} | {T:5d} | {r}")
                continue
            med, lo, hi = _ms(r["times"])
            mem = tim = ""
            _, lp, ck = (res.get((m, T)) for m in METHODS)
            if method.startswith("ours"):
                mem = f"{ratio(lp, r, 'peak_mb')} | {ratio(lp, r, 'live_mb')}"
                if isinstance(ck, dict):
                    tim = f"{statistics.median(ck['times']) / statistics.median(r['times']):.2f}x"
            print(
                f"| {method:11s} | {T:5d} | {med:9.0f} | {lo:8.0f}-{hi:8.0f} | "
                f"{mb(r, 'peak_mb')} | {mb(r, 'live_mb')} | {r['saved_mb']:8.0f} | {mem:>13s} "
                f"| {tim:>14s} |"
            )
    print("\nother / ours (memory RSS, live; time):")
    for T in Ts:
        ours = res.get(("ours", T))
        if not isinstance(ours, dict):
            continue
        cells = []
        for m in methods[1:]:
            r = res.get((m, T))
            if isinstance(r, dict):
                tr = statistics.median(r["times"]) / statistics.median(ours["times"])
                cells.append(
                    f"{m}: {ratio(r, ours, 'peak_mb')}, {ratio(r, ours, 'live_mb')}; {tr:.2f}x"
                )
            else:
                cells.append(f"{m}: not run")
        print(f"  T={T:5d}: " + " | ".join(cells))
    _loadavg("end")
    splits = [(T, res[("ours", T)]) for T in Ts if isinstance(res.get(("ours", T)), dict)]
    splits = [(T, r["split"]) for T, r in splits if "split" in r]
    if splits:
        print("\nours, where the time goes (s, one extra step in the worker):")
        for T, sp in splits:
            tot = sum(sp.values())
            cells = ", ".join(f"{k} {v:.2f} ({100 * v / tot:.0f}%)" for k, v in sp.items())
            print(f"  T={T:5d}: {cells}; total {tot:.2f}")


if __name__ == "__main__":
    main()
