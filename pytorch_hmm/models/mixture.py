"""GMM-HMM: each state emits a mixture of M Gaussians (diagonal or full covariance)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import HMMValueError
from ._common import check_count, check_covariance_type, check_min_covar
from .base import ArrayLike, BaseHMM, as_tensor_arg
from .gaussian import (
    _data_covariance,
    _diag_log_density,
    check_gaussian_parameters,
    check_hmmlearn_model,
    full_covars_to_raw,
    full_gaussian_log_likelihood,
    generate_with_durations,
)

COVARIANCE_CENTERS = ("new", "previous")


class MixtureGaussianHMM(BaseHMM):
    """HMM whose states emit Gaussian mixtures, an ``nn.Module``:
    ``log p(x | k) = logsumexp_m (log w_km + log N(x | mu_km, Sigma_km))``.

    Parameters (hmmlearn's ``GMMHMM`` names): ``startprob`` (K,), ``transmat`` (K, K),
    ``weights`` (K, M), ``means`` (K, M, D), ``covars`` ((K, M, D) for "diag", (K, M, D, D) for
    "full"). Stored unconstrained (weight logits, log-variances or a Cholesky factor with a
    log-diagonal), so gradient training keeps them valid; zeros of ``startprob`` /
    ``transmat`` are structural.

    EM (``fit``, ``accumulate``, ``m_step``) trains "s", "t", "m", "c" and "w" (weights).
    ``covariance_center``: "new" (default) computes the covariances around the new means
    (maximum likelihood); "previous" around the means before the update, as hmmlearn's
    ``GMMHMM`` does (use it to reproduce hmmlearn exactly). Degenerate components (no
    occupancy) are re-seeded by splitting the heaviest component of their state; the variance
    floor is ``min_covar``.
    """

    default_params = "stmcw"
    data_init_params = "mcw"
    weights_prior = 1.0
    covars_prior = 0.0
    covars_weight = 1.0
    means_prior = 0.0
    means_weight = 0.0

    def __init__(
        self,
        num_states: int,
        feature_dim: int,
        num_mixtures: int = 2,
        covariance_type: str = "diag",
        startprob: Optional[ArrayLike] = None,
        transmat: Optional[ArrayLike] = None,
        weights: Optional[ArrayLike] = None,
        means: Optional[ArrayLike] = None,
        covars: Optional[ArrayLike] = None,
        min_covar: float = 1e-3,
        covariance_center: str = "new",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_covariance_type(covariance_type)
        if covariance_center not in COVARIANCE_CENTERS:
            raise HMMValueError(
                f"covariance_center must be one of {COVARIANCE_CENTERS}, got {covariance_center!r}"
            )
        D = check_count("feature_dim", feature_dim)
        M = check_count("num_mixtures", num_mixtures)
        super().__init__(num_states, startprob, transmat, dtype=dtype)
        K = self.num_states
        self.feature_dim, self.num_mixtures = D, M
        self.covariance_type = covariance_type
        self.covariance_center = covariance_center
        self.min_covar = check_min_covar(min_covar)
        self.weight_logits = nn.Parameter(torch.zeros(K, M, dtype=dtype))
        self.means = nn.Parameter(torch.zeros(K, M, D, dtype=dtype))
        if covariance_type == "diag":
            self.log_covars = nn.Parameter(torch.zeros(K, M, D, dtype=dtype))
        else:
            self.tril_raw = nn.Parameter(torch.zeros(K, M, D, D, dtype=dtype))
        if weights is not None:
            self.set_weights(weights)
        if means is not None:
            self.set_means(means)
        if covars is not None:
            self.set_covars(covars)

    def _config(self) -> dict:
        return {
            **super()._config(),
            "feature_dim": self.feature_dim,
            "num_mixtures": self.num_mixtures,
            "covariance_type": self.covariance_type,
            "min_covar": self.min_covar,
            "covariance_center": self.covariance_center,
        }

    # -- parameters -------------------------------------------------------------------------
    def set_weights(self, weights: ArrayLike) -> None:
        """Mixture weights (K, M), rows summing to one."""
        w = as_tensor_arg("weights", weights).to(torch.float64)
        K, M = self.num_states, self.num_mixtures
        if tuple(w.shape) != (K, M):
            raise HMMValueError(
                f"weights must have shape (K, M) = ({K}, {M}), got {tuple(w.shape)}"
            )
        if not torch.isfinite(w).all() or (w < 0).any():
            raise HMMValueError("weights must be finite and >= 0")
        if not torch.allclose(w.sum(-1), torch.ones(K, dtype=w.dtype), atol=1e-6):
            raise HMMValueError("weights rows must sum to one")
        with torch.no_grad():
            self.weight_logits.copy_(
                w.clamp(min=1e-300).log().clamp(min=-1e4).to(self.weight_logits)
            )

    def set_means(self, means: ArrayLike) -> None:
        m = as_tensor_arg("means", means)
        shape = (self.num_states, self.num_mixtures, self.feature_dim)
        if tuple(m.shape) != shape:
            raise HMMValueError(f"means must have shape (K, M, D) = {shape}, got {tuple(m.shape)}")
        if not torch.isfinite(m).all():
            raise HMMValueError("means must be finite")
        with torch.no_grad():
            self.means.copy_(m.to(self.means))

    def set_covars(self, covars: ArrayLike) -> None:
        """Covariances: (K, M, D) variances for "diag", (K, M, D, D) matrices for "full"."""
        c = as_tensor_arg("covars", covars).to(torch.float64)
        K, M, D = self.num_states, self.num_mixtures, self.feature_dim
        if self.covariance_type == "diag":
            if tuple(c.shape) != (K, M, D):
                raise HMMValueError(
                    f"covars for 'diag' must have shape (K, M, D) = ({K}, {M}, {D}), "
                    f"got {tuple(c.shape)}"
                )
            if not ((c > 0) & torch.isfinite(c)).all():
                raise HMMValueError("covars must be positive and finite")
            with torch.no_grad():
                self.log_covars.copy_(c.log().to(self.log_covars))
            return
        if tuple(c.shape) != (K, M, D, D):
            raise HMMValueError(
                f"covars for 'full' must have shape (K, M, D, D) = ({K}, {M}, {D}, {D}), "
                f"got {tuple(c.shape)}"
            )
        raw = full_covars_to_raw(c)
        with torch.no_grad():
            self.tril_raw.copy_(raw.to(self.tril_raw))

    def log_weights(self) -> torch.Tensor:
        """Log mixture weights (K, M)."""
        return torch.log_softmax(self.weight_logits, -1)

    @property
    def weights(self) -> torch.Tensor:
        return self.log_weights().detach().exp()

    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors (K, M, D, D) (full covariance only)."""
        raw = torch.tril(self.tril_raw, -1)
        return raw + torch.diag_embed(torch.diagonal(self.tril_raw, dim1=-2, dim2=-1).exp())

    @property
    def covars(self) -> torch.Tensor:
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

    def component_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``log w_km + log N(x_t | mu_km, Sigma_km)`` for ``x`` (B, T, D) -> (B, T, K, M);
        every component of every state in one matrix product (diag)."""
        K, M, D = self.num_states, self.num_mixtures, self.feature_dim
        mu = self.means.reshape(K * M, D)
        if self.covariance_type == "diag":
            ll = _diag_log_density(x, mu, self.log_covars.reshape(K * M, D), self.log_weights())
            return ll.reshape(*x.shape[:-1], K, M)
        ll = full_gaussian_log_likelihood(x, mu, self.scale_tril().reshape(K * M, D, D))
        return ll.reshape(*x.shape[:-1], K, M) + self.log_weights()

    def emission_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_t | z_t = k)`` (B, T, K): log-sum-exp over the mixture components."""
        return torch.logsumexp(self.component_log_likelihood(x), -1)

    # -- EM ---------------------------------------------------------------------------------
    def _auto_init_params(self) -> str:
        return "mcw" if not bool(self.means.detach().abs().sum() > 0) else ""

    def _check_emission_stats(self, emission) -> None:
        from ..training.stats import check_gaussian_stats

        check_gaussian_stats(
            emission,
            (self.num_states, self.num_mixtures),
            self.feature_dim,
            self.covariance_type,
            "stats.emission",
        )

    def _check_parameters(self) -> None:
        super()._check_parameters()
        check_gaussian_parameters(self)
        if not bool(torch.isfinite(self.log_weights().detach()).all()):
            raise HMMValueError("the weight logits give non-finite mixture weights")

    def _emission_forward(self, x, features=None):
        comp = self.component_log_likelihood(x)
        return torch.logsumexp(comp, -1), comp

    def _emission_stats(self, x, gamma, lengths, cache, params):
        if not any(c in params for c in "mcw"):
            return None
        from ..training.stats import mixture_stats

        if cache is None:
            comp = self.component_log_likelihood(x)
            lse = torch.logsumexp(comp, -1)
        else:
            comp = cache  # no longer needed afterwards: overwritten in place
            lse = torch.logsumexp(comp, -1)
        # responsibilities gamma * softmax_m, in place: one exp pass over (B, T, K, M)
        lse = torch.where(torch.isfinite(lse), lse, torch.zeros((), dtype=lse.dtype))
        resp = comp.sub_(lse.unsqueeze(-1)).exp_().mul_(gamma.unsqueeze(-1))
        # padding is already zero in x (_prepare_x) and in gamma (the engine): no masking
        return mixture_stats(x, None, None, None, self.covariance_type, responsibilities=resp)

    def _emission_m_step(self, stats, params):
        if stats is None or not any(c in params for c in "mcw"):
            return
        from ..training.stats import mixture_m_step

        old_means = self.means.detach().clone()
        weights, means, covars, _ = mixture_m_step(
            stats,
            min_covar=self.min_covar,
            weights_prior=self.weights_prior,
            covars_prior=self.covars_prior,
            covars_weight=self.covars_weight,
            means_prior=self.means_prior,
            means_weight=self.means_weight,
            means=None if "m" in params else old_means,
            center=old_means if self.covariance_center == "previous" else None,
            previous=(self.weights, old_means, self.covars),
        )
        if "w" in params:
            self.set_weights(weights / weights.sum(-1, keepdim=True))
        if "m" in params:
            self.means.copy_(means.to(self.means))
        if "c" in params:
            self.set_covars(covars)

    def init_parameters(self, frames, init_params, seed=0, kmeans_backend="torch") -> None:
        """As :meth:`BaseHMM.init_parameters`; "m": k-means into K clusters, then each
        cluster's frames into M (a cluster with fewer than M frames takes random frames of the
        data); "c": the data covariance plus ``min_covar``; "w": uniform weights."""
        from ..training.kmeans import kmeans

        K, M, D = self.num_states, self.num_mixtures, self.feature_dim
        if "m" in init_params or "c" in init_params:  # everything checked before any change
            if frames is None:
                raise HMMValueError("initialising means or covariances needs frames")
            if "m" in init_params and frames.shape[0] < K:
                raise HMMValueError(
                    f"x has {frames.shape[0]} frames, fewer than num_states={K}: "
                    "k-means initialisation needs at least one frame per state"
                )
        super().init_parameters(frames, init_params, seed, kmeans_backend)
        if "w" in init_params:
            self.set_weights(torch.full((K, M), 1.0 / M, dtype=torch.float64))
        if "m" not in init_params and "c" not in init_params:
            return
        f = frames.double()
        if "m" in init_params:
            top = kmeans(f, K, seed=seed, backend=kmeans_backend)
            g = torch.Generator().manual_seed(0 if seed is None else int(seed))
            means = torch.empty(K, M, D, dtype=torch.float64)
            for k in range(K):
                fk = f[top.labels.cpu() == k]
                if fk.shape[0] >= M:
                    means[k] = kmeans(fk, M, seed=seed, backend=kmeans_backend).centers
                else:
                    means[k] = f[torch.randint(f.shape[0], (M,), generator=g)]
            self.set_means(means)
        if "c" in init_params:
            cv = _data_covariance(f, self.min_covar, self.covariance_type, K)
            self.set_covars(cv.unsqueeze(1).expand(K, M, *cv.shape[1:]).clone())

    # -- generation -------------------------------------------------------------------------
    def sample(
        self,
        n_frames: int,
        num_sequences: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x, states)``: (T, D) and (T,), or (N, T, D) and (N, T) with
        ``num_sequences=N``."""
        N = 1 if num_sequences is None else check_count("num_sequences", num_sequences)
        z = self.sample_states(n_frames, N, generator=generator)
        with torch.no_grad():
            w = self.weights.double().cpu()[z.cpu()].reshape(-1, self.num_mixtures)
            comp = torch.multinomial(w, 1, generator=generator).view(z.shape).to(z.device)
            mu = self.means[z, comp]
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            if self.covariance_type == "diag":
                x = mu + eps * self.log_covars.exp().sqrt()[z, comp]
            else:
                x = mu + (self.scale_tril()[z, comp] @ eps.unsqueeze(-1)).squeeze(-1)
        if num_sequences is None:
            return x[0], z[0]
        return x, z

    def generate_sequence(self, duration: Union[int, ArrayLike], windows=None) -> torch.Tensor:
        """A feature trajectory for given state durations (TTS-style), as
        :meth:`GaussianHMM.generate_sequence <pytorch_hmm.GaussianHMM.generate_sequence>`,
        from each state's most heavily weighted component (its mean, and its variances for
        MLPG with ``windows``): a sharp trajectory where a mixture mean would blur."""
        top = self.weights.argmax(-1)
        k = torch.arange(self.num_states, device=top.device)
        variances = self.covars[k, top]
        if self.covariance_type != "diag":
            variances = torch.diagonal(variances, dim1=-2, dim2=-1)
        means = self.means.detach()[k, top]
        return generate_with_durations(self, means, variances, duration, windows)

    # -- hmmlearn interop -------------------------------------------------------------------
    @classmethod
    def from_hmmlearn(
        cls, model, dtype: torch.dtype = torch.float64, covariance_center: str = "previous"
    ) -> MixtureGaussianHMM:
        """Build from an ``hmmlearn.hmm.GMMHMM`` ("diag" or "full"); by default with
        ``covariance_center="previous"``, so that EM continues exactly as hmmlearn's."""
        check_hmmlearn_model(model, ("startprob_", "transmat_", "weights_", "means_", "covars_"))
        ctype = model.covariance_type
        check_covariance_type(ctype, "model.covariance_type", "other hmmlearn types do not convert")
        K, M, D = np.asarray(model.means_).shape
        return cls(
            K,
            D,
            M,
            ctype,
            startprob=model.startprob_,
            transmat=model.transmat_,
            weights=model.weights_,
            means=model.means_,
            covars=model.covars_,
            min_covar=model.min_covar,
            covariance_center=covariance_center,
            dtype=dtype,
        )

    def to_hmmlearn(self):
        """An equivalent ``hmmlearn.hmm.GMMHMM`` (hmmlearn must be installed)."""
        m = self._to_hmmlearn("GMMHMM", "stmcw", n_mix=self.num_mixtures)
        m.weights_ = self.weights.double().cpu().numpy()
        return m

    def extra_repr(self) -> str:
        return (
            f"num_states={self.num_states}, feature_dim={self.feature_dim}, "
            f"num_mixtures={self.num_mixtures}, covariance_type={self.covariance_type!r}"
        )
