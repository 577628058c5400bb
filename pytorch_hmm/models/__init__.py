"""Models: each turns its parameters into the engine's inputs (see :mod:`pytorch_hmm.core`)."""

from .base import BaseHMM, HMMPyTorch
from .gaussian import GaussianHMM, diag_gaussian_log_likelihood, full_gaussian_log_likelihood
from .mixture import MixtureGaussianHMM

__all__ = [
    "BaseHMM",
    "GaussianHMM",
    "HMMPyTorch",
    "MixtureGaussianHMM",
    "diag_gaussian_log_likelihood",
    "full_gaussian_log_likelihood",
]
