"""Exact dynamic time warping over a local cost matrix, for the metrics (e.g. DTW-aligned MCD).

A thin front end to the library's DTW (:class:`pytorch_hmm.alignment.DTWAligner`), with a
numpy interface: one cost matrix in, the distance and the path out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..errors import HMMValueError

__all__ = ["DTWResult", "dtw"]

_ALIGNER = None


class DTWResult(NamedTuple):
    """``distance``: summed local cost along the path; ``path``: ``(L, 2)`` index pairs."""

    distance: float
    path: np.ndarray


def _aligner():
    """dtw-python's ``symmetric1`` steps, listed so that ties go to the diagonal step, then
    (1, 0), then (0, 1) (the library picks the first of equal steps). Imported on first use:
    ``pytorch_hmm.alignment`` imports the metrics package."""
    global _ALIGNER
    if _ALIGNER is None:
        from ..alignment.dtw import DTWAligner, StepPattern

        pattern = StepPattern("symmetric1", ((1, 1, 1.0), (1, 0, 1.0), (0, 1, 1.0)), "NA")
        _ALIGNER = DTWAligner(step_pattern=pattern)
    return _ALIGNER


def dtw(cost: np.ndarray) -> DTWResult:
    """DTW over a local cost matrix with steps (1,0), (0,1), (1,1), all of weight 1.

    Finds the monotone path from ``(0, 0)`` to ``(N-1, M-1)`` minimising the sum of
    ``cost[i, j]`` over its cells (dtw-python's ``symmetric1`` step pattern). Ties prefer the
    diagonal step, then the step along the rows ``(1, 0)``.

    Args:
        cost: ``(N, M)`` finite local costs, ``N, M >= 1`` (negative ones are fine: every path
            is monotone and finite, so the minimum sum is well defined).

    Returns:
        :class:`DTWResult`.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] == 0 or cost.shape[1] == 0:
        raise HMMValueError(f"cost must have shape (N, M) with N, M >= 1, got {cost.shape}")
    if not np.isfinite(cost).all():
        raise HMMValueError("cost contains NaN or inf")
    res = _aligner().align_cost(torch.from_numpy(np.ascontiguousarray(cost)))
    return DTWResult(float(res.cost), res.path.numpy().astype(np.int64, copy=False))
