"""The one place where a backend is chosen: compiled CPU kernels (numba) or torch code.

Every algorithm of the library (the engine's recursions, DTW, soft-DTW, CTC, MAS) asks
:func:`cpu_kernels` for its kernel module; it returns the module when the compiled kernels
should run, else ``None`` (the torch code, which is also the path of every non-CPU device).

The choice, from the strongest to the weakest:

1. a ``backend=`` argument of the function called: ``"auto"``, ``"numba"`` or ``"torch"``;
2. :func:`use_backend` (a context manager, local to the thread or task that enters it);
3. the environment: ``PYTORCH_HMM_BACKEND`` (same values), or ``PYTORCH_HMM_DISABLE_NUMBA=1``
   (= ``"torch"``);
4. ``"auto"``: compiled kernels for CPU tensors when numba imports, torch otherwise.

``"numba"`` is a demand: it raises when numba is missing or the tensors are not on the CPU.

Compiled kernels run their sequences in parallel (numba ``prange``). With a thread-safe numba
threading layer (OpenMP or TBB, the usual case) callers from several Python threads run
concurrently; with the ``workqueue`` layer, which aborts the process on concurrent parallel
loops, :func:`kernel_call` serialises them. Nothing here changes process-wide settings.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from types import ModuleType
from typing import Iterator, Optional

import torch

from ..errors import HMMValueError
from ._numba import load_kernels, numba_disabled

BACKENDS = ("auto", "numba", "torch")

_CURRENT: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "pytorch_hmm_backend", default=None
)


def _check_name(backend: str) -> str:
    if backend not in BACKENDS:
        raise HMMValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    return backend


def default_backend() -> str:
    """The backend in force when a function is called without ``backend=``."""
    cur = _CURRENT.get()
    if cur is not None:
        return cur
    env = os.environ.get("PYTORCH_HMM_BACKEND", "").strip().lower()
    if env:
        if env not in BACKENDS:
            raise HMMValueError(
                f"environment variable PYTORCH_HMM_BACKEND must be 'auto', 'numba' or 'torch', "
                f"got {env!r}"
            )
        return env
    return "torch" if numba_disabled() else "auto"


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    """Run the enclosed calls on ``backend`` ("auto", "numba" or "torch") unless they pass
    ``backend=`` themselves. Local to the current thread (a context variable)."""
    token = _CURRENT.set(_check_name(backend))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def resolve_backend(device: torch.device, backend: Optional[str] = None) -> str:
    """``"numba"`` or ``"torch"``: what runs for tensors on ``device``."""
    name = default_backend() if backend is None else _check_name(backend)
    if name == "torch":
        return "torch"
    if device.type != "cpu":
        if name == "numba":
            raise HMMValueError(
                f"backend='numba' runs on CPU tensors only, got tensors on {device}; use "
                "backend='auto' or 'torch'"
            )
        return "torch"
    ok = load_kernels("pytorch_hmm.core._cpu_kernels") is not None
    if not ok and name == "numba":
        raise HMMValueError(
            "backend='numba' needs numba installed (pip install numba) and not disabled by "
            "PYTORCH_HMM_DISABLE_NUMBA"
        )
    return "numba" if ok else "torch"


def cpu_kernels(
    module: str, device: torch.device, backend: Optional[str] = None
) -> Optional[ModuleType]:
    """The compiled kernel module ``module`` when the compiled backend applies, else None."""
    if resolve_backend(device, backend) != "numba":
        return None
    kern = load_kernels(module)
    if kern is None and (backend or default_backend()) == "numba":
        raise HMMValueError(
            f"backend='numba': the compiled kernels of {module} could not be loaded"
        )
    return kern


_LOCK = threading.Lock()
_SAFE: Optional[bool] = None


def _threadsafe_layer() -> bool:
    """True when numba's threading layer lets several threads enter parallel loops at once.
    The layer is chosen by numba on the first parallel call, so this is asked after it."""
    global _SAFE
    if _SAFE is None:
        try:
            import numba

            layer = numba.threading_layer()
        except (ImportError, ValueError):  # ValueError: no parallel call has run yet
            return False
        _SAFE = layer in ("omp", "tbb")
    return _SAFE


# below this much work (sequences x frames x states x moves) a parallel kernel runs on the
# calling thread alone: waking numba's worker threads costs more than the loop, and on a
# busy machine much more (one 10 ms streaming chunk, K=8: 2.1 ms a chunk serial, 8.4 ms
# with two worker threads beside a second busy process)
SERIAL_WORK = 1 << 16


@contextlib.contextmanager
def kernel_call(work: Optional[int] = None, sequences: Optional[int] = None) -> Iterator[None]:
    """Wrap every call of a compiled parallel kernel (engine and aligners alike). With
    ``work`` below :data:`SERIAL_WORK`, or one sequence (``sequences=1``: nothing to run in
    parallel), the kernel runs on the calling thread (numba's thread count is local to the
    calling thread and restored afterwards)."""
    serial = (work is not None and work < SERIAL_WORK) or sequences == 1
    with _serial_threads(serial):
        if _threadsafe_layer():
            yield
            return
        with _LOCK:
            yield


@contextlib.contextmanager
def _serial_threads(serial: bool) -> Iterator[None]:
    if not serial:
        yield
        return
    import numba

    before = numba.get_num_threads()
    if before == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
