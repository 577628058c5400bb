"""Settings, inputs and results of the forced aligner: :class:`AlignerConfig`,
:class:`Utterance`, :class:`AlignmentError` and :class:`UtteranceAlignment` (results hold data
and call the writers of :mod:`pytorch_hmm.io.alignment_writers`)."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch

from ...errors import HMMTypeError, HMMValueError
from ...io.alignment_writers import (
    alignment_to_dict,
    write_alignment_json,
    write_alignment_lab,
    write_alignment_textgrid,
)
from ...io.labels import Segment

__all__ = [
    "AlignerConfig",
    "AlignmentError",
    "PathLike",
    "TranscriptLike",
    "Utterance",
    "UtteranceAlignment",
]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class AlignerConfig:
    """Settings of a :class:`ForcedAligner` (saved with it).

    Front end: MFCC ``n_mfcc`` (c0 included) from ``n_mels`` mel bands, ``win_length`` s Hann
    window in an ``n_fft`` FFT, ``frame_shift`` s hop, per-utterance CMVN, then deltas and
    delta-deltas (``delta_order``). Topology: ``states_per_phone`` / ``silence_states``
    emitting states; silence optional between words (``optional_silence``) and at the edges.
    ``silence_aliases``: transcript tokens read as the silence phone (festival ``pau``, ``sp``).
    Initial probabilities: ``self_loop_prob``, ``silence_prob`` (between words),
    ``edge_silence_prob`` (at the start and end); all are re-estimated by training.
    ``variance_floor``: share of the global feature variance that no state variance goes under.
    ``max_variants``: most pronunciation combinations aligned per utterance (see module doc).
    ``batch_size``: utterances per engine call. ``time_offset``: seconds added to every
    boundary (see module doc). ``energy_init``: in the flat-start segmentation, give the
    leading and trailing silences the frames outside the span of speech found by an energy
    threshold (otherwise the whole utterance is split evenly over the phones' states).
    """

    sample_rate: int = 16000
    frame_shift: float = 0.010
    win_length: float = 0.025
    n_fft: int = 512
    n_mels: int = 40
    n_mfcc: int = 13
    delta_order: int = 2
    states_per_phone: int = 3
    silence_phone: str = "sil"
    silence_states: int = 3
    silence_aliases: Tuple[str, ...] = ("sil", "pau", "sp", "<sil>", "SIL")
    optional_silence: bool = True
    self_loop_prob: float = 0.6
    silence_prob: float = 0.3
    edge_silence_prob: float = 0.8
    variance_floor: float = 0.01
    max_variants: int = 32
    batch_size: int = 32
    time_offset: float = 0.0
    energy_init: bool = True
    dither: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every setting (called on construction and by the aligner); raises
        :class:`~pytorch_hmm.errors.HMMValueError` / ``HMMTypeError`` naming the field."""
        for name in _INT_FIELDS:
            v = getattr(self, name)
            lo = 0 if name == "delta_order" else 1
            whole = isinstance(v, numbers.Integral) or (
                isinstance(v, numbers.Real) and math.isfinite(v) and float(v).is_integer()
            )
            if isinstance(v, bool) or not whole:
                raise HMMTypeError(f"AlignerConfig.{name} must be a whole number, got {v!r}")
            if int(v) < lo:
                raise HMMValueError(f"AlignerConfig.{name} must be >= {lo}, got {v!r}")
            setattr(self, name, int(v))
        for name, lo, lo_open, hi, hi_open in _REAL_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise HMMTypeError(f"AlignerConfig.{name} must be a number, got {v!r}")
            v = float(v)
            ok = math.isfinite(v)
            if ok and lo is not None:
                ok = v > lo if lo_open else v >= lo
            if ok and hi is not None:
                ok = v < hi if hi_open else v <= hi
            if not ok:
                rng = (
                    ("(" if lo_open or lo is None else "[")
                    + ("-inf" if lo is None else f"{lo:g}")
                    + ", "
                    + ("inf" if hi is None else f"{hi:g}")
                    + (")" if hi_open or hi is None else "]")
                )
                raise HMMValueError(f"AlignerConfig.{name} must lie in {rng}, got {v!r}")
            setattr(self, name, v)
        if not isinstance(self.silence_phone, str) or not self.silence_phone.strip():
            raise HMMValueError(
                f"AlignerConfig.silence_phone must be a non-empty string, got "
                f"{self.silence_phone!r}"
            )
        if isinstance(self.silence_aliases, str) or not all(
            isinstance(a, str) for a in self.silence_aliases
        ):
            raise HMMTypeError(
                "AlignerConfig.silence_aliases must be a sequence of strings, got "
                f"{self.silence_aliases!r}"
            )
        self.silence_aliases = tuple(self.silence_aliases)
        if self.hop_length < 1:
            raise HMMValueError(
                f"AlignerConfig.frame_shift = {self.frame_shift} s is under one sample at "
                f"{self.sample_rate} Hz"
            )

    @property
    def hop_length(self) -> int:
        return int(round(self.frame_shift * self.sample_rate))

    @property
    def feature_dim(self) -> int:
        return self.n_mfcc * (1 + self.delta_order)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["silence_aliases"] = list(self.silence_aliases)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AlignerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "silence_aliases" in kw:
            kw["silence_aliases"] = tuple(kw["silence_aliases"])
        return cls(**kw)


_INT_FIELDS = (
    "sample_rate",
    "n_fft",
    "n_mels",
    "n_mfcc",
    "delta_order",
    "states_per_phone",
    "silence_states",
    "max_variants",
    "batch_size",
)
# (name, low, low open, high, high open); None: unbounded. Probabilities lie strictly inside
# (0, 1): their logarithms and those of their complements enter the graphs.
_REAL_FIELDS = (
    ("frame_shift", 0.0, True, None, False),
    ("win_length", 0.0, True, None, False),
    ("self_loop_prob", 0.0, True, 1.0, True),
    ("silence_prob", 0.0, True, 1.0, True),
    ("edge_silence_prob", 0.0, True, 1.0, True),
    ("variance_floor", 0.0, True, None, False),
    ("time_offset", None, False, None, False),
    ("dither", 0.0, False, None, False),
)

TranscriptLike = Union[str, Sequence[str]]


@dataclass
class Utterance:
    """One utterance to train on or align.

    ``features`` (T, D) from :meth:`ForcedAligner.extract_features`; ``transcript``: a string
    or list of words (looked up in the lexicon) or, without a lexicon, of phones (silence
    tokens such as ``pau`` mark where a pause may be); ``pronunciations``: optional explicit
    phone sequence of each word (then the lexicon is not used); ``duration`` in seconds
    (default: frames times the frame shift); ``speaker``: optional speaker name (recorded by
    :func:`~pytorch_hmm.alignment.corpus.load_corpus`; the front end normalises each
    utterance on its own, so it does not change the features).
    """

    name: str
    features: torch.Tensor
    transcript: TranscriptLike
    pronunciations: Optional[Sequence[Sequence[str]]] = None
    duration: Optional[float] = None
    speaker: Optional[str] = None


class AlignmentError(HMMValueError):
    """An utterance that cannot be aligned (``name`` and ``reason``)."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"{name}: {reason}")


@dataclass
class UtteranceAlignment:
    """Result for one utterance: ``phones``, ``words`` and ``states`` as lists of
    :class:`~pytorch_hmm.io.labels.Segment` ``(start, end, label)`` in seconds (silences are
    labelled with the silence phone and are not in ``words``; states are labelled
    ``phone[k]`` with HTK numbering k = 2..N+1), ``score`` the Viterbi path's log-likelihood,
    ``duration`` in seconds."""

    name: str
    phones: List[Segment]
    words: List[Segment]
    states: List[Segment]
    score: float
    duration: float
    frame_shift: float = 0.010

    def to_dict(self) -> dict:
        """Plain data (:func:`~pytorch_hmm.io.alignment_writers.alignment_to_dict`)."""
        return alignment_to_dict(self)

    def write_json(self, path: PathLike) -> None:
        """JSON of :meth:`to_dict`, UTF-8 (see :mod:`pytorch_hmm.io.alignment_writers`)."""
        write_alignment_json(path, self)

    def write_textgrid(self, path: PathLike, *, states: bool = False) -> None:
        """Praat TextGrid (praatio) with tiers ``words`` and ``phones`` (and ``states``)."""
        write_alignment_textgrid(path, self, states=states)

    def write_lab(self, path: PathLike, *, tier: str = "phones") -> None:
        """HTK/HTS ``.lab`` (100 ns units) of the ``phones``, ``words`` or ``states`` tier."""
        write_alignment_lab(path, self, tier=tier)


def error_message(err: Exception) -> str:
    """An exception's message (a plain KeyError's str() adds quotes)."""
    if type(err) is KeyError and err.args:
        return str(err.args[0])
    return str(err)
