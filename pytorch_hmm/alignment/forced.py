"""HMM forced alignment (phone level, like the Montreal Forced Aligner, in-process).

Model
-----
Every phone of an arbitrary phone set (strings: ARPAbet, IPA, Hangul jamo, pinyin with tones)
is a left-to-right HMM of ``states_per_phone`` emitting states (3 by default) with a self-loop
and an advance move; the silence phone (``config.silence_phone``, ``"sil"``) has
``silence_states``. States are tied across utterances: each phone owns its states, whose
emissions are diagonal-covariance Gaussian mixtures over MFCC + delta + delta-delta features
with per-utterance CMVN (:class:`AlignerConfig`).

An utterance HMM is the concatenation of its words' phones. Silence is optional at the start,
at the end and (``optional_silence``) between words: the last state of the phone before an
optional silence may enter it or skip it, so the matrix stays banded (offsets 0 to
``silence_states + 1``) and the engine's banded fast path runs in O(T*K*W). The utterance must
end in the last state of its last phone or of the trailing silence: that is imposed by setting
the emissions of every other state to -inf on the last frame. Utterances of a batch are padded
to a common number of states with unreachable states and aligned at once by
:func:`pytorch_hmm.core.viterbi` (alignment, Viterbi training) or
:func:`pytorch_hmm.core.posteriors` (Baum-Welch E-step). No other forward or Viterbi pass exists
here.

Alternative pronunciations (several lexicon lines for a word) are chosen by Viterbi score: when
the utterance has at most ``max_variants`` combinations they are all aligned and the best is
kept; otherwise each ambiguous word is chosen separately (its alternatives tried with the other
words at their first pronunciation) and the combination is aligned.

Training
--------
:meth:`ForcedAligner.fit` trains flat-start from (features, transcript) pairs: a uniform
segmentation of each utterance's phone states between a leading and a trailing silence (with
``energy_init``, the frames outside the span of speech found by an energy threshold plus a
50 ms margin; no inter-word silence), then EM iterations of Viterbi training or Baum-Welch,
with the self-loop and silence probabilities re-estimated as well, and optionally mixture
splitting (1 -> 2 -> 4 ... Gaussians a state). Statistics and M-steps are
:func:`pytorch_hmm.training.mixture_stats` / :func:`~pytorch_hmm.training.mixture_m_step`
(maximum likelihood; variances floored at ``variance_floor`` times the global variance).
:meth:`ForcedAligner.fit_labelled` instead initialises the states from reference phone
segmentations (each labelled phone split evenly into its states) and can continue with EM.

Accuracy
--------
Flat start on festival-dev (120 utterances, 3 voices; 4 Gaussians a state): 53/80/87/98% of the
phone boundaries within 10/20/25/50 ms, mean error 13.8 ms; CMU ARCTIC a0009 (real speech):
56/74/87/100%, 15.5 ms. See ``examples/forced_alignment.py`` for the tables and the command.

Times
-----
Features are centred frames every ``frame_shift`` seconds, so frame ``t`` is centred at
``t * frame_shift``; the boundary between frames ``t-1`` and ``t`` is reported at
``(t - 0.5) * frame_shift + time_offset``, clipped to the audio, and the last segment ends at the
end of the audio.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .. import core
from ..io.labels import Segment, write_lab
from ..io.textgrid import write_textgrid
from ..models.gaussian import diag_gaussian_log_likelihood
from ..training.stats import (
    GaussianStats,
    gaussian_stats,
    mixture_m_step,
    mixture_stats,
    tie_posteriors,
)
from .lexicon import Lexicon, MissingWordError

__all__ = [
    "AlignerConfig",
    "AlignmentError",
    "ForcedAligner",
    "Utterance",
    "UtteranceAlignment",
]

PathLike = Union[str, "os.PathLike[str]"]
NEG_INF = float("-inf")


# ------------------------------------------------------------------------------------------
# configuration and data


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


TranscriptLike = Union[str, Sequence[str]]


@dataclass
class Utterance:
    """One utterance to train on or align.

    ``features`` (T, D) from :meth:`ForcedAligner.extract_features`; ``transcript``: a string
    or list of words (looked up in the lexicon) or, without a lexicon, of phones (silence
    tokens such as ``pau`` mark where a pause may be); ``pronunciations``: optional explicit
    phone sequence of each word (then the lexicon is not used); ``duration`` in seconds
    (default: frames times the frame shift).
    """

    name: str
    features: torch.Tensor
    transcript: TranscriptLike
    pronunciations: Optional[Sequence[Sequence[str]]] = None
    duration: Optional[float] = None


class AlignmentError(ValueError):
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
        def segs(x):
            return [{"start": s.start, "end": s.end, "label": s.label} for s in x]

        return {
            "name": self.name,
            "duration": self.duration,
            "score": self.score,
            "frame_shift": self.frame_shift,
            "words": segs(self.words),
            "phones": segs(self.phones),
            "states": segs(self.states),
        }

    def write_json(self, path: PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False, indent=1)

    def write_textgrid(self, path: PathLike, *, states: bool = False) -> None:
        """Praat TextGrid (praatio) with tiers ``words`` and ``phones`` (and ``states``)."""
        tiers = {"words": self.words, "phones": self.phones}
        if states:
            tiers["states"] = self.states
        write_textgrid(path, tiers, xmax=self.duration)

    def write_lab(self, path: PathLike, *, tier: str = "phones") -> None:
        """HTK/HTS ``.lab`` (100 ns units) of the ``phones``, ``words`` or ``states`` tier."""
        write_lab(path, getattr(self, tier))


def _message(err: Exception) -> str:
    """An exception's message (a plain KeyError's str() adds quotes)."""
    if type(err) is KeyError and err.args:
        return str(err.args[0])
    return str(err)


# ------------------------------------------------------------------------------------------
# utterance graphs


@dataclass
class _Unit:
    phone: int  # index in the phone set
    optional: bool  # an optional silence
    word: int  # word index, -1 for silence


@dataclass
class _Graph:
    """The composite left-to-right HMM of one utterance."""

    units: List[_Unit]
    state_ids: torch.Tensor  # (K,) global state of each composite state
    state_unit: List[int]  # unit of each composite state
    state_index: List[int]  # index of the state within its phone
    log_A: torch.Tensor  # (K, K)
    log_pi: torch.Tensor  # (K,)
    final: torch.Tensor  # (K,) bool: allowed last states
    min_frames: int
    # optional silences: (kind, from_state, sil_first_state, skip_to_state)
    # kind 0: between words (from_state = last state of the phone before); 1: leading; 2: trailing
    silences: List[Tuple[int, int, int, int]] = field(default_factory=list)
    words: List[str] = field(default_factory=list)

    @property
    def num_states(self) -> int:
        return int(self.state_ids.shape[0])


@dataclass
class _Resolved:
    """A transcript resolved to phone ids: per word its label, its alternatives and whether an
    optional silence may follow it."""

    words: List[str]
    alternatives: List[List[Tuple[int, ...]]]
    silence_after: List[bool]


# ------------------------------------------------------------------------------------------
# the aligner


class ForcedAligner(nn.Module):
    """Phone-level HMM forced aligner (see the module documentation).

    Args:
        phones: the phone set (strings; the silence phone is added if missing).
        config: :class:`AlignerConfig`.
        lexicon: optional :class:`~pytorch_hmm.alignment.lexicon.Lexicon`; without one a
            transcript is read as a phone sequence.
        n_mixtures: Gaussians per state of the initial (untrained) model.

    Parameters are buffers (``means``, ``variances`` (S, M, D), ``log_weights`` (S, M),
    ``log_self_loop`` (S,), ``log_silence`` (2,) = log probability of an optional silence
    between words / at an edge, ``feature_floor`` (D,)), so ``state_dict`` holds the model.
    """

    def __init__(
        self,
        phones: Sequence[str],
        config: Optional[AlignerConfig] = None,
        lexicon: Optional[Lexicon] = None,
        *,
        n_mixtures: int = 1,
    ) -> None:
        super().__init__()
        self.config = config = config or AlignerConfig()
        sil = config.silence_phone
        ph = [sil] + [str(p) for p in phones if str(p) != sil]
        if len(set(ph)) != len(ph):
            raise ValueError("phones must be distinct")
        for p in ph:
            if not p or any(c.isspace() for c in p):
                raise ValueError(f"phone names must be non-empty without spaces: {p!r}")
        self.phones: List[str] = ph
        self.phone_index: Dict[str, int] = {p: i for i, p in enumerate(ph)}
        self.lexicon = lexicon
        n_states = [config.silence_states] + [config.states_per_phone] * (len(ph) - 1)
        offsets = [0]
        for n in n_states[:-1]:
            offsets.append(offsets[-1] + n)
        self.phone_states = n_states
        self.phone_offset = offsets
        S, D, M = sum(n_states), config.feature_dim, n_mixtures
        self.num_states = S
        self.register_buffer("means", torch.zeros(S, M, D))
        self.register_buffer("variances", torch.ones(S, M, D))
        self.register_buffer("log_weights", torch.full((S, M), -math.log(M)))
        self.register_buffer("log_self_loop", torch.full((S,), math.log(config.self_loop_prob)))
        self.register_buffer(
            "log_silence",
            torch.tensor([math.log(config.silence_prob), math.log(config.edge_silence_prob)]),
        )
        self.register_buffer("feature_floor", torch.full((D,), 1e-3))
        self._frontend = None

    # -- front end --------------------------------------------------------------------------
    @property
    def n_mixtures(self) -> int:
        return int(self.means.shape[1])

    def _mfcc(self):
        if self._frontend is None:
            from ..speech.features import MFCC

            c = self.config
            win = int(round(c.win_length * c.sample_rate))
            self._frontend = MFCC(
                c.sample_rate,
                n_mfcc=c.n_mfcc,
                cmvn=True,
                delta_order=c.delta_order,
                n_fft=max(c.n_fft, win),
                win_length=win,
                hop_length=c.hop_length,
                n_mels=c.n_mels,
            )
        return self._frontend

    def extract_features(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """MFCC features (T, D) of a mono waveform (N,) at the configured rate."""
        if int(sample_rate) != self.config.sample_rate:
            raise ValueError(
                f"audio is sampled at {sample_rate} Hz but the aligner expects "
                f"{self.config.sample_rate} Hz; resample it first (e.g. librosa.resample)"
            )
        wav = torch.as_tensor(waveform, dtype=torch.float32)
        if wav.dim() != 1:
            raise ValueError(f"waveform must be mono (N,), got shape {tuple(wav.shape)}")
        if wav.numel() < self.config.hop_length:
            raise ValueError(f"audio is too short ({wav.numel()} samples)")
        if self.config.dither > 0:
            # Kaldi-style dither, seeded so that features are reproducible: digital silence
            # (synthetic speech) becomes low-level noise instead of a constant floor
            g = torch.Generator().manual_seed(0)
            wav = wav + self.config.dither * torch.randn(wav.shape, generator=g)
        feats, _ = self._mfcc()(wav)
        return feats.float()

    def load_utterance(
        self,
        audio_path: PathLike,
        transcript: TranscriptLike,
        *,
        name: Optional[str] = None,
        pronunciations: Optional[Sequence[Sequence[str]]] = None,
    ) -> Utterance:
        """Read an audio file (``soundfile``) and make an :class:`Utterance`."""
        from ..speech.features import load_audio

        wav, sr = load_audio(audio_path)
        feats = self.extract_features(wav, sr)
        name = name or os.path.splitext(os.path.basename(os.fspath(audio_path)))[0]
        return Utterance(name, feats, transcript, pronunciations, wav.numel() / sr)

    # -- transcripts and graphs -------------------------------------------------------------
    def _is_silence(self, tok: str) -> bool:
        return tok == self.config.silence_phone or tok in self.config.silence_aliases

    def _phone_ids(self, phones: Sequence[str], where: str) -> Tuple[int, ...]:
        unknown = [p for p in phones if p not in self.phone_index]
        if unknown:
            raise KeyError(
                f"phone(s) {', '.join(repr(p) for p in dict.fromkeys(unknown))} of {where} are "
                f"not in the model's phone set"
            )
        return tuple(self.phone_index[p] for p in phones)

    def _resolve(self, utt: Utterance) -> _Resolved:
        tokens = utt.transcript.split() if isinstance(utt.transcript, str) else list(utt.transcript)
        words: List[str] = []
        alts: List[List[Tuple[int, ...]]] = []
        sil_after: List[bool] = []
        opt = self.config.optional_silence
        if utt.pronunciations is not None:
            if len(utt.pronunciations) != len(tokens):
                raise ValueError(
                    f"{len(tokens)} words but {len(utt.pronunciations)} pronunciations given"
                )
            for w, pron in zip(tokens, utt.pronunciations):
                pron = [p for p in pron if not self._is_silence(p)]
                if not pron:
                    raise ValueError(f"word {w!r} has an empty pronunciation")
                words.append(w)
                alts.append([self._phone_ids(pron, f"word {w!r}")])
                sil_after.append(opt)
        elif self.lexicon is not None:
            tokens = [t for t in tokens if not self._is_silence(t)]
            prons = self.lexicon.lookup(tokens)  # MissingWordError names every missing word
            for w, ps in zip(tokens, prons):
                ids = []
                for p in ps:
                    pp = [x for x in p if not self._is_silence(x)]
                    if pp:
                        ids.append(self._phone_ids(pp, f"word {w!r}"))
                if not ids:
                    raise ValueError(f"word {w!r} has only silence in the lexicon")
                words.append(w)
                alts.append(list(dict.fromkeys(ids)))
                sil_after.append(opt)
        else:
            # phone mode: every token a phone (and a one-phone "word"); silence tokens mark
            # where an optional pause may be
            for t in tokens:
                if self._is_silence(t):
                    if sil_after:
                        sil_after[-1] = True
                    continue
                words.append(t)
                alts.append([self._phone_ids([t], "the transcript")])
                sil_after.append(False)
        if not words:
            raise ValueError("the transcript is empty")
        sil_after[-1] = False  # the trailing silence is handled separately
        return _Resolved(words, alts, sil_after)

    def _build_graph(self, res: _Resolved, choice: Sequence[int]) -> _Graph:
        units: List[_Unit] = [_Unit(0, True, -1)]
        for w, (alts, c) in enumerate(zip(res.alternatives, choice)):
            for p in alts[c]:
                units.append(_Unit(p, False, w))
            if res.silence_after[w]:
                units.append(_Unit(0, True, -1))
        units.append(_Unit(0, True, -1))
        state_ids: List[int] = []
        state_unit: List[int] = []
        state_index: List[int] = []
        first: List[int] = []
        for u, unit in enumerate(units):
            first.append(len(state_ids))
            n = self.phone_states[unit.phone]
            off = self.phone_offset[unit.phone]
            state_ids.extend(range(off, off + n))
            state_unit.extend([u] * n)
            state_index.extend(range(n))
        K = len(state_ids)
        last = [first[u] + self.phone_states[un.phone] - 1 for u, un in enumerate(units)]
        sid = torch.tensor(state_ids, dtype=torch.long)
        stay = self.log_self_loop.float().cpu()[sid]
        move = torch.log1p(-stay.exp().clamp(max=1 - 1e-6))
        log_A = torch.full((K, K), NEG_INF)
        idx = torch.arange(K)
        log_A[idx, idx] = stay
        ls_w, ls_e = float(self.log_silence[0]), float(self.log_silence[1])
        l1_w, l1_e = math.log1p(-math.exp(ls_w)), math.log1p(-math.exp(ls_e))
        silences: List[Tuple[int, int, int, int]] = []
        U = len(units)
        for u in range(U):
            for k in range(first[u], last[u]):
                log_A[k, k + 1] = move[k]
            if u == U - 1:
                continue
            src = last[u]
            nxt = u + 1
            if units[nxt].optional and nxt < U - 1:  # between words: enter or skip
                log_A[src, first[nxt]] = move[src] + ls_w
                log_A[src, first[nxt + 1]] = move[src] + l1_w
                silences.append((0, src, first[nxt], first[nxt + 1]))
            elif units[nxt].optional:  # trailing silence
                log_A[src, first[nxt]] = move[src] + ls_e
                silences.append((2, src, first[nxt], -1))
            else:
                log_A[src, first[nxt]] = move[src]
        log_pi = torch.full((K,), NEG_INF)
        log_pi[first[0]] = ls_e
        log_pi[first[1]] = l1_e
        silences.append((1, -1, first[0], first[1]))
        final = torch.zeros(K, dtype=torch.bool)
        final[last[U - 1]] = True
        final[last[U - 2]] = True
        min_frames = sum(self.phone_states[un.phone] for un in units if not un.optional)
        return _Graph(
            units,
            sid,
            state_unit,
            state_index,
            log_A,
            log_pi,
            final,
            min_frames,
            silences,
            list(res.words),
        )

    # -- emissions and the engine ------------------------------------------------------------
    def _component_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, S, M) log N(x | component) + log weight."""
        S, M, D = self.means.shape
        ll = diag_gaussian_log_likelihood(
            x, self.means.reshape(S * M, D), self.variances.reshape(S * M, D)
        )
        return ll.view(*x.shape[:2], S, M) + self.log_weights

    def _state_log_likelihood(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, S) emission log-likelihood of every tied state for one utterance (T, D)."""
        x = feats.to(device=self.means.device, dtype=torch.float32).unsqueeze(0)
        return torch.logsumexp(self._component_log_likelihood(x), -1)[0]

    def _batch(
        self,
        feats: Sequence[torch.Tensor],
        graphs: Sequence[_Graph],
        state_lls: Optional[Sequence[torch.Tensor]] = None,
    ):
        """Pad a batch: features, lengths, tied-state ids, transitions, initial, emissions
        (B, T, K) with the final-state constraint, and component log-likelihoods (None when
        the per-utterance state log-likelihoods ``state_lls`` are given)."""
        B = len(graphs)
        T = max(int(f.shape[0]) for f in feats)
        K = max(g.num_states for g in graphs)
        D = feats[0].shape[1]
        dev = self.means.device
        x = torch.zeros(B, T, D, device=dev)
        lengths = torch.tensor([int(f.shape[0]) for f in feats], dtype=torch.long)
        sid = torch.zeros(B, K, dtype=torch.long)
        log_A = torch.full((B, K, K), NEG_INF)
        log_pi = torch.full((B, K), NEG_INF)
        final = torch.zeros(B, K, dtype=torch.bool)
        for b, (f, g) in enumerate(zip(feats, graphs)):
            x[b, : f.shape[0]] = f.to(device=dev, dtype=x.dtype)
            k = g.num_states
            sid[b, :k] = g.state_ids
            log_A[b, :k, :k] = g.log_A
            log_pi[b, :k] = g.log_pi
            final[b, :k] = g.final
        lengths, sid, log_A, log_pi, final = (
            t.to(dev) for t in (lengths, sid, log_A, log_pi, final)
        )
        if state_lls is None:
            comp = self._component_log_likelihood(x)  # (B, T, S, M)
            state_ll = torch.logsumexp(comp, -1)  # (B, T, S)
        else:
            comp = None
            state_ll = torch.zeros(B, T, self.num_states, device=dev)
            for b, sl in enumerate(state_lls):
                state_ll[b, : sl.shape[0]] = sl
        em = state_ll.gather(2, sid.unsqueeze(1).expand(B, T, K)).contiguous()
        ar = torch.arange(B, device=dev)
        last = em[ar, lengths - 1]
        em[ar, lengths - 1] = torch.where(final, last, torch.full_like(last, NEG_INF))
        return x, lengths, sid, log_A, log_pi, em, comp

    def _viterbi(self, feats, graphs, state_lls=None):
        x, lengths, sid, log_A, log_pi, em, comp = self._batch(feats, graphs, state_lls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = core.viterbi(em, log_pi, log_A, lengths, check_stochastic=False)
        return res, (x, lengths, sid, comp)

    # -- pronunciation choice ----------------------------------------------------------------
    def _variants(self, res: _Resolved) -> Tuple[List[Tuple[int, ...]], bool]:
        sizes = [len(a) for a in res.alternatives]
        total = math.prod(sizes)
        if total <= self.config.max_variants:
            return list(itertools.product(*[range(n) for n in sizes])), True
        base = [0] * len(sizes)
        out = [tuple(base)]
        for w, n in enumerate(sizes):
            for c in range(1, n):
                v = list(base)
                v[w] = c
                out.append(tuple(v))
        return out, False

    def _choose(self, items: Sequence[Tuple[torch.Tensor, _Resolved]]) -> List[Tuple[int, ...]]:
        """Best pronunciation choice of each (features, resolved transcript): the variant with
        the highest likelihood (forward algorithm, all state paths summed)."""
        choices: List[Optional[Tuple[int, ...]]] = [None] * len(items)
        jobs = []  # (item, variant, graph)
        var_lists = []
        for i, (f, res) in enumerate(items):
            vs, full = self._variants(res)
            var_lists.append((vs, full))
            if len(vs) == 1:
                choices[i] = vs[0]
                continue
            for v in vs:
                g = self._build_graph(res, v)
                if g.min_frames <= f.shape[0]:
                    jobs.append((i, v, g))
        scores: Dict[Tuple[int, Tuple[int, ...]], float] = {}
        # the variants of one utterance share its emission log-likelihoods
        cache: Dict[int, torch.Tensor] = {}
        for i in dict.fromkeys(i for i, _, _ in jobs):
            cache[i] = self._state_log_likelihood(items[i][0])
        order = sorted(range(len(jobs)), key=lambda j: items[jobs[j][0]][0].shape[0])
        bs = max(self.config.batch_size, 1)
        for s in range(0, len(order), bs):
            chunk = [jobs[j] for j in order[s : s + bs]]
            _, lengths, _, log_A, log_pi, em, _ = self._batch(
                [items[i][0] for i, _, _ in chunk],
                [g for _, _, g in chunk],
                [cache[i] for i, _, _ in chunk],
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ll = core.log_likelihood(em, log_pi, log_A, lengths, check_stochastic=False)
            for (i, v, _), sc in zip(chunk, ll.tolist()):
                scores[(i, v)] = sc
        for i, (vs, full) in enumerate(var_lists):
            if choices[i] is not None:
                continue
            sc = {v: scores.get((i, v), NEG_INF) for v in vs}
            if full:
                choices[i] = max(vs, key=lambda v: sc[v])
                continue
            best = list(vs[0])
            base = sc[vs[0]]
            for w in range(len(best)):
                cands = [(sc[v], v[w]) for v in vs[1:] if v[w] != 0]
                cands = [c for c in cands if c[0] > base]
                if cands:
                    best[w] = max(cands)[1]
            choices[i] = tuple(best)
        return choices  # type: ignore[return-value]

    # -- alignment ---------------------------------------------------------------------------
    def _prepare(self, utts: Sequence[Utterance], errors: Dict[str, str]):
        """Resolve transcripts, choose pronunciations, build graphs; failures go to errors."""
        ok: List[Tuple[Utterance, _Resolved]] = []
        for u in utts:
            try:
                if u.features.dim() != 2 or u.features.shape[1] != self.config.feature_dim:
                    raise ValueError(
                        f"features must be (T, {self.config.feature_dim}), got "
                        f"{tuple(u.features.shape)}"
                    )
                res = self._resolve(u)
                need = self.config.states_per_phone * sum(
                    min(len(a) for a in alts) for alts in res.alternatives
                )
                T = int(u.features.shape[0])
                if need > T:
                    fs = self.config.frame_shift
                    raise ValueError(
                        f"transcript is too long for the audio: its {len(res.words)} word(s) "
                        f"need at least {need} frames ({need * fs:.2f} s at "
                        f"{self.config.states_per_phone} states a phone) but the audio has "
                        f"{T} frames ({T * fs:.2f} s)"
                    )
                ok.append((u, res))
            except (MissingWordError, KeyError, ValueError) as err:
                errors[u.name] = _message(err)
        choices = self._choose([(u.features.float(), r) for u, r in ok])
        out = []
        for (u, res), c in zip(ok, choices):
            g = self._build_graph(res, c)
            if g.min_frames > u.features.shape[0]:
                errors[u.name] = "transcript is too long for the audio"
                continue
            out.append((u, g))
        return out

    def align(
        self,
        utterances: Union[Utterance, Sequence[Utterance]],
        *,
        errors: Optional[Dict[str, str]] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> Union[UtteranceAlignment, List[UtteranceAlignment]]:
        """Align utterances (batched Viterbi). One :class:`Utterance` gives one result and
        raises :class:`AlignmentError` if it cannot be aligned. A list gives the results of
        those that could be aligned, in input order; with ``errors`` (a dict) the failures are
        recorded there as name -> reason, otherwise the first failure raises
        :class:`AlignmentError`. ``progress(n)`` is called as batches finish."""
        single = isinstance(utterances, Utterance)
        utts = [utterances] if single else list(utterances)
        errs: Dict[str, str] = {}
        with torch.no_grad():
            items = self._prepare(utts, errs)
            results: Dict[int, UtteranceAlignment] = {}
            order = sorted(range(len(items)), key=lambda i: items[i][0].features.shape[0])
            bs = max(self.config.batch_size, 1)
            for s in range(0, len(order), bs):
                chunk = [items[i] for i in order[s : s + bs]]
                r, _ = self._viterbi([u.features.float() for u, _ in chunk], [g for _, g in chunk])
                for b, (u, g) in enumerate(chunk):
                    if not math.isfinite(float(r.score[b])):
                        errs[u.name] = (
                            "no alignment possible (every state path has zero probability)"
                        )
                        continue
                    L = int(u.features.shape[0])
                    results[id(u)] = self._segments(u, g, r.path[b, :L], float(r.score[b]))
                if progress is not None:
                    progress(len(chunk))
        if errors is not None:
            errors.update(errs)
        elif errs:
            name = next(iter(errs))
            raise AlignmentError(name, errs[name])
        out = [results[id(u)] for u in utts if id(u) in results]
        return out[0] if single else out

    def _segments(self, u: Utterance, g: _Graph, path: torch.Tensor, score: float):
        fs = self.config.frame_shift
        L = int(path.shape[0])
        dur = float(u.duration) if u.duration is not None else L * fs

        def t_of(frame: int) -> float:
            if frame <= 0:
                return 0.0
            if frame >= L:
                return dur
            return min(max((frame - 0.5) * fs + self.config.time_offset, 0.0), dur)

        p = path.tolist()
        states: List[Segment] = []
        phones: List[Segment] = []
        words: List[Segment] = []
        s = 0
        runs = []  # (start_frame, end_frame_exclusive, composite state)
        for t in range(1, L + 1):
            if t == L or p[t] != p[s]:
                runs.append((s, t, p[s]))
                s = t
        unit_runs: List[List[int]] = []  # (unit, start, end)
        for a, e, k in runs:
            unit = g.state_unit[k]
            ph = self.phones[g.units[unit].phone]
            states.append(Segment(t_of(a), t_of(e), f"{ph}[{g.state_index[k] + 2}]"))
            if unit_runs and unit_runs[-1][0] == unit:
                unit_runs[-1][2] = e
            else:
                unit_runs.append([unit, a, e])
        for unit, a, e in unit_runs:
            un = g.units[unit]
            phones.append(Segment(t_of(a), t_of(e), self.phones[un.phone]))
            if un.word >= 0:
                if words and words[-1][2] == un.word:
                    words[-1][1] = e
                else:
                    words.append([a, e, un.word])
        word_segs = [Segment(t_of(a), t_of(e), g.words[w]) for a, e, w in words]
        return UtteranceAlignment(u.name, phones, word_segs, states, score, dur, fs)

    # -- training ----------------------------------------------------------------------------
    def _init_global(self, utts: Sequence[Utterance]) -> None:
        x = torch.cat([u.features.float() for u in utts]).double()
        mean, var = x.mean(0), x.var(0, unbiased=False)
        self.feature_floor.copy_((var * self.config.variance_floor).float())
        S, M, D = self.means.shape
        self.means.copy_(mean.float().expand(S, M, D))
        self.variances.copy_(var.float().expand(S, M, D))

    def _speech_span(self, feats: torch.Tensor, min_frames: int) -> Tuple[int, int]:
        """First and last+1 frame of speech by an energy threshold on c0 (a tenth of the
        way from the 5th to the 95th percentile), for the flat-start segmentation: the
        leading and trailing silences get the frames outside it. The whole utterance if the
        span would leave fewer than ``min_frames`` frames for the phones."""
        T = int(feats.shape[0])
        if not self.config.energy_init:
            return 0, T
        c0 = feats[:, 0].float()
        lo, hi = torch.quantile(c0, 0.05), torch.quantile(c0, 0.95)
        loud = torch.nonzero(c0 > lo + 0.1 * (hi - lo)).flatten()
        if loud.numel() == 0:
            return 0, T
        # a margin on both sides keeps weak onsets and offsets (h, f, final stops) in speech
        margin = int(round(0.05 / self.config.frame_shift))
        a, e = max(int(loud[0]) - margin, 0), min(int(loud[-1]) + 1 + margin, T)
        n_sil = self.phone_states[0]
        a = a if a >= n_sil else 0
        e = e if T - e >= n_sil else T
        if e - a < min_frames:
            return 0, T
        return a, e

    def _accumulate_uniform(self, items) -> GaussianStats:
        total = None
        n_sil = self.phone_states[0]
        for u, g in items:
            seq = [k for k in range(g.num_states) if not g.units[g.state_unit[k]].optional]
            T = int(u.features.shape[0])
            a, e = self._speech_span(u.features, len(seq))
            K0 = len(seq)
            idx = (torch.arange(e - a) * K0) // (e - a)
            states = torch.cat(
                [
                    (torch.arange(a) * n_sil) // max(a, 1),  # leading silence states
                    g.state_ids[torch.tensor(seq)][idx],
                    (torch.arange(T - e) * n_sil) // max(T - e, 1),  # trailing silence
                ]
            )
            st = self._hard_stats(u.features, states)
            total = st if total is None else total + st
        return total

    def _hard_stats(self, feats: torch.Tensor, states: torch.Tensor) -> GaussianStats:
        """Statistics of frames assigned to tied states (T,) (-1: unassigned), all to each
        state's first mixture component."""
        S, M, D = self.means.shape
        ok = states >= 0
        x = feats.detach().cpu().double()[ok]
        gamma = torch.zeros(x.shape[0], S * M, dtype=torch.float64)
        gamma[torch.arange(x.shape[0]), states[ok] * M] = 1.0
        st = gaussian_stats(x, gamma)
        return GaussianStats(
            st.occupancy.view(S, M), st.sum_x.view(S, M, D), st.sum_xx.view(S, M, D)
        )

    def _m_step(self, stats: GaussianStats, stay=None, out=None, sil=None) -> None:
        """Maximum-likelihood update of the mixtures (variances floored at a share of the
        global variance, unused states kept, degenerate components re-seeded), then of the
        self-loop and silence probabilities from their expected counts."""
        dev = self.means.device
        stats = GaussianStats(*(t.to(dev, torch.float64) for t in stats.tensors()))
        prev = (self.log_weights.exp().double(), self.means.double(), self.variances.double())
        w, means, covars, _ = mixture_m_step(stats, min_covar=1e-8, previous=prev)
        covars = torch.maximum(covars, self.feature_floor.double())
        self.means.copy_(means.float())
        self.variances.copy_(covars.float())
        self.log_weights.copy_(w.clamp(min=1e-5).log().float())
        if stay is not None:
            okk = out > 1.0
            p = (stay / out.clamp(min=1e-10)).clamp(0.05, 0.95)
            cur = self.log_self_loop.double().exp()
            self.log_self_loop.copy_(torch.where(okk, p, cur).log().float())
        if sil is not None:
            for i in range(2):
                taken, total = sil[i]
                if total > 1.0:
                    p = min(max(taken / total, 0.02), 0.98)
                    self.log_silence[i] = math.log(p)

    def _accumulate(self, items, method: str):
        """E-step over every (utterance, graph) pair. Returns stats and total log-likelihood."""
        S, M, D = self.means.shape
        dev = self.means.device
        total = None
        stay = torch.zeros(S, dtype=torch.float64, device=dev)
        out = torch.zeros(S, dtype=torch.float64, device=dev)
        sil = [[0.0, 0.0], [0.0, 0.0]]
        total_ll, frames = 0.0, 0
        order = sorted(range(len(items)), key=lambda i: items[i][0].features.shape[0])
        bs = max(self.config.batch_size, 1)
        for s0 in range(0, len(order), bs):
            chunk = [items[i] for i in order[s0 : s0 + bs]]
            feats = [u.features.float() for u, _ in chunk]
            graphs = [g for _, g in chunk]
            x, lengths, sid, log_A, log_pi, em, comp = self._batch(feats, graphs)
            B, T, K = em.shape
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                if method == "viterbi":
                    r = core.viterbi(em, log_pi, log_A, lengths, check_stochastic=False)
                    ll = r.score
                    path = r.path
                    valid = path >= 0
                    gamma = torch.zeros(B, T, K, device=dev)
                    gamma.scatter_(2, path.clamp(min=0).unsqueeze(-1), valid.unsqueeze(-1).float())
                    pairs = valid[:, 1:] & valid[:, :-1]
                    flat = path[:, :-1].clamp(min=0) * K + path[:, 1:].clamp(min=0)
                    xi = torch.zeros(B, K * K, device=dev)
                    xi.scatter_add_(1, flat, pairs.float())
                    xi = xi.view(B, K, K)
                else:
                    r = core.posteriors(em, log_pi, log_A, lengths, check_stochastic=False)
                    ll, gamma, xi = r.log_likelihood, r.state_posteriors, r.transition_counts
            good = torch.isfinite(ll)
            gamma = gamma * good.view(B, 1, 1)
            xi = xi * good.view(B, 1, 1)
            total_ll += float(ll[good].sum())
            frames += int(lengths[good].sum())
            # composite -> tied states
            gs = tie_posteriors(gamma.float(), sid, S)
            st = mixture_stats(x.double(), gs.double(), comp.double(), lengths)
            total = st if total is None else total + st
            diag = torch.diagonal(xi, dim1=1, dim2=2)  # (B, K)
            stay.scatter_add_(0, sid.flatten(), diag.double().flatten())
            out.scatter_add_(0, sid.flatten(), xi.sum(-1).double().flatten())
            for b, g in enumerate(graphs):
                if not bool(good[b]):
                    continue
                L = int(lengths[b])
                for kind, src, sf, nxt in g.silences:
                    if kind == 0:
                        taken = float(xi[b, src, sf])
                        skipped = float(xi[b, src, nxt])
                        sil[0][0] += taken
                        sil[0][1] += taken + skipped
                    elif kind == 1:
                        sil[1][0] += float(gamma[b, 0, sf])
                        sil[1][1] += 1.0
                    else:
                        sil[1][0] += float(gamma[b, L - 1, sf:].sum())
                        sil[1][1] += 1.0
        return (total, stay, out, sil), total_ll / max(frames, 1)

    def _split_mixtures(self) -> None:
        """Double the Gaussians of every state: each component becomes two with means moved
        by +-0.2 standard deviations and half the weight."""
        std = self.variances.sqrt()
        self.means = torch.cat([self.means - 0.2 * std, self.means + 0.2 * std], 1)
        self.variances = torch.cat([self.variances, self.variances], 1)
        self.log_weights = torch.cat([self.log_weights, self.log_weights], 1) - math.log(2)

    def _training_items(self, utts: Sequence[Utterance], errors: Dict[str, str], reselect: bool):
        if reselect:
            return self._prepare(utts, errors)
        out = []
        for u in utts:
            try:
                res = self._resolve(u)
                g = self._build_graph(res, [0] * len(res.words))
                if g.min_frames > u.features.shape[0]:
                    raise ValueError("transcript is too long for the audio")
                out.append((u, g))
            except (MissingWordError, KeyError, ValueError) as err:
                errors[u.name] = _message(err)
        return out

    def fit(
        self,
        utterances: Sequence[Utterance],
        *,
        iterations: int = 10,
        method: str = "baum-welch",
        mixtures: int = 1,
        split_iterations: int = 4,
        reselect_from: int = 3,
        flat_start: bool = True,
        errors: Optional[Dict[str, str]] = None,
        verbose: bool = False,
        progress: Optional[Callable[[str], None]] = None,
    ) -> List[float]:
        """Train on (features, transcript) pairs with EM; returns the average log-likelihood
        per frame after each iteration.

        Args:
            utterances: training data (those that cannot be used are skipped and recorded in
                ``errors`` when given).
            iterations: EM iterations with one Gaussian a state (after the uniform
                segmentation when ``flat_start``).
            method: ``"viterbi"`` (hard state alignments) or ``"baum-welch"`` (posteriors).
            mixtures: target Gaussians a state, reached by doubling (a power of two), with
                ``split_iterations`` EM iterations after each split.
            reselect_from: from this iteration on (0-based), pronunciations are re-chosen by
                Viterbi each iteration; before it the first pronunciation is used.
            flat_start: start from the global mean and variance and a uniform segmentation;
                ``False`` continues from the current parameters.
        """
        if method not in ("viterbi", "baum-welch"):
            raise ValueError(f"method must be 'viterbi' or 'baum-welch', got {method!r}")
        if mixtures < 1 or mixtures & (mixtures - 1):
            raise ValueError(f"mixtures must be a power of two, got {mixtures}")
        errs: Dict[str, str] = {}
        history: List[float] = []
        utts = list(utterances)
        if not utts:
            raise ValueError("no training utterances")
        with torch.no_grad():
            if flat_start:
                if self.n_mixtures != 1:
                    S, _, D = self.means.shape
                    dev = self.means.device
                    self.means = torch.zeros(S, 1, D, device=dev)
                    self.variances = torch.ones(S, 1, D, device=dev)
                    self.log_weights = torch.zeros(S, 1, device=dev)
                self._init_global(utts)
                items = self._training_items(utts, errs, reselect=False)
                if not items:
                    raise ValueError(f"no usable training utterance: {errs}")
                self._m_step(self._accumulate_uniform(items))
            schedule = [iterations]
            m = self.n_mixtures
            while m < mixtures:
                schedule.append(split_iterations)
                m *= 2
            it = 0
            for stage, n_it in enumerate(schedule):
                if stage > 0:
                    self._split_mixtures()
                for _ in range(n_it):
                    errs.clear()
                    items = self._training_items(utts, errs, reselect=it >= reselect_from)
                    if not items:
                        raise ValueError(f"no usable training utterance: {errs}")
                    stats, ll = self._accumulate(items, method)
                    self._m_step(*stats)
                    history.append(ll)
                    msg = (
                        f"iteration {it + 1} ({method}, {self.n_mixtures} Gaussian(s)/state): "
                        f"log-likelihood/frame {ll:.3f}, {len(items)} utterances"
                    )
                    if verbose:
                        print(msg, flush=True)
                    if progress is not None:
                        progress(msg)
                    it += 1
        if errors is not None:
            errors.update(errs)
        return history

    def fit_labelled(
        self,
        utterances: Sequence[Utterance],
        segmentations: Sequence[Sequence[Tuple[float, float, str]]],
    ) -> None:
        """Estimate the states from reference phone segmentations (seconds): each labelled
        phone's frames are split evenly into its states (silence aliases map to the silence
        phone). Follow with :meth:`fit` (``flat_start=False``) to refine by EM."""
        if len(utterances) != len(segmentations):
            raise ValueError("one segmentation per utterance is needed")
        S, M, D = self.means.shape
        with torch.no_grad():
            self._init_global(utterances)
            total = None
            fs = self.config.frame_shift
            for u, segs in zip(utterances, segmentations):
                T = int(u.features.shape[0])
                states = torch.full((T,), -1, dtype=torch.long)
                for start, end, lab in segs:
                    ph = self.config.silence_phone if self._is_silence(lab) else lab
                    p = self._phone_ids([ph], f"the segmentation of {u.name}")[0]
                    a = min(max(int(round(start / fs)), 0), T)
                    e = min(max(int(round(end / fs)), a), T)
                    if e <= a:
                        continue
                    n = self.phone_states[p]
                    rel = (torch.arange(e - a) * n) // (e - a)
                    states[a:e] = self.phone_offset[p] + rel
                st = self._hard_stats(u.features, states)
                total = st if total is None else total + st
            if total is None:
                raise ValueError("no labelled frames")
            self._m_step(total)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Save config, phone set, lexicon and parameters (``torch.save`` of plain data: no
        pickled code, loadable with ``weights_only=True``)."""
        torch.save(
            {
                "format": "pytorch_hmm.ForcedAligner/1",
                "config": self.config.to_dict(),
                "phones": list(self.phones),
                "lexicon": None if self.lexicon is None else self.lexicon.to_dict(),
                "lexicon_case_sensitive": None
                if self.lexicon is None
                else self.lexicon.case_sensitive,
                "state_dict": {k: v.clone() for k, v in self.state_dict().items()},
            },
            path,
        )

    @classmethod
    def load(cls, path: PathLike, *, lexicon: Optional[Lexicon] = None) -> ForcedAligner:
        """Load a model written by :meth:`save` (``lexicon`` replaces the saved one)."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except OSError:
            raise
        except Exception as err:  # unpickling errors of every kind
            raise ValueError(f"{os.fspath(path)} is not a saved ForcedAligner ({err})") from err
        if not isinstance(d, dict) or d.get("format") != "pytorch_hmm.ForcedAligner/1":
            raise ValueError(f"{os.fspath(path)} is not a saved ForcedAligner")
        if lexicon is None and d.get("lexicon") is not None:
            lexicon = Lexicon.from_dict(
                d["lexicon"], case_sensitive=bool(d.get("lexicon_case_sensitive"))
            )
        sd = d["state_dict"]
        m = cls(
            d["phones"],
            AlignerConfig.from_dict(d["config"]),
            lexicon,
            n_mixtures=int(sd["means"].shape[1]),
        )
        m.load_state_dict(sd)
        return m

    def extra_repr(self) -> str:
        return (
            f"phones={len(self.phones)}, states={self.num_states}, "
            f"mixtures={self.n_mixtures}, dim={self.config.feature_dim}"
        )
