"""Front end against librosa (melspectrogram / power_to_db / mfcc / delta) and hand values."""

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from pytorch_hmm.speech import (
    MFCC,
    LogMelSpectrogram,
    add_deltas,
    cmvn,
    deltas,
    load_audio,
    log_mel_spectrogram,
    mfcc,
)

WAV = Path(__file__).resolve().parents[1] / "data" / "arctic" / "arctic_a0009.wav"
STFT = dict(n_fft=512, hop_length=80, win_length=400)


@pytest.fixture(scope="module")
def wav():
    y, sr = load_audio(WAV)
    return y, sr


def test_load_audio_matches_soundfile(wav):
    y, sr = wav
    ref, ref_sr = sf.read(WAV, dtype="float32")
    assert sr == ref_sr == 16000
    assert y.shape == (49520,)
    np.testing.assert_array_equal(y.numpy(), ref)
    with pytest.raises(ValueError, match="sampled at 16000 Hz but sample_rate=22050"):
        load_audio(WAV, sample_rate=22050)


@pytest.mark.parametrize("htk,fmin,fmax", [(False, 0.0, None), (True, 60.0, 7600.0)])
def test_log_mel_matches_librosa_float64(wav, htk, fmin, fmax):
    y, sr = wav
    y = y.double()
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=y.numpy(), sr=sr, n_mels=40, htk=htk, fmin=fmin, fmax=fmax, **STFT
        )
    ).T
    out = log_mel_spectrogram(y, sr, n_mels=40, htk=htk, fmin=fmin, fmax=fmax, **STFT)
    assert out.features.shape == ref.shape == (1 + 49520 // 80, 40)
    assert int(out.lengths) == ref.shape[0]
    np.testing.assert_allclose(out.features.numpy(), ref, rtol=0, atol=1e-4)


def test_log_mel_natural_log_and_magnitude(wav):
    y, sr = wav
    y = y.double()[:8000]
    ref = librosa.feature.melspectrogram(
        y=y.numpy(), sr=sr, n_mels=80, power=1.0, window="hamming", **STFT
    ).T
    out = log_mel_spectrogram(y, sr, n_mels=80, power=1.0, window="hamming", log="ln", **STFT)
    np.testing.assert_allclose(
        out.features.numpy(), np.log(np.maximum(ref, 1e-10)), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("lifter", [0, 22])
def test_mfcc_matches_librosa(wav, lifter):
    y, sr = wav
    kw = dict(n_mfcc=13, n_mels=40, lifter=lifter, **STFT)
    ref64 = librosa.feature.mfcc(y=y.double().numpy(), sr=sr, **kw).T
    out64 = mfcc(y.double(), sr, **kw).features
    np.testing.assert_allclose(out64.numpy(), ref64, rtol=0, atol=1e-4)
    # float32: both libraries round differently; measured max difference ~1e-3
    ref32 = librosa.feature.mfcc(y=y.numpy(), sr=sr, **kw).T
    out32 = mfcc(y, sr, **kw).features
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref32, rtol=0, atol=1e-2)


def test_batched_with_lengths_matches_each_item(wav):
    y, sr = wav
    y = y.double()
    a, b = y[:16000], y[20000:29001]
    batch = torch.zeros(2, 16000, dtype=torch.float64)
    batch[0], batch[1, : len(b)] = a, b
    batch[1, len(b) :] = 0.3  # non-zero padding must not leak into item 1
    front = MFCC(sr, n_mfcc=13, n_mels=40, delta_order=2, **STFT)
    out = front(batch, torch.tensor([16000, len(b)]))
    assert out.lengths.tolist() == [1 + 16000 // 80, 1 + 9001 // 80]
    assert out.features.shape == (2, 201, 39)
    for i, sig in enumerate((a, b)):
        one = front(sig)
        n = int(one.lengths)
        torch.testing.assert_close(out.features[i, :n], one.features, rtol=0, atol=1e-9)
        assert torch.equal(out.features[i, n:], torch.zeros_like(out.features[i, n:]))
    # the statics are librosa's, the item's own top_db floor included
    ref = librosa.feature.mfcc(y=b.numpy(), sr=sr, n_mfcc=13, n_mels=40, **STFT).T
    n = int(out.lengths[1])
    np.testing.assert_allclose(out.features[1, :n, :13].numpy(), ref, rtol=0, atol=1e-4)


def test_deltas_match_librosa_interior_and_hand_edges():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    d = deltas(torch.tensor(x), width=2).numpy()
    # interior: the regression equals librosa's Savitzky-Golay slope over 5 frames
    ref = librosa.feature.delta(x.T, width=5, order=1).T
    np.testing.assert_allclose(d[2:-2], ref[2:-2], rtol=0, atol=1e-12)
    # edges: HTK replication of the first/last frame, by hand
    p = np.pad(x, ((2, 2), (0, 0)), mode="edge")
    hand = (1 * (p[3:-1] - p[1:-3]) + 2 * (p[4:] - p[:-4])) / 10.0
    np.testing.assert_allclose(d, hand, rtol=0, atol=1e-12)
    full = add_deltas(torch.tensor(x), order=2, width=2)
    assert full.shape == (30, 12)
    torch.testing.assert_close(full[:, 8:], deltas(torch.tensor(d), width=2))


def test_deltas_respect_lengths():
    x = torch.arange(10.0).reshape(1, 10, 1).repeat(2, 1, 1)
    x[1, 6:] = 99.0
    d = deltas(x, torch.tensor([10, 6]), width=1)
    # slope 1 inside, 0.5 at the replicated ends; item 1 ends at frame 5
    assert d[0, :, 0].tolist() == [0.5] + [1.0] * 8 + [0.5]
    assert d[1, :, 0].tolist() == [0.5, 1, 1, 1, 1, 0.5, 0, 0, 0, 0]


def test_cmvn_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, 2.0], [5.0, 2.0], [100.0, 100.0]]])
    out = cmvn(x, torch.tensor([3]))
    # column 0: mean 3, biased std sqrt(8/3); column 1 constant -> 0
    s = np.sqrt(8.0 / 3.0)
    np.testing.assert_allclose(
        out[0].numpy(), [[-2 / s, 0], [0, 0], [2 / s, 0], [0, 0]], rtol=0, atol=1e-6
    )
    mean_only = cmvn(x, torch.tensor([3]), variance=False)
    assert mean_only[0, :, 0].tolist() == [-2.0, 0.0, 2.0, 0.0]


def test_mfcc_cmvn_statistics(wav):
    y, sr = wav
    out = mfcc(y.double(), sr, cmvn=True, delta_order=1, **STFT).features
    torch.testing.assert_close(out[:, :13].mean(0), torch.zeros(13, dtype=torch.float64))
    torch.testing.assert_close(out[:, :13].std(0, unbiased=False), torch.ones(13).double())


def test_silent_and_empty_audio_and_rate_mismatch():
    front = LogMelSpectrogram(16000, n_mels=40, **STFT)
    silent = front(torch.zeros(1600))
    assert silent.features.shape == (21, 40)
    # power_to_db of zeros: 10 log10(amin = 1e-10) = -100 dB everywhere, as librosa
    assert torch.equal(silent.features, torch.full((21, 40), -100.0))
    m = MFCC(16000, cmvn=True, delta_order=2, **STFT)(torch.zeros(1600)).features
    assert torch.isfinite(m).all() and m.shape == (21, 39)
    with pytest.raises(ValueError, match="empty"):
        front(torch.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        front(torch.zeros(2, 100), torch.tensor([100, 0]))
    with pytest.raises(ValueError, match="sample_rate=22050 does not match"):
        front(torch.zeros(1600), sample_rate=22050)
    with pytest.raises(ValueError, match=r"waveform must have shape \(B, N\) or \(N,\), got"):
        front(torch.zeros(1, 1, 100))
    with pytest.raises(TypeError, match="floating-point"):
        front(torch.zeros(100, dtype=torch.long))
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        front(torch.zeros(2, 100), torch.tensor([100]))
    with pytest.raises(ValueError, match="n_mfcc"):
        MFCC(16000, n_mfcc=50, n_mels=40)
    with pytest.raises(ValueError, match="fmax"):
        LogMelSpectrogram(16000, fmax=9000.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(wav):
    y, sr = wav
    front = MFCC(sr, n_mfcc=13, delta_order=2, cmvn=True, **STFT)
    batch = torch.stack([y[:16000], y[16000:32000]]).double()
    lengths = torch.tensor([16000, 12000])
    cpu = front(batch, lengths)
    gpu = front.to("cuda")(batch.cuda(), lengths.cuda())
    assert gpu.features.device.type == "cuda"
    torch.testing.assert_close(gpu.features.cpu(), cpu.features, rtol=0, atol=1e-6)
    assert torch.equal(gpu.lengths.cpu(), cpu.lengths)
