"""The inference engine: pure functions over tensors, shared by every model.

See :mod:`pytorch_hmm.core.inference` for the input conventions and
:mod:`pytorch_hmm.core.backend` for the choice between compiled CPU kernels and torch code.
"""

from .backend import default_backend, resolve_backend, use_backend
from .inference import (
    ForwardCarry,
    ForwardResult,
    NoValidPathError,
    PosteriorResult,
    ViterbiCarry,
    ViterbiResult,
    backward,
    forward,
    log_likelihood,
    posteriors,
    sample_posterior,
    viterbi,
)
from .semimarkov import (
    HSMMPosteriorResult,
    HSMMViterbiResult,
    hsmm_log_likelihood,
    hsmm_posteriors,
    hsmm_viterbi,
)
from .transitions import Transitions, find_band, make_transitions

__all__ = [
    "ForwardCarry",
    "HSMMPosteriorResult",
    "HSMMViterbiResult",
    "ForwardResult",
    "NoValidPathError",
    "PosteriorResult",
    "Transitions",
    "ViterbiCarry",
    "ViterbiResult",
    "backward",
    "default_backend",
    "find_band",
    "forward",
    "hsmm_log_likelihood",
    "hsmm_posteriors",
    "hsmm_viterbi",
    "log_likelihood",
    "make_transitions",
    "posteriors",
    "resolve_backend",
    "sample_posterior",
    "use_backend",
    "viterbi",
]
