"""Aligner corpora (folders of ``NAME.wav`` + ``NAME.txt``) and boundary evaluation.

:func:`load_corpus` reads an MFA-style corpus folder; every file that cannot be read is
reported by name with the reason instead of stopping the run. :func:`phone_boundary_accuracy`
scores an aligner's phone segmentation against reference labels in a way that does not depend
on where either puts its pauses (see its docstring).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import HMMTypeError, HMMValueError
from ..metrics.alignment import DEFAULT_TOLERANCES, BoundaryAccuracy, boundary_accuracy

__all__ = ["corpus_files", "load_corpus", "phone_boundary_accuracy", "phone_boundaries"]

PathLike = Union[str, "os.PathLike[str]"]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
DEFAULT_SILENCES = ("sil", "pau", "sp", "<sil>", "SIL", "")


def corpus_files(corpus_dir: PathLike) -> List[Tuple[str, str, Optional[str]]]:
    """``(name, audio path, transcript path or None)`` for every audio file in the folder
    (not recursive), sorted by name. The transcript is ``NAME.txt`` (or ``NAME.lab`` holding a
    plain transcript line, as MFA accepts)."""
    d = os.fspath(corpus_dir)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"corpus folder {d!r} does not exist")
    out = []
    for fn in sorted(os.listdir(d)):
        stem, ext = os.path.splitext(fn)
        if ext.lower() not in AUDIO_EXTENSIONS:
            continue
        txt = None
        for cand in (stem + ".txt", stem + ".lab"):
            if os.path.isfile(os.path.join(d, cand)):
                txt = os.path.join(d, cand)
                break
        out.append((stem, os.path.join(d, fn), txt))
    return out


def load_corpus(
    aligner,
    corpus_dir: PathLike,
    *,
    errors: Optional[Dict[str, str]] = None,
    progress: Optional[Callable[[int], None]] = None,
):
    """Read every ``NAME.wav`` + ``NAME.txt`` of a folder into
    :class:`~pytorch_hmm.alignment.forced.Utterance` objects with the aligner's front end.

    Files that cannot be used (no transcript, empty transcript, unreadable or wrong-rate
    audio) are skipped and recorded in ``errors`` (name -> reason)."""
    if not callable(getattr(aligner, "load_utterance", None)):
        raise HMMTypeError(
            f"aligner must be a ForcedAligner (with load_utterance), got {type(aligner).__name__}"
        )
    if errors is not None and not isinstance(errors, dict):
        raise HMMTypeError(f"errors must be a dict or None, got {type(errors).__name__}")
    utts = []
    errs: Dict[str, str] = {} if errors is None else errors
    for name, wav, txt in corpus_files(corpus_dir):
        try:
            if txt is None:
                raise HMMValueError("no transcript (NAME.txt) beside the audio")
            try:
                with open(txt, encoding="utf-8") as f:
                    text = f.read().split()
            except UnicodeDecodeError as err:
                raise HMMValueError(
                    f"transcript {os.path.basename(txt)} is not UTF-8 text ({err.reason})"
                ) from err
            if not text:
                raise HMMValueError(f"transcript {os.path.basename(txt)} is empty")
            try:
                utts.append(aligner.load_utterance(wav, text, name=name))
            except ValueError:
                raise
            except Exception as err:  # soundfile raises its own error types
                raise HMMValueError(f"cannot read audio {os.path.basename(wav)}: {err}") from err
        except (ValueError, OSError) as err:
            errs[name] = str(err)
        if progress is not None:
            progress(1)
    return utts


def phone_boundaries(
    segments: Sequence[Tuple[float, float, str]],
    silences: Sequence[str] = DEFAULT_SILENCES,
    *,
    after_pause: Optional[Sequence[bool]] = None,
) -> Tuple[np.ndarray, List[str], List[bool]]:
    """Boundary times of a phone segmentation, pauses aside.

    For each non-silence phone its start time, and its end time when a pause (or the end of
    the file) follows it in the reference, ``after_pause`` (default: this segmentation's
    own pauses). Returns ``(times, phones, after_pause)``."""
    sil = set(silences)
    for k, seg in enumerate(segments):
        if isinstance(seg, str) or len(seg) != 3:
            raise HMMValueError(f"segment {k} must be (start, end, label), got {seg!r}")
        try:
            s, e = float(seg[0]), float(seg[1])
        except (TypeError, ValueError) as err:
            raise HMMValueError(f"segment {k}: times must be numbers, got {seg!r}") from err
        if not (np.isfinite(s) and np.isfinite(e)) or s < 0 or e < s:
            raise HMMValueError(
                f"segment {k}: times must be finite with 0 <= start <= end, got {seg!r}"
            )
    phones = [(float(s), float(e), str(lab)) for s, e, lab in segments if str(lab) not in sil]
    if after_pause is None:
        after_pause = []
        segs = list(segments)
        for i, (_, _, lab) in enumerate(segs):
            if str(lab) in sil:
                continue
            nxt = segs[i + 1][2] if i + 1 < len(segs) else None
            after_pause.append(nxt is None or str(nxt) in sil)
    times = []
    for (s, e, _), ap in zip(phones, after_pause):
        times.append(s)
        if ap:
            times.append(e)
    return np.asarray(times), [p for _, _, p in phones], list(after_pause)


def phone_boundary_accuracy(
    references: Sequence[Sequence[Tuple[float, float, str]]],
    hypotheses: Sequence[Sequence[Tuple[float, float, str]]],
    tolerances: Sequence[float] = DEFAULT_TOLERANCES,
    *,
    silences: Sequence[str] = DEFAULT_SILENCES,
    include_edges: bool = False,
) -> BoundaryAccuracy:
    """Boundary accuracy of hypothesis phone segmentations against references.

    Pauses are set aside so that a pause the aligner found or missed does not shift the
    comparison: the compared boundaries are, for every non-pause phone, its start, and its end
    where the *reference* has a pause after it. When both have the same pauses these are
    exactly the reference's phone-to-phone boundaries (pause boundaries included). The first
    start and the last end are left out unless ``include_edges`` (the leading and trailing
    pauses' inner edges are always kept). Both sides must have the same non-pause phones.
    """
    if len(references) != len(hypotheses):
        raise HMMValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs, hyps = [], []
    for i, (r, h) in enumerate(zip(references, hypotheses)):
        try:
            rt, rp, ap = phone_boundaries(r, silences)
        except ValueError as err:
            raise HMMValueError(f"reference utterance {i}: {err}") from err
        try:
            ht, hp, _ = phone_boundaries(h, silences, after_pause=ap)
        except ValueError as err:
            raise HMMValueError(f"hypothesis utterance {i}: {err}") from err
        if rp != hp:
            raise HMMValueError(f"utterance {i}: reference and hypothesis phones differ")
        if not include_edges:
            first_is_edge = not r or str(r[0][2]) not in set(silences)
            last_is_edge = not r or str(r[-1][2]) not in set(silences)
            lo = 1 if first_is_edge else 0
            hi = len(rt) - 1 if last_is_edge else len(rt)
            rt, ht = rt[lo:hi], ht[lo:hi]
        refs.append(rt)
        hyps.append(ht)
    if not refs:
        return boundary_accuracy(np.zeros(0), np.zeros(0), tolerances)
    return boundary_accuracy(refs, hyps, tolerances, check_labels=False)
