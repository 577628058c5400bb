"""CUDA results equal CPU ones, model by model (run by benchmarks/gpu.py on a GPU machine;
skipped without CUDA). The engine, DTW, CTC, MAS and feature CUDA tests live beside their
CPU tests (``test_cuda_matches_cpu``)."""

import warnings

import pytest
import torch

from pytorch_hmm import create_speech_hmm
from pytorch_hmm.benchmark import run_comprehensive_benchmark
from pytorch_hmm.benchmark.comprehensive import _speech_like

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _data(B=3, T=60, D=4, K=5):
    x = _speech_like(B, T, D, K, "cpu", torch.float64, seed=1)
    return x, torch.tensor([T, T - 17, T - 31])[:B]


@pytest.mark.parametrize("model_type", ["gaussian", "mixture_gaussian", "hsmm"])
def test_cuda_models_match_cpu(model_type):
    x, L = _data()
    m = create_speech_hmm(5, 4, model_type, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(x, L, n_iter=2)
    g = create_speech_hmm(5, 4, model_type, dtype=torch.float64)
    g.load_state_dict(m.state_dict())
    g = g.cuda()
    xc, Lc = x.cuda(), L.cuda()
    torch.testing.assert_close(g.log_likelihood(xc, Lc).cpu(), m.log_likelihood(x, L))
    torch.testing.assert_close(g.viterbi(xc, Lc).path.cpu(), m.viterbi(x, L).path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(x, L, n_iter=1, init_params="")
        g.fit(xc, Lc, n_iter=1, init_params="")
    for k, v in m.state_dict().items():
        torch.testing.assert_close(g.state_dict()[k].cpu(), v, rtol=1e-8, atol=1e-10)


def test_cuda_neural_hmm_matches_cpu():
    torch.manual_seed(0)
    m = create_speech_hmm(6, 4, "neural", hidden_dim=16, prenet_dim=16, dtype=torch.float64)
    m.eval()
    g = create_speech_hmm(6, 4, "neural", hidden_dim=16, prenet_dim=16, dtype=torch.float64)
    g.load_state_dict(m.state_dict())
    g = g.cuda().eval()
    x, L = _data(B=2, T=30)
    sym = torch.tensor([[1, 2, 3], [4, 5, 0]])
    sl = torch.tensor([3, 2])
    ll = m.loss(sym, sl, x, L)
    llc = g.loss(sym.cuda(), sl.cuda(), x.cuda(), L.cuda())
    torch.testing.assert_close(llc.cpu(), ll)
    ll.backward()
    llc.backward()
    for (n, p), (_, q) in zip(m.named_parameters(), g.named_parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-7, atol=1e-9, msg=n)
    torch.testing.assert_close(
        g.align(sym.cuda(), sl.cuda(), x.cuda(), L.cuda()).cpu(), m.align(sym, sl, x, L)
    )


def test_cuda_streaming_equals_offline():
    x, L = _data(B=1)
    p = create_speech_hmm(5, 4, "streaming", chunk_size=7, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p.fit(x, L, n_iter=2)
    p = p.cuda()
    xc = x[0].cuda()
    states = []
    for t0 in range(0, xc.shape[0], 7):
        states.append(p.process_chunk(xc[t0 : t0 + 7])["committed_states"])
    states.append(p.flush()["committed_states"])
    online = torch.cat([s.cpu() for s in states])
    offline = p.model.viterbi(xc.unsqueeze(0)).path[0].cpu()
    assert torch.equal(online, offline)


def test_cuda_comprehensive_benchmark_runs():
    res = run_comprehensive_benchmark(
        "cuda", [2], [40], [8], num_states=4, repeats=1, progress=False, verbose=False,
        max_seconds=None, model_kwargs={"neural": {"hidden_dim": 16, "prenet_dim": 16}},
    )  # fmt: skip
    assert all(r.status == "ok" for r in res), [r.status for r in res]
    assert all(r.memory_method == "cuda max_memory_allocated" for r in res)
    assert res[0].device.startswith("cuda") and res[0].device_name
