"""Sequence alignment: DTW, soft-DTW, CTC forced alignment, monotonic alignment search.

(Re-exports as ``X as X``, one per line, so the list can be extended without an ``__all__``.)
"""

from .corpus import load_corpus as load_corpus
from .corpus import phone_boundary_accuracy as phone_boundary_accuracy
from .ctc import CTCAligner as CTCAligner
from .ctc import CTCAlignment as CTCAlignment
from .ctc import ctc_forced_align as ctc_forced_align
from .dtw import STEP_PATTERNS as STEP_PATTERNS
from .dtw import DTWAligner as DTWAligner
from .dtw import DTWResult as DTWResult
from .dtw import StepPattern as StepPattern
from .dtw import dtw_align as dtw_align
from .dtw import pairwise_distance as pairwise_distance
from .forced import AlignerConfig as AlignerConfig
from .forced import AlignmentError as AlignmentError
from .forced import ForcedAligner as ForcedAligner
from .forced import Utterance as Utterance
from .forced import UtteranceAlignment as UtteranceAlignment
from .lexicon import Lexicon as Lexicon
from .lexicon import MissingWordError as MissingWordError
from .lexicon import read_lexicon as read_lexicon
from .mas import MASResult as MASResult
from .mas import monotonic_alignment_search as monotonic_alignment_search
from .soft_dtw import SoftDTW as SoftDTW
from .soft_dtw import soft_dtw_cost as soft_dtw_cost
from .soft_dtw import soft_dtw_distance as soft_dtw_distance
