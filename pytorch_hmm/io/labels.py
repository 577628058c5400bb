"""HTK / HTS ``.lab`` label files.

An HTK label file holds one segment a line: ``start end label`` with times in units of
100 ns (``1 s == 10_000_000``). HTS *full-context* labels carry the phone between ``-`` and
``+`` (``x^sil-hh+iy=t@...`` is the phone ``hh``); state-level HTS labels end with ``[k]``.
Times are exchanged as seconds (floats) throughout this package.
"""

from __future__ import annotations

import math
import os
import re
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import HMMTypeError, HMMValueError
from ._atomic import atomic_write

__all__ = [
    "HTK_TIME_UNIT",
    "Segment",
    "parse_full_context",
    "read_lab",
    "write_lab",
    "segments_to_durations",
    "segments_to_frame_labels",
]

HTK_TIME_UNIT = 1e-7
"""Seconds per HTK time unit (100 ns)."""

PathLike = Union[str, "os.PathLike[str]"]
SegmentLike = Union["Segment", Tuple[float, float, str]]

_FULL_CONTEXT = re.compile(r"^[^-]*-([^+]+)\+")
_STATE_SUFFIX = re.compile(r"\[(\d+)\]$")


class Segment(NamedTuple):
    """A labelled time interval in seconds."""

    start: float
    end: float
    label: str


def parse_full_context(label: str) -> str:
    """Phone of an HTS full-context label: the token between the first ``-`` and the next ``+``.

    ``"x^sil-hh+iy=t@1_2/A:..."`` gives ``"hh"``. A label without the ``-...+`` pattern (a plain
    monophone label such as ``"pau"``) is returned unchanged, less any ``[k]`` state suffix.
    """
    if not isinstance(label, str):
        raise HMMTypeError(f"label must be a str, got {type(label).__name__}")
    m = _FULL_CONTEXT.match(label)
    if m is not None:
        return m.group(1)
    return _STATE_SUFFIX.sub("", label)


def read_lab(
    path: PathLike,
    *,
    phone_only: bool = True,
    time_unit: float = HTK_TIME_UNIT,
) -> List[Segment]:
    """Read an HTK/HTS ``.lab`` file into segments with times in seconds.

    Args:
        path: file with lines ``start end label`` (times in ``time_unit`` seconds, 100 ns by
            default). Lines with a single label and no times (a transcription-only ``.lab``)
            are rejected; blank lines are skipped. Extra columns after the label (HTK scores)
            are ignored.
        phone_only: reduce HTS full-context labels to their phone with
            :func:`parse_full_context` (plain labels pass unchanged). ``False`` keeps the raw
            label text.
        time_unit: seconds per time unit in the file.

    Returns:
        list of :class:`Segment` ``(start, end, label)`` in file order.

    Raises:
        ValueError: a malformed line (names the file and line number): too few fields, times
        that are not numbers, NaN/inf or negative, ``end < start``; a file that is not UTF-8.
    """
    if isinstance(time_unit, bool) or not isinstance(time_unit, (int, float)):
        raise HMMTypeError(f"time_unit must be a number of seconds, got {time_unit!r}")
    if not (0 < time_unit < math.inf):
        raise HMMValueError(f"time_unit must be a positive number of seconds, got {time_unit!r}")
    segments: List[Segment] = []
    per_second = 1.0 / time_unit
    if abs(per_second - round(per_second)) < 1e-6:
        # divide by an integer count per second: 2700000 / 1e7 == 0.27 exactly as a float
        per_second = float(round(per_second))
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as err:
        line_no = None
        try:
            with open(path, "rb") as fb:
                line_no = fb.read()[: err.start].count(b"\n") + 1
        except OSError:
            pass
        where = f":{line_no}" if line_no else ""
        raise HMMValueError(f"{name}{where}: not UTF-8 text ({err.reason})") from err
    for lineno, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise HMMValueError(
                f"{os.fspath(path)}:{lineno}: expected 'start end label', got {line.strip()!r}"
            )
        try:
            start = int(parts[0]) / per_second
            end = int(parts[1]) / per_second
        except (ValueError, OverflowError):
            try:
                start = float(parts[0]) / per_second
                end = float(parts[1]) / per_second
            except ValueError as err:
                raise HMMValueError(
                    f"{os.fspath(path)}:{lineno}: times must be numbers, got {line.strip()!r}"
                ) from err
        if not (math.isfinite(start) and math.isfinite(end)):
            raise HMMValueError(
                f"{name}:{lineno}: times must be finite numbers, got {line.strip()!r}"
            )
        if start < 0:
            raise HMMValueError(f"{name}:{lineno}: start ({parts[0]}) is negative")
        if end < start:
            raise HMMValueError(f"{name}:{lineno}: end ({parts[1]}) is before start ({parts[0]})")
        label = parts[2]
        segments.append(Segment(start, end, parse_full_context(label) if phone_only else label))
    return segments


def _as_segments(segments: Iterable[SegmentLike], name: str = "segments") -> List[Segment]:
    out: List[Segment] = []
    if segments is None or isinstance(segments, (str, bytes)):
        raise HMMTypeError(f"{name} must be a list of (start, end, label), got {segments!r}")
    try:
        items = list(segments)
    except TypeError as err:
        raise HMMTypeError(
            f"{name} must be a list of (start, end, label), got {type(segments).__name__}"
        ) from err
    for i, seg in enumerate(items):
        if isinstance(seg, (str, bytes)) or not hasattr(seg, "__len__") or len(seg) != 3:
            raise HMMValueError(f"{name}[{i}] must be (start, end, label), got {seg!r}")
        start, end, label = seg
        try:
            start, end = float(start), float(end)
        except (TypeError, ValueError) as err:
            raise HMMValueError(f"{name}[{i}]: times must be numbers, got {seg!r}") from err
        if not (math.isfinite(start) and math.isfinite(end)):
            raise HMMValueError(f"{name}[{i}]: times must be finite, got ({start}, {end})")
        if start < 0:
            raise HMMValueError(f"{name}[{i}]: start {start} is negative")
        if end < start:
            raise HMMValueError(f"{name}[{i}]: end {end} is before start {start}")
        if label is None:
            raise HMMValueError(f"{name}[{i}]: label is None")
        out.append(Segment(start, end, str(label)))
    return out


def write_lab(
    path: PathLike,
    segments: Iterable[SegmentLike],
    *,
    time_unit: float = HTK_TIME_UNIT,
) -> None:
    """Write segments ``(start, end, label)`` in seconds as an HTK ``.lab`` file.

    Times are rounded to the nearest ``time_unit`` (100 ns by default) and written as integers.
    Labels must not contain whitespace (HTK splits on it).
    """
    segs = _as_segments(segments)
    lines = []
    for i, s in enumerate(segs):
        if not s.label or any(c.isspace() for c in s.label):
            raise HMMValueError(
                f"segments[{i}].label must be non-empty without spaces: {s.label!r}"
            )
        lines.append(f"{round(s.start / time_unit)} {round(s.end / time_unit)} {s.label}\n")
    with atomic_write(path, "w") as f:  # the old file stays whole if anything fails
        f.writelines(lines)


def segments_to_durations(
    segments: Sequence[SegmentLike],
    frame_shift: float,
    *,
    n_states: int = 1,
) -> Tuple[List[str], torch.Tensor]:
    """Durations in frames of consecutive segments (e.g. phones, or HMM states).

    Boundaries are rounded to the frame grid (``round(t / frame_shift)``) and durations taken as
    differences of the rounded boundaries, so durations sum to the rounded total length
    (no accumulated rounding drift).

    Args:
        segments: contiguous segments ``(start, end, label)`` in seconds.
        frame_shift: seconds per frame (0.005 for HTS).
        n_states: group every ``n_states`` consecutive segments into one unit (state-level
            labels with ``n_states`` states per phone); the unit's label is its first segment's.

    Returns:
        ``(labels, durations)``: ``labels`` a list of K unit labels, ``durations`` an int64
        tensor ``(K,)`` when ``n_states == 1`` else ``(K, n_states)``.
    """
    if not (0 < frame_shift < math.inf):
        raise HMMValueError(f"frame_shift must be a positive number, got {frame_shift}")
    if isinstance(n_states, bool) or not isinstance(n_states, int) or n_states < 1:
        raise HMMValueError(f"n_states must be a whole number >= 1, got {n_states!r}")
    segs = _as_segments(segments)
    if len(segs) % n_states != 0:
        raise HMMValueError(
            f"len(segments) = {len(segs)} is not a multiple of n_states = {n_states}"
        )
    bounds = np.array([segs[0].start] + [s.end for s in segs]) if segs else np.zeros(1)
    frames = np.rint(bounds / frame_shift).astype(np.int64)
    dur = torch.from_numpy(np.diff(frames))
    labels = [segs[i].label for i in range(0, len(segs), n_states)]
    if n_states > 1:
        dur = dur.reshape(-1, n_states)
    return labels, dur


def segments_to_frame_labels(
    segments: Sequence[SegmentLike],
    frame_shift: float,
    *,
    n_frames: Optional[int] = None,
    vocabulary: Optional[Sequence[str]] = None,
) -> Tuple[torch.Tensor, List[str]]:
    """Frame-level label indices of a segmentation.

    Frame ``t`` covers ``[t * frame_shift, (t + 1) * frame_shift)`` and takes the label of the
    segment containing its centre ``(t + 0.5) * frame_shift``; frames in no segment get -1.

    Args:
        segments: ``(start, end, label)`` in seconds.
        frame_shift: seconds per frame.
        n_frames: number of frames (default: ``ceil(last end / frame_shift)``).
        vocabulary: label inventory giving the indices (default: labels in order of first use).

    Returns:
        ``(indices, vocabulary)``: int64 tensor ``(n_frames,)`` and the label list.
    """
    if not (0 < frame_shift < math.inf):
        raise HMMValueError(f"frame_shift must be a positive number, got {frame_shift}")
    if n_frames is not None and (
        isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 0
    ):
        raise HMMValueError(f"n_frames must be a whole number >= 0, got {n_frames!r}")
    segs = _as_segments(segments)
    if vocabulary is None:
        vocab: List[str] = []
        for s in segs:
            if s.label not in vocab:
                vocab.append(s.label)
    else:
        vocab = list(vocabulary)
    index = {lab: i for i, lab in enumerate(vocab)}
    if n_frames is None:
        n_frames = int(np.ceil(max((s.end for s in segs), default=0.0) / frame_shift - 1e-9))
    centres = (np.arange(n_frames) + 0.5) * frame_shift
    out = np.full(n_frames, -1, dtype=np.int64)
    for i, s in enumerate(segs):
        if s.label not in index:
            raise HMMValueError(f"segments[{i}].label {s.label!r} is not in vocabulary")
        out[(centres >= s.start) & (centres < s.end)] = index[s.label]
    return torch.from_numpy(out), vocab
