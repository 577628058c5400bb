"""pytorch_hmm: batched, differentiable hidden Markov models for speech.

Layout (each part in the folder of its name):

- ``pytorch_hmm.core``: the inference engine (forward, backward, posteriors, Viterbi,
  sampling) as pure functions over emission log-likelihoods (B, T, K).
- ``pytorch_hmm.models``: models that produce the engine's inputs (GaussianHMM, HMMPyTorch, ...).
- ``pytorch_hmm.streaming``: online decoding chunk after chunk (StreamingHMMProcessor).
- ``pytorch_hmm.training``: Baum-Welch EM with additive (distributable) statistics.
- ``pytorch_hmm.alignment``: DTW, soft-DTW, CTC alignment, monotonic alignment search,
  phone-level HMM forced alignment.
- ``pytorch_hmm.speech``: features (log-mel, MFCC), MLPG parameter generation, durations.
- ``pytorch_hmm.metrics``: MCD, F0 RMSE, duration and alignment accuracy.
- ``pytorch_hmm.io``: HTK ``.lab`` and Praat TextGrid readers and writers.
- ``pytorch_hmm.export``: TorchScript and ONNX export of scoring, Viterbi, the streaming step.
- ``pytorch_hmm.plot``: pictures of alignments and training curves (matplotlib, optional).

Names below are imported on first use, so ``import pytorch_hmm`` stays light and optional
dependencies (librosa, soundfile, praatio, numba) load only when a feature needs them.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

__version__ = "0.1.0"

_EXPORTS: Dict[str, str] = {
    # errors: every complaint about bad input is one of these
    "HMMError": "pytorch_hmm.errors",
    "HMMValueError": "pytorch_hmm.errors",
    "HMMTypeError": "pytorch_hmm.errors",
    # engine
    "forward": "pytorch_hmm.core",
    "backward": "pytorch_hmm.core",
    "log_likelihood": "pytorch_hmm.core",
    "posteriors": "pytorch_hmm.core",
    "viterbi": "pytorch_hmm.core",
    "sample_posterior": "pytorch_hmm.core",
    "hsmm_log_likelihood": "pytorch_hmm.core",
    "hsmm_posteriors": "pytorch_hmm.core",
    "hsmm_viterbi": "pytorch_hmm.core",
    # models
    "BaseHMM": "pytorch_hmm.models",
    "GaussianHMM": "pytorch_hmm.models",
    "HMMPyTorch": "pytorch_hmm.models",
    "HSMM": "pytorch_hmm.models",
    "NeuralHMM": "pytorch_hmm.models",
    "MixtureGaussianHMM": "pytorch_hmm.models",
    "create_speech_hmm": "pytorch_hmm.models",
    # streaming
    "StreamingHMMProcessor": "pytorch_hmm.streaming",
    # training
    "HMMStats": "pytorch_hmm.training",
    "GaussianStats": "pytorch_hmm.training",
    "gaussian_stats": "pytorch_hmm.training",
    "gaussian_m_step": "pytorch_hmm.training",
    "kmeans": "pytorch_hmm.training",
    "fit_gradient": "pytorch_hmm.training",
    "nll_loss": "pytorch_hmm.training",
    # alignment
    "DTWAligner": "pytorch_hmm.alignment",
    "DTWResult": "pytorch_hmm.alignment",
    "dtw_align": "pytorch_hmm.alignment",
    "SoftDTW": "pytorch_hmm.alignment",
    "soft_dtw_distance": "pytorch_hmm.alignment",
    "soft_dtw_cost": "pytorch_hmm.alignment",
    "CTCAligner": "pytorch_hmm.alignment",
    "CTCAlignment": "pytorch_hmm.alignment",
    "ctc_forced_align": "pytorch_hmm.alignment",
    "monotonic_alignment_search": "pytorch_hmm.alignment",
    "MASResult": "pytorch_hmm.alignment",
    "ForcedAligner": "pytorch_hmm.alignment",
    "AlignerConfig": "pytorch_hmm.alignment",
    "UtteranceAlignment": "pytorch_hmm.alignment",
    "read_lexicon": "pytorch_hmm.alignment",
    # speech
    "mlpg": "pytorch_hmm.speech",
    "generate_from_states": "pytorch_hmm.speech",
    "expand_by_durations": "pytorch_hmm.speech",
    "MFCC": "pytorch_hmm.speech",
    "LogMelSpectrogram": "pytorch_hmm.speech",
    "load_audio": "pytorch_hmm.speech",
    "DurationModel": "pytorch_hmm.speech",
    # metrics
    "mel_cepstral_distortion": "pytorch_hmm.metrics",
    "f0_metrics": "pytorch_hmm.metrics",
    "duration_metrics": "pytorch_hmm.metrics",
    "frame_accuracy": "pytorch_hmm.metrics",
    "boundary_accuracy": "pytorch_hmm.metrics",
    # io
    "read_lab": "pytorch_hmm.io",
    "write_lab": "pytorch_hmm.io",
    "read_textgrid": "pytorch_hmm.io",
    "write_textgrid": "pytorch_hmm.io",
    "load": "pytorch_hmm.io.model_file",
    # pictures (matplotlib, loaded on the first call)
    "plot_alignment": "pytorch_hmm.plot",
    "plot_training_curve": "pytorch_hmm.plot",
    # export (TorchScript / ONNX)
    "to_onnx": "pytorch_hmm.export",
    "to_torchscript": "pytorch_hmm.export",
    # tooling
    "run_quick_test": "pytorch_hmm.quick_test",
    "run_comprehensive_benchmark": "pytorch_hmm.benchmark",
}
_SUBMODULES = (
    "core",
    "models",
    "training",
    "alignment",
    "streaming",
    "speech",
    "metrics",
    "io",
    "plot",
    "export",
)

__all__: List[str] = ["__version__", *_SUBMODULES, *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pytorch_hmm.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pytorch_hmm' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(__all__)
