"""The forced aligner: front end, transcript resolution, pronunciation choice, batched
alignment, segments, persistence (training: :mod:`.training`; graphs: :mod:`.graph`)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import math
import numbers
import os
import warnings
from collections import abc
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ... import core
from ...core.validation import to_tensor
from ...errors import HMMTypeError, HMMValueError
from ...io.labels import Segment
from ...io.model_file import ModelFileMixin
from ...models.gaussian import diag_gaussian_log_likelihood
from ..lexicon import Lexicon, MissingWordError
from .config import (
    AlignerConfig,
    AlignmentError,
    PathLike,
    TranscriptLike,
    Utterance,
    UtteranceAlignment,
    error_message,
)
from .graph import (
    GraphBatch,
    ResolvedTranscript,
    UtteranceGraph,
    batch_graphs,
    graph_for_choice,
)
from .training import AlignerTrainingMixin

__all__ = ["ForcedAligner"]

NEG_INF = float("-inf")
# the aligner's own formats before the model file (still read: ``_load_legacy``)
_MAGIC = b"pytorch_hmm.ForcedAligner/2\n"
_PAYLOAD_FORMAT = "pytorch_hmm.ForcedAligner/1"


class UnknownPhoneError(HMMValueError, KeyError):
    """A phone that is not in the model's phone set (a ``ValueError`` and a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ------------------------------------------------------------------------------------------
def _run_engine(kind: str, state_ll: torch.Tensor, batch: GraphBatch, lengths: torch.Tensor):
    """One engine call on a padded batch of graphs: the tied-state log-likelihoods
    ``state_ll`` (B, T, S) are read through ``emission_index`` (never copied to (B, T, K)),
    the band as stated by the graph, ``log_final`` for the allowed last states.

    ``kind``: ``"viterbi"`` -> :class:`pytorch_hmm.core.ViterbiResult` (``score``, ``path``);
    ``"log_likelihood"`` -> (B,) log-likelihoods; ``"posteriors"`` -> ``(log_likelihood (B,),
    state posteriors (B, T, K), transition counts (B, K, W) in the band form of
    ``batch.values``)``. Impossible sequences score -inf (reported by the caller)."""
    trans = core.Transitions.banded(batch.values.to(state_ll.dtype), lo=0)
    args = (state_ll, batch.log_initial.to(state_ll.dtype), trans, lengths)
    kw = dict(
        log_final=batch.log_final.to(state_ll.dtype),
        emission_index=batch.emission_index,
        check_stochastic=False,
        on_impossible="ignore",
    )
    if kind == "viterbi":
        return core.viterbi(*args, **kw)
    if kind == "log_likelihood":
        return core.log_likelihood(*args, **kw)
    if kind == "posteriors":
        r = core.posteriors(*args, **kw)
        return r.log_likelihood, r.state_posteriors, r.transition_counts
    raise HMMValueError(f"unknown engine call {kind!r}")


# ------------------------------------------------------------------------------------------


class ForcedAligner(ModelFileMixin, AlignerTrainingMixin, nn.Module):
    """Phone-level HMM forced aligner (see :mod:`pytorch_hmm.alignment.forced`).

    Args:
        phones: the phone set (strings; the silence phone is added if missing).
        config: :class:`AlignerConfig`.
        lexicon: optional :class:`~pytorch_hmm.alignment.lexicon.Lexicon`; without one a
            transcript is read as a phone sequence.
        n_mixtures: Gaussians per state of the initial (untrained) model.

    Parameters are buffers (``means``, ``variances`` (S, M, D), ``log_weights`` (S, M),
    ``log_self_loop`` (S,), ``log_silence`` (2,) = log probability of an optional silence
    between words / at an edge, ``feature_floor`` (D,)), so ``state_dict`` holds the model.

    A word the lexicon lacks is aligned with the phone :attr:`unknown_phone` (``"spn"``, as
    in MFA) when the phone set holds it; otherwise it is a :class:`MissingWordError`.
    """

    unknown_phone: str = "spn"

    def __init__(
        self,
        phones: Sequence[str],
        config: Optional[AlignerConfig] = None,
        lexicon: Optional[Lexicon] = None,
        *,
        n_mixtures: int = 1,
    ) -> None:
        super().__init__()
        if config is not None and not isinstance(config, AlignerConfig):
            raise HMMTypeError(f"config must be an AlignerConfig, got {type(config).__name__}")
        if lexicon is not None and not isinstance(lexicon, Lexicon):
            raise HMMTypeError(f"lexicon must be a Lexicon or None, got {type(lexicon).__name__}")
        if isinstance(phones, (str, bytes)) or not isinstance(phones, abc.Sequence):
            raise HMMTypeError(
                f"phones must be a sequence of phone names (strings), got {type(phones).__name__}"
            )
        if not all(isinstance(p, str) for p in phones):
            bad = next(p for p in phones if not isinstance(p, str))
            raise HMMTypeError(f"phones must be strings, got {bad!r}")
        if isinstance(n_mixtures, bool) or not isinstance(n_mixtures, int) or n_mixtures < 1:
            raise HMMValueError(f"n_mixtures must be a whole number >= 1, got {n_mixtures!r}")
        self.config = config = config or AlignerConfig()
        config.validate()
        sil = config.silence_phone
        ph = [sil] + [str(p) for p in phones if str(p) != sil]
        if len(set(ph)) != len(ph):
            raise HMMValueError("phones must be distinct")
        for p in ph:
            if not p or any(c.isspace() for c in p):
                raise HMMValueError(f"phone names must be non-empty without spaces: {p!r}")
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
            from ...speech.features import MFCC

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
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
            raise HMMTypeError(f"sample_rate must be a number, got {sample_rate!r}")
        if int(sample_rate) != self.config.sample_rate:
            raise HMMValueError(
                f"audio is sampled at {sample_rate} Hz but the aligner expects "
                f"{self.config.sample_rate} Hz; resample it first (e.g. librosa.resample)"
            )
        try:
            wav = torch.as_tensor(waveform, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as err:
            raise HMMTypeError(
                f"waveform must be a tensor or array of samples, got {type(waveform).__name__}"
            ) from err
        if wav.dim() != 1:
            raise HMMValueError(f"waveform must be mono (N,), got shape {tuple(wav.shape)}")
        if not bool(torch.isfinite(wav).all()):
            i = int(torch.nonzero(~torch.isfinite(wav))[0, 0])
            raise HMMValueError(f"waveform contains NaN or inf (first at sample {i})")
        if wav.numel() < self.config.hop_length:
            raise HMMValueError(f"audio is too short ({wav.numel()} samples)")
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
        from ...speech.features import load_audio

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
            raise UnknownPhoneError(
                f"phone(s) {', '.join(repr(p) for p in dict.fromkeys(unknown))} of {where} are "
                f"not in the model's phone set"
            )
        return tuple(self.phone_index[p] for p in phones)

    def _check_utterance(self, u, where: str = "utterance") -> Utterance:
        """The utterance with its features as a float32 (T, D) tensor, or an
        :class:`HMMValueError` / :class:`HMMTypeError` saying what is wrong with it (a bad
        type, features of the wrong shape or with NaN/inf, a missing transcript)."""
        if not isinstance(u, Utterance):
            raise HMMTypeError(f"{where} must be an Utterance, got {type(u).__name__}")
        if not isinstance(u.name, str) or not u.name:
            raise HMMTypeError(f"{where}: name must be a non-empty string, got {u.name!r}")
        f = to_tensor(u.features, f"{where}: features", f"a (T, {self.config.feature_dim}) tensor")
        if f.dtype == torch.bool or f.is_complex():
            raise HMMTypeError(f"features must be real numbers, got {f.dtype}")
        if f.dim() != 2 or f.shape[1] != self.config.feature_dim:
            raise HMMValueError(
                f"features must be (T, {self.config.feature_dim}), got {tuple(f.shape)}"
            )
        if f.shape[0] == 0:
            raise HMMValueError("features have no frames (T = 0)")
        f = f.detach().float()
        bad = ~torch.isfinite(f)
        if bool(bad.any()):
            t = int(torch.nonzero(bad)[0, 0])
            raise HMMValueError(f"features contain NaN or inf (first at frame {t})")
        tr = u.transcript
        if tr is None:
            raise HMMValueError("transcript is None (expected a string or a list of words)")
        if not isinstance(tr, str) and (
            not isinstance(tr, abc.Sequence) or not all(isinstance(w, str) for w in tr)
        ):
            raise HMMTypeError(
                f"transcript must be a string or a list of strings, got {type(tr).__name__}"
            )
        if u.pronunciations is not None and (
            isinstance(u.pronunciations, str)
            or not isinstance(u.pronunciations, abc.Sequence)
            or not all(
                isinstance(p, abc.Sequence)
                and not isinstance(p, str)
                and all(isinstance(x, str) for x in p)
                for p in u.pronunciations
            )
        ):
            raise HMMTypeError("pronunciations must be a list of phone lists (strings)")
        d = u.duration
        if d is not None and (
            isinstance(d, bool) or not isinstance(d, numbers.Real) or not (0 < d < math.inf)
        ):
            raise HMMValueError(f"duration must be a positive number of seconds, got {d!r}")
        return dataclasses.replace(u, features=f)

    @staticmethod
    def _name(u, i: int) -> str:
        name = getattr(u, "name", None)
        return name if isinstance(name, str) and name else f"utterances[{i}]"

    def _screen(self, utts: Sequence[Utterance], errors: Dict[str, str]) -> List[Utterance]:
        """The checked copies of the usable utterances; the others go to ``errors``."""
        out = []
        for i, u in enumerate(utts):
            try:
                out.append(self._check_utterance(u, f"utterances[{i}]"))
            except (ValueError, TypeError) as err:
                errors[self._name(u, i)] = error_message(err)
        return out

    def _resolve(self, utt: Utterance) -> ResolvedTranscript:
        tokens = utt.transcript.split() if isinstance(utt.transcript, str) else list(utt.transcript)
        words: List[str] = []
        alts: List[List[Tuple[int, ...]]] = []
        sil_after: List[bool] = []
        opt = self.config.optional_silence
        if utt.pronunciations is not None:
            if len(utt.pronunciations) != len(tokens):
                raise HMMValueError(
                    f"{len(tokens)} words but {len(utt.pronunciations)} pronunciations given"
                )
            for w, pron in zip(tokens, utt.pronunciations):
                pron = [p for p in pron if not self._is_silence(p)]
                if not pron:
                    raise HMMValueError(f"word {w!r} has an empty pronunciation")
                words.append(w)
                alts.append([self._phone_ids(pron, f"word {w!r}")])
                sil_after.append(opt)
        elif self.lexicon is not None:
            tokens = [t for t in tokens if not self._is_silence(t)]
            unk = self.unknown_phone
            if unk in self.phone_index and any(t not in self.lexicon for t in tokens):
                # words the lexicon lacks are aligned with the unknown-word phone (as MFA)
                prons = [self.lexicon[t] if t in self.lexicon else [(unk,)] for t in tokens]
            else:
                prons = self.lexicon.lookup(tokens)  # MissingWordError names every missing word
            for w, ps in zip(tokens, prons):
                ids = []
                for p in ps:
                    pp = [x for x in p if not self._is_silence(x)]
                    if pp:
                        ids.append(self._phone_ids(pp, f"word {w!r}"))
                if not ids:
                    raise HMMValueError(f"word {w!r} has only silence in the lexicon")
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
            raise HMMValueError("the transcript is empty")
        sil_after[-1] = False  # the trailing silence is handled separately
        return ResolvedTranscript(words, alts, sil_after)

    def _build_graph(self, res: ResolvedTranscript, choice: Sequence[int]) -> UtteranceGraph:
        return graph_for_choice(
            res,
            choice,
            phone_states=self.phone_states,
            phone_offset=self.phone_offset,
            log_self_loop=self.log_self_loop,
            log_silence=(self.log_silence[0], self.log_silence[1]),
            silence_phone=0,
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
        graphs: Sequence[UtteranceGraph],
        state_lls: Optional[Sequence[torch.Tensor]] = None,
    ):
        """Pad a batch: features (B, T, D), lengths (B,), the graphs (:class:`GraphBatch`),
        tied-state log-likelihoods (B, T, S) and component log-likelihoods (B, T, S, M)
        (None when the per-utterance state log-likelihoods ``state_lls`` are given), all on
        the model's device."""
        B = len(graphs)
        T = max(int(f.shape[0]) for f in feats)
        D = feats[0].shape[1]
        dev = self.means.device
        x = torch.zeros(B, T, D, device=dev)
        lengths = torch.tensor([int(f.shape[0]) for f in feats], dtype=torch.long)
        for b, f in enumerate(feats):
            x[b, : f.shape[0]] = f.to(device=dev, dtype=x.dtype)
        lengths = lengths.to(dev)
        gb = batch_graphs(graphs, device=dev)
        if state_lls is None:
            comp = self._component_log_likelihood(x)  # (B, T, S, M)
            state_ll = torch.logsumexp(comp, -1)  # (B, T, S)
        else:
            comp = None
            state_ll = torch.zeros(B, T, self.num_states, device=dev)
            for b, sl in enumerate(state_lls):
                state_ll[b, : sl.shape[0]] = sl
        return x, lengths, gb, state_ll, comp

    _engine = staticmethod(_run_engine)

    def _viterbi(self, feats, graphs, state_lls=None):
        x, lengths, gb, state_ll, comp = self._batch(feats, graphs, state_lls)
        res = self._engine("viterbi", state_ll, gb, lengths)
        return res, (x, lengths, gb, comp)

    # -- pronunciation choice ----------------------------------------------------------------
    def _variants(self, res: ResolvedTranscript) -> Tuple[List[Tuple[int, ...]], bool]:
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

    def _choose(
        self, items: Sequence[Tuple[torch.Tensor, ResolvedTranscript]]
    ) -> List[Tuple[int, ...]]:
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
            _, lengths, gb, state_ll, _ = self._batch(
                [items[i][0] for i, _, _ in chunk],
                [g for _, _, g in chunk],
                [cache[i] for i, _, _ in chunk],
            )
            try:
                ll = self._engine("log_likelihood", state_ll, gb, lengths)
            except (ValueError, RuntimeError):
                continue  # scores left out: -inf; the Viterbi pass reports the utterance
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
        ok: List[Tuple[Utterance, ResolvedTranscript]] = []
        for u in utts:
            try:
                if u.features.dim() != 2 or u.features.shape[1] != self.config.feature_dim:
                    raise HMMValueError(
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
                    raise HMMValueError(
                        f"transcript is too long for the audio: its {len(res.words)} word(s) "
                        f"need at least {need} frames ({need * fs:.2f} s at "
                        f"{self.config.states_per_phone} states a phone) but the audio has "
                        f"{T} frames ({T * fs:.2f} s)"
                    )
                ok.append((u, res))
            except (MissingWordError, KeyError, ValueError) as err:
                errors[u.name] = error_message(err)
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
        :class:`AlignmentError`. ``progress(n)`` is called as batches finish.

        Each utterance is checked on its own first (an :class:`Utterance`; features a
        ``(T, D)`` tensor or array with ``T >= 1`` and no NaN/inf; a transcript that is a
        string or a list of strings; a positive duration), so one bad utterance is reported by
        name and costs only itself; a batch that fails in the engine is re-run one utterance
        at a time for the same reason."""
        single = isinstance(utterances, Utterance)
        if not single and (
            isinstance(utterances, (str, bytes)) or not isinstance(utterances, abc.Iterable)
        ):
            raise HMMTypeError(
                "utterances must be an Utterance or a list of them, got "
                f"{type(utterances).__name__}"
            )
        if errors is not None and not isinstance(errors, dict):
            raise HMMTypeError(f"errors must be a dict or None, got {type(errors).__name__}")
        if progress is not None and not callable(progress):
            raise HMMTypeError("progress must be callable or None")
        utts = [utterances] if single else list(utterances)
        errs: Dict[str, str] = {}
        with torch.no_grad():
            checked = self._screen(utts, errs)
            items = self._prepare(checked, errs)
            results: Dict[int, UtteranceAlignment] = {}
            order = sorted(range(len(items)), key=lambda i: items[i][0].features.shape[0])
            bs = max(self.config.batch_size, 1)
            for s in range(0, len(order), bs):
                chunk = [items[i] for i in order[s : s + bs]]
                self._align_chunk(chunk, results, errs)
                if progress is not None:
                    progress(len(chunk))
        if errors is not None:
            errors.update(errs)
        elif errs:
            name = next(iter(errs))
            raise AlignmentError(name, errs[name])
        out = [results[id(u)] for u in checked if id(u) in results]
        return out[0] if single else out

    def _align_chunk(self, chunk, results, errs) -> None:
        """Viterbi on one batch; if the batch as a whole fails, each utterance is aligned on
        its own so that one bad utterance costs only itself (reported by name)."""
        try:
            r, _ = self._viterbi([u.features for u, _ in chunk], [g for _, g in chunk])
        except (ValueError, RuntimeError) as err:
            if len(chunk) == 1:
                errs[chunk[0][0].name] = f"alignment failed: {error_message(err)}"
                return
            for item in chunk:
                self._align_chunk([item], results, errs)
            return
        for b, (u, g) in enumerate(chunk):
            if not math.isfinite(float(r.score[b])):
                errs[u.name] = "no alignment possible (every state path has zero probability)"
                continue
            L = int(u.features.shape[0])
            results[id(u)] = self._segments(u, g, r.path[b, :L], float(r.score[b]))

    def _segments(self, u: Utterance, g: UtteranceGraph, path: torch.Tensor, score: float):
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

    # -- persistence (the library's model file: pytorch_hmm.io.model_file) -----------------
    def _config(self) -> dict:
        return {
            "phones": list(self.phones),
            "config": self.config.to_dict(),
            "n_mixtures": self.n_mixtures,
        }

    @classmethod
    def _config_kwargs(cls, config: dict) -> dict:
        kw = dict(config)
        if isinstance(kw.get("config"), dict):
            kw["config"] = AlignerConfig.from_dict(kw["config"])
        return kw

    def _file_state(self):
        sd, extra = super()._file_state()
        extra["lexicon"] = None if self.lexicon is None else self.lexicon.to_dict()
        extra["lexicon_case_sensitive"] = (
            None if self.lexicon is None else self.lexicon.case_sensitive
        )
        return sd, extra

    def _set_file_state(self, state_dict, extra) -> None:
        super()._set_file_state(state_dict, extra)
        if extra.get("lexicon") is not None:
            self.lexicon = Lexicon.from_dict(
                extra["lexicon"], case_sensitive=bool(extra.get("lexicon_case_sensitive"))
            )

    @classmethod
    def load(
        cls, path: PathLike, map_location="cpu", *, lexicon: Optional[Lexicon] = None
    ) -> ForcedAligner:
        """Load an aligner written by :meth:`save` (``lexicon`` replaces the saved one).

        Raises :class:`HMMValueError` naming the file when it is not a saved aligner, is
        truncated or altered (checksum mismatch), or holds inconsistent parameters (see
        :mod:`pytorch_hmm.io.model_file`); files of the aligner's earlier formats
        (``pytorch_hmm.ForcedAligner/2``, and 1 without a checksum) still load, with a
        warning to re-save them."""
        if lexicon is not None and not isinstance(lexicon, Lexicon):
            raise HMMTypeError(f"lexicon must be a Lexicon or None, got {type(lexicon).__name__}")
        m = super().load(path, map_location)
        if lexicon is not None:
            m.lexicon = lexicon
        return m

    @classmethod
    def _load_legacy(cls, name: str, data: bytes) -> Optional[ForcedAligner]:
        """An aligner of the formats before the library's model file; None when ``data`` is a
        torch.save file of something else."""
        if data.startswith(_MAGIC):
            head, sep, payload = data[len(_MAGIC) :].partition(b"\n")
            if not sep or not head.startswith(b"sha256 "):
                raise HMMValueError(f"{name}: saved ForcedAligner with a damaged header")
            want = head[len(b"sha256 ") :].decode("ascii", "replace")
            if hashlib.sha256(payload).hexdigest() != want:
                raise HMMValueError(
                    f"{name}: checksum mismatch: the saved ForcedAligner is truncated or "
                    f"altered ({len(data)} bytes); save the model again"
                )
            old = "an earlier format (pytorch_hmm.ForcedAligner/2)"
        else:  # format 1: a bare torch.save zip, no checksum
            payload, old = data, "the first format, which has no checksum"
        try:
            d = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling errors of every kind
            if data.startswith(_MAGIC):
                raise HMMValueError(f"{name} is not a saved ForcedAligner ({err})") from err
            return None
        if not isinstance(d, dict) or d.get("format") != _PAYLOAD_FORMAT:
            if data.startswith(_MAGIC):
                raise HMMValueError(f"{name} is not a saved ForcedAligner")
            return None
        warnings.warn(
            f"{name} is a ForcedAligner file of {old}; re-save it with ForcedAligner.save "
            "to get the library's model file format",
            stacklevel=5,
        )
        try:
            sd = d["state_dict"]
            m = cls(
                d["phones"],
                AlignerConfig.from_dict(d["config"]),
                n_mixtures=int(sd["means"].shape[1]),
            )
            m._set_file_state(sd, d)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            raise HMMValueError(
                f"{name}: inconsistent saved ForcedAligner ({error_message(err)})"
            ) from err
        for k, v in m.state_dict().items():
            if v.is_floating_point() and torch.isnan(v).any():
                raise HMMValueError(f"{name}: saved parameter {k} contains NaN")
        return m

    def extra_repr(self) -> str:
        return (
            f"phones={len(self.phones)}, states={self.num_states}, "
            f"mixtures={self.n_mixtures}, dim={self.config.feature_dim}"
        )
