"""The two semirings the engine runs its recursions in.

``LogSemiring``: plus = log-sum-exp, times = +; the recursion gives log-likelihoods.
``MaxSemiring``: plus = max, times = +; the same recursion gives Viterbi scores (and, through
``reduce_arg``, back-pointers).
"""

from __future__ import annotations

from typing import Tuple

import torch


class LogSemiring:
    name = "log"
    plus = staticmethod(torch.logaddexp)

    @staticmethod
    def reduce(x: torch.Tensor, dim: int) -> torch.Tensor:
        # torch.logsumexp returns -inf (not NaN) when every entry is -inf
        return torch.logsumexp(x, dim=dim)


class MaxSemiring:
    name = "max"
    plus = staticmethod(torch.maximum)

    @staticmethod
    def reduce(x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.amax(dim=dim)

    @staticmethod
    def reduce_arg(x: torch.Tensor, dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
        # amax + argmax: Tensor.max(dim) waits on torch's thread pool even for tiny
        # tensors (12 ms instead of 10 us for a (16, 10) tensor beside a busy process)
        v, i = x.amax(dim=dim), x.argmax(dim=dim)
        return v, i
