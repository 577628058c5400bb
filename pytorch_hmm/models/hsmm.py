"""Hidden semi-Markov models: explicit state durations on the engine's semi-Markov recursion
(:mod:`pytorch_hmm.core.semimarkov`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch
from torch import nn

from .. import core
from ..errors import HMMValueError
from ..io.model_file import ModelFileMixin
from ..training.stats import GaussianStats, _Stats, markov_m_step
from ._common import StateGuard, check_count, check_min_covar, check_real, restore_on_error
from .base import ArrayLike, as_tensor_arg, check_model_dtype
from .gaussian import GaussianHMM
from .mixture import MixtureGaussianHMM

DURATIONS = ("nonparametric", "poisson", "gaussian", "gamma")
EMISSIONS = ("gaussian", "mixture")
TOPOLOGIES = ("left_to_right", "ergodic")


@dataclass(eq=False)
class HSMMStats(_Stats):
    """Everything one EM iteration of an :class:`HSMM` needs, summed over sequences (they add
    up with ``+`` and ``all_reduce`` over processes, as :class:`~pytorch_hmm.training.stats.
    HMMStats`): ``start`` (K,), ``trans`` (K, K) segment-to-segment counts, ``durations``
    (K, max_duration) expected segment counts per duration, ``emission`` (Gaussian or mixture
    statistics, or None), ``log_likelihood`` () float64, ``num_frames``, ``num_sequences``."""

    start: torch.Tensor
    trans: torch.Tensor
    durations: torch.Tensor
    emission: Optional[GaussianStats]
    log_likelihood: torch.Tensor
    num_frames: torch.Tensor
    num_sequences: torch.Tensor


def _probs(name: str, p: ArrayLike, shape: Tuple[int, ...], rows_may_be_zero: bool = False):
    t = as_tensor_arg(name, p).detach().to(torch.float64).cpu()
    if tuple(t.shape) != shape:
        raise HMMValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise HMMValueError(f"{name} must hold finite probabilities >= 0")
    s = t.sum(-1)
    ok = (s - 1).abs() <= 1e-6
    if rows_may_be_zero:
        ok = ok | (s == 0)
    if not bool(ok.all()):
        what = (
            "sum to one (or zero: a state with no successor)" if rows_may_be_zero else "sum to one"
        )
        raise HMMValueError(f"{name} rows must {what}, got sums {s.flatten()[:5].tolist()}")
    return t


class HSMM(ModelFileMixin, StateGuard, nn.Module):
    """A hidden semi-Markov model: each visit to a state lasts a number of frames drawn from
    the state's duration distribution, an ``nn.Module``.

    ``HSMM(num_states, feature_dim, max_duration, duration=..., emission=..., ...)``:

    - ``duration``: ``"nonparametric"`` (a free table over 1..max_duration), ``"poisson"``
      (d - 1 ~ Poisson(rate)), ``"gaussian"`` (a discretised normal of ``mean``, ``std``) or
      ``"gamma"`` (a discretised gamma of ``shape``, ``rate``); parametric families are
      truncated to 1..max_duration and renormalised;
    - ``emission``: ``"gaussian"`` (:class:`GaussianHMM`'s densities) or ``"mixture"``
      (:class:`MixtureGaussianHMM`'s, ``num_mixtures`` components), with ``covariance_type``
      "diag" or "full"; ``self.emission`` is that model (only its emission parameters are
      used);
    - ``topology``: ``"left_to_right"`` (each state once, in order, from state 0, ending in
      state K-1: phone models, alignment, TTS durations) or ``"ergodic"`` (any state to any
      other, start and end anywhere);
    - ``right_censored``: the last segment may be cut short by the end of a sequence.

    Conventions (see :mod:`pytorch_hmm.core.semimarkov`): segments tile each sequence; a
    state's stay is its duration, so the transition matrix has a zero diagonal. The engine
    gets ``emission_log_likelihood(x)`` (B, T, K), ``log_initial()`` (K,),
    ``log_transitions()`` (K, K), ``log_durations()`` (K, max_duration) (entry d-1 for d
    frames) and ``log_final()`` (K,).

    Example::

        hsmm = HSMM(5, 13, max_duration=30)
        hsmm.fit(features, lengths)               # EM: durations and emissions
        best = hsmm.viterbi(features, lengths)    # .path (B, T), .segments [state, start, dur]
        ll = hsmm(features, lengths)              # (B,) differentiable log-likelihood
    """

    def __init__(
        self,
        num_states: int,
        feature_dim: int,
        max_duration: int,
        duration: str = "nonparametric",
        emission: str = "gaussian",
        covariance_type: str = "diag",
        topology: str = "left_to_right",
        *,
        num_mixtures: int = 2,
        right_censored: bool = False,
        min_covar: float = 1e-3,
        duration_floor: float = 1e-8,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if isinstance(max_duration, bool) or int(max_duration) != max_duration or max_duration < 1:
            raise HMMValueError(f"max_duration must be an integer >= 1, got {max_duration!r}")
        check_count("num_states", num_states)
        check_count("feature_dim", feature_dim)
        check_min_covar(min_covar)
        check_model_dtype(dtype)
        check_real("duration_floor", duration_floor, low=0.0, high=1.0, high_open=True)
        for name, value, allowed in (
            ("duration", duration, DURATIONS),
            ("emission", emission, EMISSIONS),
            ("topology", topology, TOPOLOGIES),
        ):
            if value not in allowed:
                raise HMMValueError(f"{name} must be one of {allowed}, got {value!r}")
        K = self.num_states = int(num_states)
        Dm = self.max_duration = int(max_duration)
        self.feature_dim = int(feature_dim)
        self.duration_type = duration
        self.emission_type = emission
        self.topology = topology
        self.covariance_type = covariance_type
        self.right_censored = bool(right_censored)
        self.duration_floor = float(duration_floor)
        if emission == "gaussian":
            em: nn.Module = GaussianHMM(
                K, feature_dim, covariance_type, min_covar=min_covar, dtype=dtype
            )
        else:
            em = MixtureGaussianHMM(
                K, feature_dim, num_mixtures, covariance_type, min_covar=min_covar, dtype=dtype
            )
        # only the emission parameters of this model are used
        em.start_logits.requires_grad_(False)
        em.trans_logits.requires_grad_(False)
        self.emission = em
        self.default_params = "stdmc" + ("w" if emission == "mixture" else "")
        self.data_init_params = em.data_init_params
        # structure: start, transitions (zero diagonal) and where a sequence may end
        if topology == "left_to_right":
            start = torch.zeros(K, dtype=torch.float64)
            start[0] = 1.0
            trans = torch.zeros(K, K, dtype=torch.float64)
            trans[torch.arange(K - 1), torch.arange(1, K)] = 1.0
            final = torch.zeros(K, dtype=torch.bool)
            final[-1] = True
        else:
            start = torch.full((K,), 1.0 / K, dtype=torch.float64)
            trans = torch.full((K, K), 1.0 / max(1, K - 1), dtype=torch.float64)
            trans.fill_diagonal_(0.0)
            if K == 1:
                trans.zero_()
            final = torch.ones(K, dtype=torch.bool)
        self.start_logits = nn.Parameter(torch.zeros(K, dtype=dtype))
        self.trans_logits = nn.Parameter(torch.zeros(K, K, dtype=dtype))
        self.register_buffer("start_mask", start > 0)
        self.register_buffer("trans_mask", trans > 0)
        self.register_buffer("final_mask", final)
        self._set_start(start)
        self._set_trans(trans)
        # durations
        if duration == "nonparametric":
            self.duration_logits = nn.Parameter(torch.zeros(K, Dm, dtype=dtype))
        elif duration == "poisson":
            self.log_duration_rate = nn.Parameter(torch.zeros(K, dtype=dtype))
        elif duration == "gaussian":
            self.duration_mean = nn.Parameter(torch.zeros(K, dtype=dtype))
            self.log_duration_std = nn.Parameter(torch.zeros(K, dtype=dtype))
        else:
            self.log_duration_shape = nn.Parameter(torch.zeros(K, dtype=dtype))
            self.log_duration_rate = nn.Parameter(torch.zeros(K, dtype=dtype))
        self._init_durations()

    def _config(self) -> dict:
        return {
            "num_states": self.num_states,
            "feature_dim": self.feature_dim,
            "max_duration": self.max_duration,
            "duration": self.duration_type,
            "emission": self.emission_type,
            "covariance_type": self.covariance_type,
            "topology": self.topology,
            "num_mixtures": getattr(self.emission, "num_mixtures", 2),
            "right_censored": self.right_censored,
            "min_covar": self.emission.min_covar,
            "duration_floor": self.duration_floor,
            "dtype": self.dtype,
        }

    # -- parameters -------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.start_logits.dtype

    def _set_start(self, p: torch.Tensor) -> None:
        with torch.no_grad():
            self.start_logits.copy_(
                torch.where(p > 0, p.clamp(min=1e-300).log(), -1e4)
                .clamp(min=-1e4)
                .to(self.start_logits)
            )

    def _set_trans(self, p: torch.Tensor) -> None:
        with torch.no_grad():
            self.trans_logits.copy_(
                torch.where(p > 0, p.clamp(min=1e-300).log(), -1e4)
                .clamp(min=-1e4)
                .to(self.trans_logits)
            )

    def set_startprob(self, startprob: ArrayLike) -> None:
        """Start probabilities (K,); only states the topology allows may be non-zero."""
        p = _probs("startprob", startprob, (self.num_states,))
        if bool(((p > 0) & ~self.start_mask.cpu()).any()):
            raise HMMValueError(
                f"startprob is non-zero where the {self.topology} topology forbids a start"
            )
        self._set_start(p)

    def set_transmat(self, transmat: ArrayLike) -> None:
        """Segment-to-segment transition probabilities (K, K): zero diagonal, rows summing to
        one (or zero for a state with no successor), zero where the topology forbids."""
        K = self.num_states
        p = _probs("transmat", transmat, (K, K), rows_may_be_zero=True)
        if bool((torch.diagonal(p) > 0).any()):
            raise HMMValueError(
                "transmat must have a zero diagonal: a state's stay is its duration"
            )
        if bool(((p > 0) & ~self.trans_mask.cpu()).any()):
            raise HMMValueError(
                f"transmat is non-zero where the {self.topology} topology forbids a move"
            )
        self._set_trans(p)

    def log_initial(self) -> torch.Tensor:
        """Log start probabilities (K,), -inf where the topology forbids."""
        return torch.log_softmax(self.start_logits.masked_fill(~self.start_mask, -math.inf), -1)

    def log_transitions(self) -> torch.Tensor:
        """Log transition matrix (K, K), zero diagonal (-inf), rows normalised; a state with no
        successor (the last of a left-to-right model) has an all -inf row."""
        lg = self.trans_logits.masked_fill(~self.trans_mask, -math.inf)
        out = torch.log_softmax(lg, -1)
        return torch.where(self.trans_mask.any(-1, keepdim=True), out, -math.inf)

    def log_final(self) -> torch.Tensor:
        """(K,): 0 for the states a sequence may end in, -inf elsewhere."""
        z = torch.zeros(self.num_states, dtype=self.dtype, device=self.start_logits.device)
        return z.masked_fill(~self.final_mask, -math.inf)

    @property
    def startprob(self) -> torch.Tensor:
        return self.log_initial().detach().exp()

    @property
    def transmat(self) -> torch.Tensor:
        return self.log_transitions().detach().exp()

    def _duration_grid(self) -> torch.Tensor:
        return torch.arange(
            1, self.max_duration + 1, dtype=self.dtype, device=self.start_logits.device
        )

    def log_durations(self) -> torch.Tensor:
        """Log duration probabilities (K, max_duration): entry d-1 for d frames; rows sum to
        one (parametric families truncated to 1..max_duration and renormalised)."""
        d = self._duration_grid()
        t = self.duration_type
        if t == "nonparametric":
            lg = self.duration_logits
        elif t == "poisson":
            lam = self.log_duration_rate.exp().unsqueeze(-1)
            lg = (d - 1) * lam.log() - torch.lgamma(d)
        elif t == "gaussian":
            std = self.log_duration_std.exp().unsqueeze(-1)
            lg = -0.5 * ((d - self.duration_mean.unsqueeze(-1)) / std) ** 2
        else:
            a = self.log_duration_shape.exp().unsqueeze(-1)
            b = self.log_duration_rate.exp().unsqueeze(-1)
            lg = (a - 1) * d.log() - b * d
        return torch.log_softmax(lg, -1)

    @property
    def durations(self) -> torch.Tensor:
        """Duration probabilities (K, max_duration) (a detached copy)."""
        return self.log_durations().detach().exp()

    def expected_durations(self) -> torch.Tensor:
        """Mean duration of each state in frames (K,)."""
        return (self.durations * self._duration_grid()).sum(-1)

    def _init_durations(self) -> None:
        """A broad start: mean max_duration / 2 (uniform for the table)."""
        Dm = self.max_duration
        d = torch.arange(1, Dm + 1, dtype=torch.float64)
        m = (Dm + 1) / 2.0
        v = max(((d - m) ** 2).mean().item(), 0.25)
        self._set_duration_moments(
            torch.full((self.num_states,), m), torch.full((self.num_states,), v)
        )
        if self.duration_type == "nonparametric":
            with torch.no_grad():
                self.duration_logits.zero_()

    def _set_duration_moments(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Parametric families from a mean and variance of the duration (in frames)."""
        mean = mean.double().clamp(min=1.0)
        var = var.double().clamp(min=1e-2)
        t = self.duration_type
        with torch.no_grad():
            if t == "poisson":
                self.log_duration_rate.copy_((mean - 1).clamp(min=1e-3).log().to(self.dtype))
            elif t == "gaussian":
                self.duration_mean.copy_(mean.to(self.dtype))
                self.log_duration_std.copy_(
                    (0.5 * var.log()).clamp(min=math.log(0.3)).to(self.dtype)
                )
            elif t == "gamma":
                self.log_duration_shape.copy_((mean**2 / var).clamp(min=1e-2).log().to(self.dtype))
                self.log_duration_rate.copy_((mean / var).clamp(min=1e-4).log().to(self.dtype))

    def set_durations(self, durations: ArrayLike) -> None:
        """Set the duration distributions from probabilities (K, max_duration), rows summing to
        one: the table itself (nonparametric) or the family's moment fit (parametric)."""
        p = _probs("durations", durations, (self.num_states, self.max_duration))
        self._durations_from_counts(p)

    def _durations_from_counts(self, counts: torch.Tensor) -> None:
        c = counts.double().cpu()
        tot = c.sum(-1, keepdim=True)
        has = tot.squeeze(-1) > 0
        old = self.durations.double().cpu()
        p = torch.where(tot > 0, c / tot.clamp(min=1e-300), old)
        if self.duration_type == "nonparametric":
            p = p.clamp(min=self.duration_floor)
            p = p / p.sum(-1, keepdim=True)
            with torch.no_grad():
                self.duration_logits.copy_(p.log().to(self.duration_logits))
            return
        d = torch.arange(1, self.max_duration + 1, dtype=torch.float64)
        mean = (p * d).sum(-1)
        var = (p * (d - mean.unsqueeze(-1)) ** 2).sum(-1)
        old_mean = (old * d).sum(-1)
        old_var = (old * (d - old_mean.unsqueeze(-1)) ** 2).sum(-1)
        self._set_duration_moments(torch.where(has, mean, old_mean), torch.where(has, var, old_var))

    # emission parameters, passed through to the emission model
    def set_means(self, means: ArrayLike) -> None:
        self.emission.set_means(means)

    def set_covars(self, covars: ArrayLike) -> None:
        self.emission.set_covars(covars)

    @property
    def means(self) -> torch.Tensor:
        return self.emission.means

    @property
    def covars(self) -> torch.Tensor:
        return self.emission.covars

    # -- the engine's inputs ------------------------------------------------------------------
    def emission_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_t | state k)`` for ``x`` (B, T, D) -> (B, T, K)."""
        return self.emission.emission_log_likelihood(x)

    def _prepare_x(self, x: ArrayLike, lengths: Optional[ArrayLike] = None):
        return self.emission._prepare_x(x, lengths)

    def _em_features(self, x: torch.Tensor):
        return self.emission._em_features(x)

    def _inputs(self, lb: torch.Tensor):
        return (lb, self.log_initial(), self.log_transitions(), self.log_durations())

    def _kw(self):
        return dict(right_censored=self.right_censored, log_final=self.log_final())

    # -- inference ----------------------------------------------------------------------------
    def log_likelihood(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """Log-likelihood of each sequence (B,), differentiable w.r.t. every parameter; -inf
        for a sequence no segmentation can produce (shorter than a left-to-right model's K
        states, say)."""
        x, lengths = self._prepare_x(x, lengths)
        lb = self.emission_log_likelihood(x)
        return core.hsmm_log_likelihood(*self._inputs(lb), lengths, **self._kw())

    def forward(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """``model(x, lengths)`` is the log-likelihood (B,)."""
        return self.log_likelihood(x, lengths)

    def posteriors(
        self, x: ArrayLike, lengths: Optional[ArrayLike] = None
    ) -> core.HSMMPosteriorResult:
        """State posteriors per frame and expected counts, including duration posteriors
        ``duration_counts`` (B, K, max_duration) (per state, for a left-to-right model)."""
        with torch.no_grad():
            x, lengths = self._prepare_x(x, lengths)
            ins = self._inputs(self.emission_log_likelihood(x))
            return core.hsmm_posteriors(*ins, lengths, **self._kw())

    def viterbi(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> core.HSMMViterbiResult:
        """The best segmentation: ``path`` (B, T), ``score`` (B,), ``segments`` (a list of
        (N_b, 3) rows ``[state, start, duration]``), ``valid`` (B,)."""
        with torch.no_grad():
            x, lengths = self._prepare_x(x, lengths)
            ins = self._inputs(self.emission_log_likelihood(x))
            return core.hsmm_viterbi(*ins, lengths, **self._kw())

    def score(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> float:
        """Total log-likelihood of all sequences (a float, as hmmlearn's ``score``)."""
        with torch.no_grad():
            return float(self.log_likelihood(x, lengths).double().sum())

    def decode(self, x: ArrayLike, lengths: Optional[ArrayLike] = None):
        """``(log_prob (B,), states (B, T))`` of the best segmentation."""
        v = self.viterbi(x, lengths)
        return v.score, v.path

    def predict(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """State of each frame on the best segmentation (B, T), -1 on padding."""
        return self.viterbi(x, lengths).path

    def predict_proba(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """State posteriors (B, T, K)."""
        return self.posteriors(x, lengths).state_posteriors

    def nll(self, x: ArrayLike, lengths: Optional[ArrayLike] = None, reduction: str = "frame"):
        """Negative log-likelihood loss for gradient training (see
        :func:`pytorch_hmm.training.nll_loss`)."""
        from ..training.gradient import nll_loss

        return nll_loss(self, x, lengths, reduction)

    # -- EM -----------------------------------------------------------------------------------
    def _auto_init_params(self) -> str:
        return self.emission._auto_init_params()

    def accumulate(
        self, x: ArrayLike, lengths: Optional[ArrayLike] = None, params: Optional[str] = None
    ):
        """The E-step on one batch: :class:`HSMMStats` (statistics of batches add up)."""
        with torch.no_grad():
            x, lengths = self._prepare_x(x, lengths)
            features = self._em_features(x)
        return self._accumulate_prepared(x, lengths, params, features)

    def _accumulate_prepared(self, x, lengths, params=None, features=None):
        params = self.default_params if params is None else params
        with torch.no_grad():
            lb, cache = self.emission._emission_forward(x, features)
            post = core.hsmm_posteriors(*self._inputs(lb), lengths, **self._kw())
            gamma = post.state_posteriors
            em = self.emission._emission_stats(x, gamma, lengths, cache, params)
            return HSMMStats(
                start=post.initial_counts.sum(0),
                trans=post.transition_counts.sum(0),
                durations=post.duration_counts.sum(0),
                emission=em,
                log_likelihood=post.log_likelihood.double().sum(),
                num_frames=lengths.sum(),
                num_sequences=torch.tensor(x.shape[0], device=x.device),
            )

    def _check_parameters(self) -> None:
        if not bool(torch.isfinite(self.log_durations().detach()).all()):
            raise HMMValueError("the duration parameters give non-finite duration probabilities")
        if bool(torch.isnan(self.log_initial().detach()).any()) or bool(
            torch.isnan(self.log_transitions().detach()).any()
        ):
            raise HMMValueError("the start / transition logits give NaN probabilities")
        self.emission._check_parameters()

    def m_step(self, stats: HSMMStats, params: Optional[str] = None) -> HSMM:
        """Update the parameters named in ``params`` ("s" start, "t" transitions, "d"
        durations, "m" means, "c" covariances, "w" mixture weights) from summed statistics.
        Structural zeros stay zero. Returns ``self``. Statistics of another model, with NaN,
        inf or negative counts raise and nothing changes (as :meth:`BaseHMM.m_step
        <pytorch_hmm.models.base.BaseHMM.m_step>`)."""
        from ..training.em import _resolve_params
        from ..training.stats import check_stats

        params = _resolve_params(self, params, "params")
        check_stats(stats, HSMMStats, self.num_states, self.max_duration)
        if stats.emission is not None and any(c in params for c in "mcw"):
            self.emission._check_emission_stats(stats.emission)
        with torch.no_grad(), restore_on_error(self):
            if "s" in params or "t" in params:
                sp, tm = markov_m_step(
                    stats.start.double(),
                    stats.trans.double(),
                    self.start_mask,
                    self.trans_mask,
                    previous=(self.startprob.double(), self.transmat.double()),
                )
                if "s" in params:
                    self._set_start(sp)
                if "t" in params:
                    self._set_trans(tm)
            if "d" in params:
                self._durations_from_counts(stats.durations)
            self.emission._emission_m_step(stats.emission, params)
        return self

    def init_parameters(self, frames, init_params: str, seed=0, kmeans_backend="torch") -> None:
        """Initialise the parameters named in ``init_params``: "s" / "t" uniform over allowed
        entries, "d" broad durations, emission letters from ``frames`` (N, D) (k-means, as
        the HMMs)."""
        with torch.no_grad():
            if "s" in init_params:
                self._set_start(self.start_mask.double() / self.start_mask.double().sum())
            if "t" in init_params:
                m = self.trans_mask.double()
                self._set_trans(m / m.sum(-1, keepdim=True).clamp(min=1))
            if "d" in init_params:
                self._init_durations()
        em_letters = "".join(c for c in init_params if c in "mcw")
        if em_letters:
            self.emission.init_parameters(
                frames, em_letters, seed=seed, kmeans_backend=kmeans_backend
            )

    def _flat_start(self, batches) -> None:
        """Left-to-right models: means and variances from a uniform segmentation of each
        sequence into K parts (the speech toolkits' flat start), so state k starts on the
        k-th part of every utterance rather than on an unordered k-means centre."""
        K = self.num_states
        sums, sq, n = None, None, None
        for x, L in batches:
            T = x.shape[1]
            t = torch.arange(T, device=x.device).unsqueeze(0)
            k = (t * K) // L.unsqueeze(1)  # (B, T) part index
            valid = t < L.unsqueeze(1)
            g = torch.nn.functional.one_hot(k.clamp(max=K - 1), K).to(x.dtype) * valid.unsqueeze(-1)
            s1 = torch.einsum("btk,btd->kd", g, x)
            s2 = torch.einsum("btk,btd->kd", g, x * x)
            c = g.sum((0, 1))
            sums = s1 if sums is None else sums + s1
            sq = s2 if sq is None else sq + s2
            n = c if n is None else n + c
        if n is None or bool((n <= 0).any()):
            return
        mean = sums / n.unsqueeze(-1)
        var = (sq / n.unsqueeze(-1) - mean**2).clamp(min=0) + self.emission.min_covar
        em = self.emission
        if isinstance(em, GaussianHMM):
            em.set_means(mean)
            if self.covariance_type == "diag":
                em.set_covars(var)
            else:
                em.set_covars(torch.diag_embed(var))
        else:  # mixture: every component at its state's mean, split by k-means later
            M = em.num_mixtures
            jitter = (
                0.1
                * var.sqrt().unsqueeze(1)
                * torch.linspace(-1, 1, M, dtype=var.dtype, device=var.device).view(1, M, 1)
            )
            em.set_means(mean.unsqueeze(1) + jitter)
            cv = var.unsqueeze(1).expand(K, M, -1)
            em.set_covars(cv if self.covariance_type == "diag" else torch.diag_embed(cv))
        lens = torch.cat([L for _, L in batches]).double()
        self._set_duration_moments(
            torch.full((K,), float(lens.mean()) / K),
            torch.full(
                (K,), max(1.0, float(lens.var(unbiased=False)) / K + float(lens.mean()) / K)
            ),
        )

    def fit(
        self,
        x: Any,
        lengths: Optional[ArrayLike] = None,
        *,
        n_iter: int = 10,
        tol: float = 1e-2,
        params: Optional[str] = None,
        init_params: Optional[str] = "auto",
        verbose: bool = False,
        distributed: bool = False,
        process_group=None,
        seed: Optional[int] = 0,
        kmeans_backend: str = "torch",
    ) -> HSMM:
        """EM (the semi-Markov Baum-Welch): durations, transitions and emissions re-estimated;
        the same data forms, options and ``all_reduce`` mechanism as :meth:`BaseHMM.fit
        <pytorch_hmm.models.base.BaseHMM.fit>`. ``init_params="auto"`` initialises an untrained
        model: for a left-to-right topology by a flat start (uniform segmentation of each
        sequence), else by k-means. Parametric duration families are re-estimated by moment
        matching of the expected durations. Returns ``self``."""
        with restore_on_error(self, ("log_likelihood_history", "converged", "n_iter_")):
            return self._fit(
                x, lengths, n_iter=n_iter, tol=tol, params=params, init_params=init_params,
                verbose=verbose, distributed=distributed, process_group=process_group, seed=seed,
                kmeans_backend=kmeans_backend,
            )  # fmt: skip

    def _fit(self, x, lengths, *, n_iter, tol, params, init_params, verbose, distributed,
             process_group, seed, kmeans_backend) -> HSMM:  # fmt: skip
        from ..training.em import _resolve_params, batch_source, fit_em

        check_count("n_iter", n_iter, minimum=0)
        _resolve_params(self, params, "params")
        if init_params == "auto":
            init_params = self._auto_init_params()
            if init_params and self.topology == "left_to_right" and not distributed:
                src = batch_source(x, lengths)
                with torch.no_grad():
                    self._flat_start([self._prepare_x(xb, lb) for xb, lb in src()])
                init_params = ""
        return fit_em(
            self,
            x,
            lengths,
            n_iter=n_iter,
            tol=tol,
            params=params,
            init_params=init_params,
            verbose=verbose,
            distributed=distributed,
            process_group=process_group,
            seed=seed,
            kmeans_backend=kmeans_backend,
        )

    # -- generation ---------------------------------------------------------------------------
    def _emit(self, z: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Emission samples (N, T, D) for states ``z`` (N, T) (any value on padding)."""
        em = self.emission
        zc = z.clamp(min=0)
        with torch.no_grad():
            if isinstance(em, GaussianHMM):
                mu = em.means[zc]
                idx: Tuple[torch.Tensor, ...] = (zc,)
            else:
                w = em.weights.double().cpu()[zc.cpu()].reshape(-1, em.num_mixtures)
                comp = torch.multinomial(w, 1, generator=generator).view(zc.shape).to(zc.device)
                mu = em.means[zc, comp]
                idx = (zc, comp)
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            if self.covariance_type == "diag":
                x = mu + eps * em.log_covars.exp().sqrt()[idx]
            else:
                x = mu + (em.scale_tril()[idx] @ eps.unsqueeze(-1)).squeeze(-1)
        return torch.where(z.unsqueeze(-1) >= 0, x, torch.zeros((), dtype=x.dtype, device=x.device))

    def sample_segments(
        self,
        num_sequences: int = 1,
        n_frames: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Draw state paths from the prior: ``(states (N, T), lengths (N,))``, -1 on padding.

        Segments are drawn (state, then duration) until the chain has no successor (the last
        state of a left-to-right model) or ``n_frames`` frames are filled (the last segment is
        then cut short). An ergodic model needs ``n_frames``."""
        if n_frames is None and self.topology != "left_to_right":
            raise HMMValueError("sample: an ergodic HSMM never ends by itself; pass n_frames")
        if n_frames is not None:
            n_frames = check_count("n_frames", n_frames)
        N = check_count("num_sequences", num_sequences)
        p0 = self.startprob.double().cpu()
        A = self.transmat.double().cpu()
        P = self.durations.double().cpu()
        limit = int(n_frames) if n_frames is not None else self.num_states * self.max_duration
        states = torch.full((N, limit), -1, dtype=torch.long)
        pos = torch.zeros(N, dtype=torch.long)
        k = torch.multinomial(p0, N, replacement=True, generator=generator)
        alive = torch.ones(N, dtype=torch.bool)
        t = torch.arange(limit)
        while bool(alive.any()):
            d = torch.multinomial(P[k], 1, generator=generator).squeeze(1) + 1
            end = (pos + d).clamp(max=limit)
            fill = alive.unsqueeze(1) & (t >= pos.unsqueeze(1)) & (t < end.unsqueeze(1))
            states = torch.where(fill, k.unsqueeze(1), states)
            pos = torch.where(alive, end, pos)
            row = A[k]
            has_next = row.sum(-1) > 0
            alive = alive & has_next & (pos < limit)
            nxt = torch.multinomial(
                torch.where(has_next.unsqueeze(1), row, 1.0), 1, generator=generator
            )
            k = torch.where(alive, nxt.squeeze(1), k)
        T = int(pos.max())
        dev = self.start_logits.device
        return states[:, :T].to(dev), pos.to(dev)

    def sample(
        self,
        n_frames: Optional[int] = None,
        num_sequences: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ):
        """Draw data from the model: ``(x (T, D), states (T,))``, or with ``num_sequences=N``
        ``(x (N, T, D), states (N, T), lengths (N,))`` padded (zeros and -1). Without
        ``n_frames`` a left-to-right model draws each sequence's own length (every state once);
        with it, sequences are cut at ``n_frames`` (see :meth:`sample_segments`)."""
        z, L = self.sample_segments(
            1 if num_sequences is None else num_sequences, n_frames, generator
        )
        x = self._emit(z, generator)
        if num_sequences is None:
            return x[0, : int(L[0])], z[0, : int(L[0])]
        return x, z, L

    def generate_sequence(
        self,
        durations: Optional[ArrayLike] = None,
        *,
        sample: bool = False,
        windows=None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """A feature trajectory (T, D) through the states 0..K-1 in order (TTS-style):
        ``durations`` (K,) frames per state, or None for each state's most likely duration
        (``sample=True``: drawn from its distribution); then the emission means repeated
        (a mixture's heaviest component), or the MLPG trajectory with ``windows`` (see
        :meth:`GaussianHMM.generate_sequence <pytorch_hmm.GaussianHMM.generate_sequence>`)."""
        K = self.num_states
        if durations is None:
            P = self.durations.double().cpu()
            if sample:
                d = torch.multinomial(P, 1, generator=generator).squeeze(1) + 1
            else:
                d = P.argmax(-1) + 1
        else:
            d = as_tensor_arg("durations", durations)
            if d.shape != (K,) or d.dtype.is_floating_point and not bool((d == d.round()).all()):
                raise HMMValueError(
                    f"durations must be (K,) = ({K},) whole frame counts, got shape "
                    f"{tuple(d.shape)}"
                )
            d = d.long()
            if (d < 0).any() or int(d.sum()) < 1:
                raise HMMValueError("durations must be >= 0 with a positive sum")
        return self.emission.generate_sequence(d, windows=windows)

    def extra_repr(self) -> str:
        return (
            f"num_states={self.num_states}, feature_dim={self.feature_dim}, "
            f"max_duration={self.max_duration}, duration={self.duration_type!r}, "
            f"emission={self.emission_type!r}, topology={self.topology!r}"
            + (", right_censored=True" if self.right_censored else "")
        )
