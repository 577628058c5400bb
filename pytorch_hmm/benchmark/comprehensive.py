"""``run_comprehensive_benchmark``: every model type of the library on a grid of sizes.

For each model type (``gaussian``, ``mixture_gaussian``, ``hsmm``, ``streaming``, ``neural``),
batch size B, sequence length T and feature dimension D, it times

- ``log_likelihood``: the exact log-likelihood of the batch (no gradient);
- ``viterbi``: the best state path of the batch (for ``streaming``: the whole batch decoded
  online, chunk after chunk, then flushed; the time per chunk is in ``note``);
- ``train_step``: one Baum-Welch EM iteration (``fit(n_iter=1)``) for the EM-trained models,
  one loss forward plus backward for ``neural``;

as the median of ``repeats`` calls after ``warmup`` calls, synchronising CUDA before the clock
is read. The real-time factor is the audio the batch represents, ``B * T / frame_rate``
seconds, over the median compute time (so 3.2 ms per 100 ms of audio is 31x, not 312x). Peak
memory of one call is ``torch.cuda.max_memory_allocated`` above the allocation before it on
CUDA, and on CPU the growth of the resident set size (Linux: its high-water mark reset through
``/proc/self/clear_refs`` after returning freed heap to the system; memory the allocator still
holds from earlier calls can be reused, so it is a lower bound).

Configurations run from the cheapest (B*T*D) up, all model types at each size, so a total time
budget (``max_seconds``) cuts the largest ones first: a task whose time, extrapolated from the
same model's previous size, would not fit in what is left is recorded as skipped.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

from ..errors import HMMValueError

MODEL_TYPES = ("gaussian", "mixture_gaussian", "hsmm", "streaming", "neural")
TASKS = ("log_likelihood", "viterbi", "train_step")


@dataclass
class BenchmarkRecord:
    """One timed task of one model on one size (times in seconds, memory in MiB)."""

    model_type: str
    task: str
    batch_size: int
    sequence_length: int
    feature_dim: int
    num_states: int
    status: str = "ok"  # "ok", "skipped: ..." or "error: ..."
    median_s: Optional[float] = None
    min_s: Optional[float] = None
    max_s: Optional[float] = None
    repeats: int = 0
    audio_seconds: float = 0.0  # batch_size * sequence_length / frame_rate
    real_time_factor: Optional[float] = None  # audio_seconds / median_s
    frames_per_second: Optional[float] = None  # batch_size * sequence_length / median_s
    peak_memory_mb: Optional[float] = None
    memory_method: str = ""
    note: str = ""
    device: str = "cpu"
    device_name: str = ""
    torch_version: str = ""
    dtype: str = "float32"
    threads: int = 1
    frame_rate: float = 100.0


@dataclass
class BenchmarkResult:
    """What :func:`run_comprehensive_benchmark` returns: ``records`` (one per task) and the
    run's settings in ``info``. Iterable over its records; ``table()`` is the printed table;
    ``to_csv`` / ``to_json`` save it (and ``from_json`` reads it back)."""

    records: List[BenchmarkRecord] = field(default_factory=list)
    info: Dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def select(self, **where: Any) -> List[BenchmarkRecord]:
        """Records whose fields equal ``where`` (``select(model_type="hsmm", task="viterbi")``)."""
        return [r for r in self.records if all(getattr(r, k) == v for k, v in where.items())]

    def table(self) -> str:
        head = (
            f"{'model':17s} {'task':15s} {'B':>4s} {'T':>6s} {'D':>4s} {'median ms':>10s} "
            f"{'min-max ms':>17s} {'x real time':>12s} {'peak MiB':>9s}  note"
        )
        lines = [head, "-" * len(head)]
        for r in self.records:
            size = f"{r.model_type:17s} {r.task:15s} {r.batch_size:4d} {r.sequence_length:6d} "
            size += f"{r.feature_dim:4d} "
            if r.status != "ok":
                lines.append(size + r.status)
                continue
            mem = "" if r.peak_memory_mb is None else f"{r.peak_memory_mb:9.1f}"
            spread = f"{r.min_s * 1e3:.1f}-{r.max_s * 1e3:.1f}"
            lines.append(
                size + f"{r.median_s * 1e3:10.1f} {spread:>17s} {r.real_time_factor:11.1f}x "
                f"{mem:>9s}  {r.note}"
            )
        i = self.info
        lines.append(
            f"{i.get('device_name', '')} ({i.get('device', '')}), torch {i.get('torch_version')}"
            f", {i.get('threads')} threads, {i.get('dtype')}; real time = B*T/{i.get('frame_rate')}"
            f" s of audio per second of compute; {i.get('elapsed_s', 0):.0f} s in all"
            + (f", {i['skipped']} task(s) skipped" if i.get("skipped") else "")
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dicts(self) -> List[Dict[str, Any]]:
        return [asdict(r) for r in self.records]

    def to_csv(self, path: Optional[str] = None) -> str:
        """The records as CSV (one row each); written to ``path`` when given."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[f.name for f in fields(BenchmarkRecord)])
        w.writeheader()
        for row in self.to_dicts():
            w.writerow(row)
        text = buf.getvalue()
        if path is not None:
            _write_atomic(path, text)
        return text

    def to_json(self, path: Optional[str] = None) -> str:
        """``{"info": ..., "records": [...]}`` as JSON; written to ``path`` when given."""
        text = json.dumps({"info": self.info, "records": self.to_dicts()}, indent=1)
        if path is not None:
            _write_atomic(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, path: str) -> BenchmarkResult:
        with open(path) as f:
            d = json.load(f)
        return cls([BenchmarkRecord(**r) for r in d["records"]], d.get("info", {}))


def _write_atomic(path: str, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------
# machine


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model (from /proc/cpuinfo on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _status_bytes(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _PeakMemory:
    """Peak memory of one call: CUDA allocator statistics, or the resident set size."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = "cuda max_memory_allocated"
        if device.type != "cuda":
            self.method = "peak RSS growth" if self._reset_rss() else ""
        try:
            self._libc = ctypes.CDLL("libc.so.6") if device.type != "cuda" else None
        except OSError:
            self._libc = None

    @staticmethod
    def _reset_rss() -> bool:
        try:  # Linux: 5 resets the peak RSS (VmHWM) to the current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _status_bytes("VmHWM") is not None
        except OSError:
            return False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif self.method:
            if self._libc is not None:
                try:  # hand freed heap back, so that the growth is seen again
                    self._libc.malloc_trim(0)
                except AttributeError:
                    pass
            self._reset_rss()
            self._base = _status_bytes("VmRSS") or 0

    def stop(self) -> Optional[float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        if not self.method:
            return None
        return max(0, (_status_bytes("VmHWM") or 0) - self._base) / 2**20


# ------------------------------------------------------------------------------------------
# workloads


def _speech_like(B: int, T: int, D: int, K: int, device, dtype, seed: int) -> torch.Tensor:
    """(B, T, D) features: K well-separated segments of equal length per sequence, with noise
    (what a left-to-right speech model sees)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(K, D, generator=g, dtype=torch.float64) * 2.0
    state = (torch.arange(T) * K) // T
    x = centres[state].unsqueeze(0) + torch.randn(B, T, D, generator=g, dtype=torch.float64)
    return x.to(device=device, dtype=dtype)


class _Workload:
    """One model on one size: ``setup()`` builds and initialises it (untimed), then
    ``calls[task]`` are the timed callables."""

    def __init__(self, model_type, B, T, D, K, device, dtype, seed, model_kwargs):
        from ..models.factory import create_speech_hmm

        self.model_type, self.B, self.T, self.D, self.K = model_type, B, T, D, K
        self.device, self.dtype = device, dtype
        kw = dict(model_kwargs.get(model_type, {}))
        x = _speech_like(B, T, D, K, device, dtype, seed)
        self.lengths = torch.full((B,), T, dtype=torch.long, device=device)
        self.note: Dict[str, str] = {}
        if model_type == "neural":
            spp = int(kw.get("states_per_phone", 2))
            n_sym = max(1, K // spp)
            kw.setdefault("num_symbols", max(n_sym, 32))
            self.model = create_speech_hmm(K, D, "neural", dtype=dtype, **kw).to(device)
            g = torch.Generator().manual_seed(seed + 1)
            self.symbols = torch.randint(0, self.model.num_symbols, (B, n_sym), generator=g)
            self.symbols = self.symbols.to(device)
            self.symbol_lengths = torch.full((B,), n_sym, dtype=torch.long, device=device)
            self.x = x
            self.opt = None
            self.note["train_step"] = "loss forward + backward"
        else:
            if model_type == "hsmm":
                # left-to-right: the K segments must be able to cover T frames
                kw.setdefault("max_duration", max(20, math.ceil(1.5 * T / K)))
            self.model = create_speech_hmm(K, D, model_type, dtype=dtype, **kw).to(device)
            self.x = x
            self.note["train_step"] = "1 EM iteration"
        if model_type == "streaming":
            self.chunk = int(self.model.chunk_size)

    def setup(self) -> None:
        m = self.model
        if self.model_type == "neural":
            m.train()
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(self.x, self.lengths, n_iter=1)  # initialises (flat start / k-means)

    def call(self, task: str) -> Optional[Callable[[], Any]]:
        m, x, L = self.model, self.x, self.lengths
        if self.model_type == "neural":
            s, sl = self.symbols, self.symbol_lengths
            if task == "log_likelihood":
                return lambda: _no_grad(lambda: m.log_likelihood(s, sl, x, L))
            if task == "viterbi":
                return lambda: m.viterbi(s, sl, x, L)

            def step():
                m.zero_grad(set_to_none=True)
                m.loss(s, sl, x, L).backward()

            return step
        if task == "train_step":

            def em():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m.fit(x, L, n_iter=1, init_params="")

            return em
        if self.model_type == "streaming":
            if task == "log_likelihood":
                return None  # the online pass below carries it; one row is enough
            self.n_chunks = math.ceil(self.T / self.chunk)
            self.note["viterbi"] = f"online, {self.n_chunks} chunks of {self.chunk} frames"

            def online():
                m.reset()
                for t0 in range(0, self.T, self.chunk):
                    m.process_chunk(x[:, t0 : t0 + self.chunk])
                return m.flush()

            return online
        if task == "log_likelihood":
            return lambda: _no_grad(lambda: m.log_likelihood(x, L))
        return lambda: m.viterbi(x, L)


def _no_grad(fn):
    with torch.no_grad():
        return fn()


# ------------------------------------------------------------------------------------------
# the benchmark


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="benchmark", unit="task", file=sys.stderr)
        except ImportError:
            self.total, self.done = total, 0

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            self.done += 1
            print(f"[{self.done}/{self.total}] {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ints(name: str, values: Iterable[int]) -> List[int]:
    if isinstance(values, int):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise HMMValueError(f"{name} must hold integers >= 1, got {v!r}")
        out.append(int(v))
    if not out:
        raise HMMValueError(f"{name} is empty")
    return out


def run_comprehensive_benchmark(
    device: Any = "cpu",
    batch_sizes: Sequence[int] = (1, 8, 32),
    sequence_lengths: Sequence[int] = (100, 500, 2000),
    feature_dims: Sequence[int] = (80,),
    *,
    model_types: Optional[Sequence[str]] = None,
    tasks: Sequence[str] = TASKS,
    num_states: int = 16,
    repeats: int = 3,
    warmup: int = 1,
    frame_rate: float = 100.0,
    max_seconds: Optional[float] = 60.0,
    dtype: torch.dtype = torch.float32,
    memory: bool = True,
    model_kwargs: Optional[Dict[str, Dict[str, Any]]] = None,
    progress: bool = True,
    verbose: bool = True,
    save_csv: Optional[str] = None,
    save_json: Optional[str] = None,
    seed: int = 0,
) -> BenchmarkResult:
    """Time log-likelihood, Viterbi and one training step of every model type on a grid.

    The seed's call ``run_comprehensive_benchmark(device=device, batch_sizes=[1, 4, 8, 16,
    32], sequence_lengths=[100, 500, 1000, 2000], feature_dims=[80, 128, 256])`` runs the
    whole grid (pass ``max_seconds=None`` for all of it; the default budget of 60 s keeps a
    first try to about a minute and records what did not fit as skipped).

    Args:
        device: where the models and data live (``"cpu"``, ``"cuda"``, a ``torch.device``).
        batch_sizes, sequence_lengths, feature_dims: the grid (B, T frames, D features).
        model_types: subset of ``("gaussian", "mixture_gaussian", "hsmm", "streaming",
            "neural")`` (default all), built by :func:`~pytorch_hmm.create_speech_hmm`.
        tasks: subset of ``("log_likelihood", "viterbi", "train_step")``.
        num_states: states of each model (``neural``: ``num_states // 2`` symbols of 2 states
            per utterance).
        repeats, warmup: timed calls (median, min, max reported) after untimed ones.
        frame_rate: frames per second of audio, for the real-time factor
            ``B * T / frame_rate / median_s``.
        max_seconds: total time budget (None: no limit).
        dtype: of models and data.
        memory: measure the peak memory of one extra call per task.
        model_kwargs: per model type, options for ``create_speech_hmm``
            (``{"neural": {"hidden_dim": 128}}``).
        progress: a progress bar (tqdm when installed) on stderr.
        verbose: print the table at the end.
        save_csv, save_json: also write the records there.

    Returns:
        :class:`BenchmarkResult`: ``records`` (:class:`BenchmarkRecord`: model_type, task, B,
        T, D, status, median/min/max seconds, real_time_factor, frames_per_second,
        peak_memory_mb, device, device_name, torch_version, dtype, threads, ...) and ``info``.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HMMValueError(f"device={device!r}: CUDA is not available on this machine")
    Bs = _ints("batch_sizes", batch_sizes)
    Ts = _ints("sequence_lengths", sequence_lengths)
    Ds = _ints("feature_dims", feature_dims)
    mts = list(MODEL_TYPES if model_types is None else model_types)
    for mt in mts:
        if mt not in MODEL_TYPES:
            raise HMMValueError(f"model_types: unknown {mt!r}; choose from {MODEL_TYPES}")
    for t in tasks:
        if t not in TASKS:
            raise HMMValueError(f"tasks: unknown {t!r}; choose from {TASKS}")
    if isinstance(num_states, bool) or int(num_states) != num_states or num_states < 2:
        raise HMMValueError(f"num_states must be an integer >= 2, got {num_states!r}")
    if int(repeats) < 1 or int(warmup) < 0:
        raise HMMValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if not (isinstance(frame_rate, (int, float)) and frame_rate > 0 and math.isfinite(frame_rate)):
        raise HMMValueError(f"frame_rate must be a positive number of frames/s, got {frame_rate!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise HMMValueError(f"max_seconds must be > 0 or None, got {max_seconds!r}")
    model_kwargs = model_kwargs or {}
    K = int(num_states)

    t_start = time.perf_counter()
    budget_end = math.inf if max_seconds is None else t_start + float(max_seconds)
    meter = _PeakMemory(dev) if memory else None
    base = dict(
        device=str(dev),
        device_name=device_name(dev),
        torch_version=torch.__version__,
        dtype=str(dtype).replace("torch.", ""),
        threads=torch.get_num_threads(),
        frame_rate=float(frame_rate),
    )
    configs = sorted(
        ((B, T, D) for B in Bs for T in Ts for D in Ds), key=lambda c: (c[0] * c[1] * c[2], c)
    )
    result = BenchmarkResult(info=dict(base))
    per_call: Dict[tuple, tuple] = {}  # (model, task) -> (cost, seconds) of the last size
    bar = _Progress(len(configs) * len(mts) * len(tasks), progress)
    try:
        for B, T, D in configs:
            cost = B * T * D
            for mt in mts:
                _run_model(
                    mt, B, T, D, K, dev, dtype, seed, model_kwargs, tasks, repeats, warmup,
                    budget_end, meter, base, cost, per_call, result, bar,
                )  # fmt: skip
    finally:
        bar.close()
    result.info.update(
        elapsed_s=time.perf_counter() - t_start,
        max_seconds=max_seconds,
        skipped=sum(r.status.startswith("skipped") for r in result.records),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        python=platform.python_version(),
        numba_threads=_numba_threads(),
        repeats=int(repeats),
        warmup=int(warmup),
        num_states=K,
    )
    if verbose:
        print(result.table())
    if save_csv:
        result.to_csv(save_csv)
    if save_json:
        result.to_json(save_json)
    return result


def _numba_threads() -> Optional[int]:
    if "numba" not in sys.modules:
        return None
    try:
        import numba

        return int(numba.config.NUMBA_NUM_THREADS)
    except Exception:  # pragma: no cover - numba present but unusual
        return None


def _run_model(mt, B, T, D, K, dev, dtype, seed, model_kwargs, tasks, repeats, warmup,
               budget_end, meter, base, cost, per_call, result, bar) -> None:  # fmt: skip
    def record(task, **kw):
        r = BenchmarkRecord(mt, task, B, T, D, K, audio_seconds=B * T / base["frame_rate"],
                            **base, **kw)  # fmt: skip
        result.records.append(r)
        bar.update(f"{mt} {task} B={B} T={T} D={D}: {r.status}")
        return r

    def predicted(task):
        prev = per_call.get((mt, task))
        return None if prev is None else prev[1] * cost / prev[0]

    todo = [t for t in tasks if not (mt == "streaming" and t == "log_likelihood")]
    for t in tasks:
        if t not in todo:
            bar.update(f"{mt} {t}: n/a")
    left = budget_end - time.perf_counter()
    guesses = [predicted(t) for t in todo]
    if left <= 0 or (all(g is not None for g in guesses) and min(guesses) * 2 > left):
        for t in todo:
            record(t, status="skipped: time budget (max_seconds)")
        return
    try:
        w = _Workload(mt, B, T, D, K, dev, dtype, seed, model_kwargs)
        w.setup()
        _sync(dev)
    except Exception as e:  # report and go on with the other models
        for t in todo:
            record(t, status=f"error: {type(e).__name__}: {e}"[:300])
        return
    for task in todo:
        left = budget_end - time.perf_counter()
        guess = predicted(task)
        if left <= 0 or (guess is not None and guess * (1 + warmup) > left):
            record(task, status="skipped: time budget (max_seconds)")
            continue
        fn = w.call(task)
        try:
            times = []
            for _ in range(warmup):
                t0 = time.perf_counter()
                fn()
                _sync(dev)
                times.append(time.perf_counter() - t0)
            first = times[-1] if times else None
            n = int(repeats)
            if first is not None and math.isfinite(left):
                # keep each task within a share of what is left
                n = max(1, min(n, int((budget_end - time.perf_counter()) * 0.3 / max(first, 1e-9))))
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                _sync(dev)
                times.append(time.perf_counter() - t0)
            peak = None
            if meter is not None and meter.method and time.perf_counter() < budget_end:
                meter.start()
                fn()
                peak = meter.stop()
        except Exception as e:
            record(task, status=f"error: {type(e).__name__}: {e}"[:300])
            continue
        med = statistics.median(times)
        per_call[(mt, task)] = (cost, med)
        note = w.note.get(task, "")
        if mt == "streaming" and task == "viterbi":
            note += f": {med / w.n_chunks * 1e3:.2f} ms per chunk"
        record(
            task,
            median_s=med,
            min_s=min(times),
            max_s=max(times),
            repeats=len(times),
            real_time_factor=B * T / base["frame_rate"] / med,
            frames_per_second=B * T / med,
            peak_memory_mb=peak,
            memory_method=meter.method if (meter is not None and peak is not None) else "",
            note=note,
        )
