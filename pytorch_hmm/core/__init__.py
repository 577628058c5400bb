"""The inference engine: pure functions over tensors, shared by every model.

See :mod:`pytorch_hmm.core.inference` for the input conventions.
"""

from .inference import (
    ForwardResult,
    PosteriorResult,
    ViterbiResult,
    backward,
    forward,
    log_likelihood,
    posteriors,
    sample_posterior,
    viterbi,
)
from .transitions import Transitions, find_band, make_transitions

__all__ = [
    "ForwardResult",
    "PosteriorResult",
    "ViterbiResult",
    "Transitions",
    "backward",
    "find_band",
    "forward",
    "log_likelihood",
    "make_transitions",
    "posteriors",
    "sample_posterior",
    "viterbi",
]
