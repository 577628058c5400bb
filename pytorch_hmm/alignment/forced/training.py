"""Training of the forced aligner: flat start (uniform segmentation, then EM by Viterbi
training or Baum-Welch, with the self-loop and silence probabilities re-estimated, and mixture
splitting) and training from labelled phone segmentations.

:class:`AlignerTrainingMixin` holds it; :class:`~pytorch_hmm.alignment.forced.ForcedAligner`
provides the model (buffers ``means``, ``variances``, ``log_weights``, ``log_self_loop``,
``log_silence``, ``feature_floor``), the graphs (``_resolve``, ``_build_graph``,
``_prepare``), the batching (``_batch``) and the engine calls (``_engine``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections import abc
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ...errors import HMMTypeError, HMMValueError
from ...training.stats import (
    GaussianStats,
    gaussian_stats,
    mixture_m_step,
    mixture_stats,
    tie_posteriors,
)
from ..lexicon import MissingWordError
from .config import Utterance, error_message
from .graph import SILENCE_BETWEEN, SILENCE_LEADING

__all__ = ["AlignerTrainingMixin"]


def _whole(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < lo:
        raise HMMValueError(f"{name} must be a whole number >= {lo}, got {v!r}")
    return int(v)


class AlignerTrainingMixin:
    """Training methods of :class:`~pytorch_hmm.alignment.forced.ForcedAligner`.

    A fit that raises leaves the model as it was before the call (every buffer restored)."""

    @contextlib.contextmanager
    def _restore_on_error(self):
        saved = {k: v.clone() for k, v in self._buffers.items() if v is not None}
        try:
            yield
        except BaseException:
            for k, v in saved.items():
                self._buffers[k] = v
            raise

    def _check_parameters(self) -> None:
        for k in ("means", "variances", "log_weights", "log_self_loop", "log_silence"):
            v = getattr(self, k)
            if torch.isnan(v).any() or torch.isposinf(v).any():
                raise HMMValueError(
                    f"training produced non-finite {k} (features too large or degenerate?); "
                    "the model was left as it was"
                )

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
                    g.emission_index[torch.tensor(seq)][idx],
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
            x, lengths, gb, state_ll, comp = self._batch(feats, graphs)
            sid = gb.emission_index
            B, T = state_ll.shape[:2]
            K, W = gb.values.shape[1:]
            if method == "viterbi":
                r = self._engine("viterbi", state_ll, gb, lengths)
                ll = r.score
                path = r.path
                valid = path >= 0
                gamma = torch.zeros(B, T, K, device=dev)
                gamma.scatter_(2, path.clamp(min=0).unsqueeze(-1), valid.unsqueeze(-1).float())
                # transition counts in band form: xi[b, i, d] = moves i -> i + d
                pairs = valid[:, 1:] & valid[:, :-1]
                src = path[:, :-1].clamp(min=0)
                step = (path[:, 1:] - path[:, :-1]).clamp(0, W - 1)
                xi = torch.zeros(B, K * W, device=dev)
                xi.scatter_add_(1, src * W + step, pairs.float())
                xi = xi.view(B, K, W)
            else:
                ll, gamma, xi = self._engine("posteriors", state_ll, gb, lengths)
            good = torch.isfinite(ll)
            gamma = gamma * good.view(B, 1, 1)
            xi = xi * good.view(B, 1, 1)
            total_ll += float(ll[good].sum())
            frames += int(lengths[good].sum())
            # composite -> tied states
            gs = tie_posteriors(gamma.float(), sid, S)
            st = mixture_stats(x.double(), gs.double(), comp.double(), lengths)
            total = st if total is None else total + st
            stay.scatter_add_(0, sid.flatten(), xi[..., 0].double().flatten())
            out.scatter_add_(0, sid.flatten(), xi.sum(-1).double().flatten())
            for b, g in enumerate(graphs):
                if not bool(good[b]):
                    continue
                L = int(lengths[b])
                for kind, src_k, sf, nxt in g.silences:
                    if kind == SILENCE_BETWEEN:
                        taken = float(xi[b, src_k, sf - src_k])
                        skipped = float(xi[b, src_k, nxt - src_k])
                        sil[0][0] += taken
                        sil[0][1] += taken + skipped
                    elif kind == SILENCE_LEADING:
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
                    raise HMMValueError("transcript is too long for the audio")
                out.append((u, g))
            except (MissingWordError, KeyError, ValueError) as err:
                errors[u.name] = error_message(err)
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
            raise HMMValueError(f"method must be 'viterbi' or 'baum-welch', got {method!r}")
        mixtures = _whole("mixtures", mixtures, 1)
        if mixtures & (mixtures - 1):
            raise HMMValueError(f"mixtures must be a power of two, got {mixtures}")
        iterations = _whole("iterations", iterations, 0)
        split_iterations = _whole("split_iterations", split_iterations, 0)
        reselect_from = _whole("reselect_from", reselect_from, 0)
        if errors is not None and not isinstance(errors, dict):
            raise HMMTypeError(f"errors must be a dict or None, got {type(errors).__name__}")
        if isinstance(utterances, (str, bytes)) or not isinstance(utterances, abc.Iterable):
            raise HMMTypeError(
                f"utterances must be a list of Utterance, got {type(utterances).__name__}"
            )
        errs: Dict[str, str] = {}
        history: List[float] = []
        utts = list(utterances)
        if not utts:
            raise HMMValueError("utterances is empty: no training utterances")
        # bad utterances (NaN features, no transcript) are set aside before anything is
        # estimated from them
        bad: Dict[str, str] = {}
        utts = self._screen(utts, bad)
        if not utts:
            raise HMMValueError(f"no usable training utterance: {bad}")
        with torch.no_grad(), self._restore_on_error():
            if flat_start:
                if self.n_mixtures != 1:
                    S, _, D = self.means.shape
                    dev = self.means.device
                    self.means = torch.zeros(S, 1, D, device=dev)
                    self.variances = torch.ones(S, 1, D, device=dev)
                    self.log_weights = torch.zeros(S, 1, device=dev)
                self._init_global(utts)
                errs.update(bad)
                items = self._training_items(utts, errs, reselect=False)
                if not items:
                    raise HMMValueError(f"no usable training utterance: {errs}")
                self._m_step(self._accumulate_uniform(items))
                self._check_parameters()
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
                    errs.update(bad)
                    items = self._training_items(utts, errs, reselect=it >= reselect_from)
                    if not items:
                        raise HMMValueError(f"no usable training utterance: {errs}")
                    stats, ll = self._accumulate(items, method)
                    self._m_step(*stats)
                    self._check_parameters()
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
            errors.update(bad)
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
        for nm, v in (("utterances", utterances), ("segmentations", segmentations)):
            if isinstance(v, (str, bytes)) or not isinstance(v, abc.Sequence):
                raise HMMTypeError(f"{nm} must be a list, got {type(v).__name__}")
        if len(utterances) != len(segmentations):
            raise HMMValueError(
                f"one segmentation per utterance is needed: {len(utterances)} utterances, "
                f"{len(segmentations)} segmentations"
            )
        if not utterances:
            raise HMMValueError("utterances is empty: no labelled training data")
        # everything is checked and converted before the model is touched
        utts = [self._check_utterance(u, f"utterances[{i}]") for i, u in enumerate(utterances)]
        fs = self.config.frame_shift
        assigned = []
        for i, (u, segs) in enumerate(zip(utts, segmentations)):
            where = f"segmentations[{i}] ({u.name})"
            T = int(u.features.shape[0])
            states = torch.full((T,), -1, dtype=torch.long)
            for k, seg in enumerate(segs):
                if isinstance(seg, str) or not isinstance(seg, abc.Sequence) or len(seg) != 3:
                    raise HMMValueError(f"{where}[{k}] must be (start, end, label), got {seg!r}")
                start, end, lab = seg
                try:
                    start, end = float(start), float(end)
                except (TypeError, ValueError) as err:
                    raise HMMValueError(f"{where}[{k}]: times must be numbers") from err
                if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
                    raise HMMValueError(
                        f"{where}[{k}]: times must be finite with 0 <= start <= end, got "
                        f"({start}, {end})"
                    )
                if not isinstance(lab, str):
                    raise HMMTypeError(f"{where}[{k}]: label must be a str, got {lab!r}")
                ph = self.config.silence_phone if self._is_silence(lab) else lab
                p = self._phone_ids([ph], where)[0]
                a = min(max(int(round(start / fs)), 0), T)
                e = min(max(int(round(end / fs)), a), T)
                if e <= a:
                    continue
                n = self.phone_states[p]
                rel = (torch.arange(e - a) * n) // (e - a)
                states[a:e] = self.phone_offset[p] + rel
            assigned.append(states)
        if not any(bool((st >= 0).any()) for st in assigned):
            raise HMMValueError("no labelled frames: every segment lies outside its features")
        with torch.no_grad(), self._restore_on_error():
            self._init_global(utts)
            total = None
            for u, states in zip(utts, assigned):
                st = self._hard_stats(u.features, states)
                total = st if total is None else total + st
            self._m_step(total)
            self._check_parameters()
