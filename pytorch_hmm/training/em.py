"""The Baum-Welch EM driver behind ``model.fit``: data handling (padded batches, lists of
variable-length sequences, hmmlearn-style concatenated frames, re-iterable streams such as a
``DataLoader``), initialisation, the iteration loop with convergence test and progress bar,
and the distributed all-reduce of the statistics."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import HMMTypeError, HMMValueError
from ..models._common import check_count, restore_on_error

Batch = Tuple[Any, Optional[torch.Tensor]]


def pad_sequences(
    sequences: Sequence[Any], dtype: Optional[torch.dtype] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length sequences, each (T_i, D), into a zero-padded (B, T_max, D) tensor
    and their lengths (B,)."""
    seqs = [
        torch.as_tensor(np.asarray(s)) if not isinstance(s, torch.Tensor) else s for s in sequences
    ]
    if not seqs:
        raise HMMValueError("no sequences given")
    for i, s in enumerate(seqs):
        if s.dim() != 2:
            raise HMMValueError(f"sequence {i} must have shape (T, D), got {tuple(s.shape)}")
    lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
    if (lengths == 0).any():
        raise HMMValueError(f"sequence {int(torch.nonzero(lengths == 0)[0])} has no frames")
    out = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    return (out if dtype is None else out.to(dtype)), lengths


def split_concatenated(x: Any, lengths: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """hmmlearn's layout, frames of all sequences concatenated (N, D) with ``lengths`` summing
    to N, to a padded (B, T_max, D) batch and lengths."""
    xt = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    L = [int(v) for v in (lengths.tolist() if hasattr(lengths, "tolist") else lengths)]
    if sum(L) != xt.shape[0]:
        raise HMMValueError(f"lengths sum to {sum(L)} but x has {xt.shape[0]} frames")
    return pad_sequences(list(torch.split(xt, L)))


def as_batch(x: Any, lengths: Any = None) -> Tuple[Any, Optional[torch.Tensor]]:
    """Accept (B, T, D) + lengths, (T, D), a list of (T_i, D) sequences, or hmmlearn's
    concatenated (N, D) frames with several ``lengths``; return ``(x, lengths)`` for a model."""
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise HMMValueError("lengths must be None when x is a list of sequences")
        return pad_sequences(x)
    nd = x.dim() if isinstance(x, torch.Tensor) else np.ndim(x)
    if nd == 2 and lengths is not None:
        L = np.atleast_1d(
            np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths)
        )
        if L.size > 1:
            return split_concatenated(x, L)
    return x, lengths


def _is_number_list(data: Any, depth: int = 3) -> bool:
    """A (nested) list or tuple of Python numbers: one array written out, (T, D) or (B, T, D),
    not a list of batches."""
    if isinstance(data, numbers.Number) and not isinstance(data, bool):
        return True
    if depth == 0 or not isinstance(data, (list, tuple)) or not data:
        return False
    return all(_is_number_list(e, depth - 1) for e in data)


def _is_sequence_list(data: Any) -> bool:
    if not isinstance(data, (list, tuple)) or not data:
        return False
    return all(
        isinstance(s, (torch.Tensor, np.ndarray))
        and (s.dim() if isinstance(s, torch.Tensor) else s.ndim) == 2
        for s in data
    )


def _unpack(item: Any) -> Batch:
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return as_batch(item, None)
    if isinstance(item, dict):
        return as_batch(item["x"], item.get("lengths"))
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return as_batch(item[0], item[1])
    raise HMMTypeError(
        "each batch must be x (B, T, D), a pair (x, lengths) or a dict with 'x' and 'lengths', "
        f"got {type(item).__name__}"
    )


def batch_source(data: Any, lengths: Any = None) -> Callable[[], Iterable[Batch]]:
    """A callable returning a fresh iterator over ``(x, lengths)`` batches, one pass each.

    ``data``: a tensor/array (one batch, see :func:`as_batch`), a list of (T_i, D) sequences
    (one padded batch), a re-iterable of batches (a list of batches, a ``DataLoader``), or a
    callable returning an iterator of batches. A one-shot iterator (a generator) is rejected:
    EM reads the data once per iteration."""
    if data is None or isinstance(data, (str, bytes)):
        raise HMMTypeError(
            "x (the data) must be a tensor, an array, a list of sequences or an iterable of "
            f"batches, got {data!r:.80}"
        )
    if isinstance(data, (list, tuple)) and _is_number_list(data):  # an array written as lists
        from ..models.base import as_tensor_arg

        data = as_tensor_arg("x", data)
    if isinstance(data, (torch.Tensor, np.ndarray)) or _is_sequence_list(data):
        one = as_batch(data, lengths)

        def in_memory():
            return [one]

        in_memory.in_memory = True
        return in_memory
    if lengths is not None:
        raise HMMValueError("lengths must be None when data is an iterable of batches")
    if callable(data):
        return lambda: (_unpack(b) for b in data())
    try:
        it = iter(data)
    except TypeError:
        raise HMMTypeError(
            "x (the data) must be a tensor, an array, a list of sequences or an iterable of "
            f"batches, got {type(data).__name__}"
        ) from None
    if it is data:
        raise HMMValueError(
            "data is a one-shot iterator (e.g. a generator), but EM reads the data once per "
            "iteration: pass a list of batches, a DataLoader, or a callable returning an iterator"
        )
    return lambda: (_unpack(b) for b in data)


def collect_frames(model, source, max_frames: int) -> torch.Tensor:
    """Up to ``max_frames`` real (unpadded) frames (N, D) from the first batches, for k-means."""
    out: List[torch.Tensor] = []
    n = 0
    for xb, lb in source():
        x, L = model._prepare_x(xb, lb)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < L.unsqueeze(1)
        f = x[mask]
        out.append(f[: max_frames - n])
        n += out[-1].shape[0]
        if n >= max_frames:
            break
    if not out:
        raise HMMValueError("data holds no batches")
    return torch.cat(out)


def _resolve_params(model, params: Optional[str], what: str) -> str:
    allowed = model.default_params
    p = allowed if params is None else params
    if not isinstance(p, str):
        raise HMMTypeError(
            f"{what} must be a string of letters of {allowed!r} (or None), got {p!r}"
        )
    bad = set(p) - set(allowed)
    if bad:
        raise HMMValueError(f"{what} may only hold letters of {allowed!r}, got {p!r}")
    return p


def _progress(verbose: bool, n_iter: int):
    if not verbose:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dev dependency
        return None
    return tqdm(total=n_iter, desc="EM", unit="iter")


def fit_em(
    model,
    data: Any,
    lengths: Any = None,
    *,
    n_iter: int = 10,
    tol: float = 1e-2,
    params: Optional[str] = None,
    init_params: Optional[str] = "auto",
    verbose: bool = False,
    distributed: bool = False,
    process_group=None,
    seed: Optional[int] = 0,
    kmeans_backend: str = "torch",
    max_init_frames: int = 200_000,
):
    """Baum-Welch EM for ``model`` (a :class:`~pytorch_hmm.models.base.BaseHMM` with
    ``accumulate`` / ``m_step``); see ``BaseHMM.fit`` for the arguments. Returns ``model``.

    Arguments and in-memory data are checked before anything changes; if the fit fails later
    (bad data in a streamed batch, an error in an M-step), the model's parameters and its
    ``log_likelihood_history`` / ``converged`` / ``n_iter_`` are put back as they were."""
    n_iter = check_count("n_iter", n_iter, minimum=0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)):
        raise HMMTypeError(f"tol must be a number, got {tol!r}")
    if math.isnan(tol):
        raise HMMValueError("tol must be a number, got NaN")
    params = _resolve_params(model, params, "params")
    if init_params == "auto":
        init_params = model._auto_init_params()
    init_params = _resolve_params(model, init_params or "", "init_params")
    source = batch_source(data, lengths)
    if distributed:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "distributed=True needs torch.distributed initialised (init_process_group)"
            )
    attrs = ("log_likelihood_history", "converged", "n_iter_")
    with restore_on_error(model, attrs):
        return _fit_em(
            model, source, n_iter, tol, params, init_params, verbose, distributed,
            process_group, seed, kmeans_backend, max_init_frames,
        )  # fmt: skip


def _fit_em(
    model, source, n_iter, tol, params, init_params, verbose, distributed, process_group, seed,
    kmeans_backend, max_init_frames,
):  # fmt: skip
    # data held in memory is checked and converted once, before anything changes, not at
    # every iteration
    batches = list(source()) if getattr(source, "in_memory", False) else None
    if batches is not None:
        with torch.no_grad():
            batches = [model._prepare_x(xb, lb) for xb, lb in batches]
    if init_params:
        need_frames = any(c in init_params for c in model.data_init_params)
        frames = collect_frames(model, source, max_init_frames) if need_frames else None
        model.init_parameters(frames, init_params, seed=seed, kmeans_backend=kmeans_backend)
        if distributed:
            from .distributed import broadcast_parameters

            broadcast_parameters(model, src=0, group=process_group)

    if batches is not None:  # what every iteration would compute again (e.g. [x^2, x])
        with torch.no_grad():
            batches = [(xb, lb, model._em_features(xb)) for xb, lb in batches]

    history: List[float] = []
    # round-off allowed before a decrease is reported: the per-sequence log-likelihoods are
    # computed in the model's dtype
    slack = 100 * torch.finfo(next(model.parameters()).dtype).eps
    model.log_likelihood_history = history
    model.converged = False
    model.n_iter_ = 0
    bar = _progress(verbose, int(n_iter))
    try:
        for it in range(int(n_iter)):
            stats = None
            for item in batches if batches is not None else source():
                if batches is not None:
                    xb, lb, feats = item
                    s = model._accumulate_prepared(xb, lb, params=params, features=feats)
                else:
                    s = model.accumulate(*item, params=params)
                stats = s if stats is None else stats + s
            if stats is None:
                raise HMMValueError("data holds no batches")
            if distributed:
                stats.all_reduce(process_group)
            ll = float(stats.log_likelihood)
            history.append(ll)
            model.m_step(stats, params=params)
            model.n_iter_ = it + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(log_likelihood=f"{ll:.4f}")
            if len(history) >= 2:
                delta = history[-1] - history[-2]
                if delta < -max(slack * abs(history[-1]), 1e-8) and math.isfinite(delta):
                    warnings.warn(
                        f"EM: log-likelihood decreased by {-delta:.3g} at iteration {it + 1}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                if delta < tol:
                    model.converged = True
                    break
    finally:
        if bar is not None:
            bar.close()
    return model
