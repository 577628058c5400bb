"""Evaluation metrics for speech HMMs: MCD, F0, durations, alignment accuracy.

Every metric takes batch-first tensors with optional ``lengths`` and returns a NamedTuple with
per-utterance ``(B,)`` values and batch-pooled figures; the formulas are in each docstring.
"""

from .alignment import (
    DEFAULT_TOLERANCES,
    BoundaryAccuracy,
    FrameAccuracy,
    boundary_accuracy,
    boundary_times,
    frame_accuracy,
)
from .dtw import DTWResult, dtw
from .duration import DurationMetrics, duration_metrics
from .f0 import F0Metrics, f0_metrics
from .spectral import MCD_CONSTANT, MCDResult, mel_cepstral_distortion

__all__ = [
    "DEFAULT_TOLERANCES",
    "MCD_CONSTANT",
    "BoundaryAccuracy",
    "DTWResult",
    "DurationMetrics",
    "F0Metrics",
    "FrameAccuracy",
    "MCDResult",
    "boundary_accuracy",
    "boundary_times",
    "dtw",
    "duration_metrics",
    "f0_metrics",
    "frame_accuracy",
    "mel_cepstral_distortion",
]
