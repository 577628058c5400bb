"""Speech front end and TTS parameter generation: features, MLPG, duration model."""

from .duration import DurationModel, DurationPrediction
from .features import (
    MFCC,
    Features,
    LogMelSpectrogram,
    add_deltas,
    cmvn,
    deltas,
    frame_lengths,
    load_audio,
    log_mel_spectrogram,
    mfcc,
)
from .mlpg import (
    DELTA_WINDOWS,
    ExpandedSequence,
    GeneratedSequence,
    expand_by_durations,
    generate_from_states,
    mlpg,
)

__all__ = [
    "DELTA_WINDOWS",
    "MFCC",
    "DurationModel",
    "DurationPrediction",
    "ExpandedSequence",
    "Features",
    "GeneratedSequence",
    "LogMelSpectrogram",
    "add_deltas",
    "cmvn",
    "deltas",
    "expand_by_durations",
    "frame_lengths",
    "generate_from_states",
    "load_audio",
    "log_mel_spectrogram",
    "mfcc",
    "mlpg",
]
