"""pytorch_hmm.export: TorchScript and ONNX exports agree with the models' own results.

Every model type x {log_likelihood, viterbi} x {torchscript, onnx}, each at three lengths
other than the export example's (8 frames), on padded float32 batches (padding holds NaN):
log-likelihoods and Viterbi scores within 1e-4 relative, paths identical. The streaming step
is checked chunk by chunk against StreamingHMMProcessor (filtered distribution,
log-likelihood, committed states through OnlineViterbi)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm.core.online import OnlineViterbi
from pytorch_hmm.errors import HMMTypeError, HMMValueError
from pytorch_hmm.export import (
    run_onnx,
    streaming_carry,
    to_onnx,
    to_torchscript,
)

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

K, D, M = 3, 2, 2
LENGTHS = (5, 11, 14)  # the export example has 8 frames
RTOL = 1e-4


def _transmat(g, left_to_right=False):
    a = torch.rand(K, K, generator=g, dtype=torch.float64) + 0.1
    if left_to_right:
        a = torch.triu(a)
    return a / a.sum(-1, keepdim=True)


def _spd(g, *shape):
    a = torch.randn(*shape, D, D, generator=g, dtype=torch.float64)
    return a @ a.transpose(-1, -2) + 0.5 * torch.eye(D, dtype=torch.float64)


def _gaussian(ct, seed):
    g = torch.Generator().manual_seed(seed)
    m = ph.GaussianHMM(K, D, ct)
    m.set_means(2 * torch.randn(K, D, generator=g, dtype=torch.float64))
    m.set_covars(torch.rand(K, D, generator=g, dtype=torch.float64) + 0.5 if ct == "diag"
                 else _spd(g, K))  # fmt: skip
    m.set_transmat(_transmat(g, left_to_right=ct == "full"))
    m.set_startprob(torch.softmax(torch.randn(K, generator=g, dtype=torch.float64), 0))
    return m


def _mixture(ct, seed):
    g = torch.Generator().manual_seed(seed)
    m = ph.MixtureGaussianHMM(K, D, M, ct)
    m.set_means(2 * torch.randn(K, M, D, generator=g, dtype=torch.float64))
    m.set_covars(torch.rand(K, M, D, generator=g, dtype=torch.float64) + 0.5 if ct == "diag"
                 else _spd(g, K, M))  # fmt: skip
    m.set_weights(torch.softmax(torch.randn(K, M, generator=g, dtype=torch.float64), -1))
    m.set_transmat(_transmat(g))
    return m


def _plain(seed):
    g = torch.Generator().manual_seed(seed)
    return ph.HMMPyTorch(_transmat(g), torch.softmax(torch.randn(K, generator=g), 0))


def _hsmm(seed, **kw):
    g = torch.Generator().manual_seed(seed)
    m = ph.HSMM(K, D, max_duration=6, **kw)
    if kw.get("emission") == "mixture":
        m.set_means(2 * torch.randn(K, M, D, generator=g, dtype=torch.float64))
    else:
        m.set_means(2 * torch.randn(K, D, generator=g, dtype=torch.float64))
    if m.duration_type == "nonparametric":
        m.set_durations(torch.softmax(torch.randn(K, 6, generator=g, dtype=torch.float64), -1))
    return m


MODELS = {
    "gaussian_diag": lambda: _gaussian("diag", 1),
    "gaussian_full": lambda: _gaussian("full", 2),
    "mixture_diag": lambda: _mixture("diag", 3),
    "mixture_full": lambda: _mixture("full", 4),
    "hmm_given_emissions": lambda: _plain(5),
    "hsmm_gaussian_l2r": lambda: _hsmm(6),
    "hsmm_mixture_ergodic": lambda: _hsmm(
        7,
        emission="mixture",
        covariance_type="full",
        topology="ergodic",
        duration="poisson",
        right_censored=True,
    ),
}
_CACHE: dict = {}


def _model(name):
    if name not in _CACHE:
        _CACHE[name] = MODELS[name]()
    return _CACHE[name]


def _data(model, T, seed):
    """A padded batch of 3 sequences (T, T-2 and 3 frames), NaN on the padding."""
    g = torch.Generator().manual_seed(seed)
    is_plain = isinstance(model, ph.HMMPyTorch)
    x = torch.randn(3, T, K if is_plain else D, generator=g)
    if is_plain:
        x = torch.log_softmax(x, -1)
    lengths = torch.tensor([T, T - 2, 3])
    pad = torch.arange(T)[None] >= lengths[:, None]
    return x.masked_fill(pad[..., None], math.nan), lengths


def _reference(model, method, x, lengths):
    with torch.no_grad():
        if method == "log_likelihood":
            return (model.log_likelihood(x, lengths),)
        v = model.viterbi(x, lengths)
        return v.path, v.score


def _check(out, ref, method):
    if method == "log_likelihood":
        assert out[0].dtype == ref[0].dtype
        torch.testing.assert_close(out[0], ref[0], rtol=RTOL, atol=0.0)
    else:
        assert out[0].dtype == torch.long
        assert torch.equal(out[0], ref[0])  # identical paths, -1 on padding
        torch.testing.assert_close(out[1], ref[1], rtol=RTOL, atol=0.0)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(name, method):
        key = (name, method)
        if key not in cache:
            cache[key] = to_onnx(_model(name), d / f"{name}_{method}.onnx", method)
        return cache[key]

    return get


@pytest.mark.parametrize("method", ["log_likelihood", "viterbi"])
@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_matches_model(name, method):
    model = _model(name)
    ts = to_torchscript(model, method)
    assert isinstance(ts, torch.jit.ScriptModule)
    for i, T in enumerate(LENGTHS):
        x, lengths = _data(model, T, seed=10 * i)
        out = ts(x, lengths)
        out = (out,) if isinstance(out, torch.Tensor) else out
        _check(out, _reference(model, method, x, lengths), method)


@pytest.mark.parametrize("method", ["log_likelihood", "viterbi"])
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_matches_model(name, method, onnx_files):
    model = _model(name)
    path = onnx_files(name, method)
    for i, T in enumerate(LENGTHS):
        x, lengths = _data(model, T, seed=10 * i + 1)
        _check(run_onnx(path, x, lengths), _reference(model, method, x, lengths), method)


def test_onnx_graph_is_a_loop_with_dynamic_axes(onnx_files):
    import onnx

    proto = onnx.load(onnx_files("hsmm_gaussian_l2r", "viterbi"))
    assert any(n.op_type == "Loop" for n in proto.graph.node)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "time"]
    assert [o.name for o in proto.graph.output] == ["path", "score"]


def test_other_batch_sizes_and_one_frame(onnx_files):
    model = _model("gaussian_diag")
    path = onnx_files("gaussian_diag", "viterbi")
    ts = to_torchscript(model, "viterbi")
    for B, T in ((1, 1), (5, 2), (1, 30)):
        x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(B * T))
        lengths = torch.full((B,), T)
        ref = _reference(model, "viterbi", x, lengths)
        _check(ts(x, lengths), ref, "viterbi")
        _check(run_onnx(path, x, lengths), ref, "viterbi")


def test_impossible_sequences(onnx_files):
    """A left-to-right HSMM cannot produce 2 frames with 3 states: -inf and a path of -1,
    as the model says."""
    model = _model("hsmm_gaussian_l2r")
    x = torch.randn(2, 9, D, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([9, 2])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ll = model.log_likelihood(x, lengths)
        v = model.viterbi(x, lengths)
    assert math.isinf(ll[1]) and bool((v.path[1] == -1).all())
    for fmt in ("torchscript", "onnx"):
        for method, ref in (("log_likelihood", (ll,)), ("viterbi", (v.path, v.score))):
            if fmt == "onnx":
                out = run_onnx(onnx_files("hsmm_gaussian_l2r", method), x, lengths)
            else:
                out = to_torchscript(model, method)(x, lengths)
                out = (out,) if isinstance(out, torch.Tensor) else out
            _check(out, ref, method)


def test_torchscript_save_load(tmp_path):
    model = _model("mixture_diag")
    ts = to_torchscript(model, "log_likelihood")
    f = tmp_path / "ll.pt"
    ts.save(str(f))
    with warnings.catch_warnings():  # torch.jit is deprecated upstream
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(f))
    x, lengths = _data(model, 13, seed=4)
    _check((loaded(x, lengths),), _reference(model, "log_likelihood", x, lengths), "log_likelihood")


def test_snapshot_does_not_follow_later_training():
    model = _gaussian("diag", 9)
    ts = to_torchscript(model, "log_likelihood")
    x, lengths = _data(model, 6, seed=5)
    before = model.log_likelihood(x, lengths)
    model.set_means(torch.zeros(K, D))
    torch.testing.assert_close(ts(x, lengths), before, rtol=RTOL, atol=0.0)


def test_verify_option(tmp_path):
    to_onnx(_model("hmm_given_emissions"), tmp_path / "v.onnx", "viterbi", verify=True)


# ------------------------------------------------------------------------------------------
# streaming


def _stream_chunks():
    g = torch.Generator().manual_seed(11)
    chunks = []
    for n, lens in ((4, [4, 0]), (7, [7, 5]), (3, [2, 3]), (6, [6, 6])):
        chunks.append((torch.randn(2, n, D, generator=g), torch.tensor(lens)))
    return chunks


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_streaming_step_matches_processor(fmt, tmp_path):
    model = _gaussian("diag", 12)
    proc = ph.StreamingHMMProcessor(model=model, beam=30.0)
    if fmt == "onnx":
        path = to_onnx(proc, tmp_path / "step.onnx", "streaming_step")

        def step(*a):
            return run_onnx(path, *a)
    else:
        step = to_torchscript(proc, "streaming_step")
    carry = streaming_carry(proc, 2)
    frames, fs, fo, vs = (carry[k] for k in ("frames", "forward_scores", "forward_offset",
                                             "viterbi_scores"))  # fmt: skip
    dec = OnlineViterbi(2, K)
    committed = [[], []]
    expected = [[], []]
    for x, lengths in _stream_chunks():
        ref = proc.process_chunk(x, lengths)
        fs, fo, vs, back, state, conf, post, ll, frames = step(x, lengths, frames, fs, fo, vs)
        assert torch.equal(state, ref["current_state"])
        assert torch.equal(frames, ref["frames"])
        torch.testing.assert_close(post, ref["posteriors"], rtol=RTOL, atol=1e-6)
        torch.testing.assert_close(conf, ref["confidence"], rtol=RTOL, atol=1e-6)
        torch.testing.assert_close(ll, ref["log_likelihood"], rtol=RTOL, atol=0.0)
        res, kill = dec.step(back, lengths, vs)
        vs = vs.masked_fill(kill, -math.inf)
        for b in range(2):
            committed[b].append(res.states[b])
            expected[b].append(ref["committed_states"][b])
    ref = proc.flush()
    res, _ = dec.step(torch.zeros(2, 0, K, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                      vs, final=True)  # fmt: skip
    for b in range(2):
        got = torch.cat(committed[b] + [res.states[b]])
        want = torch.cat(expected[b] + [ref["committed_states"][b]])
        assert torch.equal(got, want)
        # and the whole stream's offline Viterbi path
        assert got.numel() == int(frames[b])


# ------------------------------------------------------------------------------------------
# what cannot be exported


def test_refusals(tmp_path):
    neural = ph.NeuralHMM(4, 2, hidden_dim=8, encoder_layers=1, autoregressive=False)
    with pytest.raises(HMMValueError, match="NeuralHMM cannot be exported"):
        to_torchscript(neural, "viterbi")
    with pytest.raises(HMMValueError, match="NeuralHMM cannot be exported"):
        to_onnx(neural, tmp_path / "n.onnx", "log_likelihood")
    with pytest.raises(HMMValueError, match="method must be one of"):
        to_torchscript(_model("gaussian_diag"), "posteriors")
    with pytest.raises(HMMTypeError, match="must be a pytorch_hmm model"):
        to_torchscript(object(), "viterbi")
    with pytest.raises(HMMValueError, match="HSMM has no streaming step"):
        to_torchscript(_model("hsmm_gaussian_l2r"), "streaming_step")
    proc = ph.StreamingHMMProcessor(model=_model("gaussian_diag"))
    with pytest.raises(HMMValueError, match="streaming_step"):
        to_torchscript(proc, "viterbi")
    with pytest.raises(HMMValueError, match="example_length"):
        to_onnx(_model("gaussian_diag"), tmp_path / "e.onnx", "viterbi", example_length=1)


def test_package_exposes_export():
    assert ph.export.to_onnx is to_onnx
    assert "export" in dir(ph)
