"""StreamingHMMProcessor: exact online Viterbi, filtered and smoothed posteriors, streaming
front end, batches of streams, bad input, bounded buffers, state_dict mid-stream."""

import numpy as np
import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm import core
from pytorch_hmm.core.online import commit_pending
from pytorch_hmm.streaming import StreamingFrontEnd, StreamingHMMProcessor, left_to_right_hmm


def _ergodic(K=5, D=3, seed=0, dtype=torch.float64, spread=1.5):
    g = np.random.default_rng(seed)
    start = g.dirichlet(np.ones(K))
    A = g.dirichlet(np.ones(K) * 0.7, size=K)
    means = g.normal(size=(K, D)) * spread
    return ph.GaussianHMM(K, D, "diag", startprob=start, transmat=A, means=means, dtype=dtype)


def _data(model, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    K, D = model.means.shape
    z = torch.randint(0, K, (T // 8 + 1,), generator=g).repeat_interleave(8)[:T]
    return model.means.detach()[z] + torch.randn(T, D, generator=g, dtype=model.means.dtype)


def _chunks(T, rng, max_size=9):
    out, i = [], 0
    while i < T:
        n = int(rng.integers(1, max_size + 1))
        out.append((i, min(T, i + n)))
        i += n
    return out


def _stream(proc, x, bounds):
    states, results = [], []
    for a, b in bounds:
        r = proc.process_chunk(x[a:b])
        assert r["committed_start"] == sum(len(s) for s in states)
        states.append(r["committed_states"])
        results.append(r)
    r = proc.flush()
    states.append(r["committed_states"])
    return torch.cat(states), results


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_committed_plus_flushed_equals_offline_viterbi(seed, backend):
    model = _ergodic(seed=seed)
    x = _data(model, 300, seed)
    offline = model.viterbi(x).path[0]
    rng = np.random.default_rng(seed)
    for bounds in (_chunks(300, rng), [(t, t + 1) for t in range(300)]):
        proc = StreamingHMMProcessor(model=model, backend=backend)
        path, results = _stream(proc, x, bounds)
        assert torch.equal(path, offline)
        # most frames are decided before the end (an ergodic model's paths merge quickly)
        assert max(r["latency_frames"] for r in results) < 60
        assert sum(len(r["committed_states"]) for r in results) > 200


def test_left_to_right_exact_and_with_beam():
    model = left_to_right_hmm(6, 3, dtype=torch.float64)
    with torch.no_grad():
        model.means.copy_(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)) * 3)
    z = torch.arange(6).repeat_interleave(25)
    x = model.means.detach()[z] + torch.randn(150, 3, dtype=torch.float64)
    offline = model.viterbi(x).path[0]
    bounds = _chunks(150, np.random.default_rng(3))
    path, res = _stream(StreamingHMMProcessor(model=model), x, bounds)
    assert torch.equal(path, offline)
    # exact: the path that never left state 0 survives, so little is decided early
    path, res = _stream(StreamingHMMProcessor(model=model, beam=30.0), x, bounds)
    assert torch.equal(path, offline)
    assert max(r["latency_frames"] for r in res[5:]) < 30


def test_filtered_posteriors_equal_offline_forward():
    model = _ergodic(seed=4)
    x = _data(model, 120, 4)
    la = core.forward(*model._engine_inputs(x)).log_alpha[0]
    filt = torch.softmax(la, -1)
    proc = StreamingHMMProcessor(model=model)
    for a, b in _chunks(120, np.random.default_rng(4)):
        r = proc.process_chunk(x[a:b])
        assert r["frames"] == b
        torch.testing.assert_close(r["posteriors"], filt[b - 1], atol=1e-10, rtol=0)
        assert int(r["current_state"]) == int(filt[b - 1].argmax())
        assert float(r["confidence"]) == pytest.approx(float(filt[b - 1].max()))
        ll = model.log_likelihood(x[:b]).detach()[0]
        assert float(r["log_likelihood"]) == pytest.approx(float(ll), abs=1e-8)


def test_fixed_lag_smoothing_equals_offline_posteriors_of_the_prefix():
    model = _ergodic(seed=5)
    T, L = 60, 4
    x = _data(model, T, 5)
    proc = StreamingHMMProcessor(model=model, smoothing_lag=L)
    got = {}
    for ab in _chunks(T, np.random.default_rng(5), 5) + [None]:
        r = proc.flush() if ab is None else proc.process_chunk(x[ab[0] : ab[1]])
        sm = r["smoothed_posteriors"]
        for i in range(sm.shape[0]):
            got[r["smoothed_start"] + i] = sm[i]
    assert sorted(got) == list(range(T))
    for t in range(T):
        end = min(T, t + L + 1)
        ref = model.posteriors(x[:end]).state_posteriors[0, t]
        torch.testing.assert_close(got[t], ref, atol=1e-9, rtol=0)


def test_max_delay_forces_decisions_and_keeps_one_consistent_path():
    model = left_to_right_hmm(6, 3, dtype=torch.float64)
    with torch.no_grad():
        model.means.copy_(torch.randn(6, 3, generator=torch.Generator().manual_seed(1)) * 3)
    z = torch.arange(6).repeat_interleave(30)
    x = model.means.detach()[z] + torch.randn(180, 3, dtype=torch.float64)
    proc = StreamingHMMProcessor(model=model, max_delay=12)
    path, res = _stream(proc, x, _chunks(180, np.random.default_rng(6)))
    assert all(r["latency_frames"] <= 12 for r in res)
    assert any(r["forced"] for r in res)
    assert path.shape == (180,)
    # a valid left-to-right path (stay or advance by one), starting in state 0
    d = path[1:] - path[:-1]
    assert int(path[0]) == 0 and bool(((d == 0) | (d == 1)).all())
    # on well-separated data the forced decisions agree with offline Viterbi
    assert torch.equal(path, model.viterbi(x).path[0])


def test_batch_of_streams_with_ragged_chunks_equals_each_stream():
    model = _ergodic(seed=7)
    B, T = 4, 80
    xs = [_data(model, T, 10 + b) for b in range(B)]
    rng = np.random.default_rng(7)
    pos = [0] * B
    proc = StreamingHMMProcessor(model=model)
    committed = [[] for _ in range(B)]
    while min(pos) < T:
        n = int(rng.integers(1, 6))
        lens = [min(int(rng.integers(0, n + 1)), T - pos[b]) for b in range(B)]
        chunk = torch.zeros(B, n, 3, dtype=torch.float64)
        for b in range(B):
            chunk[b, : lens[b]] = xs[b][pos[b] : pos[b] + lens[b]]
            chunk[b, lens[b] :] = float("nan")  # padding is never read
        r = proc.process_chunk(chunk, torch.tensor(lens))
        for b in range(B):
            assert int(r["committed_start"][b]) == sum(len(s) for s in committed[b])
            committed[b].append(r["committed_states"][b])
            pos[b] += lens[b]
        assert torch.equal(r["frames"], torch.tensor(pos))
    r = proc.flush()
    for b in range(B):
        committed[b].append(r["committed_states"][b])
        assert torch.equal(torch.cat(committed[b]), model.viterbi(xs[b]).path[0])


def test_overlapping_chunks_are_decoded_once():
    model = _ergodic(seed=8)
    x = _data(model, 100, 8)
    proc = StreamingHMMProcessor(model=model, chunk_size=10, overlap=3)
    out, i = [], 0
    while i < 100:  # chunks of 10 frames, each repeating the previous chunk's last 3
        a = 0 if i == 0 else i - 3
        r = proc.process_chunk(x[a : i + 10])
        out.append(r["committed_states"])
        i += 10
    out.append(proc.flush()["committed_states"])
    assert torch.equal(torch.cat(out), model.viterbi(x).path[0])


def test_commit_kernel_compiled_equals_python():
    kern = pytest.importorskip("pytorch_hmm.core._cpu_kernels")
    rng = np.random.default_rng(0)
    B, K = 3, 4
    for trial in range(20):
        outs = []
        for fn in (commit_pending, kern.online_commit):
            r2 = np.random.default_rng(trial)
            pend = np.zeros((B, 64, K), np.int64)
            count = np.zeros(B, np.int64)
            res = []
            for _step in range(5):
                n = int(r2.integers(1, 6))
                nb = r2.integers(0, K, size=(B, n, K)).astype(np.int64)
                ln = r2.integers(0, n + 1, size=B).astype(np.int64)
                live = r2.random((B, K)) < 0.7
                best = np.argmax(live * r2.random((B, K)), 1).astype(np.int64)
                out = np.zeros((B, 64), np.int64)
                n_out = np.zeros(B, np.int64)
                kill = np.zeros((B, K), np.bool_)
                forced = np.zeros(B, np.bool_)
                fn(pend, count, nb, ln, live, best, 3, out, n_out, kill, forced)
                res.append((out.copy(), n_out.copy(), kill.copy(), forced.copy(), count.copy()))
            outs.append(res)
        for a, b in zip(*outs):
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)
    assert rng is not None


def _front(kind):
    if kind == "logmel":
        return ph.LogMelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=20, top_db=None)
    return ph.MFCC(16000, n_mfcc=8, delta_order=2, n_fft=512, hop_length=160, top_db=None)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_streamed_features_equal_offline(kind):
    fe = _front(kind)
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 5003, generator=g, dtype=torch.float64) * 0.1
    ref = fe(wav).features
    rng = np.random.default_rng(1)
    sf = StreamingFrontEnd(fe, num_streams=2)
    parts, i = [], 0
    while i < wav.shape[1]:  # chunk boundaries fall inside frames
        n = int(rng.integers(1, 500))
        parts.append(sf.push(wav[:, i : i + n]))
        i += n
    parts.append(sf.flush())
    got = torch.cat(parts, 1)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_front_end_refuses_what_cannot_stream():
    with pytest.raises(ValueError, match="top_db"):
        StreamingFrontEnd(ph.LogMelSpectrogram(16000))
    with pytest.raises(ValueError, match="cmvn"):
        StreamingFrontEnd(ph.MFCC(16000, cmvn=True, top_db=None))
    with pytest.raises(TypeError):
        StreamingFrontEnd(torch.nn.Identity())


def test_audio_stream_decodes_like_offline_features():
    fe = _front("logmel").double()
    g = torch.Generator().manual_seed(2)
    wav = torch.randn(16000, generator=g, dtype=torch.float64) * 0.1
    feats = fe(wav).features
    model = _ergodic(K=4, D=20, seed=9)
    with torch.no_grad():  # means near the data so every state is used
        model.means.copy_(feats[torch.randint(0, feats.shape[0], (4,), generator=g)])
    proc = StreamingHMMProcessor(model=model, feature_extractor=fe, chunk_size=160)
    out, i = [], 0
    rng = np.random.default_rng(2)
    while i < wav.shape[0]:
        n = int(rng.integers(1, 400))
        out.append(proc.process_chunk(wav[i : i + n])["committed_states"])
        i += n
    out.append(proc.flush()["committed_states"])
    assert torch.equal(torch.cat(out), model.viterbi(feats).path[0])


def test_bad_input_is_refused_and_the_stream_goes_on():
    model = _ergodic(seed=11)
    x = _data(model, 40, 11)
    proc = StreamingHMMProcessor(model=model)
    first = proc.process_chunk(x[:10])
    bad = [
        (x[10:15, :2], ValueError, "feature dimension"),
        (x[10:15].long(), TypeError, "floating"),
        (x[10:15].to("meta"), ValueError, "device"),
        (torch.cat([x[10:12], torch.full((1, 3), float("nan"), dtype=x.dtype)]), ValueError, "NaN"),
        (x[10:10], ValueError, "empty"),
        (x[10:15][None], ValueError, "started"),
    ]
    for chunk, err, msg in bad:
        with pytest.raises(err, match=msg):
            proc.process_chunk(chunk)
    assert proc.frames_seen.tolist() == [10]
    out = [first["committed_states"], proc.process_chunk(x[10:])["committed_states"]]
    out.append(proc.flush()["committed_states"])
    assert torch.equal(torch.cat(out), model.viterbi(x).path[0])
    with pytest.raises(RuntimeError, match="flush"):
        proc.flush()


def test_constructor_errors():
    with pytest.raises(ValueError, match="num_states and feature_dim"):
        StreamingHMMProcessor()
    with pytest.raises(ValueError, match="overlap"):
        StreamingHMMProcessor(4, 3, chunk_size=10, overlap=10)
    with pytest.raises(ValueError, match="max_delay"):
        StreamingHMMProcessor(4, 3, max_delay=0)
    with pytest.raises(ValueError, match="num_states"):
        StreamingHMMProcessor(5, model=_ergodic(K=4))
    with pytest.raises(TypeError, match="emission_log_likelihood"):
        StreamingHMMProcessor(model=torch.nn.Linear(2, 2))


def test_state_dict_round_trip_mid_stream():
    model = _ergodic(seed=12)
    x = _data(model, 90, 12)
    a = StreamingHMMProcessor(model=model, smoothing_lag=3)
    first = [a.process_chunk(x[i : i + 7])["committed_states"] for i in range(0, 42, 7)]
    sd = a.state_dict()
    b = StreamingHMMProcessor(model=_ergodic(seed=99), smoothing_lag=3)  # other parameters
    b.load_state_dict(sd)
    rest_a = [a.process_chunk(x[i : i + 7]) for i in range(42, 90, 7)] + [a.flush()]
    rest_b = [b.process_chunk(x[i : i + 7]) for i in range(42, 90, 7)] + [b.flush()]
    for ra, rb in zip(rest_a, rest_b):
        assert torch.equal(ra["committed_states"], rb["committed_states"])
        torch.testing.assert_close(ra["smoothed_posteriors"], rb["smoothed_posteriors"])
    path = torch.cat(first + [r["committed_states"] for r in rest_b])
    assert torch.equal(path, model.viterbi(x).path[0])


def test_long_stream_keeps_buffers_bounded():
    model = _ergodic(K=8, D=4, seed=13, dtype=torch.float32, spread=2.0)
    proc = StreamingHMMProcessor(model=model, smoothing_lag=5)
    g = torch.Generator().manual_seed(13)
    z = torch.randint(0, 8, (10_000,), generator=g)
    chunk = (model.means.detach()[z] + torch.randn(10_000, 4, generator=g)).contiguous()
    worst = {}
    total = 0
    for _i in range(30):  # 300,000 frames
        r = proc.process_chunk(chunk)
        total += len(r["committed_states"])
        for k, v in proc.buffer_sizes().items():
            worst[k] = max(worst.get(k, 0), v)
    assert r["frames"] == 300_000
    assert total >= 300_000 - 100
    assert worst["pending"] <= 256  # undecided frames after each chunk
    assert worst["pending_capacity"] <= 2 * (10_000 + 256)  # a chunk's back-pointers + those
    assert worst["smoothing"] <= 5 + 10_000
    # a left-to-right model with max_delay: bounded by max_delay
    l2r = StreamingHMMProcessor(8, 4, max_delay=50)
    for _i in range(8):
        r = l2r.process_chunk(chunk)
        assert r["latency_frames"] <= 50
    assert l2r.buffer_sizes()["pending_capacity"] <= 2 * (50 + 10_000)


def test_create_speech_hmm_streaming_and_fit():
    proc = ph.create_speech_hmm(num_states=4, feature_dim=3, model_type="streaming", chunk_size=5)
    assert isinstance(proc, StreamingHMMProcessor) and proc.chunk_size == 5
    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 3, generator=g) * 4
    x = means.repeat_interleave(15, 0) + torch.randn(60, 3, generator=g)
    proc.fit(x[None].repeat(3, 1, 1), n_iter=5)
    out = [proc.process_chunk(x[i : i + 5])["committed_states"] for i in range(0, 60, 5)]
    out.append(proc.flush()["committed_states"])
    path = torch.cat(out)
    assert torch.equal(path, proc.model.viterbi(x).path[0])
    assert path[0] == 0 and path[-1] == 3  # left-to-right, trained through every state
    m = ph.create_speech_hmm(5, 2, "gaussian")
    assert m.transmat[0, 2] == 0 and m.startprob[0] == 1
    assert ph.create_speech_hmm(3, 2, "mixture", num_mixtures=2).num_states == 3
    with pytest.raises(ValueError, match="model_type"):
        ph.create_speech_hmm(3, 2, "bogus")


def test_wraps_mixture_and_emission_score_models():
    g = torch.Generator().manual_seed(3)
    mix = ph.MixtureGaussianHMM(4, 3, num_mixtures=2, dtype=torch.float64)
    x = torch.randn(2, 70, 3, generator=g, dtype=torch.float64) * 2
    mix.fit(x, n_iter=3)
    scores = torch.randn(70, 3, generator=g, dtype=torch.float64).log_softmax(-1)
    plain = ph.HMMPyTorch(torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]),
                          dtype=torch.float64)  # fmt: skip
    for model, data in ((mix, x[0]), (plain, scores)):
        proc = StreamingHMMProcessor(model=model)
        path, _ = _stream(proc, data, _chunks(70, np.random.default_rng(0)))
        assert torch.equal(path, model.viterbi(data).path[0])


def test_front_end_refuses_bad_samples_and_keeps_its_state():
    fe = _front("logmel").double()
    wav = torch.randn(1, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    sf = StreamingFrontEnd(fe, num_streams=1)
    a = sf.push(wav[:, :1000])
    for bad, err in (
        (wav[:, 1000:1500].long(), TypeError),
        (wav[0, 1000:1500], ValueError),
        (torch.full((1, 10), float("nan"), dtype=torch.float64), ValueError),
    ):
        with pytest.raises(err):
            sf.push(bad)
    got = torch.cat([a, sf.push(wav[:, 1000:]), sf.flush()], 1)
    torch.testing.assert_close(got, fe(wav).features, atol=1e-6, rtol=1e-6)
