"""Gaussian HMM: each state emits a multivariate normal (diagonal or full covariance)."""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import HMMTypeError, HMMValueError
from ._common import (  # noqa: F401 (COVARIANCE_TYPES re-exported)
    COVARIANCE_TYPES,
    check_count,
    check_covariance_type,
    check_min_covar,
)
from .base import ArrayLike, BaseHMM, as_tensor_arg


def diag_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor
) -> torch.Tensor:
    """``log N(x | means[k], diag(variances[k]))`` for ``x`` (B, T, D), means and variances
    (K, D) -> (B, T, K). One matrix product (see :func:`_diag_log_density`), no (B, T, K, D)
    temporary."""
    zero = torch.zeros(means.shape[0], dtype=means.dtype, device=means.device)
    return _diag_log_density(x, means, variances.log(), zero)


def full_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor
) -> torch.Tensor:
    """``log N(x | means[k], L_k L_k^T)`` for ``x`` (B, T, D), means (K, D), lower-triangular
    Cholesky factors ``scale_tril`` (K, D, D) -> (B, T, K)."""
    B, T, D = x.shape
    K = means.shape[0]
    diff = x.reshape(1, B * T, D) - means.unsqueeze(1)  # (K, N, D)
    y = torch.linalg.solve_triangular(scale_tril, diff.transpose(1, 2), upper=False)
    maha = (y * y).sum(1)  # (K, N)
    logdet = 2.0 * torch.diagonal(scale_tril, dim1=-2, dim2=-1).log().sum(-1)  # (K,)
    ll = -0.5 * (maha + logdet.unsqueeze(1) + D * math.log(2 * math.pi))
    return ll.t().reshape(B, T, K)


def augment_features(x: torch.Tensor) -> torch.Tensor:
    """``[x^2, x]`` along the last axis, (..., D) -> (..., 2D): what a diagonal Gaussian's
    log-density (and its EM statistics) is linear in."""
    return torch.cat([x * x, x], -1)


def _diag_log_density(
    x: torch.Tensor,
    means: torch.Tensor,
    log_vars: torch.Tensor,
    log_weights: torch.Tensor,
    augmented: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``log w_s + log N(x | means[s], diag(exp(log_vars[s])))`` for ``x`` (..., D), (S, D)
    parameters and (S,) log-weights -> (..., S): matrix products of ``x^2`` and ``x`` with
    ``-prec / 2`` and ``mean * prec``, the constant fused as their bias (no (..., S, D)
    temporary). ``augmented``: ``augment_features(x)`` when already at hand (one product;
    ``x`` is then only read for its shape)."""
    D = x.shape[-1]
    prec = torch.exp(-log_vars)
    bias = log_weights.reshape(-1) - 0.5 * (
        D * math.log(2 * math.pi) + log_vars.sum(-1) + (means * means * prec).sum(-1)
    )
    if augmented is not None:
        w = torch.cat([-0.5 * prec, means * prec], -1)  # (S, 2D)
        out = torch.addmm(bias, augmented.reshape(-1, 2 * D), w.t())
    else:  # two products beat building [x^2, x] (measured: 4.9 vs 7.0 ms at 32000 x 80)
        xf = x.reshape(-1, D)
        out = torch.addmm(bias, xf * xf, (-0.5 * prec).t()).addmm_(xf, (means * prec).t())
    return out.reshape(*x.shape[:-1], -1)


def full_covars_to_raw(c: torch.Tensor, name: str = "covars") -> torch.Tensor:
    """Covariance matrices (..., D, D) (float64) -> the stored form: their Cholesky factors
    with the log of the diagonal. ``HMMValueError`` naming the first bad matrix when one is
    not finite, not symmetric or not positive definite."""
    D = c.shape[-1]

    def where(mask: torch.Tensor) -> str:
        return ", ".join(str(i) for i in torch.nonzero(mask)[0].tolist())

    finite = torch.isfinite(c).all(-1).all(-1)
    if not bool(finite.all()):
        raise HMMValueError(f"{name}[{where(~finite)}] is not finite: covariances must be finite")
    asym = (c - c.transpose(-1, -2)).abs().amax(dim=(-1, -2))
    scale = c.abs().amax(dim=(-1, -2)).clamp(min=1e-300)
    if bool((asym > 1e-6 * scale).any()):
        bad = asym > 1e-6 * scale
        raise HMMValueError(
            f"{name}[{where(bad)}] is not symmetric (largest |C - C^T| "
            f"{float(asym[bad].max()):.3g}); only symmetric positive definite matrices are "
            "covariances"
        )
    L, info = torch.linalg.cholesky_ex(c)
    diag = torch.diagonal(L, dim1=-2, dim2=-1)
    bad = (info != 0) | ~(diag > 0).all(-1) | ~torch.isfinite(diag.log()).all(-1)
    if bool(bad.any()):
        raise HMMValueError(f"{name}[{where(bad)}] is not symmetric positive definite")
    raw = L.clone()
    idx = torch.arange(D)
    raw[..., idx, idx] = diag.log()
    return raw


def check_hmmlearn_model(model, attrs) -> None:
    """``HMMTypeError`` / ``HMMValueError`` unless ``model`` looks like a fitted hmmlearn model
    with the attributes ``attrs`` (``means_``, ...)."""
    if not hasattr(model, "covariance_type") or not hasattr(model, "n_components"):
        raise HMMTypeError(f"model must be an hmmlearn model, got {type(model).__name__}")
    missing = []
    for a in attrs:
        try:
            getattr(model, a)
        except AttributeError:
            missing.append(a)
    if missing:
        raise HMMValueError(
            f"model ({type(model).__name__}) is not fitted: it has no {', '.join(missing)}; "
            "call its fit() (or set those attributes) before converting"
        )


def _data_covariance(frames: torch.Tensor, min_covar: float, covariance_type: str, K: int):
    """hmmlearn's initial covariances: ``cov(frames) + min_covar * I`` for every state, (K, D)
    variances ("diag") or (K, D, D) matrices ("full")."""
    f = frames.double()
    D = f.shape[-1]
    if f.shape[0] > 1:
        cv = torch.cov(f.t()).reshape(D, D)
    else:
        cv = torch.zeros(D, D, dtype=f.dtype)
    cv = cv + min_covar * torch.eye(D, dtype=f.dtype)
    if covariance_type == "diag":
        return torch.diagonal(cv).clamp(min=min_covar).expand(K, D).clone()
    return cv.expand(K, D, D).clone()


def state_durations(model, duration: Union[int, ArrayLike]) -> torch.Tensor:
    """Frames per state (K,) long from ``duration``: (K,) counts, or a total number of frames
    shared among the states in proportion to their expected durations ``1 / (1 - a_kk)``."""
    K = model.num_states
    if isinstance(duration, (int, np.integer)):
        total = int(duration)
        if total < K:
            raise HMMValueError(f"duration={total} frames is shorter than the {K} states")
        stay = torch.diagonal(model.transmat.double()).clamp(max=1 - 1e-6)
        expected = 1.0 / (1.0 - stay)
        d = torch.floor(expected / expected.sum() * total).long().clamp(min=1)
        while int(d.sum()) < total:  # hand out the frames lost to rounding
            d[int(torch.argmax(expected / d))] += 1
        while int(d.sum()) > total:
            d[int(torch.argmax(d))] -= 1
        return d
    d = as_tensor_arg("duration", duration).cpu()
    if (
        d.shape != (K,)
        or (d.dtype.is_floating_point and not bool((d == d.round()).all()))
        or (d < 0).any()
        or int(d.sum()) < 1
    ):
        raise HMMValueError(
            f"duration must be an int or (K,) = ({K},) non-negative whole frame "
            f"counts with a positive sum, got {tuple(d.shape)}"
        )
    return d.long()


def generate_with_durations(
    model, means: torch.Tensor, variances: torch.Tensor, duration, windows=None
) -> torch.Tensor:
    """``means`` (K, D) repeated by the state durations (see :func:`state_durations`), or the
    MLPG trajectory of the static features with ``windows`` and ``variances`` (K, D)."""
    d = state_durations(model, duration).to(means.device)
    with torch.no_grad():
        if windows is None:
            return torch.repeat_interleave(means, d, dim=0)
        from ..speech.mlpg import generate_from_states

        out = generate_from_states(means, variances, d, windows=windows)
        return out.features.squeeze(0) if out.features.dim() == 3 else out.features


def check_gaussian_parameters(model) -> None:
    """``HMMValueError`` unless ``model``'s means are finite and its stored (log-)covariances
    give finite positive variances (Gaussian and mixture models alike)."""
    if not bool(torch.isfinite(model.means.detach()).all()):
        raise HMMValueError("means must be finite")
    if model.covariance_type == "diag":
        v = model.log_covars.detach().exp()
    else:
        v = torch.diagonal(model.scale_tril().detach(), dim1=-2, dim2=-1)
    if not bool((torch.isfinite(v) & (v > 0)).all()):
        raise HMMValueError(
            "the stored (log-)covariances give variances that are not finite and positive "
            f"in {model.means.dtype} (e.g. log-variances beyond the exponent's range)"
        )


class GaussianHMM(BaseHMM):
    """HMM with Gaussian emissions, an ``nn.Module``.

    Parameters are named as in hmmlearn: ``startprob`` (K,), ``transmat`` (K, K), ``means``
    (K, D), ``covars`` ((K, D) for ``"diag"``, (K, D, D) for ``"full"``). Missing ones start
    uniform / zero / one. Zeros in ``startprob`` and ``transmat`` are structural: training
    keeps them zero (left-to-right models stay left-to-right).

    Variances are stored as log-variances (diag) or a Cholesky factor with a log-diagonal
    (full), so gradient training keeps them valid.

    Example::

        hmm = GaussianHMM(3, 13, covariance_type="diag")
        ll = hmm(features)              # (B,) log-likelihood, differentiable
        states = hmm.predict(features)  # (B, T) Viterbi path
    """

    def __init__(
        self,
        num_states: int,
        feature_dim: int,
        covariance_type: str = "diag",
        startprob: Optional[ArrayLike] = None,
        transmat: Optional[ArrayLike] = None,
        means: Optional[ArrayLike] = None,
        covars: Optional[ArrayLike] = None,
        min_covar: float = 1e-3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_covariance_type(covariance_type)
        D = check_count("feature_dim", feature_dim)
        super().__init__(num_states, startprob, transmat, dtype=dtype)
        K = self.num_states
        self.feature_dim = D
        self.covariance_type = covariance_type
        self.min_covar = check_min_covar(min_covar)
        self.means = nn.Parameter(torch.zeros(K, D, dtype=dtype))
        if covariance_type == "diag":
            self.log_covars = nn.Parameter(torch.zeros(K, D, dtype=dtype))
        else:
            self.tril_raw = nn.Parameter(torch.zeros(K, D, D, dtype=dtype))
        if means is not None:
            self.set_means(means)
        if covars is not None:
            self.set_covars(covars)

    def _config(self) -> dict:
        return {
            **super()._config(),
            "feature_dim": self.feature_dim,
            "covariance_type": self.covariance_type,
            "min_covar": self.min_covar,
        }

    # -- parameters -------------------------------------------------------------------------
    def set_means(self, means: ArrayLike) -> None:
        m = as_tensor_arg("means", means)
        if tuple(m.shape) != (self.num_states, self.feature_dim):
            raise HMMValueError(
                f"means must have shape (K, D) = ({self.num_states}, "
                f"{self.feature_dim}), got {tuple(m.shape)}"
            )
        if not torch.isfinite(m).all():
            raise HMMValueError("means must be finite")
        with torch.no_grad():
            self.means.copy_(m.to(self.means))

    def set_covars(self, covars: ArrayLike) -> None:
        """Set covariances: (K, D) variances for "diag", (K, D, D) matrices for "full"."""
        c = as_tensor_arg("covars", covars).to(torch.float64)
        K, D = self.num_states, self.feature_dim
        if self.covariance_type == "diag":
            if tuple(c.shape) != (K, D):
                raise HMMValueError(
                    f"covars for 'diag' must have shape (K, D) = ({K}, {D}), got {tuple(c.shape)}"
                )
            if not ((c > 0) & torch.isfinite(c)).all():
                raise HMMValueError("covars must be positive and finite")
            with torch.no_grad():
                self.log_covars.copy_(c.log().to(self.log_covars))
        else:
            if tuple(c.shape) != (K, D, D):
                raise HMMValueError(
                    f"covars for 'full' must have shape (K, D, D) = ({K}, {D}, {D})"
                    f", got {tuple(c.shape)}"
                )
            raw = full_covars_to_raw(c)
            with torch.no_grad():
                self.tril_raw.copy_(raw.to(self.tril_raw))

    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors of the covariances (K, D, D) (full covariance only)."""
        raw = torch.tril(self.tril_raw, -1)
        return raw + torch.diag_embed(torch.diagonal(self.tril_raw, dim1=-2, dim2=-1).exp())

    @property
    def covars(self) -> torch.Tensor:
        """Covariances: (K, D) variances for "diag", (K, D, D) matrices for "full"."""
        if self.covariance_type == "diag":
            return self.log_covars.detach().exp()
        L = self.scale_tril().detach()
        return L @ L.transpose(-1, -2)

    # -- emissions --------------------------------------------------------------------------
    def _check_features(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.feature_dim:
            raise HMMValueError(
                f"x must have feature_dim={self.feature_dim} features in its last "
                f"axis, got shape {tuple(x.shape)}"
            )

    def emission_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x_t | mean_k, covar_k)`` for ``x`` (B, T, D) -> (B, T, K)."""
        if self.covariance_type == "diag":
            zero = torch.zeros(self.num_states, dtype=x.dtype, device=x.device)
            return _diag_log_density(x, self.means, self.log_covars, zero)
        return full_gaussian_log_likelihood(x, self.means, self.scale_tril())

    # -- EM ---------------------------------------------------------------------------------
    default_params = "stmc"
    data_init_params = "mc"
    #: hmmlearn's GaussianHMM priors (``covars_prior=0`` gives plain maximum likelihood)
    covars_prior = 1e-2
    covars_weight = 1.0
    means_prior = 0.0
    means_weight = 0.0

    def _auto_init_params(self) -> str:
        return "mc" if not bool(self.means.detach().abs().sum() > 0) else ""

    def _check_emission_stats(self, emission) -> None:
        from ..training.stats import check_gaussian_stats

        check_gaussian_stats(
            emission, (self.num_states,), self.feature_dim, self.covariance_type, "stats.emission"
        )

    def _check_parameters(self) -> None:
        super()._check_parameters()
        check_gaussian_parameters(self)

    def _em_features(self, x: torch.Tensor):
        """What EM computes from the features at every iteration and can keep: for diagonal
        covariances, ``[x^2, x]`` in time-major order (T*B, 2D), from which both the emission
        log-likelihoods and the statistics are one matrix product each (and the engine gets
        time-major emissions without a transpose)."""
        if self.covariance_type != "diag":
            return None
        return augment_features(x.transpose(0, 1)).reshape(-1, 2 * x.shape[-1])

    def _emission_forward(self, x, features=None):
        if self.covariance_type == "diag":
            # EM's E-step: the same density as emission_log_likelihood, as one matrix product
            zero = self.means.new_zeros(self.num_states)
            if features is not None:  # time-major [x^2, x]: emissions (B, T, K) as a view
                xt = x.transpose(0, 1)
                lb = _diag_log_density(xt, self.means, self.log_covars, zero, features)
                return lb.transpose(0, 1), features
            return _diag_log_density(x, self.means, self.log_covars, zero), None
        return self.emission_log_likelihood(x), None

    def _emission_stats(self, x, gamma, lengths, cache, params):
        if "m" not in params and "c" not in params:
            return None
        from ..training.stats import diag_stats_from_augmented, gaussian_stats

        if cache is not None:  # time-major [x^2, x]; gamma (B, T, K) is time-major underneath
            g = gamma.transpose(0, 1).reshape(-1, gamma.shape[-1])
            return diag_stats_from_augmented(cache, g.to(cache.dtype))
        # padding is already zero in x (_prepare_x) and in gamma (the engine): no masking
        return gaussian_stats(x, gamma, None, self.covariance_type)

    def _emission_m_step(self, stats, params):
        if stats is None or ("m" not in params and "c" not in params):
            return
        from ..training.stats import gaussian_m_step

        means, covars = gaussian_m_step(
            stats,
            min_covar=self.min_covar,
            covars_prior=self.covars_prior,
            covars_weight=self.covars_weight,
            means_prior=self.means_prior,
            means_weight=self.means_weight,
            means=None if "m" in params else self.means.detach(),
            previous=(self.means.detach(), self.covars),
        )
        if "m" in params:
            self.means.copy_(means.to(self.means))
        if "c" in params:
            self.set_covars(covars)

    def init_parameters(self, frames, init_params, seed=0, kmeans_backend="torch") -> None:
        """As :meth:`BaseHMM.init_parameters`; "m": k-means centres of ``frames`` (N, D); "c":
        the covariance of ``frames`` plus ``min_covar`` on the diagonal, for every state
        (hmmlearn's initialisation)."""
        from ..training.kmeans import kmeans

        if "m" in init_params or "c" in init_params:  # everything checked before any change
            if frames is None:
                raise HMMValueError("initialising means or covariances needs frames")
            frames = frames.to(self.means)
            if "m" in init_params and frames.shape[0] < self.num_states:
                raise HMMValueError(
                    f"x has {frames.shape[0]} frames, fewer than num_states={self.num_states}: "
                    "k-means initialisation needs at least one frame per state"
                )
        super().init_parameters(frames, init_params, seed, kmeans_backend)
        if "m" not in init_params and "c" not in init_params:
            return
        if "m" in init_params:
            centers = kmeans(frames.double(), self.num_states, seed=seed, backend=kmeans_backend)
            self.set_means(centers.centers)
        if "c" in init_params:
            self.set_covars(
                _data_covariance(frames, self.min_covar, self.covariance_type, self.num_states)
            )

    # -- generation -------------------------------------------------------------------------
    def sample(
        self,
        n_frames: int,
        num_sequences: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x, states)`` from the model: (T, D) and (T,) as hmmlearn's ``sample``, or
        (N, T, D) and (N, T) with ``num_sequences=N``."""
        N = 1 if num_sequences is None else check_count("num_sequences", num_sequences)
        z = self.sample_states(n_frames, N, generator=generator)
        with torch.no_grad():
            mu = self.means[z]
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            if self.covariance_type == "diag":
                x = mu + eps * self.log_covars.exp().sqrt()[z]
            else:
                x = mu + (self.scale_tril()[z] @ eps.unsqueeze(-1)).squeeze(-1)
        if num_sequences is None:
            return x[0], z[0]
        return x, z

    def generate_sequence(self, duration: Union[int, ArrayLike], windows=None) -> torch.Tensor:
        """The most likely feature trajectory for given state durations (TTS-style).

        ``duration``: frames per state (K,) (states visited in order 0..K-1, as in a
        left-to-right model), or a total number of frames, shared among the states in
        proportion to their expected durations ``1 / (1 - a_kk)``. Returns (T, D): the state
        means repeated, or, with ``windows`` (e.g. ``pytorch_hmm.speech.mlpg.DELTA_WINDOWS``)
        and features laid out as [static, delta, delta-delta], the MLPG trajectory of the
        static features (T, D / len(windows)).
        """
        variances = (
            self.covars
            if self.covariance_type == "diag"
            else torch.diagonal(self.covars, dim1=-2, dim2=-1)
        )
        return generate_with_durations(self, self.means.detach(), variances, duration, windows)

    # -- hmmlearn interop -------------------------------------------------------------------
    @classmethod
    def from_hmmlearn(cls, model, dtype: torch.dtype = torch.float64) -> GaussianHMM:
        """Build from a fitted ``hmmlearn.hmm.GaussianHMM`` ("diag" or "full")."""
        check_hmmlearn_model(model, ("startprob_", "transmat_", "means_", "covars_"))
        ctype = model.covariance_type
        check_covariance_type(ctype, "model.covariance_type", "other hmmlearn types do not convert")
        K, D = model.means_.shape
        covars = model._covars_ if ctype == "full" else np.diagonal(model.covars_, axis1=1, axis2=2)
        return cls(
            K,
            D,
            ctype,
            startprob=model.startprob_,
            transmat=model.transmat_,
            means=model.means_,
            covars=covars,
            min_covar=model.min_covar,
            dtype=dtype,
        )

    def to_hmmlearn(self):
        """An equivalent ``hmmlearn.hmm.GaussianHMM`` (hmmlearn must be installed)."""
        return self._to_hmmlearn("GaussianHMM", "stmc")

    def extra_repr(self) -> str:
        return (
            f"num_states={self.num_states}, feature_dim={self.feature_dim}, "
            f"covariance_type={self.covariance_type!r}"
        )
