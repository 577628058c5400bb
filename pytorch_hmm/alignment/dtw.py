"""Dynamic time warping (DTW) between feature sequences, single or batched.

Conventions follow dtw-python: ``x`` is the *query* (rows, length ``N``), ``y`` the *reference*
(columns, length ``M``); the accumulated cost is unnormalised (dtw-python's ``distance``) and
``normalized_cost`` divides it by the step pattern's normaliser (``N+M`` for ``symmetric2``,
``N`` for ``asymmetric``; ``symmetric1`` has none in dtw-python, and here it is divided by the
path length). Ties between steps go to the first step of the pattern, as in dtw-python and
``librosa.sequence.dtw``, so paths are identical to theirs.

Two back ends compute the same thing: a compiled numba kernel (CPU tensors, parallel over the
batch; numba is optional and imported lazily) and a pure-torch anti-diagonal wavefront (CUDA
tensors, or CPU when numba is missing or ``backend="torch"``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..core.backend import BACKENDS, cpu_kernels, kernel_call
from ..core.validation import check_lengths
from ..errors import HMMTypeError, HMMValueError

__all__ = [
    "StepPattern",
    "STEP_PATTERNS",
    "DTWResult",
    "DTWAligner",
    "pairwise_distance",
    "dtw_align",
]


KERNELS = "pytorch_hmm.alignment._numba_kernels"


def _load_kernels():
    """The aligners' compiled kernel module on the default backend, or None (torch code)."""
    return cpu_kernels(KERNELS, torch.device("cpu"))


def _use_numba(device: torch.device, backend: Optional[str]):
    """Kernel module for ``device`` and ``backend`` (None: the default of
    :mod:`pytorch_hmm.core.backend`; "auto", "numba", "torch"), or None for the torch code.
    The choice is made by the one dispatch point, :func:`pytorch_hmm.core.backend.cpu_kernels`."""
    return cpu_kernels(KERNELS, device, backend)


class StepPattern(NamedTuple):
    """A DTW step pattern of single moves.

    ``steps``: tuple of ``(di, dj, weight)``: cell ``(i, j)`` may be reached from
    ``(i - di, j - dj)`` at cost ``weight * C[i, j]``; ties go to the first step.
    ``norm``: ``"N+M"``, ``"N"`` or ``"NA"`` (none), as dtw-python's normalisation hint.
    """

    name: str
    steps: Tuple[Tuple[int, int, float], ...]
    norm: str


STEP_PATTERNS = {
    "symmetric1": StepPattern("symmetric1", ((1, 1, 1.0), (0, 1, 1.0), (1, 0, 1.0)), "NA"),
    "symmetric2": StepPattern("symmetric2", ((1, 1, 2.0), (0, 1, 1.0), (1, 0, 1.0)), "N+M"),
    "asymmetric": StepPattern("asymmetric", ((1, 0, 1.0), (1, 1, 1.0), (1, 2, 1.0)), "N"),
}
_NORM_CODE = {"NA": 0, "N+M": 1, "N": 2}
_METRIC_CODE = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}


def pairwise_distance(x: Tensor, y: Tensor, metric: str = "euclidean") -> Tensor:
    """Local cost matrix between frames.

    Args:
        x: ``(B, N, D)`` or ``(N, D)``.
        y: ``(B, M, D)`` or ``(M, D)``.
        metric: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (``1 - cos``, as scipy).

    Returns:
        ``(B, N, M)`` (or ``(N, M)``) distances.
    """
    if metric == "euclidean":
        return torch.cdist(x, y)
    if metric == "sqeuclidean":
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1, keepdim=True)
        d = x2 + y2.transpose(-1, -2) - 2.0 * (x @ y.transpose(-1, -2))
        return d.clamp_min(0.0)
    if metric == "cosine":
        eps = torch.finfo(x.dtype).tiny if x.is_floating_point() else 1e-30
        xn = x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
        yn = y / y.norm(dim=-1, keepdim=True).clamp_min(eps)
        return 1.0 - xn @ yn.transpose(-1, -2)
    raise HMMValueError(
        f"metric must be 'euclidean', 'sqeuclidean' or 'cosine' (or a callable), got {metric!r}"
    )


@dataclass
class DTWResult:
    """Result of :meth:`DTWAligner.align`.

    Unbatched call: ``path`` ``(L, 2)`` long (index pairs ``(i, j)`` from the start to the end
    cell), ``cost``/``normalized_cost`` 0-d tensors, ``path_lengths`` 0-d, ``end`` 0-d (last
    column, differs from ``M - 1`` only with ``open_end``).

    Batched call: ``path`` ``(B, L_max, 2)`` padded with -1, ``path_lengths`` ``(B,)``,
    ``cost``/``normalized_cost``/``end`` ``(B,)``. Pairs with no admissible path (e.g. a band
    narrower than ``|N - M|``) get ``cost = inf`` and an empty path.
    """

    path: Tensor
    cost: Tensor
    normalized_cost: Tensor
    path_lengths: Tensor
    end: Tensor

    @property
    def batched(self) -> bool:
        return self.path.dim() == 3

    def paths(self) -> List[Tensor]:
        """Per-pair paths without padding, a list of ``(L_b, 2)`` tensors."""
        if not self.batched:
            return [self.path]
        return [self.path[b, : int(n)] for b, n in enumerate(self.path_lengths.tolist())]


def _resolve_pattern(step_pattern: Union[str, StepPattern]) -> StepPattern:
    if isinstance(step_pattern, StepPattern):
        pat = step_pattern
    elif step_pattern in STEP_PATTERNS:
        pat = STEP_PATTERNS[step_pattern]
    else:
        raise HMMValueError(
            f"step_pattern must be one of {sorted(STEP_PATTERNS)} or a StepPattern, "
            f"got {step_pattern!r}"
        )
    if len(pat.steps) == 0:
        raise HMMValueError("step_pattern has no steps")
    for di, dj, _ in pat.steps:
        if di < 0 or dj < 0 or di + dj < 1 or di > 8 or dj > 8:
            raise HMMValueError(f"invalid step ({di}, {dj}) in step pattern {pat.name!r}")
    if not any(di >= 1 for di, _, _ in pat.steps):
        raise HMMValueError(f"step pattern {pat.name!r} never advances along x")
    if pat.norm not in _NORM_CODE:
        raise HMMValueError(
            f"step pattern norm must be one of {sorted(_NORM_CODE)}, got {pat.norm!r}"
        )
    return pat


def _check_lengths(lengths: Optional[Tensor], B: int, T: int, name: str) -> Tensor:
    return check_lengths(lengths, B, T, torch.device("cpu"), name=name, min_value=1)


def _as_tensor(x, name: str) -> Tensor:
    """A tensor from a tensor, numpy array or nested list (bools and complex refused)."""
    if not isinstance(x, Tensor):
        if x is None:
            raise HMMTypeError(f"{name} must be a tensor or array, got None")
        try:
            x = torch.as_tensor(np.asarray(x) if not isinstance(x, np.ndarray) else x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise HMMTypeError(f"{name} must be a tensor or array, got {type(x).__name__}") from err
    if x.dtype == torch.bool or x.is_complex():
        raise HMMTypeError(f"{name} must hold real numbers, got {x.dtype}")
    return x


# float32 distances of features beyond this magnitude may overflow (squares): float64 is used
_F32_SAFE = 1e15
_F64_SAFE = 1e150


def _valid_rows(t: Tensor, lengths, name: str = "lengths") -> Optional[Tensor]:
    """(B, T, 1) mask of the rows inside each sequence's length (None: all of them)."""
    if t.dim() != 3 or lengths is None:
        return None
    n = _check_lengths(lengths, t.shape[0], t.shape[1], name).to(t.device)
    return (torch.arange(t.shape[1], device=t.device).view(1, -1) < n.view(-1, 1)).unsqueeze(-1)


def prepare_features(x, y, x_lengths=None, y_lengths=None, names=("x", "y")):
    """Checked features for the DTW front ends: tensors (numpy arrays and lists accepted),
    at least one frame each, finite inside the lengths (padding beyond them is ignored:
    zeroed), integer and half-precision inputs promoted to float32, and features so large
    that float32 distances would overflow promoted to float64 (larger still: an error)."""
    x, y = _as_tensor(x, names[0]), _as_tensor(y, names[1])
    if x.dim() != y.dim() or x.dim() not in (2, 3):
        raise HMMValueError(
            f"{names[0]} and {names[1]} must both be (N, D)/(M, D) or (B, N, D)/(B, M, D), "
            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[-1] != y.shape[-1]:
        raise HMMValueError(
            f"{names[0]} and {names[1]} must have the same feature size (same D), got "
            f"{x.shape[-1]} and {y.shape[-1]}"
        )
    if x.dim() == 3 and x.shape[0] != y.shape[0]:
        raise HMMValueError(
            f"{names[0]} and {names[1]} batch sizes differ: {x.shape[0]} and {y.shape[0]}"
        )
    if x.dim() == 2 and (x_lengths is not None or y_lengths is not None):
        raise HMMValueError(
            f"{names[0]}_lengths/{names[1]}_lengths need batched (B, T, D) inputs, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    for t, nm in ((x, names[0]), (y, names[1])):
        if t.shape[-2] == 0:
            raise HMMValueError(f"{nm} has no frames (shape {tuple(t.shape)}); need >= 1")
        if t.shape[-1] == 0:
            raise HMMValueError(f"{nm} has no features (shape {tuple(t.shape)}); need D >= 1")
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    y = y.to(x.dtype)
    out = []
    for t, lens, nm in ((x, x_lengths, names[0]), (y, y_lengths, names[1])):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            valid = _valid_rows(t, lens, nm + "_lengths")
            inside = bad if valid is None else bad & valid
            if bool(inside.any()):
                idx = tuple(torch.nonzero(inside)[0].tolist())
                raise HMMValueError(f"{nm} contains NaN or inf (first at index {idx})")
            t = t.masked_fill(bad, 0.0)  # padding only
        out.append(t)
    x, y = out
    if x.numel() and y.numel():
        big = max(float(x.detach().abs().max()), float(y.detach().abs().max()))
        if big > _F64_SAFE:
            raise HMMValueError(
                f"{names[0]}/{names[1]} values are too large (max |value| {big:.3g}): "
                "their distances overflow"
            )
        if big > _F32_SAFE and x.dtype == torch.float32:
            x, y = x.double(), y.double()
    return x, y


def _unbatch(res: DTWResult) -> DTWResult:
    """The single pair of a batch of one: path (L, 2) without padding, scalar fields."""
    L = int(res.path_lengths[0])
    return DTWResult(
        res.path[0, :L], res.cost[0], res.normalized_cost[0], res.path_lengths[0], res.end[0]
    )


class DTWAligner:
    """Dynamic time warping aligner.

    Args:
        distance: ``"euclidean"`` (default), ``"sqeuclidean"``, ``"cosine"``, or a callable
            ``(x (B, N, D), y (B, M, D)) -> (B, N, M)``. Ignored by :meth:`align_cost`.
        step_pattern: ``"symmetric2"`` (default, dtw-python's default), ``"symmetric1"``
            (librosa's default), ``"asymmetric"`` or a :class:`StepPattern`.
        band: Sakoe-Chiba radius: cells with ``|i - j| > band`` are excluded (dtw-python's
            ``window_type="sakoechiba"``); ``None`` for no band.
        open_begin: the path may start at any ``(0, j)`` (dtw-python's ``open_begin``).
        open_end: the path may end at any ``(N - 1, j)``, chosen by the smallest normalised
            cost (raw cost for patterns without normalisation, as librosa's ``subseq``).
        backend: ``"auto"`` (numba on CPU when installed, torch otherwise), ``"numba"``,
            ``"torch"``.

    Example:
        >>> x, y = torch.randn(50, 13), torch.randn(60, 13)
        >>> r = DTWAligner(step_pattern="symmetric2").align(x, y)
        >>> r.path.shape[1], float(r.cost) > 0
        (2, True)
    """

    def __init__(
        self,
        distance: Union[str, Callable[[Tensor, Tensor], Tensor]] = "euclidean",
        step_pattern: Union[str, StepPattern] = "symmetric2",
        band: Optional[int] = None,
        open_begin: bool = False,
        open_end: bool = False,
        backend: Optional[str] = None,
    ) -> None:
        if isinstance(distance, str) and distance not in ("euclidean", "sqeuclidean", "cosine"):
            raise HMMValueError(
                "distance must be 'euclidean', 'sqeuclidean', 'cosine' or a callable, "
                f"got {distance!r}"
            )
        if band is not None and (int(band) != band or band < 0):
            raise HMMValueError(f"band must be a non-negative integer or None, got {band!r}")
        if backend is not None and backend not in BACKENDS:
            raise HMMValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
        self.distance = distance
        self.pattern = _resolve_pattern(step_pattern)
        self.band = None if band is None else int(band)
        self.open_begin = bool(open_begin)
        self.open_end = bool(open_end)
        self.backend = backend

    # ------------------------------------------------------------------------------------------
    def align(
        self,
        x: Tensor,
        y: Tensor,
        x_lengths: Optional[Tensor] = None,
        y_lengths: Optional[Tensor] = None,
    ) -> DTWResult:
        """Align feature sequences.

        Args:
            x: ``(N, D)`` or batched ``(B, N, D)`` query features.
            y: ``(M, D)`` or batched ``(B, M, D)`` reference features.
            x_lengths: ``(B,)`` valid lengths of ``x`` (batched only; default all ``N``).
            y_lengths: ``(B,)`` valid lengths of ``y``.

        Returns:
            :class:`DTWResult` (unbatched fields for 2-D inputs).
        """
        x, y = prepare_features(x, y, x_lengths, y_lengths)
        kernels = _use_numba(x.device, self.backend)
        if kernels is not None and x.shape[-2] > 0 and y.shape[-2] > 0:
            # a batch: each numba thread computes its pairs' costs itself (no torch threads
            # competing with numba's); one pair: torch.cdist on every thread, then the kernel
            if isinstance(self.distance, str) and x.dim() == 3 and x.shape[0] > 1:
                return self._align_fused(kernels, x, y, x_lengths, y_lengths)
            return self._align_chunked(kernels, x, y, x_lengths, y_lengths)
        with torch.no_grad():
            cost = self._distance(x, y)
        return self.align_cost(cost, x_lengths, y_lengths)

    def _distance(self, x: Tensor, y: Tensor) -> Tensor:
        if callable(self.distance):
            return self.distance(x, y)
        return pairwise_distance(x, y, self.distance)

    def _align_fused(self, kernels, x, y, x_lengths, y_lengths) -> DTWResult:
        """CPU + numba, built-in distances: one compiled call in which each numba thread
        computes the cost matrix of a pair (single-threaded, in its slot of a reused
        ``(threads, N, M)`` buffer) and aligns it, then takes the next pair.

        The cost computation thus runs on the numba threads only, one pair per thread. The
        previous design (``torch.cdist`` per pair on torch's intra-op threads, alternating
        with numba's parallel DTW) kept two thread pools spinning against each other, and lost
        several-fold under load from other processes. Never materialises ``(B, N, M)``."""
        unbatched = x.dim() == 2
        if unbatched:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
        B, N, _ = x.shape
        M = y.shape[1]
        n = _check_lengths(x_lengths, B, N, "x_lengths")
        m = _check_lengths(y_lengths, B, M, "y_lengths")
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64
        slots = max(1, min(B, kernels.num_threads()))
        nl, ml = n.tolist(), m.tolist()
        Nc, Mc = (max(nl), max(ml)) if B else (1, 1)
        scratch = self._buffer(slots * Nc * Mc, dtype)[: slots * Nc * Mc].view(slots, Nc, Mc)
        di, dj, w = self._arrays()
        path = np.full((B, N + M, 2), -1, dtype=np.int64)
        c_out = np.empty(B, dtype=np.float64)
        e_out = np.empty(B, dtype=np.int64)
        l_out = np.empty(B, dtype=np.int64)
        nan = np.zeros(B, dtype=np.bool_)
        with torch.no_grad():
            xn = x.detach().to(dtype).contiguous().numpy()
            yn = y.detach().to(dtype).contiguous().numpy()
        with kernel_call():
            kernels.dtw_batch_features(
                xn,
                yn,
                n.numpy(),
                m.numpy(),
                _METRIC_CODE[self.distance],
                float(torch.finfo(dtype).tiny),
                scratch.numpy(),
                di,
                dj,
                w,
                -1 if self.band is None else self.band,
                self.open_begin,
                self.open_end,
                _NORM_CODE[self.pattern.norm],
                path,
                c_out,
                e_out,
                l_out,
                nan,
            )
        _raise_nan(nan)
        res = self._finish(torch.from_numpy(path), c_out, e_out, l_out, n, x.device, dtype)
        return _unbatch(res) if unbatched else res

    def _align_chunked(self, kernels, x, y, x_lengths, y_lengths) -> DTWResult:
        """CPU + numba, callable distance: cost matrices for a few pairs at a time (one per
        numba thread) in a reused buffer, each chunk aligned in parallel; never materialises
        ``(B, N, M)``."""
        unbatched = x.dim() == 2
        if unbatched:
            x, y = x.unsqueeze(0), y.unsqueeze(0)
        B, N, _ = x.shape
        M = y.shape[1]
        n = _check_lengths(x_lengths, B, N, "x_lengths")
        m = _check_lengths(y_lengths, B, M, "y_lengths")
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64
        chunk = max(1, min(B, kernels.num_threads()))
        nl, ml = n.tolist(), m.tolist()
        Nc, Mc = (max(nl), max(ml)) if B else (1, 1)
        buf = self._buffer(chunk * Nc * Mc, dtype)
        di, dj, w = self._arrays()
        path = np.full((B, N + M, 2), -1, dtype=np.int64)
        c_out = np.empty(B, dtype=np.float64)
        e_out = np.empty(B, dtype=np.int64)
        l_out = np.empty(B, dtype=np.int64)
        nan = np.zeros(B, dtype=np.bool_)
        n_np, m_np = n.numpy(), m.numpy()
        with torch.no_grad():
            for b0 in range(0, B, chunk):
                b1 = min(B, b0 + chunk)
                nmax, mmax = max(nl[b0:b1]), max(ml[b0:b1])
                C = buf[: (b1 - b0) * nmax * mmax].view(b1 - b0, nmax, mmax)
                for b in range(b0, b1):
                    d = self._distance(x[b : b + 1, : nl[b]], y[b : b + 1, : ml[b]])[0]
                    C[b - b0, : nl[b], : ml[b]] = d
                with kernel_call():
                    (kernels.dtw_batch if b1 - b0 > 1 else kernels.dtw_serial)(
                        C.numpy(),
                        n_np[b0:b1],
                        m_np[b0:b1],
                        di,
                        dj,
                        w,
                        -1 if self.band is None else self.band,
                        self.open_begin,
                        self.open_end,
                        _NORM_CODE[self.pattern.norm],
                        path[b0:b1],
                        c_out[b0:b1],
                        e_out[b0:b1],
                        l_out[b0:b1],
                        nan[b0:b1],
                    )
        _raise_nan(nan)
        res = self._finish(torch.from_numpy(path), c_out, e_out, l_out, n, x.device, dtype)
        return _unbatch(res) if unbatched else res

    def _buffer(self, numel: int, dtype: torch.dtype) -> Tensor:
        """A flat scratch buffer reused across calls (avoids re-faulting fresh pages)."""
        tls = self.__dict__.setdefault("_tls", threading.local())  # one buffer per thread
        buf = getattr(tls, "scratch", None)
        if buf is None or buf.dtype != dtype or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype)
            tls.scratch = buf
        return buf

    def align_cost(
        self,
        cost: Tensor,
        x_lengths: Optional[Tensor] = None,
        y_lengths: Optional[Tensor] = None,
    ) -> DTWResult:
        """Align from a given local cost matrix ``(N, M)`` or ``(B, N, M)``."""
        cost = _as_tensor(cost, "cost")
        if cost.dim() not in (2, 3):
            raise HMMValueError(
                f"cost must have shape (N, M) or (B, N, M), got {tuple(cost.shape)}"
            )
        unbatched = cost.dim() == 2
        if unbatched:
            if x_lengths is not None or y_lengths is not None:
                raise HMMValueError("x_lengths/y_lengths need a batched (B, N, M) cost")
            cost = cost.unsqueeze(0)
        if not cost.is_floating_point() or cost.dtype in (torch.float16, torch.bfloat16):
            cost = cost.double()
        cost = cost.detach()
        B, N, M = cost.shape
        if N < 1 or M < 1:
            raise HMMValueError(f"cost must have N, M >= 1, got shape {tuple(cost.shape)}")
        n = _check_lengths(x_lengths, B, N, "x_lengths")
        m = _check_lengths(y_lengths, B, M, "y_lengths")
        if B and bool(torch.isneginf(cost).any()):
            rows = torch.arange(N, device=cost.device).view(1, N, 1)
            cols = torch.arange(M, device=cost.device).view(1, 1, M)
            inside = (rows < n.to(cost.device).view(B, 1, 1)) & (
                cols < m.to(cost.device).view(B, 1, 1)
            )
            hit = (torch.isneginf(cost) & inside).flatten(1).any(1)
            if bool(hit.any()):
                raise HMMValueError(
                    f"cost contains -inf (pairs {hit.nonzero()[:, 0].tolist()}); local costs "
                    "must be finite or +inf (a forbidden cell)"
                )
        kernels = _use_numba(cost.device, self.backend)
        if kernels is not None:
            res = self._numba(kernels, cost, n, m)  # NaN is detected by the kernel
        else:
            rows = torch.arange(N, device=cost.device).view(1, N, 1)
            cols = torch.arange(M, device=cost.device).view(1, 1, M)
            inside = (rows < n.to(cost.device).view(B, 1, 1)) & (
                cols < m.to(cost.device).view(B, 1, 1)
            )
            _raise_nan((torch.isnan(cost) & inside).flatten(1).any(1).cpu().numpy())
            res = self._torch(cost, n, m)
        return _unbatch(res) if unbatched else res

    # ------------------------------------------------------------------------------------------
    def _arrays(self):
        di = np.array([s[0] for s in self.pattern.steps], dtype=np.int64)
        dj = np.array([s[1] for s in self.pattern.steps], dtype=np.int64)
        w = np.array([s[2] for s in self.pattern.steps], dtype=np.float64)
        return di, dj, w

    def _finish(self, path, cost, end, lens, n, device, dtype) -> DTWResult:
        cost = torch.as_tensor(cost, dtype=torch.float64)
        end = torch.as_tensor(end, dtype=torch.long)
        lens = torch.as_tensor(lens, dtype=torch.long)
        norm = self.pattern.norm
        if norm == "N+M":
            ncost = cost / (n.double() + end.double() + 1.0)
        elif norm == "N":
            ncost = cost / n.double()
        else:
            ncost = cost / lens.double().clamp_min(1.0)
        Lmax = int(lens.max()) if lens.numel() else 0
        path = torch.as_tensor(path)[:, :Lmax].to(device)
        out_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float64
        return DTWResult(
            path=path,
            cost=cost.to(device=device, dtype=out_dtype),
            normalized_cost=ncost.to(device=device, dtype=out_dtype),
            path_lengths=lens.to(device),
            end=end.to(device),
        )

    def _numba(self, kernels, cost: Tensor, n: Tensor, m: Tensor) -> DTWResult:
        B, N, M = cost.shape
        C = (
            cost.contiguous().numpy()
            if cost.dtype in (torch.float32, torch.float64)
            else (cost.double().contiguous().numpy())
        )
        di, dj, w = self._arrays()
        path = np.full((B, N + M, 2), -1, dtype=np.int64)
        c_out = np.empty(B, dtype=np.float64)
        e_out = np.empty(B, dtype=np.int64)
        l_out = np.empty(B, dtype=np.int64)
        nan = np.zeros(B, dtype=np.bool_)
        with kernel_call():
            (kernels.dtw_batch if B > 1 else kernels.dtw_serial)(
                C,
                n.numpy(),
                m.numpy(),
                di,
                dj,
                w,
                -1 if self.band is None else self.band,
                self.open_begin,
                self.open_end,
                _NORM_CODE[self.pattern.norm],
                path,
                c_out,
                e_out,
                l_out,
                nan,
            )
        _raise_nan(nan)
        return self._finish(torch.from_numpy(path), c_out, e_out, l_out, n, cost.device, cost.dtype)

    def _torch(self, cost: Tensor, n: Tensor, m: Tensor) -> DTWResult:
        B, N, M = cost.shape
        device = cost.device
        acc_dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32
        if device.type == "cpu":
            acc_dtype = torch.float64
        C = cost.to(acc_dtype)
        di, dj, w = self._arrays()
        pi, pj = int(di.max()), int(dj.max())
        K = len(di)
        inf = float("inf")
        D = torch.full((B, N + pi, M + pj), inf, dtype=acc_dtype, device=device)
        steps = torch.full((B, N, M), -1, dtype=torch.int8, device=device)
        if self.open_begin:
            D[:, pi - 1, pj:] = 0.0
        else:
            D[:, pi, pj] = C[:, 0, 0]
        w_t = torch.tensor(w, dtype=acc_dtype, device=device).view(K, 1, 1)
        for k in range(N + M - 1):
            i = torch.arange(max(0, k - M + 1), min(k, N - 1) + 1, device=device)
            j = k - i
            if not self.open_begin and k == 0:
                continue
            cand = torch.stack(
                [D[:, i + pi - int(di[s]), j + pj - int(dj[s])] for s in range(K)], dim=0
            )
            if self.open_begin:
                # rows above the virtual row -1 do not exist
                for s in range(K):
                    bad = (i - int(di[s])) < -1
                    if bool(bad.any()):
                        cand[s, :, bad] = inf
            cand = cand + w_t * C[:, i, j].unsqueeze(0)
            best, arg = cand.min(dim=0)
            arg = torch.where(torch.isinf(best), torch.full_like(arg, -1), arg)
            if self.band is not None:
                out = (i - j).abs() > self.band
                best = best.masked_fill(out, inf)
                arg = arg.masked_fill(out, -1)
            D[:, i + pi, j + pj] = best
            steps[:, i, j] = arg.to(torch.int8)
        # end cells
        bidx = torch.arange(B, device=device)
        last = D[bidx, (n.to(device) - 1) + pi, pj:]  # (B, M)
        cols = torch.arange(M, device=device)
        valid_col = cols.unsqueeze(0) < m.to(device).unsqueeze(1)
        if self.open_end:
            sel = last.clone()
            if self.pattern.norm == "N+M":
                sel = sel / (n.to(device, acc_dtype).unsqueeze(1) + cols.to(acc_dtype) + 1.0)
            elif self.pattern.norm == "N":
                sel = sel / n.to(device, acc_dtype).unsqueeze(1)
            sel = sel.masked_fill(~valid_col, inf)
            end = sel.argmin(dim=1)
        else:
            end = m.to(device) - 1
        total = last[bidx, end]
        steps_np = steps.cpu().numpy()
        end_np = end.cpu().numpy()
        total_np = total.cpu().double().numpy()
        n_np = n.numpy()
        path = np.full((B, N + M, 2), -1, dtype=np.int64)
        lens = np.zeros(B, dtype=np.int64)
        kernels = _load_kernels()
        for b in range(B):
            if not np.isfinite(total_np[b]):
                continue
            if kernels is not None:
                L = kernels.backtrack_steps(
                    steps_np[b], int(n_np[b]), int(end_np[b]), di, dj, path[b]
                )
            else:
                L = _backtrack_py(steps_np[b], int(n_np[b]), int(end_np[b]), di, dj, path[b])
            path[b, :L] = path[b, :L][::-1].copy()
            lens[b] = L
        return self._finish(torch.from_numpy(path), total_np, end_np, lens, n, device, cost.dtype)


def _raise_nan(nan: np.ndarray) -> None:
    if nan.any():
        raise HMMValueError(f"the cost matrix contains NaN (pairs {np.nonzero(nan)[0].tolist()})")


def _backtrack_py(steps: np.ndarray, n: int, jend: int, di, dj, path_out: np.ndarray) -> int:
    i, j, L = n - 1, jend, 0
    while True:
        path_out[L, 0] = i
        path_out[L, 1] = j
        L += 1
        k = int(steps[i, j])
        if k < 0:
            break
        i -= int(di[k])
        j -= int(dj[k])
        if i < 0:
            break
    return L


def dtw_align(
    x: Tensor,
    y: Tensor,
    x_lengths: Optional[Tensor] = None,
    y_lengths: Optional[Tensor] = None,
    *,
    distance: Union[str, Callable[[Tensor, Tensor], Tensor]] = "euclidean",
    step_pattern: Union[str, StepPattern] = "symmetric2",
    band: Optional[int] = None,
    open_begin: bool = False,
    open_end: bool = False,
    backend: Optional[str] = None,
) -> DTWResult:
    """Functional form of ``DTWAligner(...).align(x, y, x_lengths, y_lengths)``."""
    return DTWAligner(distance, step_pattern, band, open_begin, open_end, backend).align(
        x, y, x_lengths, y_lengths
    )
