"""Sequence alignment: DTW, soft-DTW, CTC forced alignment, monotonic alignment search."""

from .ctc import CTCAligner, CTCAlignment, ctc_forced_align
from .dtw import STEP_PATTERNS, DTWAligner, DTWResult, StepPattern, dtw, pairwise_distance
from .mas import MASResult, monotonic_alignment_search
from .soft_dtw import SoftDTW, soft_dtw, soft_dtw_cost
