"""Distributed EM: two gloo processes on loopback, each with half the sequences, end with the
parameters of a single-process fit on all of them (torch.distributed.all_reduce of the
statistics, nothing hand-made)."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pytorch_hmm.models import GaussianHMM, MixtureGaussianHMM
from pytorch_hmm.training import pad_sequences

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    g = torch.Generator().manual_seed(0)
    lens = [120, 90, 150, 60, 110, 80]
    seqs = [
        torch.randn(n, 2, generator=g, dtype=torch.float64) + (i % 3) * 2.0
        for i, n in enumerate(lens)
    ]
    return seqs


def _models():
    gm = GaussianHMM(
        3,
        2,
        startprob=[0.5, 0.3, 0.2],
        transmat=np.full((3, 3), 1 / 3),
        means=[[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]],
        covars=np.ones((3, 2)),
        dtype=torch.float64,
    )
    mm = MixtureGaussianHMM(
        2,
        2,
        2,
        means=[[[0.0, 0.0], [1.0, 1.0]], [[3.0, 3.0], [4.0, 4.0]]],
        covars=np.ones((2, 2, 2)),
        weights=np.full((2, 2), 0.5),
        dtype=torch.float64,
    )
    return gm, mm


def _worker(rank, world, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        seqs = _data()
        half = len(seqs) // world
        mine = seqs[rank * half : (rank + 1) * half]
        for name, model in zip(("gaussian", "mixture"), _models()):
            model.fit(mine, n_iter=5, tol=-math.inf, init_params="", distributed=True)
            torch.save(
                {
                    "state": {k: v.clone() for k, v in model.state_dict().items()},
                    "history": model.log_likelihood_history,
                },
                os.path.join(out_dir, f"{name}_{rank}.pt"),
            )
        # initialisation on each rank's own data, then rank 0's parameters are broadcast
        fresh = GaussianHMM(3, 2, dtype=torch.float64)
        fresh.fit(mine, n_iter=2, seed=rank, distributed=True)
        torch.save(fresh.state_dict(), os.path.join(out_dir, f"init_{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_single_process_fit(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    seqs = _data()
    half = len(seqs) // 2
    for name, model in zip(("gaussian", "mixture"), _models()):
        r0 = torch.load(tmp_path / f"{name}_0.pt")
        r1 = torch.load(tmp_path / f"{name}_1.pt")
        # both ranks hold the same parameters
        for k in r0["state"]:
            assert torch.equal(r0["state"][k], r1["state"][k]), k
        # exactly those of one process streaming the same two halves ...
        streamed = _models()[0 if name == "gaussian" else 1]
        streamed.fit(
            [pad_sequences(seqs[:half]), pad_sequences(seqs[half:])],
            n_iter=5,
            tol=-math.inf,
            init_params="",
        )
        for k, v in streamed.state_dict().items():
            assert torch.equal(r0["state"][k], v), k
        assert r0["history"] == streamed.log_likelihood_history
        # ... and, to round-off, those of one fit on all sequences in one batch
        model.fit(seqs, n_iter=5, tol=-math.inf, init_params="")
        for k, v in model.state_dict().items():
            torch.testing.assert_close(r0["state"][k], v, rtol=1e-10, atol=1e-12)
    a, b = torch.load(tmp_path / "init_0.pt"), torch.load(tmp_path / "init_1.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_all_reduce_without_a_process_group_keeps_the_statistics():
    # the README's training snippet runs as written in one process (no torchrun)
    import torch.distributed as dist

    import pytorch_hmm as ph

    assert not dist.is_initialized()
    x = torch.randn(2, 30, 3, generator=torch.Generator().manual_seed(0))
    hmm = ph.GaussianHMM(3, 3)
    stats = hmm.accumulate(x)
    before = [t.clone() for t in stats.tensors()]
    assert stats.all_reduce() is stats
    assert all(torch.equal(a, b) for a, b in zip(before, stats.tensors()))
    hmm.m_step(stats)
