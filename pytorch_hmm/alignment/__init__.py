"""Sequence alignment: DTW, soft-DTW, CTC forced alignment, monotonic alignment search."""

from .dtw import STEP_PATTERNS, DTWAligner, DTWResult, StepPattern, dtw, pairwise_distance
