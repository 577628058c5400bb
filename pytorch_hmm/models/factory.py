"""``create_speech_hmm``: the seed's one-call constructor for the library's speech models."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import HMMTypeError, HMMValueError
from ._common import check_count, check_real
from .gaussian import GaussianHMM
from .mixture import MixtureGaussianHMM


def left_to_right_probs(num_states: int, self_loop: float = 0.6):
    """``(startprob (K,), transmat (K, K))`` of a left-to-right chain: start in state 0, each
    state stays with ``self_loop`` or moves to the next, the last one stays."""
    K = check_count("num_states", num_states)
    self_loop = check_real("self_loop", self_loop, low=0.0, high=1.0, low_open=True, high_open=True)
    start = np.zeros(K)
    start[0] = 1.0
    A = np.zeros((K, K))
    for i in range(K - 1):
        A[i, i], A[i, i + 1] = self_loop, 1.0 - self_loop
    A[K - 1, K - 1] = 1.0
    return start, A


def left_to_right_hmm(
    num_states: int,
    feature_dim: int,
    covariance_type: str = "diag",
    self_loop: float = 0.6,
    dtype: torch.dtype = torch.float32,
) -> GaussianHMM:
    """A left-to-right :class:`~pytorch_hmm.GaussianHMM` (see :func:`left_to_right_probs`)."""
    start, A = left_to_right_probs(num_states, self_loop)
    return GaussianHMM(
        int(num_states), feature_dim, covariance_type, startprob=start, transmat=A, dtype=dtype
    )


def _check_options(model_type: str, constructor, kwargs) -> None:
    """``HMMTypeError`` naming the options ``constructor`` does not take (the factory's own
    arguments excluded)."""
    import inspect

    own = {"self", "num_states", "num_symbols", "feature_dim", "model", "covariance_type",
           "dtype"}  # fmt: skip
    allowed = set(inspect.signature(constructor).parameters) - own
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise HMMTypeError(
            f"unexpected options for model_type={model_type!r}: {bad}; allowed: {sorted(allowed)}"
        )


MODEL_TYPES = ("gaussian", "mixture_gaussian", "hsmm", "streaming", "neural")


def create_speech_hmm(
    num_states: int = 10,
    feature_dim: int = 80,
    model_type: str = "gaussian",
    *,
    topology: str = "left_to_right",
    covariance_type: str = "diag",
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """A speech model of ``num_states`` states over ``feature_dim`` features.

    ``model_type``:

    - ``"gaussian"``: :class:`~pytorch_hmm.GaussianHMM` (``self_loop`` sets the initial stay
      probability, 0.6 by default);
    - ``"mixture_gaussian"`` (or ``"mixture"``): :class:`~pytorch_hmm.MixtureGaussianHMM`
      (``num_mixtures``, default 2), same topology;
    - ``"hsmm"``: :class:`~pytorch_hmm.HSMM` with explicit durations (``max_duration``,
      default 20; ``duration``, ``emission``, ``num_mixtures``, ``right_censored``);
    - ``"streaming"``: :class:`~pytorch_hmm.streaming.StreamingHMMProcessor` over a
      left-to-right Gaussian HMM (its options: ``chunk_size``, ``overlap``, ``max_delay``,
      ``smoothing_lag``, ``feature_extractor``).

    - ``"neural"``: :class:`~pytorch_hmm.NeuralHMM`, neural HMM TTS over symbol sequences
      (its states come from each utterance's symbols, ``states_per_phone`` per symbol, so
      ``num_states`` is read as the size of the symbol inventory unless ``num_symbols`` is
      given; ``hidden_dim``, ``encoder``, ``autoregressive``, ...). It is trained by
      gradient descent on :meth:`~pytorch_hmm.NeuralHMM.loss`, not by ``fit``.

    Untrained: call ``fit`` on your features. ``topology`` is ``"left_to_right"`` (the default
    for speech) or ``"ergodic"``.
    """
    mt = "mixture_gaussian" if model_type == "mixture" else model_type
    if not isinstance(mt, str) or mt not in MODEL_TYPES:
        raise HMMValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if not isinstance(topology, str) or topology not in ("left_to_right", "ergodic"):
        raise HMMValueError(f"topology must be 'left_to_right' or 'ergodic', got {topology!r}")
    from ..streaming.processor import StreamingHMMProcessor

    if mt == "neural":
        from .neural import NeuralHMM

        if topology != "left_to_right":
            raise HMMValueError("model_type='neural' is left-to-right over its symbols only")
        num_symbols = kwargs.pop("num_symbols", num_states)
        _check_options("neural", NeuralHMM.__init__, kwargs)
        return NeuralHMM(num_symbols, feature_dim, dtype=dtype, **kwargs)
    if mt == "hsmm":
        from .hsmm import HSMM

        allowed = {"max_duration", "duration", "emission", "num_mixtures", "right_censored",
                   "min_covar"}  # fmt: skip
        bad = sorted(set(kwargs) - allowed)
        if bad:
            raise HMMTypeError(
                f"unexpected options for model_type='hsmm': {bad}; allowed: {sorted(allowed)}"
            )
        return HSMM(
            num_states,
            feature_dim,
            kwargs.pop("max_duration", 20),
            covariance_type=covariance_type,
            topology=topology,
            dtype=dtype,
            **kwargs,
        )
    self_loop = check_real(
        "self_loop", kwargs.pop("self_loop", 0.6), low=0.0, high=1.0, low_open=True, high_open=True
    )
    check_count("num_states", num_states)
    check_count("feature_dim", feature_dim)
    if topology == "ergodic":  # uniform start and transitions, as GaussianHMM's defaults
        start, A = None, None
    else:
        start, A = left_to_right_probs(num_states, self_loop)
    if mt == "streaming":
        _check_options("streaming", StreamingHMMProcessor.__init__, kwargs)
        model = None
        if topology == "ergodic":
            model = GaussianHMM(num_states, feature_dim, covariance_type, dtype=dtype)
        return StreamingHMMProcessor(
            num_states,
            feature_dim,
            model=model,
            covariance_type=covariance_type,
            dtype=dtype,
            **kwargs,
        )
    if mt == "gaussian":
        if kwargs:
            raise HMMTypeError(f"unexpected options for model_type='gaussian': {sorted(kwargs)}")
        return GaussianHMM(
            num_states, feature_dim, covariance_type, startprob=start, transmat=A, dtype=dtype
        )
    m = kwargs.pop("num_mixtures", 2)
    if kwargs:
        raise HMMTypeError(
            f"unexpected options for model_type='mixture_gaussian': {sorted(kwargs)}"
        )
    return MixtureGaussianHMM(
        num_states,
        feature_dim,
        num_mixtures=m,
        covariance_type=covariance_type,
        startprob=start,
        transmat=A,
        dtype=dtype,
    )
