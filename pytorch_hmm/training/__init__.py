"""Training: Baum-Welch EM as three visible parts (``accumulate`` -> statistics that add up ->
``m_step``), streaming and distributed fits, k-means initialisation, and gradient training
on the negative log-likelihood.

The functional pieces (:func:`gaussian_stats`, :func:`gaussian_m_step`, :func:`mixture_stats`,
:func:`mixture_m_step`, :func:`markov_m_step`, :class:`HMMStats`) work on plain tensors, so any
model built on :mod:`pytorch_hmm.core` posteriors can reuse them.
"""

from .distributed import all_reduce_stats, broadcast_parameters
from .em import as_batch, batch_source, fit_em, pad_sequences
from .gradient import fit_gradient, nll_loss
from .kmeans import KMeansResult, kmeans
from .stats import (
    GaussianStats,
    HMMStats,
    floor_covariances,
    gaussian_m_step,
    gaussian_stats,
    markov_m_step,
    mixture_m_step,
    mixture_responsibilities,
    mixture_stats,
    tie_posteriors,
    tie_transition_counts,
)

__all__ = [
    "GaussianStats",
    "HMMStats",
    "KMeansResult",
    "all_reduce_stats",
    "as_batch",
    "batch_source",
    "broadcast_parameters",
    "fit_em",
    "fit_gradient",
    "floor_covariances",
    "gaussian_m_step",
    "gaussian_stats",
    "kmeans",
    "markov_m_step",
    "mixture_m_step",
    "mixture_responsibilities",
    "mixture_stats",
    "nll_loss",
    "pad_sequences",
    "tie_posteriors",
    "tie_transition_counts",
]
