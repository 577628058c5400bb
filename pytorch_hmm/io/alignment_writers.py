"""Writers of forced-alignment results (JSON, Praat TextGrid, HTK ``.lab``).

They take any object with the attributes of
:class:`~pytorch_hmm.alignment.forced.UtteranceAlignment` (``name``, ``duration``, ``score``,
``frame_shift`` and the tiers ``words``, ``phones``, ``states`` as lists of
``(start, end, label)`` in seconds), so this module does not depend on the aligner.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import HMMValueError
from ._atomic import atomic_write
from .labels import PathLike, write_lab
from .textgrid import write_textgrid

__all__ = [
    "TIERS",
    "alignment_to_dict",
    "write_alignment_json",
    "write_alignment_lab",
    "write_alignment_textgrid",
]

TIERS = ("words", "phones", "states")
"""The tiers of an alignment result, in the order they are written."""


def _segments(segs) -> list:
    return [{"start": s.start, "end": s.end, "label": s.label} for s in segs]


def alignment_to_dict(alignment: Any) -> dict:
    """Plain-data form of an alignment result (what :func:`write_alignment_json` writes):
    ``name``, ``duration``, ``score``, ``frame_shift`` and each tier as a list of
    ``{"start", "end", "label"}``."""
    return {
        "name": alignment.name,
        "duration": alignment.duration,
        "score": alignment.score,
        "frame_shift": alignment.frame_shift,
        "words": _segments(alignment.words),
        "phones": _segments(alignment.phones),
        "states": _segments(alignment.states),
    }


def write_alignment_json(path: PathLike, alignment: Any) -> None:
    """JSON file of :func:`alignment_to_dict` (UTF-8, labels unescaped)."""
    data = alignment_to_dict(alignment)
    text = json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False)
    with atomic_write(path, "w") as f:  # the old file stays whole if anything fails
        f.write(text)


def write_alignment_textgrid(path: PathLike, alignment: Any, *, states: bool = False) -> None:
    """Praat TextGrid (praatio) with tiers ``words`` and ``phones`` (and ``states``), spanning
    the whole audio (``alignment.duration``)."""
    tiers = {"words": alignment.words, "phones": alignment.phones}
    if states:
        tiers["states"] = alignment.states
    write_textgrid(path, tiers, xmax=alignment.duration)


def write_alignment_lab(path: PathLike, alignment: Any, *, tier: str = "phones") -> None:
    """HTK/HTS ``.lab`` (100 ns units) of the ``phones``, ``words`` or ``states`` tier."""
    if tier not in TIERS:
        raise HMMValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    write_lab(path, getattr(alignment, tier))
