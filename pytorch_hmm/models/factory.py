"""``create_speech_hmm``: the seed's one-call constructor for the library's speech models."""

from __future__ import annotations

from typing import Any

import torch

MODEL_TYPES = ("gaussian", "mixture_gaussian", "streaming")
_LATER = ("hsmm", "neural")


def create_speech_hmm(
    num_states: int = 10,
    feature_dim: int = 80,
    model_type: str = "gaussian",
    *,
    covariance_type: str = "diag",
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
):
    """A left-to-right speech model of ``num_states`` states over ``feature_dim`` features.

    ``model_type``:

    - ``"gaussian"``: :class:`~pytorch_hmm.GaussianHMM` (``self_loop`` sets the initial stay
      probability, 0.6 by default);
    - ``"mixture_gaussian"`` (or ``"mixture"``): :class:`~pytorch_hmm.MixtureGaussianHMM`
      (``num_mixtures``, default 2), same topology;
    - ``"streaming"``: :class:`~pytorch_hmm.streaming.StreamingHMMProcessor` over a
      left-to-right Gaussian HMM (its options: ``chunk_size``, ``overlap``, ``max_delay``,
      ``smoothing_lag``, ``feature_extractor``).

    Untrained: call ``fit`` on your features. ``"hsmm"`` and ``"neural"`` are not in this
    release yet and raise ``NotImplementedError``.
    """
    mt = "mixture_gaussian" if model_type == "mixture" else model_type
    if mt in _LATER:
        raise NotImplementedError(
            f"model_type={model_type!r} is not available in this release of pytorch_hmm; "
            f"available: {', '.join(MODEL_TYPES)}"
        )
    if mt not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    from ..streaming.processor import StreamingHMMProcessor, left_to_right_hmm

    if mt == "streaming":
        return StreamingHMMProcessor(
            num_states, feature_dim, covariance_type=covariance_type, dtype=dtype, **kwargs
        )
    self_loop = float(kwargs.pop("self_loop", 0.6))
    if mt == "gaussian":
        if kwargs:
            raise TypeError(f"unexpected options for model_type='gaussian': {sorted(kwargs)}")
        return left_to_right_hmm(num_states, feature_dim, covariance_type, self_loop, dtype)
    from .mixture import MixtureGaussianHMM

    base = left_to_right_hmm(num_states, feature_dim, "diag", self_loop, torch.float64)
    m = kwargs.pop("num_mixtures", 2)
    if kwargs:
        raise TypeError(f"unexpected options for model_type='mixture_gaussian': {sorted(kwargs)}")
    return MixtureGaussianHMM(
        num_states,
        feature_dim,
        num_mixtures=m,
        covariance_type=covariance_type,
        startprob=base.startprob,
        transmat=base.transmat,
        dtype=dtype,
    )
