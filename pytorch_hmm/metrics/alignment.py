"""Alignment accuracy: frame-level label agreement and phone boundary accuracy."""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import HMMTypeError, HMMValueError
from ._common import as_labels, batch_pair, check_scalar, check_segments, frame_mask

__all__ = [
    "DEFAULT_TOLERANCES",
    "FrameAccuracy",
    "BoundaryAccuracy",
    "frame_accuracy",
    "boundary_accuracy",
    "boundary_times",
]

DEFAULT_TOLERANCES: Tuple[float, ...] = (0.010, 0.020, 0.025, 0.050)
"""Boundary tolerances in seconds (10, 20, 25, 50 ms)."""

SegmentsOrTimes = Union[Sequence[Tuple[float, float, str]], Sequence[float], np.ndarray]


class FrameAccuracy(NamedTuple):
    """``accuracy`` ``(B,)`` share of counted frames with equal labels, ``n_frames`` ``(B,)``
    frames counted, ``mean`` pooled over the batch."""

    accuracy: torch.Tensor
    n_frames: torch.Tensor
    mean: float


def frame_accuracy(
    ref: torch.Tensor,
    hyp: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    ignore_index: Optional[int] = None,
) -> FrameAccuracy:
    """Frame-level alignment accuracy.

    ``accuracy[b] = #{t < lengths[b], ref[t] != ignore_index : hyp[t] == ref[t]} / #{counted}``
    (0.0 when no frame counts).

    Args:
        ref, hyp: ``(B, T)`` or ``(T,)`` integer labels per frame (state or phone indices).
        lengths: ``(B,)`` valid frames (must be the same for both sequences).
        ignore_index: reference label whose frames are not counted.
    """
    ref, hyp = as_labels(ref, "ref"), as_labels(hyp, "hyp")
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))
    ):
        raise HMMTypeError(f"ignore_index must be an integer label or None, got {ignore_index!r}")
    r, h, n, _, _ = batch_pair(ref, hyp, lengths, None, feature_dim=False, dtype=torch.long)
    counted = frame_mask(n, r.shape[1])
    if ignore_index is not None:
        counted = counted & (r != ignore_index)
    hits = ((r == h) & counted).sum(1)
    cnt = counted.sum(1)
    acc = hits.double() / cnt.clamp(min=1).double()
    return FrameAccuracy(acc, cnt, float(hits.sum()) / max(int(cnt.sum()), 1))


class BoundaryAccuracy(NamedTuple):
    """Boundary accuracy pooled over all boundaries given.

    Attributes:
        within: tolerance (s) -> share of boundaries with ``|error| <= tolerance``.
        mean_error_ms, median_error_ms: of the absolute boundary errors.
        n_boundaries: boundaries compared.
        errors_ms: ``(n_boundaries,)`` signed errors ``hyp - ref`` in ms.
    """

    within: Dict[float, float]
    mean_error_ms: float
    median_error_ms: float
    n_boundaries: int
    errors_ms: np.ndarray


def _is_segments(x) -> bool:
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and isinstance(x[0], (list, tuple))
        and len(x[0]) == 3
        and isinstance(x[0][2], str)
    )


def boundary_times(
    segmentation: SegmentsOrTimes, *, include_edges: bool = False
) -> Tuple[np.ndarray, Optional[List[str]]]:
    """Boundary times (s) of a segmentation and its labels.

    For segments ``(start, end, label)`` the boundaries are the starts of segments 1..K-1
    (the K-1 phone-to-phone boundaries); ``include_edges`` adds the first start and the last
    end. A 1-D array of times is returned as it is (labels None).
    """
    if _is_segments(segmentation):
        segs = check_segments(segmentation)
        times = [float(s[0]) for s in segs[1:]]
        if include_edges:
            times = [float(segs[0][0])] + times + [float(segs[-1][1])]
        return np.asarray(times, dtype=np.float64), [str(s[2]) for s in segs]
    if isinstance(segmentation, torch.Tensor):
        segmentation = segmentation.detach().cpu().double().numpy()
    try:
        arr = np.asarray(segmentation, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise HMMTypeError(
            "a segmentation must be a list of (start, end, label) or a 1-D array of boundary "
            f"times, got {type(segmentation).__name__}"
        ) from err
    if arr.ndim != 1:
        raise HMMValueError(
            "a segmentation must be a list of (start, end, label) or a 1-D array of boundary "
            f"times, got an array of shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise HMMValueError("boundary times contain NaN or inf")
    if (arr < 0).any():
        raise HMMValueError(f"boundary times must be >= 0, got {arr.min()}")
    return arr, None


def _utterances(x) -> List:
    """One segmentation, or a list of them."""
    if _is_segments(x):
        return [x]
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return [np.asarray(x)] if np.asarray(x).ndim == 1 else list(np.asarray(x))
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            return [x]
        if all(isinstance(v, (int, float, np.floating, np.integer)) for v in x):
            return [x]
        return list(x)
    raise HMMTypeError(f"expected segments or boundary times, got {type(x).__name__}")


def boundary_accuracy(
    reference,
    hypothesis,
    tolerances: Sequence[float] = DEFAULT_TOLERANCES,
    *,
    include_edges: bool = False,
    check_labels: bool = True,
) -> BoundaryAccuracy:
    """Phone boundary accuracy of a hypothesis segmentation against a reference.

    Boundary ``i`` of the hypothesis is compared with boundary ``i`` of the reference (both
    segmentations are of the same phone sequence); the error is ``hyp_i - ref_i`` seconds.
    ``within[tol]`` is the share of boundaries with ``|error| <= tol`` (inclusive, with 1e-9 s
    slack); mean and median are of ``|error|`` in ms. With no boundary at all the shares and
    errors are 0.0 and ``n_boundaries == 0``.

    Args:
        reference, hypothesis: one utterance (a list of ``(start, end, label)`` in seconds, or a
            1-D array of boundary times) or a list of utterances, pooled.
        tolerances: seconds (default 10, 20, 25, 50 ms).
        include_edges: also compare the first start and the last end (segments only).
        check_labels: with segments, require the same label sequence.

    Raises:
        ValueError: different numbers of utterances or boundaries, or different labels.
    """
    if isinstance(tolerances, (int, float, np.number)) and not isinstance(tolerances, bool):
        tolerances = (tolerances,)
    try:
        tolerances = [check_scalar(t, "tolerances") for t in tolerances]
    except TypeError as err:
        if isinstance(err, HMMTypeError):
            raise
        raise HMMTypeError(f"tolerances must be a list of seconds, got {tolerances!r}") from err
    refs, hyps = _utterances(reference), _utterances(hypothesis)
    if len(refs) != len(hyps):
        raise HMMValueError(
            f"reference has {len(refs)} utterance(s) but hypothesis has {len(hyps)}"
        )
    errors = []
    for u, (r, h) in enumerate(zip(refs, hyps)):
        try:
            rt, rlab = boundary_times(r, include_edges=include_edges)
        except ValueError as err:
            raise HMMValueError(f"reference utterance {u}: {err}") from err
        try:
            ht, hlab = boundary_times(h, include_edges=include_edges)
        except ValueError as err:
            raise HMMValueError(f"hypothesis utterance {u}: {err}") from err
        if check_labels and rlab is not None and hlab is not None and rlab != hlab:
            diff = next(
                (i for i, (a, b) in enumerate(zip(rlab, hlab)) if a != b), min(len(rlab), len(hlab))
            )
            raise HMMValueError(
                f"utterance {u}: reference and hypothesis label sequences differ (lengths "
                f"{len(rlab)} and {len(hlab)}, first difference at segment {diff})"
            )
        if rt.shape != ht.shape:
            raise HMMValueError(
                f"utterance {u}: reference has {rt.shape[0]} boundaries but hypothesis has "
                f"{ht.shape[0]}"
            )
        errors.append(ht - rt)
    err = np.concatenate(errors) if errors else np.zeros(0)
    n = int(err.shape[0])
    absms = np.abs(err) * 1000.0
    within = {
        float(t): (float(np.mean(np.abs(err) <= float(t) + 1e-9)) if n else 0.0) for t in tolerances
    }
    return BoundaryAccuracy(
        within,
        float(absms.mean()) if n else 0.0,
        float(np.median(absms)) if n else 0.0,
        n,
        err * 1000.0,
    )
