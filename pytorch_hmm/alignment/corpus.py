"""Aligner corpora as users have them on disk, and boundary evaluation.

Layouts (:func:`detect_layout`, :func:`corpus_entries`; ``layout="auto"`` picks the first that
fits, in this order):

- ``ljspeech``: ``metadata.csv`` at the top, lines ``ID|text|normalized text`` (the normalized
  column is used when present), audio ``wavs/ID.wav`` (or ``ID.wav`` beside the list).
- ``kss``: a transcript list ``*.txt`` at the top whose lines are ``AUDIO PATH|text|...`` (KSS:
  ``1/1_0000.wav|script|expanded script|decomposed|duration|english``; the third column is used
  when present, else the second), paths relative to the list.
- ``librispeech``: ``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` lines ``ID TEXT`` beside
  ``ID.flac``.
- ``mfa``: the Montreal Forced Aligner's layout, ``SPEAKER/NAME.{wav,flac,mp3,ogg,opus}``
  (folders nested to any depth) beside ``NAME.txt`` or ``NAME.lab`` (a plain transcript).
- ``flat``: ``NAME.{wav,...}`` beside ``NAME.txt`` / ``NAME.lab`` in one folder.

Every utterance is named by its audio file's path relative to the corpus, without the
extension (``spk1/utt1``), so outputs can mirror the corpus and two ``utt1.wav`` of two
speakers stay apart; two audio files differing only in extension are reported, not merged.
The speaker is the first folder of that path (LibriSpeech, MFA; none for files at the top),
or one speaker for the whole corpus (LJSpeech, KSS).

Audio (:func:`read_audio`): any format and sample rate libsndfile reads (WAV 16/24/32-bit
integer and 32/64-bit float, FLAC, OGG Vorbis/Opus, MP3), multichannel downmixed to mono by
averaging, resampled to the aligner's rate with soxr (``HQ``; librosa's resampler if soxr is
missing).

Transcripts (:func:`normalize_transcript`, applied when a lexicon is used; phone transcripts
are read as they are), the way MFA normalises text: lower case; ``’`` read as ``'``; every
punctuation or symbol character (Unicode categories P and S) other than ``'`` and ``-``
separates words; apostrophes and hyphens are kept inside words and stripped at their edges
(``don't``, ``forced-aligner``); a hyphenated word the lexicon lacks is split into its parts
when the lexicon has them all; a whole token in brackets (``[laughter]``, ``<unk>``,
``{noise}``, ``<cutoff-x>``) is kept as one (unknown) word; hesitations (``uh``, ``um``) are
ordinary words. A word the lexicon still lacks is aligned with the unknown-word phone ``spn``
(:data:`UNKNOWN_PHONE`, as MFA does) when the model has that phone, and reported; with
``strict`` (and with a model without ``spn``) its file is skipped and reported instead.

:func:`load_corpus` does it all for an aligner; every file that cannot be used is reported by
name with the reason instead of stopping the run. :func:`phone_boundary_accuracy` scores an
aligner's phone segmentation against reference labels in a way that does not depend on where
either puts its pauses (see its docstring).
"""

from __future__ import annotations

import os
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import HMMTypeError, HMMValueError
from ..metrics._common import check_segments
from ..metrics.alignment import DEFAULT_TOLERANCES, BoundaryAccuracy, boundary_accuracy

__all__ = [
    "AUDIO_EXTENSIONS",
    "LAYOUTS",
    "UNKNOWN_PHONE",
    "CorpusEntry",
    "PreparedUtterance",
    "corpus_entries",
    "corpus_files",
    "detect_layout",
    "extract_corpus_features",
    "load_corpus",
    "normalize_transcript",
    "phone_boundaries",
    "phone_boundary_accuracy",
    "prepare_transcripts",
    "read_audio",
    "resolve_words",
]

PathLike = Union[str, "os.PathLike[str]"]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
LAYOUTS = ("auto", "flat", "mfa", "librispeech", "ljspeech", "kss")
UNKNOWN_PHONE = "spn"
DEFAULT_SILENCES = ("sil", "pau", "sp", "<sil>", "SIL", "")
_TRANSCRIPT_EXTENSIONS = (".txt", ".lab")


@dataclass
class CorpusEntry:
    """One audio file of a corpus: ``name`` (its path relative to the corpus without the
    extension, ``/``-separated), ``audio`` (its path), the transcript as ``text`` (from a
    transcript list) or the ``transcript`` file beside it (None: none found), ``speaker``
    (None: unknown) and ``source``, where the text comes from (for messages)."""

    name: str
    audio: str
    transcript: Optional[str] = None
    text: Optional[str] = None
    speaker: Optional[str] = None
    source: str = ""

    def read_text(self) -> str:
        """The raw transcript; :class:`HMMValueError` naming the file when there is none, it is
        not UTF-8 or it is empty."""
        if self.text is not None:
            if not self.text.strip():
                raise HMMValueError(f"the transcript of {self.source} is empty")
            return self.text
        if self.transcript is None:
            raise HMMValueError(
                f"no transcript (NAME.txt or NAME.lab) beside {os.path.basename(self.audio)}"
            )
        base = os.path.basename(self.transcript)
        try:
            with open(self.transcript, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as err:
            raise HMMValueError(f"transcript {base} is not UTF-8 text ({err.reason})") from err
        except OSError as err:
            raise HMMValueError(f"cannot read transcript {base}: {err.strerror or err}") from err
        if not text.split():
            raise HMMValueError(f"transcript {base} is empty")
        return text


@dataclass
class PreparedUtterance:
    """A corpus entry with its transcript as a list of tokens, and the ``unknown`` ones (words
    the lexicon lacks, to be aligned with :data:`UNKNOWN_PHONE`)."""

    entry: CorpusEntry
    words: List[str]
    unknown: List[str]


# ------------------------------------------------------------------------------------------
# layouts


def _rel_name(root: str, path: str) -> str:
    rel = os.path.relpath(path, root)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def _first_folder(name: str) -> Optional[str]:
    return name.split("/", 1)[0] if "/" in name else None


def _is_audio(fn: str) -> bool:
    return os.path.splitext(fn)[1].lower() in AUDIO_EXTENSIONS


def _ext_rank(fn: str) -> int:
    return AUDIO_EXTENSIONS.index(os.path.splitext(fn)[1].lower())


def _walk(root: str):
    """os.walk, sorted, hidden folders skipped."""
    for d, subdirs, files in os.walk(root):
        subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
        yield d, sorted(files)


def _listing_lines(path: str) -> List[Tuple[int, str]]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as err:
        raise HMMValueError(f"transcript list {path} is not UTF-8 text ({err.reason})") from err
    return [(i, s) for i, s in enumerate(lines, start=1) if s.strip()]


def _kss_listing(root: str) -> Optional[str]:
    """The top-level ``*.txt`` whose first line is ``AUDIO PATH|...``, or None."""
    for fn in sorted(os.listdir(root)):
        p = os.path.join(root, fn)
        if not fn.lower().endswith(".txt") or not os.path.isfile(p):
            continue
        try:
            with open(p, encoding="utf-8-sig") as f:
                first = f.readline()
        except (OSError, UnicodeDecodeError):
            continue
        head = first.split("|", 1)[0].strip()
        if "|" in first and _is_audio(head):
            return p
    return None


def detect_layout(corpus_dir: PathLike) -> str:
    """The layout of a corpus folder: ``ljspeech``, ``kss``, ``librispeech``, ``mfa`` (audio
    in sub-folders) or ``flat`` (see the module doc)."""
    root = os.fspath(corpus_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"corpus folder {root!r} does not exist")
    if os.path.isfile(os.path.join(root, "metadata.csv")):
        return "ljspeech"
    if _kss_listing(root) is not None:
        return "kss"
    nested = False
    for d, files in _walk(root):
        if any(fn.endswith(".trans.txt") for fn in files):
            return "librispeech"
        if d != root and any(_is_audio(fn) for fn in files):
            nested = True
    return "mfa" if nested else "flat"


def _beside(root: str, recursive: bool, errors: Dict[str, str]) -> List[CorpusEntry]:
    out = []
    for d, files in _walk(root) if recursive else [(root, sorted(os.listdir(root)))]:
        names = set(files)
        by_stem: Dict[str, List[str]] = {}
        for fn in files:
            if _is_audio(fn) and os.path.isfile(os.path.join(d, fn)):
                by_stem.setdefault(os.path.splitext(fn)[0], []).append(fn)
        for stem in sorted(by_stem):
            fns = sorted(by_stem[stem], key=_ext_rank)
            path = os.path.join(d, fns[0])
            name = _rel_name(root, path)
            for other in fns[1:]:
                rel = os.path.relpath(os.path.join(d, other), root).replace(os.sep, "/")
                errors[rel] = (
                    f"skipped: it has the same name as {fns[0]}, which is aligned to "
                    f"{name}.* (rename one of them to align both)"
                )
            txt = next(
                (os.path.join(d, stem + e) for e in _TRANSCRIPT_EXTENSIONS if stem + e in names),
                None,
            )
            out.append(CorpusEntry(name, path, txt, None, _first_folder(name), txt or path))
    return out


def _librispeech(root: str, errors: Dict[str, str]) -> List[CorpusEntry]:
    out = []
    for d, files in _walk(root):
        listed = set()
        for fn in files:
            if not fn.endswith(".trans.txt"):
                continue
            lst = os.path.join(d, fn)
            for lineno, line in _listing_lines(lst):
                parts = line.split(None, 1)
                utt = parts[0]
                listed.add(utt)
                where = f"{os.path.relpath(lst, root)}:{lineno}"
                cands = [utt + e for e in AUDIO_EXTENSIONS if utt + e in files]
                name = _rel_name(root, os.path.join(d, utt))
                if not cands:
                    errors[name] = f"no audio file {utt}.flac for the line {where}"
                    continue
                text = parts[1] if len(parts) > 1 else ""
                path = os.path.join(d, cands[0])
                out.append(CorpusEntry(name, path, None, text, _first_folder(name), where))
        for fn in files:
            stem = os.path.splitext(fn)[0]
            if _is_audio(fn) and stem not in listed:
                name = _rel_name(root, os.path.join(d, fn))
                errors.setdefault(name, f"no transcript: {fn} is in no *.trans.txt")
    return out


def _listing(root: str, kind: str, errors: Dict[str, str]) -> List[CorpusEntry]:
    if kind == "ljspeech":
        lst = os.path.join(root, "metadata.csv")
        if not os.path.isfile(lst):
            raise HMMValueError(f"{root}: no metadata.csv (LJSpeech layout)")
    else:
        lst = _kss_listing(root)
        if lst is None:
            raise HMMValueError(f"{root}: no transcript list (a *.txt of AUDIO PATH|text lines)")
    speaker = os.path.basename(os.path.abspath(root)) or None
    out = []
    seen = set()
    base = os.path.basename(lst)
    for lineno, line in _listing_lines(lst):
        cols = [c.strip() for c in line.split("|")]
        where = f"{base}:{lineno}"
        head = cols[0]
        text = cols[2] if len(cols) > 2 and cols[2] else (cols[1] if len(cols) > 1 else "")
        if kind == "ljspeech":
            cands = [
                os.path.join(root, sub, head + e) for sub in ("wavs", "") for e in AUDIO_EXTENSIONS
            ]
        else:
            cands = [os.path.join(os.path.dirname(lst), *head.split("/"))]
        path = next((c for c in cands if os.path.isfile(c)), None)
        if path is None:
            rel = head if kind == "kss" else f"wavs/{head}.wav"
            errors[os.path.splitext(rel)[0]] = f"no audio file {rel} for the line {where}"
            continue
        name = _rel_name(root, path)
        if name in seen:
            errors[f"{name} ({where})"] = f"skipped: {name} is listed twice ({where})"
            continue
        seen.add(name)
        out.append(CorpusEntry(name, path, None, text, speaker, where))
    return out


def corpus_entries(
    corpus_dir: PathLike,
    layout: str = "auto",
    *,
    errors: Optional[Dict[str, str]] = None,
) -> Tuple[str, List[CorpusEntry]]:
    """``(layout, entries)``: the layout found (or given) and a :class:`CorpusEntry` for
    every audio file, sorted by name. Problems found while listing (an audio file named in a
    transcript list but missing, a second audio file with the same name, audio that no
    LibriSpeech list names) go to ``errors`` (name -> reason)."""
    root = os.fspath(corpus_dir)
    if layout not in LAYOUTS:
        raise HMMValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"corpus folder {root!r} does not exist")
    errs: Dict[str, str] = {} if errors is None else errors
    if layout == "auto":
        layout = detect_layout(root)
    if layout in ("flat", "mfa"):
        entries = _beside(root, layout == "mfa", errs)
    elif layout == "librispeech":
        entries = _librispeech(root, errs)
    else:
        entries = _listing(root, layout, errs)
    entries.sort(key=lambda e: e.name)
    return layout, entries


def corpus_files(corpus_dir: PathLike) -> List[Tuple[str, str, Optional[str]]]:
    """``(name, audio path, transcript path or None)`` for every audio file at the top of the
    folder (the ``flat`` layout), sorted by name."""
    _, entries = corpus_entries(corpus_dir, "flat")
    return [(e.name, e.audio, e.transcript) for e in entries]


# ------------------------------------------------------------------------------------------
# transcripts

_BRACKETS = {"[": "]", "{": "}", "<": ">", "(": ")"}
_KEEP = "'-"


def _is_punct(c: str) -> bool:
    return unicodedata.category(c)[0] in "PS" and c not in _KEEP


def normalize_transcript(text: str) -> List[str]:
    """Words of a transcript normalised the way MFA does (see the module doc): lower case,
    punctuation removed (apostrophes and hyphens kept inside words), bracketed tokens kept
    whole, hesitations kept. ``"Uh, I DON'T know... [laughter] <unk>"`` gives ``['uh', 'i',
    "don't", 'know', '[laughter]', '<unk>']``."""
    if not isinstance(text, str):
        raise HMMTypeError(f"text must be a string, got {type(text).__name__}")
    words: List[str] = []
    for tok in text.lower().replace("\u2019", "'").split():
        core = tok.rstrip(",.;:!?")
        if len(core) > 2 and core[0] in _BRACKETS and core.endswith(_BRACKETS[core[0]]):
            words.append(core)
            continue
        clean = "".join(" " if _is_punct(c) else c for c in tok)
        for part in clean.split():
            part = part.strip(_KEEP)
            if part:
                words.append(part)
    return words


def resolve_words(words: Sequence[str], lexicon) -> Tuple[List[str], List[str]]:
    """``(words, unknown)``: hyphenated words the lexicon lacks split into their parts when
    it has them all (MFA's compound rule), and the words it still lacks."""
    out: List[str] = []
    unknown: List[str] = []
    for w in words:
        if w in lexicon:
            out.append(w)
            continue
        parts = [p for p in re.split(r"-+", w) if p]
        if len(parts) > 1 and all(p in lexicon for p in parts):
            out.extend(parts)
            continue
        out.append(w)
        unknown.append(w)
    return out, list(dict.fromkeys(unknown))


def prepare_transcripts(
    entries: Sequence[CorpusEntry],
    lexicon=None,
    *,
    errors: Dict[str, str],
    strict: bool = False,
    allow_unknown: bool = True,
    normalize: bool = True,
) -> List[PreparedUtterance]:
    """Read and tokenise every entry's transcript. With a ``lexicon`` the text is normalised
    (:func:`normalize_transcript`, unless ``normalize`` is False) and checked against it:
    words it lacks are kept as ``unknown`` (aligned with :data:`UNKNOWN_PHONE`) unless
    ``strict`` or not ``allow_unknown``, when the file goes to ``errors`` instead. Without a
    lexicon the tokens are taken as they are (phone transcripts)."""
    out = []
    for e in entries:
        try:
            text = e.read_text()
            if lexicon is None:
                out.append(PreparedUtterance(e, text.split(), []))
                continue
            words = normalize_transcript(text) if normalize else text.split()
            if not words:
                raise HMMValueError(f"the transcript of {e.source} has no words")
            words, unknown = resolve_words(words, lexicon)
            if unknown and (strict or not allow_unknown):
                why = "--strict" if strict else f"the model has no {UNKNOWN_PHONE!r} phone"
                raise HMMValueError(
                    f"word(s) not in the lexicon: {', '.join(repr(w) for w in unknown)} "
                    f"(skipped: {why})"
                )
            out.append(PreparedUtterance(e, words, unknown))
        except ValueError as err:
            errors[e.name] = str(err)
    return out


# ------------------------------------------------------------------------------------------
# audio and features


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    try:
        import soxr
    except ImportError:  # pragma: no cover - soxr comes with librosa
        import librosa

        return librosa.resample(x, orig_sr=sr, target_sr=target)
    return soxr.resample(x, sr, target, quality="HQ")


def read_audio(path: PathLike, sample_rate: int):
    """``(waveform (N,) float32 tensor at sample_rate, duration in seconds, file's rate)``:
    any format libsndfile reads, channels averaged, resampled with soxr when the file's rate
    differs. :class:`HMMValueError` naming the file when it cannot be read."""
    import torch

    from ..speech.features import load_audio

    try:
        wav, sr = load_audio(path)  # (N,) mono
    except ValueError:
        raise
    except Exception as err:  # soundfile's own error types
        raise HMMValueError(f"cannot read audio {os.fspath(path)}: {err}") from err
    duration = wav.numel() / sr if sr else 0.0
    if int(sr) != int(sample_rate) and wav.numel() > 0:
        x = _resample(wav.numpy().astype(np.float32), int(sr), int(sample_rate))
        wav = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return wav, duration, int(sr)


def _features(aligner, p: PreparedUtterance):
    from .forced import Utterance

    e = p.entry
    base = os.path.basename(e.audio)
    try:
        wav, duration, _ = read_audio(e.audio, aligner.config.sample_rate)
    except ValueError as err:
        return HMMValueError(f"cannot read audio {base}: {err}")
    try:
        feats = aligner.extract_features(wav, aligner.config.sample_rate)
    except ValueError as err:
        return HMMValueError(f"{base}: {err}")
    return Utterance(e.name, feats, list(p.words), None, duration, speaker=e.speaker)


def extract_corpus_features(
    aligner,
    prepared: Sequence[PreparedUtterance],
    *,
    errors: Dict[str, str],
    jobs: int = 1,
    progress: Optional[Callable[[int], None]] = None,
):
    """Audio -> :class:`~pytorch_hmm.alignment.forced.Utterance` for every prepared entry,
    with ``jobs`` worker threads (the results do not depend on ``jobs``; reading, resampling
    and the FFTs release the GIL). Failures go to ``errors``; the order is kept."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise HMMValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    aligner._mfcc()  # build the front end once, before any worker uses it
    utts = []

    def collect(p, r):
        if isinstance(r, Exception):
            errors[p.entry.name] = str(r)
        else:
            utts.append(r)
        if progress is not None:
            progress(1)

    if jobs == 1 or len(prepared) < 2:
        for p in prepared:
            collect(p, _features(aligner, p))
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for p, r in zip(prepared, pool.map(lambda q: _features(aligner, q), prepared)):
                collect(p, r)
    return utts


def load_corpus(
    aligner,
    corpus_dir: PathLike,
    *,
    layout: str = "auto",
    errors: Optional[Dict[str, str]] = None,
    progress: Optional[Callable[[int], None]] = None,
    jobs: int = 1,
    strict: bool = False,
    unknown_words: Optional[Dict[str, List[str]]] = None,
):
    """Read a corpus folder (any layout of the module doc) into
    :class:`~pytorch_hmm.alignment.forced.Utterance` objects with the aligner's front end
    (``utterance.speaker`` set from the layout).

    Files that cannot be used (no transcript, empty transcript, unreadable audio, with
    ``strict`` a word the lexicon lacks) are skipped and recorded in ``errors`` (name ->
    reason). Words the lexicon lacks that are aligned with :data:`UNKNOWN_PHONE` are recorded
    in ``unknown_words`` (word -> names of the files)."""
    if not callable(getattr(aligner, "load_utterance", None)):
        raise HMMTypeError(
            f"aligner must be a ForcedAligner (with load_utterance), got {type(aligner).__name__}"
        )
    if errors is not None and not isinstance(errors, dict):
        raise HMMTypeError(f"errors must be a dict or None, got {type(errors).__name__}")
    errs: Dict[str, str] = {} if errors is None else errors
    _, entries = corpus_entries(corpus_dir, layout, errors=errs)
    allow = UNKNOWN_PHONE in getattr(aligner, "phone_index", {})
    prepared = prepare_transcripts(
        entries, aligner.lexicon, errors=errs, strict=strict, allow_unknown=allow
    )
    if unknown_words is not None:
        for p in prepared:
            for w in p.unknown:
                unknown_words.setdefault(w, []).append(p.entry.name)
    done = len(entries) - len(prepared)
    if progress is not None and done:
        progress(done)
    return extract_corpus_features(aligner, prepared, errors=errs, jobs=jobs, progress=progress)


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
    segments = check_segments(segments)
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
