"""Models: each turns its parameters into the engine's inputs (see :mod:`pytorch_hmm.core`)."""

from .base import BaseHMM, HMMPyTorch
from .factory import create_speech_hmm
from .gaussian import GaussianHMM, diag_gaussian_log_likelihood, full_gaussian_log_likelihood
from .hsmm import HSMM, HSMMStats
from .mixture import MixtureGaussianHMM
from .neural import NeuralHMM

__all__ = [
    "BaseHMM",
    "GaussianHMM",
    "HMMPyTorch",
    "HSMM",
    "HSMMStats",
    "MixtureGaussianHMM",
    "NeuralHMM",
    "create_speech_hmm",
    "diag_gaussian_log_likelihood",
    "full_gaussian_log_likelihood",
]
