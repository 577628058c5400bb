"""Distributed EM on PyTorch's own collectives: every process accumulates statistics on its
share of the corpus, :func:`all_reduce_stats` sums them (``torch.distributed.all_reduce``),
and every process then runs the same M-step, so all of them hold the same parameters.

Usage on each rank (after ``torch.distributed.init_process_group``)::

    model.fit(my_shard, distributed=True)          # or by hand:
    stats = model.accumulate(x, lengths)
    stats.all_reduce()                             # in place, over the default group
    model.m_step(stats)
"""

from __future__ import annotations

import torch


def all_reduce_stats(stats, group=None):
    """Sum ``stats`` (any statistics object of :mod:`pytorch_hmm.training.stats`) over the
    processes of ``group`` in place; returns it."""
    return stats.all_reduce(group)


def broadcast_parameters(module: torch.nn.Module, src: int = 0, group=None) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks (e.g.
    after a k-means initialisation that each rank ran on its own data)."""
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.dtype == torch.bool:
                tmp = t.to(torch.uint8)
                dist.broadcast(tmp, src=src, group=group)
                t.copy_(tmp.bool())
            else:
                dist.broadcast(t.data, src=src, group=group)
