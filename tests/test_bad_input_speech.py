"""The speech front end's public functions x a catalogue of bad and edge-case inputs (issue 16's
sweep, last part): each case gives the reference answer or a library error naming the argument.

Entry points: LogMelSpectrogram / MFCC (modules, functional forms, ``mel_power``) and their
constructors, deltas / add_deltas / cmvn, frame_lengths, load_audio, mlpg /
expand_by_durations / generate_from_states, the streaming front end (constructor and push),
mel_cepstral_distortion and f0_metrics."""

import math
import re

import numpy as np
import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm.metrics import f0_metrics, mel_cepstral_distortion
from pytorch_hmm.speech import (
    DELTA_WINDOWS,
    MFCC,
    LogMelSpectrogram,
    add_deltas,
    cmvn,
    deltas,
    expand_by_durations,
    frame_lengths,
    generate_from_states,
    load_audio,
    log_mel_spectrogram,
    mfcc,
    mlpg,
)
from pytorch_hmm.streaming import StreamingFrontEnd

VE, TE = ph.HMMValueError, ph.HMMTypeError
SR = 16000
STFT = dict(n_fft=64, hop_length=16, n_mels=8)
B, N = 2, 300
_g = torch.Generator().manual_seed(0)
WAV = torch.randn(B, N, generator=_g) * 0.3
WLEN = torch.tensor([300, 211])
FE = LogMelSpectrogram(SR, **STFT)
MF = MFCC(SR, n_mfcc=5, delta_order=2, **STFT)
FE64 = LogMelSpectrogram(SR, **STFT).double()


def _set(x, idx, v=math.nan):
    x = x.clone()
    x[idx] = v
    return x


WAVE_ENTRY = {
    "LogMelSpectrogram": lambda w, n=None: FE(w, n),
    "MFCC": lambda w, n=None: MF(w, n),
    "log_mel_spectrogram": lambda w, n=None: log_mel_spectrogram(w, SR, n, **STFT),
    "mfcc": lambda w, n=None: mfcc(w, SR, n, n_mfcc=5, **STFT),
    "mel_power": lambda w, n=None: FE.mel_power(w, n)[:2],
}

# (name, (waveform, lengths), error, message part)
WAVE_BAD = [
    ("None", (None, None), TE, "waveform"),
    ("a string", ("abc", None), TE, "waveform"),
    ("ragged list", ([[0.1, 0.2], [0.3]], None), TE, "waveform"),
    ("numpy object dtype", (np.array([0.1, None], dtype=object), None), TE, "waveform"),
    ("0-D", (torch.tensor(0.5), None), VE, "waveform must have shape"),
    ("3-D", (WAV[None], None), VE, "waveform must have shape"),
    ("int64", ((WAV * 1000).long(), None), TE, "waveform"),
    ("uint8", ((WAV * 100 + 128).to(torch.uint8), None), TE, "waveform"),
    ("bool", (WAV > 0, None), TE, "waveform"),
    ("complex", (WAV.to(torch.complex64), None), TE, "waveform"),
    ("zero-length signal", (WAV[:, :0], None), VE, "empty"),
    ("zero-length unbatched", (WAV[0, :0], None), VE, "empty"),
    ("lengths 0", (WAV, torch.tensor([300, 0])), VE, "empty"),
    ("lengths > N", (WAV, torch.tensor([301, 200])), VE, "lengths"),
    ("lengths negative", (WAV, torch.tensor([-1, 200])), VE, "lengths"),
    ("lengths float", (WAV, torch.tensor([300.0, 200.0])), TE, "lengths"),
    ("lengths wrong shape", (WAV, torch.tensor([300])), VE, "lengths"),
    ("lengths 2-D", (WAV, torch.tensor([[300, 200]])), VE, "lengths"),
    ("lengths a string", (WAV, "ab"), TE, "lengths"),
    ("NaN in a real sample", (_set(WAV, (1, 17)), None), VE, "signal 1 at sample 17"),
    ("+inf in a real sample", (_set(WAV, (0, 5), math.inf), WLEN), VE, "signal 0 at sample 5"),
    ("-inf in a real sample", (_set(WAV, (1, 210), -math.inf), WLEN), VE, "sample 210"),
    ("float64 overflowing power", (WAV.double() * 1e300, None), VE, "overflows"),
]


@pytest.mark.parametrize("entry", sorted(WAVE_ENTRY))
@pytest.mark.parametrize("case", WAVE_BAD, ids=[c[0].replace(" ", "_") for c in WAVE_BAD])
def test_bad_waveform_gives_a_named_library_error(entry, case):
    _, (w, n), err, part = case
    with pytest.raises(err, match=re.escape(part)):
        WAVE_ENTRY[entry](w, n)


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for t in out if isinstance(t, torch.Tensor)]


def _same(a, b, atol=1e-4, rtol=1e-5, dtype=None):
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        assert x.shape == y.shape
        if dtype is not None and x.is_floating_point():
            assert x.dtype == dtype
        torch.testing.assert_close(x.double(), y.double(), atol=atol, rtol=rtol)


_PCM16 = (WAV * 2**14).round().to(torch.int16)
_PCM32 = (WAV * 2**30).round().to(torch.int32)
# (name, variant, reference, dtype of the result) with (waveform, lengths) pairs
WAVE_SAME = [
    ("numpy float32", (WAV.numpy(), WLEN), (WAV, WLEN), torch.float32),
    ("numpy float64", (WAV.double().numpy(), WLEN), (WAV.double(), WLEN), torch.float64),
    ("list", (WAV.tolist(), WLEN), (WAV, WLEN), torch.float32),
    ("transposed (non-contiguous)", (WAV.t().contiguous().t(), WLEN), (WAV, WLEN), None),
    ("strided", (WAV.repeat_interleave(2, 1)[:, ::2], WLEN), (WAV, WLEN), None),
    ("lengths as a list", (WAV, [300, 211]), (WAV, WLEN), None),
    ("lengths numpy int32", (WAV, np.array([300, 211], np.int32)), (WAV, WLEN), None),
    ("lengths all N", (WAV, torch.tensor([N, N])), (WAV, None), None),
    ("padding holds NaN", (_set(WAV, (1, slice(211, None))), WLEN), (WAV, WLEN), None),
    ("padding holds inf", (_set(WAV, (1, slice(250, None)), math.inf), WLEN), (WAV, WLEN), None),
    ("int16 PCM is x / 2**15", (_PCM16, WLEN), (_PCM16.float() / 2**15, WLEN), torch.float32),
    ("int32 PCM is x / 2**31", (_PCM32, WLEN), (_PCM32.double() / 2**31, WLEN), torch.float32),
    ("float16 computed in float32", (WAV.half(), WLEN), (WAV.half().float(), WLEN),
     torch.float32),
    ("bfloat16 computed in float32", (WAV.bfloat16(), WLEN), (WAV.bfloat16().float(), WLEN),
     torch.float32),
    ("too short: 10 samples < n_fft", (WAV[:, :10], None), (WAV[:, :10].double(), None),
     torch.float32),
    ("one sample", (WAV[:, :1], None), (WAV[:, :1].double(), None), torch.float32),
    # float32 power spectrum of 1e30 overflows; computed in float64, returned in float32
    ("1e30 amplitudes", (WAV * 1e30, WLEN), (WAV.double() * 1e30, WLEN), torch.float32),
]


@pytest.mark.parametrize("entry", sorted(WAVE_ENTRY))
@pytest.mark.parametrize("case", WAVE_SAME, ids=[c[0].replace(" ", "_") for c in WAVE_SAME])
def test_equivalent_waveform_gives_the_reference_answer(entry, case):
    _, (w, n), (rw, rn), dtype = case
    got, ref = WAVE_ENTRY[entry](w, n), WAVE_ENTRY[entry](rw, rn)
    rtol = 1e-4 if entry == "mel_power" else 1e-5
    _same(got, ref, atol=1e-3, rtol=rtol, dtype=dtype if entry != "mel_power" else None)


@pytest.mark.parametrize("entry", sorted(WAVE_ENTRY))
def test_unbatched_waveform_equals_its_batch_row(entry):
    got = WAVE_ENTRY[entry](WAV[1, :211])
    ref = WAVE_ENTRY[entry](WAV, WLEN)
    for x, y in zip(_flat(got), _flat(ref)):
        if x.dim() == y.dim():  # mel_power keeps the batch axis (and says it was unbatched)
            x = x[0]
        if x.dim() == 0:
            assert int(x) == int(y[1])
        else:
            torch.testing.assert_close(x, y[1, : x.shape[0]], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("entry", sorted(WAVE_ENTRY))
def test_batch_of_zero_signals_gives_empty_features(entry):
    out = _flat(WAVE_ENTRY[entry](WAV[:0]))
    assert out[0].shape[0] == 0 and out[0].shape[1] == 1 + N // 16
    assert out[1].shape == (0,)


def test_signals_shorter_than_a_window_match_a_direct_computation():
    # centred frames of a 10-sample signal: zero padding n_fft // 2 each side (librosa's
    # "constant" padding), frame t starts at t * hop of the padded signal
    y = WAV[0, :10].double()
    padded = torch.cat([torch.zeros(32), y, torch.zeros(32)]).double()
    frame = padded[:64] * FE64.window
    power = torch.fft.rfft(frame).abs() ** 2
    db = 10 * torch.log10((FE64.mel_basis @ power).clamp(min=1e-10))
    db = torch.maximum(db, db.max() - 80.0)
    out = FE64(y)
    assert out.features.shape == (1, 8) and int(out.lengths) == 1
    torch.testing.assert_close(out.features[0], db, atol=1e-9, rtol=1e-9)


# constructor arguments: (name, kwargs, error, message part); each also goes through MFCC
CTOR_BAD = [
    ("sample_rate 0", dict(sample_rate=0), VE, "sample_rate"),
    ("sample_rate negative", dict(sample_rate=-16000), VE, "sample_rate"),
    ("sample_rate fractional", dict(sample_rate=16000.5), VE, "sample_rate"),
    ("sample_rate nan", dict(sample_rate=math.nan), VE, "sample_rate"),
    ("sample_rate a string", dict(sample_rate="16000"), TE, "sample_rate"),
    ("sample_rate None", dict(sample_rate=None), TE, "sample_rate"),
    ("sample_rate bool", dict(sample_rate=True), TE, "sample_rate"),
    ("n_fft 0", dict(n_fft=0), VE, "n_fft"),
    ("n_fft negative", dict(n_fft=-512), VE, "n_fft"),
    ("n_fft fractional", dict(n_fft=64.5), TE, "n_fft"),
    ("hop_length 0", dict(hop_length=0), VE, "hop_length"),
    ("hop_length float", dict(hop_length=16.0), TE, "hop_length"),
    ("win_length 0", dict(win_length=0), VE, "win_length"),
    ("win_length > n_fft", dict(win_length=65), VE, "win_length"),
    ("n_mels 0", dict(n_mels=0), VE, "n_mels"),
    ("n_mels > n_fft//2+1", dict(n_mels=34), VE, "n_mels=34"),
    ("n_mels None", dict(n_mels=None), TE, "n_mels"),
    ("fmin >= fmax", dict(fmin=5000.0, fmax=4000.0), VE, "fmin"),
    ("fmin negative", dict(fmin=-1.0), VE, "fmin"),
    ("fmax > sample_rate/2", dict(fmax=9000.0), VE, "fmax"),
    ("fmax nan", dict(fmax=math.nan), VE, "fmax"),
    ("window unknown", dict(window="nope"), VE, "window"),
    ("window not a name", dict(window=3), TE, "window"),
    ("mel_norm unknown", dict(mel_norm="x"), VE, "mel_norm"),
    ("power 0", dict(power=0), VE, "power"),
    ("amin 0", dict(amin=0.0), VE, "amin"),
    ("ref negative", dict(ref=-1.0), VE, "ref"),
    ("top_db negative", dict(top_db=-1.0), VE, "top_db"),
    ("pad_mode unknown", dict(pad_mode="edge"), VE, "pad_mode"),
]
MFCC_BAD = [
    ("n_mfcc 0", dict(n_mfcc=0), VE, "n_mfcc"),
    ("n_mfcc > n_mels", dict(n_mfcc=9), VE, "n_mfcc"),
    ("n_mfcc fractional", dict(n_mfcc=5.5), TE, "n_mfcc"),
    ("lifter negative", dict(lifter=-1.0), VE, "lifter"),
    ("dct_type 5", dict(dct_type=5), VE, "dct_type"),
    ("dct_norm unknown", dict(dct_norm="x"), VE, "dct_norm"),
    ("delta_order 3", dict(delta_order=3), VE, "delta_order"),
    ("delta_width 0", dict(delta_width=0), VE, "delta_width"),
    ("log ln", dict(log="ln"), VE, "log"),
]
CTOR = {
    "LogMelSpectrogram": lambda kw: LogMelSpectrogram(kw.pop("sample_rate", SR), **kw),
    "MFCC": lambda kw: MFCC(kw.pop("sample_rate", SR), **{"n_mfcc": 5, **kw}),
}
CTOR_CASES = [(e, c) for e in CTOR for c in CTOR_BAD] + [("MFCC", c) for c in MFCC_BAD]


@pytest.mark.parametrize(
    "entry,case", CTOR_CASES, ids=[f"{e}-{c[0].replace(' ', '_')}" for e, c in CTOR_CASES]
)
def test_bad_constructor_argument_gives_a_named_library_error(entry, case):
    _, kw, err, part = case
    with pytest.raises(err, match=re.escape(part)):
        CTOR[entry]({**STFT, **kw})


def test_whole_number_float_sample_rate_is_accepted():
    a = LogMelSpectrogram(16000.0, **STFT)(WAV).features
    torch.testing.assert_close(a, FE(WAV).features)


SHORT_BAD = [
    ("center=False, shorter than n_fft", dict(center=False), WAV[:, :63], "shorter than n_fft"),
    ("center=False, a padded item shorter", dict(center=False), (WAV, torch.tensor([300, 40])),
     "shorter than n_fft"),
    ("reflect, not longer than n_fft // 2", dict(pad_mode="reflect"), WAV[:, :32], "reflect"),
]


@pytest.mark.parametrize("cls", ["LogMelSpectrogram", "MFCC"])
@pytest.mark.parametrize("case", SHORT_BAD, ids=[c[0].replace(" ", "_") for c in SHORT_BAD])
def test_too_short_waveform_gives_a_named_library_error(cls, case):
    _, kw, w, part = case
    fe = CTOR[cls]({**STFT, **kw})
    w, n = w if isinstance(w, tuple) else (w, None)
    with pytest.raises(VE, match=re.escape(part)):
        fe(w, n)


def test_sample_rate_of_a_call_must_match():
    with pytest.raises(VE, match="sample_rate=22050 does not match"):
        FE(WAV, sample_rate=22050)


# ---------------------------------------------------------------- deltas, add_deltas, cmvn
FT = torch.randn(B, 7, 3, generator=_g)
FLEN = torch.tensor([7, 4])
FEAT_ENTRY = {
    "deltas": lambda x, n=None: deltas(x, n),
    "add_deltas": lambda x, n=None: add_deltas(x, n, order=2),
    "cmvn": lambda x, n=None: cmvn(x, n),
}
FEAT_BAD = [
    ("None", (None, None), TE, "features"),
    ("a string", ("abc", None), TE, "features"),
    ("ragged list", ([[[0.0]], [[0.0], [1.0]]], None), TE, "features"),
    ("1-D", (FT[0, :, 0], None), VE, "features must have shape"),
    ("4-D", (FT[None], None), VE, "features must have shape"),
    ("bool", (FT > 0, None), TE, "features"),
    ("complex", (FT.to(torch.complex64), None), TE, "features"),
    ("lengths > T", (FT, torch.tensor([8, 4])), VE, "lengths"),
    ("lengths negative", (FT, torch.tensor([-1, 4])), VE, "lengths"),
    ("lengths float", (FT, torch.tensor([7.0, 4.0])), TE, "lengths"),
    ("lengths wrong shape", (FT, torch.tensor([7])), VE, "lengths"),
    ("NaN in a real frame", (_set(FT, (1, 3, 0)), FLEN), VE, "sequence 1, frame 3"),
    ("inf in a real frame", (_set(FT, (0, 6, 2), math.inf), FLEN), VE, "sequence 0, frame 6"),
]


@pytest.mark.parametrize("entry", sorted(FEAT_ENTRY))
@pytest.mark.parametrize("case", FEAT_BAD, ids=[c[0].replace(" ", "_") for c in FEAT_BAD])
def test_bad_features_give_a_named_library_error(entry, case):
    _, (x, n), err, part = case
    with pytest.raises(err, match=re.escape(part)):
        FEAT_ENTRY[entry](x, n)


_FI = (FT * 10).round()
FEAT_SAME = [
    ("numpy", (FT.numpy(), FLEN), (FT, FLEN), torch.float32),
    ("list", (FT.tolist(), FLEN), (FT, FLEN), torch.float32),
    ("non-contiguous", (FT.transpose(1, 2).contiguous().transpose(1, 2), FLEN), (FT, FLEN),
     None),
    ("padding holds NaN", (_set(FT, (1, slice(4, None))), FLEN), (FT, FLEN), None),
    ("lengths as a list", (FT, [7, 4]), (FT, FLEN), None),
    ("int features computed in float32", (_FI.long(), FLEN), (_FI, FLEN), torch.float32),
    ("float16 computed in float32", (FT.half(), FLEN), (FT.half().float(), FLEN),
     torch.float32),
    ("1e30 values", (FT * 1e30, FLEN), (FT.double() * 1e30, FLEN), torch.float32),
]


@pytest.mark.parametrize("entry", sorted(FEAT_ENTRY))
@pytest.mark.parametrize("case", FEAT_SAME, ids=[c[0].replace(" ", "_") for c in FEAT_SAME])
def test_equivalent_features_give_the_reference_answer(entry, case):
    _, (x, n), (rx, rn), dtype = case
    got, ref = FEAT_ENTRY[entry](x, n), FEAT_ENTRY[entry](rx, rn)
    if case[0] == "1e30 values" and entry != "cmvn":  # deltas are linear: compare scaled
        got, ref = got / 1e30, ref / 1e30
    _same(got, ref, atol=1e-5, rtol=1e-5, dtype=dtype)


@pytest.mark.parametrize("entry", sorted(FEAT_ENTRY))
@pytest.mark.parametrize("shape", [(0, 7, 3), (2, 0, 3)], ids=["B=0", "T=0"])
def test_empty_features_give_empty_results(entry, shape):
    out = FEAT_ENTRY[entry](torch.zeros(shape))
    assert out.shape[:2] == shape[:2]


OPT_BAD = [
    ("deltas width 0", lambda: deltas(FT, width=0), VE, "width"),
    ("deltas width fractional", lambda: deltas(FT, width=1.5), TE, "width"),
    ("add_deltas order 3", lambda: add_deltas(FT, order=3), VE, "order"),
    ("add_deltas width 0", lambda: add_deltas(FT, width=0), VE, "width"),
    ("cmvn eps 0", lambda: cmvn(FT, eps=0.0), VE, "eps"),
    ("frame_lengths hop 0", lambda: frame_lengths(torch.tensor([5]), 64, 0), VE, "hop_length"),
    ("frame_lengths n_fft 0", lambda: frame_lengths(torch.tensor([5]), 0, 16), VE, "n_fft"),
    ("frame_lengths negative", lambda: frame_lengths(torch.tensor([-5]), 64, 16), VE,
     "lengths"),
    ("frame_lengths float", lambda: frame_lengths(torch.tensor([5.5]), 64, 16), TE, "lengths"),
    ("frame_lengths None", lambda: frame_lengths(None, 64, 16), TE, "lengths"),
]


@pytest.mark.parametrize("case", OPT_BAD, ids=[c[0].replace(" ", "_") for c in OPT_BAD])
def test_bad_option_gives_a_named_library_error(case):
    _, call, err, part = case
    with pytest.raises(err, match=re.escape(part)):
        call()


def test_frame_lengths_of_lists_and_numpy():
    ref = frame_lengths(torch.tensor([0, 63, 64, 300]), 64, 16, center=False)
    assert ref.tolist() == [0, 0, 1, 15]
    assert frame_lengths([0, 63, 64, 300], 64, 16, center=False).tolist() == ref.tolist()
    assert frame_lengths(np.array([300]), 64, 16).tolist() == [1 + 300 // 16]


# ---------------------------------------------------------------- load_audio
def _wav_bytes(tmp_path, n=1000, channels=1, rate=SR):
    sf = pytest.importorskip("soundfile")
    data = np.random.default_rng(0).uniform(-0.5, 0.5, size=(n, channels))
    path = tmp_path / "ok.wav"
    sf.write(str(path), data, rate, subtype="PCM_16")
    return path, path.read_bytes()


def _file(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    return p


AUDIO_BAD = [
    ("missing file", lambda d: (d / "missing.wav", {}), VE, "does not exist"),
    ("a directory", lambda d: (d, {}), VE, "directory"),
    ("empty file", lambda d: (_file(d, "e.wav", b""), {}), VE, "empty"),
    ("text file", lambda d: (_file(d, "x.wav", b"hello, not audio"), {}), VE,
     "could not be read as audio"),
    ("header only", lambda d: (_file(d, "h.wav", _wav_bytes(d)[1][:30]), {}), VE,
     "could not be read as audio"),
    ("truncated samples", lambda d: (_file(d, "t.wav", _wav_bytes(d)[1][:1000]), {}), VE,
     "truncated"),
    ("path None", lambda d: (None, {}), TE, "path"),
    ("path an int", lambda d: (3, {}), TE, "path"),
    ("dtype int16", lambda d: (_wav_bytes(d)[0], dict(dtype=torch.int16)), TE, "dtype"),
    ("sample_rate 0", lambda d: (_wav_bytes(d)[0], dict(sample_rate=0)), VE, "sample_rate"),
    ("sample_rate mismatched", lambda d: (_wav_bytes(d)[0], dict(sample_rate=22050)), VE,
     "sampled at 16000 Hz"),
]


@pytest.mark.parametrize("case", AUDIO_BAD, ids=[c[0].replace(" ", "_") for c in AUDIO_BAD])
def test_bad_audio_file_gives_a_named_library_error(case, tmp_path):
    pytest.importorskip("soundfile")
    _, build, err, part = case
    path, kw = build(tmp_path)
    with pytest.raises(err, match=re.escape(part)) as info:
        load_audio(path, **kw)
    if err is VE and part != "sample_rate":  # the file's content is at fault: named
        assert str(path) in str(info.value)


def test_audio_files_read_as_soundfile_reads_them(tmp_path):
    sf = pytest.importorskip("soundfile")
    path, _ = _wav_bytes(tmp_path, n=500, channels=2)
    ref, rate = sf.read(str(path), dtype="float64", always_2d=True)
    wav, r = load_audio(path, mono=False, dtype=torch.float64)  # a PathLike
    assert r == rate == SR
    torch.testing.assert_close(wav, torch.from_numpy(ref.T.copy()))
    mono, _ = load_audio(str(path), sample_rate=16000.0)
    torch.testing.assert_close(mono, torch.from_numpy(ref.mean(1)).float())
    # a well-formed file holding no samples reads as an empty waveform
    empty = tmp_path / "zero.wav"
    sf.write(str(empty), np.zeros((0, 1)), SR, subtype="PCM_16")
    assert load_audio(empty)[0].shape == (0,)
    # int16 PCM read raw and given to the front end equals the float read
    raw, _ = sf.read(str(path), dtype="int16", always_2d=True)
    torch.testing.assert_close(
        FE(torch.from_numpy(raw[:, 0].copy())).features,
        FE(torch.from_numpy(ref[:, 0].copy()).float()).features,
    )


# ---------------------------------------------------------------- MLPG
T6, D3 = 6, 2
_gm = torch.Generator().manual_seed(1)
MU = torch.randn(B, T6, 3 * D3, generator=_gm, dtype=torch.float64)
VAR = torch.rand(B, T6, 3 * D3, generator=_gm, dtype=torch.float64) + 0.5
MLEN = torch.tensor([6, 4])
# (name, (means, variances, windows, lengths, boundary), error, message part)
MLPG_BAD = [
    ("means None", (None, VAR, DELTA_WINDOWS, None, "hts"), TE, "means"),
    ("means a string", ("ab", VAR, DELTA_WINDOWS, None, "hts"), TE, "means"),
    ("means int", (MU.long(), VAR, DELTA_WINDOWS, None, "hts"), TE, "means"),
    ("means bool", (MU > 0, VAR, DELTA_WINDOWS, None, "hts"), TE, "means"),
    ("means 1-D", (MU[0, 0], VAR[0, 0], DELTA_WINDOWS, None, "hts"), VE, "means must have"),
    ("means 4-D", (MU[None], VAR[None], DELTA_WINDOWS, None, "hts"), VE, "means must have"),
    ("means NaN in a real frame", (_set(MU, (1, 2, 0)), VAR, DELTA_WINDOWS, MLEN, "hts"), VE,
     "sequence 1, frame 2"),
    ("means inf in a real frame", (_set(MU, (0, 5, 3), math.inf), VAR, DELTA_WINDOWS, None,
                                   "hts"), VE, "sequence 0, frame 5"),
    ("variances None", (MU, None, DELTA_WINDOWS, None, "hts"), TE, "variances"),
    ("variances a string", (MU, "ab", DELTA_WINDOWS, None, "hts"), TE, "variances"),
    ("variances wrong shape", (MU, VAR[..., :5], DELTA_WINDOWS, None, "hts"), VE,
     "do not broadcast"),
    ("static variance 0", (MU, _set(VAR, (0, 1, 1), 0.0), DELTA_WINDOWS, None, "hts"), VE,
     "variances[0, 1, 1]"),
    ("static variance negative", (MU, _set(VAR, (1, 0, 0), -1.0), DELTA_WINDOWS, None, "hts"),
     VE, "variances[1, 0, 0]"),
    ("static variance NaN", (MU, _set(VAR, (1, 3, 0)), DELTA_WINDOWS, None, "hts"), VE,
     "variances[1, 3, 0]"),
    ("static variance inf", (MU, _set(VAR, (0, 2, 1), math.inf), DELTA_WINDOWS, None, "hts"),
     VE, "variances[0, 2, 1]"),
    ("dynamic variance NaN", (MU, _set(VAR, (0, 2, 3)), DELTA_WINDOWS, None, "hts"), VE,
     "variances[0, 2, 3]"),
    ("dynamic variance negative", (MU, _set(VAR, (0, 2, 5), -2.0), DELTA_WINDOWS, None, "hts"),
     VE, "variances[0, 2, 5]"),
    ("dynamic variance 0", (MU, _set(VAR, (1, 1, 4), 0.0), DELTA_WINDOWS, None, "hts"), VE,
     "variances[1, 1, 4]"),
    ("variance whose inverse overflows", (MU.float(), _set(VAR.float(), (0, 1, 0), 1e-45),
                                          DELTA_WINDOWS, None, "hts"), VE, "too small"),
    ("windows None", (MU, VAR, None, None, "hts"), VE, "windows"),
    ("windows empty", (MU, VAR, [], None, "hts"), VE, "windows"),
    ("windows an int", (MU, VAR, 3, None, "hts"), TE, "windows"),
    ("windows a string", (MU, VAR, "abc", None, "hts"), TE, "windows"),
    ("window a string", (MU, VAR, ["ab", [1.0], [1.0]], None, "hts"), TE, "windows[0]"),
    ("window coefficient NaN", (MU, VAR, [[1.0], [math.nan, 0, 0.5], [1, -2, 1]], None, "hts"),
     VE, "windows[1]"),
    ("window (l, r, c) of the wrong size",
     (MU, VAR, [(0, 0, [1.0]), (1, 1, [-0.5, 0.5]), (1, 1, [1, -2, 1])], None, "hts"), VE,
     "windows[1]"),
    ("window of even length", (MU, VAR, [[1.0], [-1.0, 1.0], [1, -2, 1]], None, "hts"), VE,
     "windows[1]"),
    ("window 2-D", (MU, VAR, [[1.0], [[-0.5, 0, 0.5]], [1, -2, 1]], None, "hts"), VE,
     "windows[1]"),
    ("columns not M*D", (MU[..., :5], VAR[..., :5], DELTA_WINDOWS, None, "hts"), VE,
     "multiple of the number of windows"),
    ("boundary unknown", (MU, VAR, DELTA_WINDOWS, None, "reflect"), VE, "boundary"),
    ("boundary not a string", (MU, VAR, DELTA_WINDOWS, None, ["hts"]), VE, "boundary"),
    ("lengths > T", (MU, VAR, DELTA_WINDOWS, torch.tensor([7, 4]), "hts"), VE, "lengths"),
    ("lengths negative", (MU, VAR, DELTA_WINDOWS, torch.tensor([-1, 4]), "hts"), VE,
     "lengths"),
    ("lengths float", (MU, VAR, DELTA_WINDOWS, torch.tensor([6.0, 4.0]), "hts"), TE,
     "lengths"),
    ("lengths wrong shape", (MU, VAR, DELTA_WINDOWS, torch.tensor([6]), "hts"), VE, "lengths"),
]


@pytest.mark.parametrize("case", MLPG_BAD, ids=[c[0].replace(" ", "_") for c in MLPG_BAD])
def test_bad_mlpg_input_gives_a_named_library_error(case):
    _, (m, v, w, n, bd), err, part = case
    with pytest.raises(err, match=re.escape(part)):
        mlpg(m, v, w, n, boundary=bd)


MLPG_SAME = [
    ("numpy", (MU.numpy(), VAR.numpy(), MLEN), (MU, VAR, MLEN), torch.float64),
    ("lists", (MU.tolist(), VAR.tolist(), MLEN.tolist()), (MU.float(), VAR.float(), MLEN),
     torch.float32),
    ("non-contiguous", (MU.transpose(1, 2).contiguous().transpose(1, 2),
                        VAR.transpose(0, 1).contiguous().transpose(0, 1), MLEN),
     (MU, VAR, MLEN), None),
    ("padding holds NaN", (_set(MU, (1, slice(4, None))), _set(VAR, (1, slice(4, None))),
                           MLEN), (MU, VAR, MLEN), None),
    ("global variances", (MU, VAR[0, 0], MLEN), (MU, VAR[0, 0].expand_as(MU), MLEN), None),
    ("integer variances", (MU, torch.full_like(VAR, 2).long(), MLEN),
     (MU, torch.full_like(VAR, 2.0), MLEN), None),
    ("float16 computed in float32", (MU.half(), VAR.half(), MLEN),
     (MU.half().float(), VAR.half().float(), MLEN), torch.float32),
    ("bfloat16 computed in float32", (MU.bfloat16(), VAR.bfloat16(), MLEN),
     (MU.bfloat16().float(), VAR.bfloat16().float(), MLEN), torch.float32),
]


@pytest.mark.parametrize("boundary", ["hts", "zero", "edge"])
@pytest.mark.parametrize("case", MLPG_SAME, ids=[c[0].replace(" ", "_") for c in MLPG_SAME])
def test_equivalent_mlpg_input_gives_the_reference_answer(case, boundary):
    _, (m, v, n), (rm, rv, rn), dtype = case
    got = mlpg(m, v, DELTA_WINDOWS, n, boundary=boundary)
    ref = mlpg(rm, rv, DELTA_WINDOWS, rn, boundary=boundary)
    _same(got, ref, atol=1e-5, rtol=1e-5, dtype=dtype)


@pytest.mark.parametrize("boundary", ["hts", "zero", "edge"])
def test_mlpg_huge_means_scale_linearly_and_empty_batches(boundary):
    got = mlpg(MU.float() * 1e30, VAR.float(), DELTA_WINDOWS, MLEN, boundary=boundary)
    ref = mlpg(MU, VAR, DELTA_WINDOWS, MLEN, boundary=boundary)
    torch.testing.assert_close(got.double() / 1e30, ref, atol=1e-4, rtol=1e-4)
    assert mlpg(MU[:0], VAR[:0], DELTA_WINDOWS, boundary=boundary).shape == (0, T6, D3)
    assert mlpg(MU[:, :0], VAR[:, :0], DELTA_WINDOWS, boundary=boundary).shape == (B, 0, D3)


SM = torch.randn(3, 3 * D3, generator=_gm, dtype=torch.float64)
SV = torch.rand(3, 3 * D3, generator=_gm, dtype=torch.float64) + 0.5
DUR = torch.tensor([2, 1, 3])
STATE_BAD = [
    ("expand values None", lambda: expand_by_durations(None, DUR), TE, "values"),
    ("expand values 1-D", lambda: expand_by_durations(SM[0], DUR), VE, "values"),
    ("expand durations None", lambda: expand_by_durations(SM, None), TE, "durations"),
    ("expand durations a string", lambda: expand_by_durations(SM, "ab"), TE, "durations"),
    ("expand durations NaN", lambda: expand_by_durations(SM, torch.tensor([1.0, math.nan, 1])),
     VE, "durations"),
    ("expand durations inf", lambda: expand_by_durations(SM, torch.tensor([1.0, math.inf, 1])),
     VE, "durations"),
    ("expand durations fractional", lambda: expand_by_durations(SM, torch.tensor([1.5, 1, 1])),
     VE, "durations"),
    ("expand durations negative", lambda: expand_by_durations(SM, torch.tensor([1, -1, 1])),
     VE, "durations"),
    ("expand durations bool", lambda: expand_by_durations(SM, torch.tensor([True] * 3)), TE,
     "durations"),
    ("expand durations wrong shape", lambda: expand_by_durations(SM, DUR[:2]), VE, "durations"),
    ("expand lengths > K", lambda: expand_by_durations(SM[None], DUR[None], torch.tensor([4])),
     VE, "lengths"),
    ("generate state_means None", lambda: generate_from_states(None, SV, DUR, DELTA_WINDOWS),
     TE, "state_means"),
    ("generate state_variances None", lambda: generate_from_states(SM, None, DUR,
                                                                   DELTA_WINDOWS),
     TE, "state_variances"),
    ("generate state_variances wrong shape", lambda: generate_from_states(SM, SV[:, :3], DUR,
                                                                          DELTA_WINDOWS),
     VE, "state_variances"),
    ("generate state variance NaN", lambda: generate_from_states(SM, _set(SV, (1, 0)), DUR,
                                                                 DELTA_WINDOWS),
     VE, "variances"),
    ("generate durations negative", lambda: generate_from_states(SM, SV, -DUR, DELTA_WINDOWS),
     VE, "durations"),
]


@pytest.mark.parametrize("case", STATE_BAD, ids=[c[0].replace(" ", "_") for c in STATE_BAD])
def test_bad_state_input_gives_a_named_library_error(case):
    _, call, err, part = case
    with pytest.raises(err, match=re.escape(part)):
        call()


def test_state_inputs_as_numpy_and_lists_give_the_reference_answer():
    ref = generate_from_states(SM, SV, DUR, DELTA_WINDOWS)
    got = generate_from_states(SM.numpy(), SV.numpy(), DUR.tolist(), DELTA_WINDOWS)
    for x, y in zip(got, ref):
        torch.testing.assert_close(x, y)
    e = expand_by_durations(SM.tolist(), np.array([2, 1, 3]))
    torch.testing.assert_close(e.values, SM.float().repeat_interleave(DUR, 0))


# ---------------------------------------------------------------- streaming front end
FE_S = LogMelSpectrogram(SR, top_db=None, **STFT)
MF_S = MFCC(SR, n_mfcc=5, delta_order=2, top_db=None, **STFT)

STREAM_CTOR_BAD = [
    ("num_streams 0", lambda: StreamingFrontEnd(FE_S, 0), VE, "num_streams"),
    ("num_streams negative", lambda: StreamingFrontEnd(FE_S, -1), VE, "num_streams"),
    ("num_streams fractional", lambda: StreamingFrontEnd(FE_S, 1.5), TE, "num_streams"),
    ("num_streams a string", lambda: StreamingFrontEnd(FE_S, "2"), TE, "num_streams"),
    ("num_streams bool", lambda: StreamingFrontEnd(FE_S, True), TE, "num_streams"),
    ("front end not a front end", lambda: StreamingFrontEnd(torch.nn.Identity()), TE,
     "feature_extractor"),
    ("front end with top_db", lambda: StreamingFrontEnd(FE), VE, "top_db"),
    ("MFCC with cmvn",
     lambda: StreamingFrontEnd(MFCC(SR, n_mfcc=5, cmvn=True, top_db=None, **STFT)), VE, "cmvn"),
    ("reflect padding", lambda: StreamingFrontEnd(
        LogMelSpectrogram(SR, top_db=None, pad_mode="reflect", **STFT)), VE, "pad_mode"),
]


@pytest.mark.parametrize(
    "case", STREAM_CTOR_BAD, ids=[c[0].replace(" ", "_") for c in STREAM_CTOR_BAD]
)
def test_bad_streaming_constructor_gives_a_named_library_error(case):
    _, call, err, part = case
    with pytest.raises(err, match=re.escape(part)):
        call()


STREAM_BAD = [
    ("None", None, TE, "samples"),
    ("a string", "abc", TE, "samples"),
    ("int64", (WAV[:, 100:150] * 1000).long(), TE, "samples"),
    ("bool", WAV[:, 100:150] > 0, TE, "samples"),
    ("complex", WAV[:, 100:150].to(torch.complex64), TE, "samples"),
    ("float64 after float32", WAV[:, 100:150].double(), TE, "same dtype"),
    ("1-D", WAV[0, 100:150], VE, "samples must have shape"),
    ("3-D", WAV[None, :, 100:150], VE, "samples must have shape"),
    ("wrong number of streams", WAV[:1, 100:150], VE, "samples must have shape"),
    ("NaN", _set(WAV[:, 100:150], (1, 7)), VE, "stream 1 at chunk sample 7 (stream sample 107)"),
    ("inf", _set(WAV[:, 100:150], (0, 3), -math.inf), VE, "stream 0 at chunk sample 3"),
]


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
@pytest.mark.parametrize("case", STREAM_BAD, ids=[c[0].replace(" ", "_") for c in STREAM_BAD])
def test_bad_chunk_gives_a_named_error_and_the_stream_goes_on(kind, case):
    _, chunk, err, part = case
    fe = FE_S if kind == "logmel" else MF_S
    s = StreamingFrontEnd(fe, num_streams=B)
    a = s.push(WAV[:, :100])
    with pytest.raises(err, match=re.escape(part)):
        s.push(chunk)
    got = torch.cat([a, s.push(WAV[:, 100:]), s.flush()], 1)
    torch.testing.assert_close(got, fe(WAV).features, atol=1e-4, rtol=1e-5)


def _chunkings():
    rng = np.random.default_rng(5)
    out = [[N], [1] * 40 + [N - 40], [0, 63, 0, 1, 64, 172], [16] * 18 + [12]]
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, N), size=rng.integers(1, 12), replace=False))
        out.append(np.diff(np.concatenate([[0], cuts, [N]])).tolist())
    return out


CHUNKINGS = _chunkings()


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
@pytest.mark.parametrize("sizes", CHUNKINGS, ids=[f"chunking{i}" for i in range(len(CHUNKINGS))])
def test_streamed_features_over_any_chunking_equal_offline(kind, sizes):
    if kind == "logmel":
        fe = LogMelSpectrogram(SR, top_db=None, **STFT).double()
    else:
        fe = MFCC(SR, n_mfcc=5, delta_order=2, top_db=None, **STFT).double()
    w = WAV.double()
    s = StreamingFrontEnd(fe, num_streams=B)
    parts, at = [], 0
    for n in sizes:
        parts.append(s.push(w[:, at: at + n]))
        at += n
    parts.append(s.flush())
    got = torch.cat(parts, 1)
    ref = fe(w).features
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-8, rtol=1e-8)


STREAM_SAME = [
    ("numpy chunks", lambda w: w.numpy(), WAV),
    ("list chunks", lambda w: w.tolist(), WAV),
    ("int16 PCM chunks", lambda w: w, _PCM16),
    ("float16 chunks", lambda w: w, WAV.half()),
    ("non-contiguous chunks", lambda w: w.t().contiguous().t(), WAV),
    ("1e30 chunks", lambda w: w, WAV * 1e30),
]


@pytest.mark.parametrize("case", STREAM_SAME, ids=[c[0].replace(" ", "_") for c in STREAM_SAME])
def test_equivalent_chunks_give_the_offline_answer(case):
    _, conv, w = case
    s = StreamingFrontEnd(FE_S, num_streams=B)
    parts = [s.push(conv(w[:, a: a + 70])) for a in range(0, N, 70)] + [s.flush()]
    got = torch.cat(parts, 1)
    ref = FE_S(w).features
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-3, rtol=1e-5)


# ---------------------------------------------------------------- metrics
C = torch.randn(B, 6, 4, generator=_g, dtype=torch.float64)
C2 = C + 0.1 * torch.randn(B, 6, 4, generator=_g, dtype=torch.float64)
CLEN = torch.tensor([6, 4])
MCD_BAD = [
    ("ref None", (None, C2, None), TE, "ref"),
    ("hyp a string", (C, "ab", None), TE, "hyp"),
    ("ref ragged", ([[[0.0, 1.0]], [[0.0]]], C2, None), TE, "ref"),
    ("ref 1-D", (C[0, 0], C2[0, 0], None), VE, "ref must have shape"),
    ("ref 4-D", (C[None], C2[None], None), VE, "ref must have shape"),
    ("feature dimensions differ", (C, C2[..., :3], None), VE, "feature dimension"),
    ("frame counts differ", (C, C2[:, :5], None), VE, "6 frames but hyp has 5"),
    ("batch sizes differ", (C, C2[:1], None), VE, "batch size"),
    ("lengths > T", (C, C2, torch.tensor([7, 4])), VE, "ref_lengths"),
    ("lengths negative", (C, C2, torch.tensor([-1, 4])), VE, "ref_lengths"),
    ("lengths float", (C, C2, torch.tensor([6.0, 4.0])), TE, "ref_lengths"),
    ("lengths wrong shape", (C, C2, torch.tensor([6])), VE, "ref_lengths"),
    ("NaN in a real ref frame", (_set(C, (1, 2, 1)), C2, CLEN), VE, "sequence 1, frame 2"),
    ("inf in a real hyp frame", (C, _set(C2, (0, 5, 2), math.inf), CLEN), VE,
     "sequence 0, frame 5"),
    ("one coefficient with exclude_c0", (C[..., :1], C2[..., :1], None), VE, "exclude_c0"),
]


@pytest.mark.parametrize("dtw_align", [False, True], ids=["frames", "dtw"])
@pytest.mark.parametrize("case", MCD_BAD, ids=[c[0].replace(" ", "_") for c in MCD_BAD])
def test_bad_mcd_input_gives_a_named_library_error(case, dtw_align):
    _, (r, h, n), err, part = case
    if dtw_align and case[0] == "frame counts differ":
        pytest.skip("DTW aligns sequences of different lengths")
    with pytest.raises(err, match=re.escape(part)):
        mel_cepstral_distortion(r, h, n, dtw_align=dtw_align)


MCD_SAME = [
    ("numpy", (C.numpy(), C2.numpy(), CLEN), (C, C2, CLEN)),
    ("lists", (C.tolist(), C2.tolist(), CLEN.tolist()), (C, C2, CLEN)),
    ("non-contiguous", (C.transpose(1, 2).contiguous().transpose(1, 2), C2, CLEN),
     (C, C2, CLEN)),
    ("padding holds NaN", (_set(C, (1, slice(4, None))), _set(C2, (1, slice(4, None)),
                                                               math.inf), CLEN), (C, C2, CLEN)),
    ("float32", (C.float(), C2.float(), CLEN), (C.float().double(), C2.float().double(), CLEN)),
    ("1e30 scale", (C * 1e30, C2 * 1e30, CLEN), (C, C2, CLEN)),
]


@pytest.mark.parametrize("dtw_align", [False, True], ids=["frames", "dtw"])
@pytest.mark.parametrize("case", MCD_SAME, ids=[c[0].replace(" ", "_") for c in MCD_SAME])
def test_equivalent_mcd_input_gives_the_reference_answer(case, dtw_align):
    _, (r, h, n), (rr, rh, rn) = case
    got = mel_cepstral_distortion(r, h, n, dtw_align=dtw_align)
    ref = mel_cepstral_distortion(rr, rh, rn, dtw_align=dtw_align)
    scale = 1e30 if case[0] == "1e30 scale" else 1.0
    torch.testing.assert_close(got.mcd / scale, ref.mcd)
    assert got.n_frames.tolist() == ref.n_frames.tolist()


def test_mcd_of_an_empty_batch_is_empty():
    for dtw_align in (False, True):
        out = mel_cepstral_distortion(C[:0], C2[:0], dtw_align=dtw_align)
        assert out.mcd.shape == (0,) and out.mean == 0.0


F0R = torch.tensor([[100.0, 0.0, 120.0, 130.0, 0.0, 150.0], [200.0, 210.0, 0.0, 220.0, 0, 0]])
F0H = torch.tensor([[110.0, 0.0, 0.0, 125.0, 90.0, 160.0], [190.0, 0.0, 0.0, 230.0, 0, 0]])
F0LEN = torch.tensor([6, 4])
F0_BAD = [
    ("ref None", lambda: f0_metrics(None, F0H), TE, "ref"),
    ("hyp a string", lambda: f0_metrics(F0R, "ab"), TE, "hyp"),
    ("ref 3-D", lambda: f0_metrics(F0R[..., None], F0H[..., None]), VE, "ref must have shape"),
    ("frame counts differ", lambda: f0_metrics(F0R, F0H[:, :5]), VE, "6 frames but hyp has 5"),
    ("lengths > T", lambda: f0_metrics(F0R, F0H, torch.tensor([7, 4])), VE, "lengths"),
    ("lengths negative", lambda: f0_metrics(F0R, F0H, torch.tensor([-1, 4])), VE, "lengths"),
    ("lengths float", lambda: f0_metrics(F0R, F0H, torch.tensor([6.0, 4.0])), TE, "lengths"),
    ("lengths wrong shape", lambda: f0_metrics(F0R, F0H, torch.tensor([6])), VE, "lengths"),
    ("voicing wrong shape", lambda: f0_metrics(F0R, F0H, ref_voiced=F0R[:, :5] > 0), VE,
     "ref_voiced"),
    ("voicing a string", lambda: f0_metrics(F0R, F0H, hyp_voiced="ab"), TE, "hyp_voiced"),
    ("voicing fractional", lambda: f0_metrics(F0R, F0H, ref_voiced=torch.full((2, 6), 0.5)), TE,
     "ref_voiced"),
    ("voiced frame with F0 0", lambda: f0_metrics(F0R, F0H, hyp_voiced=torch.ones(2, 6)), VE,
     "utterance 0, frame 1"),
]


@pytest.mark.parametrize("case", F0_BAD, ids=[c[0].replace(" ", "_") for c in F0_BAD])
def test_bad_f0_input_gives_a_named_library_error(case):
    _, call, err, part = case
    with pytest.raises(err, match=re.escape(part)):
        call()


F0_SAME = [
    ("numpy", dict(ref_f0=F0R.numpy(), hyp_f0=F0H.numpy(), lengths=F0LEN)),
    ("lists", dict(ref_f0=F0R.tolist(), hyp_f0=F0H.tolist(), lengths=[6, 4])),
    ("non-contiguous", dict(ref_f0=F0R.t().contiguous().t(), hyp_f0=F0H, lengths=F0LEN)),
    ("padding holds NaN and inf", dict(ref_f0=_set(F0R, (1, slice(4, None))),
                                       hyp_f0=_set(F0H, (1, slice(4, None)), math.inf),
                                       lengths=F0LEN)),
    ("voicing marks padding voiced", dict(ref_f0=F0R, hyp_f0=F0H, lengths=F0LEN,
                                          ref_voiced=_set(F0R > 0, (1, slice(4, None)), True))),
    ("float16", dict(ref_f0=F0R.half(), hyp_f0=F0H.half(), lengths=F0LEN)),
]


@pytest.mark.parametrize("case", F0_SAME, ids=[c[0].replace(" ", "_") for c in F0_SAME])
def test_equivalent_f0_input_gives_the_reference_answer(case):
    _, kw = case
    got = f0_metrics(**kw)
    ref = f0_metrics(F0R, F0H, F0LEN)
    for x, y in zip(got, ref):
        if isinstance(x, torch.Tensor):
            torch.testing.assert_close(x, y)
        else:
            assert x == pytest.approx(y)


def test_f0_of_an_empty_batch_is_empty():
    out = f0_metrics(F0R[:0], F0H[:0])
    assert out.rmse_hz.shape == (0,) and out.mean_vuv_error == 0.0
