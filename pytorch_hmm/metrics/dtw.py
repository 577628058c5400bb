"""A small exact dynamic time warping used by the metrics (numpy, O(N*M) time and memory)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["DTWResult", "dtw"]


class DTWResult(NamedTuple):
    """``distance``: summed local cost along the path; ``path``: ``(L, 2)`` index pairs."""

    distance: float
    path: np.ndarray


def dtw(cost: np.ndarray) -> DTWResult:
    """DTW over a local cost matrix with steps (1,0), (0,1), (1,1), all of weight 1.

    Finds the monotone path from ``(0, 0)`` to ``(N-1, M-1)`` minimising the sum of
    ``cost[i, j]`` over its cells (dtw-python's ``symmetric1`` step pattern). Ties prefer the
    diagonal step when tracing back.

    Args:
        cost: ``(N, M)`` non-negative local costs, ``N, M >= 1``.

    Returns:
        :class:`DTWResult`.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] == 0 or cost.shape[1] == 0:
        raise ValueError(f"cost must have shape (N, M) with N, M >= 1, got {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost contains NaN or inf")
    N, M = cost.shape
    acc = np.empty((N, M))
    acc[0] = np.cumsum(cost[0])
    inf = np.array([np.inf])
    for i in range(1, N):
        prev = acc[i - 1]
        # entering row i at column k from (i-1, k) or (i-1, k-1), then moving right:
        # acc[i, j] = min_k<=j (a_k + S_j - S_k), S = cumsum(cost[i])
        a = cost[i] + np.minimum(prev, np.concatenate([inf, prev[:-1]]))
        s = np.cumsum(cost[i])
        acc[i] = s + np.minimum.accumulate(a - s)
    i, j = N - 1, M - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            d, v, h = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if d <= v and d <= h:
                i, j = i - 1, j - 1
            elif v <= h:
                i -= 1
            else:
                j -= 1
        path.append((i, j))
    return DTWResult(float(acc[-1, -1]), np.array(path[::-1], dtype=np.int64))
