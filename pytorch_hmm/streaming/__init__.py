"""Streaming: online decoding chunk after chunk (the engine's carries and the online
Viterbi's partial traceback, :mod:`pytorch_hmm.core.online`), and a streaming front end."""

from ..models.factory import left_to_right_hmm
from .features import StreamingFrontEnd, check_streamable
from .processor import StreamingHMMProcessor

__all__ = ["StreamingFrontEnd", "StreamingHMMProcessor", "check_streamable", "left_to_right_hmm"]
