"""Monotonic alignment search (MAS) as in Glow-TTS (Kim et al., 2020), batched.

Finds, per utterance, the monotonic, surjective alignment of ``T_text`` tokens to ``T_mel``
frames (every token gets at least one frame, every frame exactly one token, token index
non-decreasing in time) that maximises the summed ``log_p``. Recurrence, tie rule and
arithmetic (in the input dtype) are those of the reference Cython ``maximum_path`` used by
Glow-TTS and VITS (the ``monotonic-align`` package), so outputs are identical to it for
finite inputs (the reference uses ``-1e9`` for "impossible" where this uses ``-inf``).

Layout: ``log_p`` is ``(B, T_text, T_mel)`` as in Glow-TTS (VITS and the ``monotonic-align``
package take the transpose, ``(B, T_mel, T_text)``).

How it runs (``method``):

- ``"engine"``: the search is a graph given to the inference engine
  (:func:`pytorch_hmm.core.viterbi`), on whichever backend ``backend`` selects: tokens are
  the states, numbered backwards (token ``x`` is state ``T_text - 1 - x``, so the engine's
  "lowest predecessor state wins a tie" is "stay unless the advance is strictly better"),
  mel frames the frames, ``log_p`` transposed the emissions (read through
  ``emission_index``), a banded stay/advance operator (``lo=-1``, W=2) with log value 0, the
  first token the initial state and each utterance's last token its only final state.
- ``"kernel"``: the dedicated compiled kernel (numba, CPU, parallel over the batch).
- ``"auto"`` (default): the dedicated kernel where the compiled backend applies (CPU tensors,
  numba installed, ``backend`` not ``"torch"``), the engine everywhere else (torch, any
  device).

Why the dedicated kernel stays the compiled default: on ``benchmarks/bench_alignment.py``'s
MAS row (B=16, T_text=100, T_mel=800, float32, medians of 5 runs; 2 shared cores, 3 runs with
engine and kernel timed round-robin in one process) the engine on compiled kernels took
77-113 ms against 15-25 ms for the kernel (4.6-5.4x; 157-201 against 31-47 ms in a more
loaded sitting). Its recursion (``band_forward``, about 25 ms a call: int32 back-pointers for
every frame and token, where the kernel keeps one byte per cell a path can read) is already
slower, and around it come the path score the engine computes (about 17 ms: it gathers the
(B, T_mel, T_text) state emissions), a contiguous copy of the transposed ``log_p`` (about
13 ms) and input checks. The kernel also keeps monotonic-align's float32 arithmetic exactly
(the engine re-centres every frame, and accumulates float32 sequences over 4096 frames in
float64, so float32 near-ties could in principle resolve differently; none did in the tests).
Where no compiled kernel runs, the engine replaced the former torch loop over mel frames:
175-317 ms against 247-475 ms for that loop (same runs). All methods give the same alignments
(tests/test_mas.py compares them, and a plain copy of monotonic-align's recursion, exactly).

An utterance that no path of finite log-likelihood can align (``-inf`` everywhere it could
go) gets, through the engine, the path all-tied scores give (each token one frame, the last
token the rest); the kernel follows its comparisons of ``-inf`` scores, like monotonic-align.

NaN is an error only in the cells some monotonic path reads (both methods and back ends).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..core import backend as _backend
from ..core.inference import viterbi as _engine_viterbi
from ..core.transitions import Transitions
from ..core.validation import check_lengths
from ..errors import HMMTypeError, HMMValueError

KERNELS = "pytorch_hmm.alignment._numba_kernels"
METHODS = ("auto", "engine", "kernel")

__all__ = ["MASResult", "monotonic_alignment_search"]


class MASResult(NamedTuple):
    """Result of :func:`monotonic_alignment_search`.

    Attributes:
        alignment: ``(B, T_text, T_mel)`` hard 0/1 alignment in ``log_p``'s dtype (zero outside
            each utterance's lengths), as Glow-TTS's ``attn``.
        durations: ``(B, T_text)`` long, frames per token (``alignment.sum(-1)``).
    """

    alignment: Tensor
    durations: Tensor


def _lengths(x: Optional[Tensor], B: int, maxv: int, name: str) -> Tensor:
    return check_lengths(x, B, maxv, torch.device("cpu"), name=name, min_value=0)


def monotonic_alignment_search(
    log_p: Tensor,
    text_lengths: Optional[Tensor] = None,
    mel_lengths: Optional[Tensor] = None,
    backend: Optional[str] = None,
    method: str = "auto",
) -> MASResult:
    """Glow-TTS monotonic alignment search.

    Args:
        log_p: ``(B, T_text, T_mel)`` (or unbatched ``(T_text, T_mel)``) log-likelihood of mel
            frame ``j`` under token ``i``. Float32 gives results identical to monotonic-align.
        text_lengths: ``(B,)`` valid tokens (default ``T_text``).
        mel_lengths: ``(B,)`` valid frames (default ``T_mel``); needs
            ``text_lengths <= mel_lengths``.
        backend: ``"auto"``, ``"numba"`` or ``"torch"``; ``None`` (default): the library's
            current default (:func:`pytorch_hmm.core.use_backend`, the environment, else
            ``"auto"``).
        method: ``"auto"`` (the compiled kernel where the compiled backend applies, else the
            engine), ``"engine"`` (the graph run by :func:`pytorch_hmm.core.viterbi`) or
            ``"kernel"`` (the compiled kernel; CPU and numba only).

    Returns:
        :class:`MASResult` (``alignment`` ``(B, T_text, T_mel)``, ``durations`` ``(B, T_text)``;
        unbatched shapes for a 2-D ``log_p``). Not differentiable (detached), as in Glow-TTS.
    """
    if backend is not None and backend not in _backend.BACKENDS:
        raise HMMValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    if method not in METHODS:
        raise HMMValueError(f"method must be 'auto', 'engine' or 'kernel', got {method!r}")
    if log_p is not None and not isinstance(log_p, Tensor):
        try:
            log_p = torch.as_tensor(np.asarray(log_p))  # numpy arrays and nested lists
        except (TypeError, ValueError, RuntimeError) as err:
            raise HMMTypeError(
                f"log_p must be a floating-point tensor of shape (B, T_text, T_mel), got "
                f"{type(log_p).__name__}"
            ) from err
    if not isinstance(log_p, Tensor) or not log_p.is_floating_point():
        got = log_p.dtype if isinstance(log_p, Tensor) else type(log_p).__name__
        raise HMMTypeError(
            f"log_p must be a floating-point tensor of shape (B, T_text, T_mel), got {got}"
        )
    unbatched = log_p.dim() == 2
    if unbatched:
        if text_lengths is not None or mel_lengths is not None:
            raise HMMValueError("text_lengths/mel_lengths need a batched (B, T_text, T_mel) log_p")
        log_p = log_p.unsqueeze(0)
    if log_p.dim() != 3:
        raise HMMValueError(f"log_p must have shape (B, T_text, T_mel), got {tuple(log_p.shape)}")
    B, Tx, Ty = log_p.shape
    tx = _lengths(text_lengths, B, Tx, "text_lengths")
    ty = _lengths(mel_lengths, B, Ty, "mel_lengths")
    if B and (tx > ty).any():
        bad = (tx > ty).nonzero()[:, 0].tolist()
        raise HMMValueError(
            f"text_lengths must be <= mel_lengths (each token needs a frame); "
            f"violated for utterances {bad}"
        )
    if B and ((tx == 0) != (ty == 0)).any():
        bad = ((tx == 0) != (ty == 0)).nonzero()[:, 0].tolist()
        raise HMMValueError(f"text_lengths is 0 but mel_lengths is not for utterances {bad}")
    value = log_p.detach()
    _check_values(value, tx, ty)  # the same errors on every method and backend
    kernels = None
    if method != "engine":
        kernels = _backend.cpu_kernels(KERNELS, value.device, backend)
    if kernels is None and method == "kernel":
        raise HMMValueError(
            "method='kernel' runs the compiled CPU kernel: it needs CPU tensors, numba, and "
            "backend 'auto' or 'numba'; use method='auto' or 'engine'"
        )
    if kernels is not None:
        path, dur = _mas_kernel(kernels, value, tx, ty)
    else:
        path, dur = _mas_engine(value, tx, ty, backend)
    path = path.to(log_p.dtype)
    if unbatched:
        return MASResult(path[0], dur[0])
    return MASResult(path, dur)


def _readable(B: int, Tx: int, Ty: int, tx: Tensor, ty: Tensor, device) -> Tensor:
    """(B, Tx, Ty) bool: the cells some monotonic path reads (token ``x`` at frame ``y`` with
    ``x <= y`` and enough frames left for the tokens after ``x``)."""
    x = torch.arange(Tx, device=device).view(1, Tx, 1)
    y = torch.arange(Ty, device=device).view(1, 1, Ty)
    txb = tx.to(device).view(B, 1, 1)
    tyb = ty.to(device).view(B, 1, 1)
    return (x < txb) & (y < tyb) & (x <= y) & (x >= txb + y - tyb)


def _check_values(value: Tensor, tx: Tensor, ty: Tensor) -> None:
    """NaN or +inf in a cell some monotonic path reads is an error (NaN or +inf elsewhere,
    in padding or unreachable corners, is ignored)."""
    B, Tx, Ty = value.shape
    if B == 0 or Tx == 0 or Ty == 0:
        return
    total = value.sum()  # one pass: NaN or +inf anywhere leave it NaN or +inf
    if not (torch.isnan(total) or torch.isposinf(total)):
        return
    read = _readable(B, Tx, Ty, tx, ty, value.device)
    _raise_nan(torch.isnan(value) & read)
    pinf = torch.isposinf(value) & read
    if bool(pinf.any()):
        bad = pinf.flatten(1).any(1).nonzero()[:, 0].tolist()
        raise HMMValueError(
            f"log_p contains +inf (utterances {bad}); log-likelihoods must be finite or -inf"
        )


def _raise_nan(isnan: Tensor) -> None:
    bad = isnan.flatten(1).any(1)
    if bool(bad.any()):
        raise HMMValueError(f"log_p contains NaN (utterances {bad.nonzero()[:, 0].tolist()})")


# ------------------------------------------------------------------------------------------
# method="engine": the search as a graph given to pytorch_hmm.core.viterbi


def _mas_engine(value: Tensor, tx: Tensor, ty: Tensor, backend: Optional[str]):
    B, Tx, Ty = value.shape
    dev = value.device
    path = torch.zeros((B, Tx, Ty), dtype=value.dtype, device=dev)
    dur = torch.zeros((B, Tx), dtype=torch.long, device=dev)
    if B == 0 or Tx == 0 or Ty == 0:
        return path, dur
    v = value if value.dtype in (torch.float32, torch.float64) else value.float()
    total = v.sum()  # one pass: NaN or +inf anywhere leave it NaN or +inf
    if torch.isnan(total) or torch.isposinf(total):
        odd = torch.isnan(v)
        read = _readable(B, Tx, Ty, tx, ty, dev)
        _raise_nan(odd & read)
        pinf = torch.isposinf(v)
        if bool((pinf & read).any()):
            bad = (pinf & read).flatten(1).any(1).nonzero()[:, 0].tolist()
            raise HMMValueError(
                f"log_p contains +inf (utterances {bad}); log-likelihoods must be finite or -inf"
            )
        v = v.masked_fill(odd | pinf, float("-inf"))  # cells no path reads
    K = Tx
    r = torch.arange(K, device=dev)
    zero = torch.zeros((), dtype=v.dtype, device=dev)
    neg = torch.full((), float("-inf"), dtype=v.dtype, device=dev)
    band = torch.zeros((K, 2), dtype=v.dtype, device=dev)  # slot 0: r -> r - 1, slot 1: stay
    log_initial = torch.where(r == K - 1, zero, neg)  # the first token
    txd = tx.to(dev)
    log_final = torch.where(r.unsqueeze(0) == (K - txd).unsqueeze(1), zero, neg)  # last token
    res = _engine_viterbi(
        v.transpose(1, 2),
        log_initial,
        Transitions.banded(band, lo=-1),
        ty.clamp(min=1).to(dev),
        log_final=log_final,
        emission_index=K - 1 - r,
        check_stochastic=False,
        on_impossible="ignore",
        backend=backend,
    )
    st = res.path  # (B, Ty) states, -1 on padding and for utterances without a finite path
    ok = (txd > 0) & torch.isfinite(res.score)
    if not bool(ok.all()):
        # every path has log-likelihood -inf: the path all-tied scores give (each token one
        # frame, the last token the rest)
        y = torch.arange(Ty, device=dev).unsqueeze(0)
        tie = (K - 1 - torch.minimum(y, (txd - 1).unsqueeze(1))).expand(B, Ty)
        fill = (~ok & (txd > 0)).unsqueeze(1) & (y < ty.to(dev).unsqueeze(1))
        st = torch.where(fill, tie, st)
    on = st >= 0
    x = (K - 1 - st).clamp(0, K - 1)
    path.scatter_(1, x.unsqueeze(1), on.unsqueeze(1).to(value.dtype))
    dur.scatter_add_(1, x, on.long())
    return path, dur


# ------------------------------------------------------------------------------------------
# method="kernel": the dedicated compiled kernel


def _mas_kernel(kernels, value: Tensor, tx: Tensor, ty: Tensor):
    B, Tx, Ty = value.shape
    v = value.contiguous()
    if v.dtype not in (torch.float32, torch.float64):
        v = v.float()
    path = torch.zeros((B, Tx, Ty), dtype=v.dtype)
    dur = torch.zeros((B, Tx), dtype=torch.long)
    nan = np.zeros(B, dtype=np.bool_)  # the kernel flags NaN on the cells it reads
    with _backend.kernel_call():
        kernels.mas(v.numpy(), tx.numpy(), ty.numpy(), path.numpy(), dur.numpy(), nan)
    if nan.any():
        raise HMMValueError(f"log_p contains NaN (utterances {np.nonzero(nan)[0].tolist()})")
    return path, dur
