"""Readers and writers for the label formats speech references come in (HTK .lab, TextGrid)."""

from .labels import (
    HTK_TIME_UNIT,
    Segment,
    parse_full_context,
    read_lab,
    segments_to_durations,
    segments_to_frame_labels,
    write_lab,
)
from .textgrid import read_textgrid, write_textgrid

__all__ = [
    "HTK_TIME_UNIT",
    "Segment",
    "parse_full_context",
    "read_lab",
    "read_textgrid",
    "segments_to_durations",
    "segments_to_frame_labels",
    "write_lab",
    "write_textgrid",
]
