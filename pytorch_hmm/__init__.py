"""pytorch_hmm: batched, differentiable hidden Markov models for speech."""

__version__ = "0.1.0"
