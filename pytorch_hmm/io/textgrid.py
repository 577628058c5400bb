"""Praat TextGrid reading and writing (interval tiers), through ``praatio``."""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence

from ..errors import HMMValueError
from ._atomic import atomic_path
from .labels import PathLike, Segment, SegmentLike, _as_segments

__all__ = ["read_textgrid", "write_textgrid"]

TIME_DECIMALS = 6  # decimal places of the times write_textgrid writes

def _praatio():
    try:
        from praatio import textgrid
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TextGrid support needs praatio: pip install 'pytorch-hmm[audio]'"
        ) from err
    return textgrid


def read_textgrid(
    path: PathLike,
    *,
    tiers: Optional[Sequence[str]] = None,
    include_empty: bool = False,
) -> Dict[str, List[Segment]]:
    """Read the interval tiers of a Praat TextGrid (long or short text format).

    Args:
        path: the TextGrid file.
        tiers: names of the tiers to return (default: every interval tier). A missing name is
            a ``KeyError`` listing the tiers present.
        include_empty: keep intervals with an empty label (Praat's unlabelled gaps).

    Returns:
        dict tier name -> list of :class:`~pytorch_hmm.io.labels.Segment` (seconds), in
        tier order. Point tiers are skipped.
    """
    tg_mod = _praatio()
    from praatio.utilities.errors import PraatioException

    try:
        tg = tg_mod.openTextgrid(str(path), includeEmptyIntervals=include_empty)
    except (IndexError, KeyError, ValueError, UnicodeDecodeError, PraatioException) as e:
        # praatio fails deep inside its parser on empty, header-only or truncated files
        raise HMMValueError(
            f"{path}: not a readable TextGrid (empty, truncated or with bad values?): "
            f"{type(e).__name__}: {e}"
        ) from e
    names = list(tg.tierNames)
    wanted = names if tiers is None else list(tiers)
    out: Dict[str, List[Segment]] = {}
    for name in wanted:
        if name not in names:
            raise KeyError(f"tier {name!r} not in {path}; tiers present: {names}")
        tier = tg.getTier(name)
        if tier.tierType != "IntervalTier":
            if tiers is not None:
                raise HMMValueError(f"tier {name!r} is a {tier.tierType}, not an interval tier")
            continue
        segs = [
            Segment(float(e.start), float(e.end), e.label)
            for e in tier.entries
            if include_empty or e.label.strip()
        ]
        for k, sg in enumerate(segs):
            if not (math.isfinite(sg.start) and math.isfinite(sg.end)) or sg.start < 0:
                raise HMMValueError(
                    f"{path}: tier {name!r} interval {k} has times ({sg.start}, {sg.end}); "
                    "expected finite times >= 0"
                )
        out[name] = segs
    return out


def write_textgrid(
    path: PathLike,
    tiers: Mapping[str, Sequence[SegmentLike]],
    *,
    xmin: float = 0.0,
    xmax: Optional[float] = None,
    format: str = "long_textgrid",
) -> None:
    """Write interval tiers to a Praat TextGrid with praatio.

    Args:
        path: output file.
        tiers: dict tier name -> list of ``(start, end, label)`` in seconds; dict order is the
            tier order. Gaps between intervals are written as empty intervals.
        xmin, xmax: the TextGrid's time range (``xmax`` default: the latest end over tiers).
        format: praatio output format, ``"long_textgrid"`` (Praat's default text format),
            ``"short_textgrid"`` or ``"json"``.
    """
    tg_mod = _praatio()
    from praatio.data_classes.interval_tier import IntervalTier

    if not isinstance(tiers, Mapping):
        raise HMMValueError(f"tiers must be a dict name -> segments, got {type(tiers).__name__}")
    if not tiers:
        raise HMMValueError("tiers must hold at least one tier")
    for v, nm in ((xmin, "xmin"), (xmax, "xmax")):
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise HMMValueError(f"{nm} must be a finite time >= 0, got {v!r}")
    segs = {name: _as_segments(ivs, f"tiers[{name!r}]") for name, ivs in tiers.items()}
    latest = max((s.end for ivs in segs.values() for s in ivs), default=xmin)
    if xmax is None:
        xmax = latest
    if xmax < latest:
        raise HMMValueError(f"xmax = {xmax} is before the latest interval end {latest}")
    if format not in ("long_textgrid", "short_textgrid", "json"):
        raise HMMValueError(
            f"format must be 'long_textgrid', 'short_textgrid' or 'json', got {format!r}"
        )
    from praatio.utilities.errors import PraatioException

    # times are written rounded to TIME_DECIMALS places (a microsecond: finer than a sample at
    # 48 kHz), so frame arithmetic's 0.17500000000000002 is written 0.175; equal times stay equal
    xmin, xmax = round(float(xmin), TIME_DECIMALS), round(float(xmax), TIME_DECIMALS)
    try:  # praatio refuses overlapping intervals and the like: named, with the file
        tg = tg_mod.Textgrid(minTimestamp=xmin, maxTimestamp=xmax)
        for name, ivs in segs.items():
            entries = [
                (round(s.start, TIME_DECIMALS), round(s.end, TIME_DECIMALS), s.label)
                for s in ivs
            ]
            tg.addTier(IntervalTier(name, entries, minT=xmin, maxT=xmax))
        with atomic_path(path) as tmp:  # the old file stays whole if anything fails
            tg.save(tmp, format=format, includeBlankSpaces=True, reportingMode="error")
    except PraatioException as e:
        raise HMMValueError(f"cannot write {path}: {type(e).__name__}: {e}") from e
