"""Metrics on hand-computed cases, identities, symmetry, lengths, bad input, and real data."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pytorch_hmm.io import read_lab, segments_to_durations
from pytorch_hmm.metrics import (
    MCD_CONSTANT,
    boundary_accuracy,
    dtw,
    duration_metrics,
    f0_metrics,
    frame_accuracy,
    mel_cepstral_distortion,
)
from pytorch_hmm.speech import load_audio

DATA = Path(__file__).resolve().parents[1] / "data"
ARCTIC = DATA / "arctic"
K = 10.0 * math.sqrt(2.0) / math.log(10.0)


# ------------------------------------------------------------------------- MCD
def test_mcd_constant():
    assert MCD_CONSTANT == pytest.approx(6.141851463713754, abs=1e-12)


def test_mcd_by_hand():
    ref = torch.zeros(2, 3, dtype=torch.float64)
    hyp = torch.tensor([[7.0, 3.0, 4.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    res = mel_cepstral_distortion(ref, hyp)
    # c0 excluded: frame distances 5 and 0 -> mean 2.5
    assert float(res.mcd) == pytest.approx(K * 2.5, abs=1e-12)
    assert res.mean == pytest.approx(K * 2.5, abs=1e-12)
    assert int(res.n_frames) == 2
    with_c0 = mel_cepstral_distortion(ref, hyp, exclude_c0=False)
    assert float(with_c0.mcd) == pytest.approx(K * (math.sqrt(74.0) + 1.0) / 2, abs=1e-12)


def test_mcd_identity_symmetry_lengths():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.normal(size=(2, 12, 25)))
    b = torch.tensor(rng.normal(size=(2, 12, 25)))
    lengths = torch.tensor([12, 7])
    assert torch.equal(mel_cepstral_distortion(a, a, lengths).mcd, torch.zeros(2).double())
    ab = mel_cepstral_distortion(a, b, lengths)
    ba = mel_cepstral_distortion(b, a, lengths)
    torch.testing.assert_close(ab.mcd, ba.mcd, rtol=0, atol=1e-12)
    # padding is ignored: corrupt item 1 past its length
    b2 = b.clone()
    b2[1, 7:] = 1e6
    torch.testing.assert_close(mel_cepstral_distortion(a, b2, lengths).mcd, ab.mcd)
    assert ab.n_frames.tolist() == [12, 7]
    per = [
        K * torch.linalg.vector_norm(a[i, :n, 1:] - b[i, :n, 1:], dim=-1).mean()
        for i, n in enumerate([12, 7])
    ]
    torch.testing.assert_close(ab.mcd, torch.stack(per), rtol=0, atol=1e-12)
    pooled = (ab.mcd * torch.tensor([12.0, 7.0]).double()).sum() / 19
    assert ab.mean == pytest.approx(float(pooled), abs=1e-12)


def test_mcd_mismatched_lengths_need_dtw():
    a, b = torch.zeros(10, 5), torch.zeros(12, 5)
    with pytest.raises(ValueError, match="10 frames but hyp has 12"):
        mel_cepstral_distortion(a, b)
    with pytest.raises(ValueError, match="lengths differ"):
        mel_cepstral_distortion(a[None], a[None], torch.tensor([10]), torch.tensor([9]))
    with pytest.raises(ValueError, match="feature dimension"):
        mel_cepstral_distortion(a, torch.zeros(10, 4))
    with pytest.raises(ValueError, match="exclude_c0"):
        mel_cepstral_distortion(a[:, :1], a[:, :1])


def test_mcd_dtw_time_stretched_copy_is_zero():
    rng = np.random.default_rng(1)
    ref = torch.tensor(rng.normal(size=(20, 13)))
    hyp = ref.repeat_interleave(2, dim=0)  # twice as slow
    res = mel_cepstral_distortion(ref, hyp, dtw_align=True)
    assert float(res.mcd) == pytest.approx(0.0, abs=1e-9)
    assert int(res.n_frames) == 40  # each hyp frame on the path once
    assert res.paths[0][0].tolist() == [0, 0] and res.paths[0][-1].tolist() == [19, 39]
    # symmetric: the path of the swapped pair is the transposed path
    rev = mel_cepstral_distortion(hyp, ref, dtw_align=True)
    assert float(rev.mcd) == pytest.approx(0.0, abs=1e-9)


def test_mcd_dtw_by_hand():
    # 1-D cepstra (plus c0): ref c1 = [0, 1, 2], hyp c1 = [0, 2]
    ref = torch.tensor([[9.0, 0.0], [9.0, 1.0], [9.0, 2.0]])
    hyp = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    res = mel_cepstral_distortion(ref, hyp, dtw_align=True)
    # best path (0,0) (1,?) (2,1): frame 1 costs 1 either way -> distances 0, 1, 0 over 3 cells
    assert float(res.mcd) == pytest.approx(K / 3.0, abs=1e-12)
    assert int(res.n_frames) == 3


def test_dtw_matches_dtw_python():
    dtw_python = pytest.importorskip("dtw")
    rng = np.random.default_rng(2)
    for n, m in [(30, 45), (17, 9), (1, 5)]:
        cost = rng.uniform(size=(n, m))
        ours = dtw(cost)
        ref = dtw_python.dtw(cost, step_pattern="symmetric1")
        assert ours.distance == pytest.approx(ref.distance, abs=1e-12)
        np.testing.assert_array_equal(ours.path, np.stack([ref.index1, ref.index2], 1))


def test_mcd_on_arctic_mel_cepstra():
    """Natural mel-cepstra vs the same with noise of known size in c1..c59."""
    data = np.load(ARCTIC / "slt_arctic_demo_data" / "Y_acoustic" / "arctic_a0003.npz")["data"]
    mc = torch.tensor(data[:, :60], dtype=torch.float64)
    assert float(mel_cepstral_distortion(mc, mc).mcd) == 0.0
    shifted = mc.clone()
    shifted[:, 1:] += 0.01  # every frame at Euclidean distance 0.01 * sqrt(59)
    res = mel_cepstral_distortion(mc, shifted)
    assert float(res.mcd) == pytest.approx(K * 0.01 * math.sqrt(59), rel=1e-9)


# -------------------------------------------------------------------------- F0
def test_f0_by_hand():
    ref = torch.tensor([100.0, 200.0, 0.0, 0.0, 150.0])
    hyp = torch.tensor([110.0, 0.0, 0.0, 120.0, 150.0])
    res = f0_metrics(ref, hyp)
    # voiced in both: frames 0 and 4 (errors 10 Hz and 0)
    assert int(res.n_voiced) == 2 and int(res.n_frames) == 5
    assert float(res.rmse_hz) == pytest.approx(math.sqrt(50.0), abs=1e-9)
    assert float(res.rmse_cents) == pytest.approx(1200 * math.log2(1.1) / math.sqrt(2), abs=1e-6)
    # voicing differs on frames 1 and 3
    assert float(res.vuv_error) == pytest.approx(0.4, abs=1e-12)
    # NaN (pyin's unvoiced) means the same as 0
    nan = hyp.clone()
    nan[nan == 0] = float("nan")
    assert f0_metrics(ref, nan).rmse_hz == res.rmse_hz
    # symmetry of every figure
    rev = f0_metrics(hyp, ref)
    for a, b in zip(res[:5], rev[:5]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_f0_identity_lengths_and_no_voiced_frame():
    f0 = torch.tensor([[120.0, 130.0, 0.0, 140.0], [0.0, 0.0, 0.0, 0.0]])
    res = f0_metrics(f0, f0)
    assert res.rmse_hz.tolist() == [0.0, 0.0] and res.vuv_error.tolist() == [0.0, 0.0]
    # no voiced frame: a defined 0.0, not NaN
    assert res.n_voiced.tolist() == [3, 0]
    assert not torch.isnan(res.rmse_cents).any()
    empty = f0_metrics(torch.zeros(6), torch.zeros(6))
    assert float(empty.rmse_hz) == 0.0 and float(empty.rmse_cents) == 0.0
    assert int(empty.n_voiced) == 0 and empty.mean_rmse_hz == 0.0
    # lengths: the mismatch at frame 3 of item 0 is past its length 3
    hyp = f0.clone()
    hyp[0, 3] = 0.0
    assert f0_metrics(f0, hyp, torch.tensor([3, 4])).vuv_error.tolist() == [0.0, 0.0]
    assert f0_metrics(f0, hyp).vuv_error.tolist() == [0.25, 0.0]
    with pytest.raises(ValueError, match="4 frames but hyp has 5"):
        f0_metrics(torch.ones(4), torch.ones(5))
    with pytest.raises(ValueError, match="hyp_voiced marks frames voiced"):
        f0_metrics(torch.ones(4), torch.zeros(4), hyp_voiced=torch.ones(4, dtype=torch.bool))


def test_f0_pyin_on_arctic_speech():
    """F0 of the arctic recording by librosa.pyin, against the same track 50 cents higher."""
    librosa = pytest.importorskip("librosa")
    y, sr = load_audio(ARCTIC / "arctic_a0009.wav")
    f0, voiced, _ = librosa.pyin(
        y[:sr].numpy(), fmin=80.0, fmax=400.0, sr=sr, frame_length=1024, hop_length=256
    )
    f0 = torch.tensor(f0)
    assert int(torch.isfinite(f0).sum()) > 10  # speech in the first second
    up = f0 * 2 ** (50 / 1200)
    res = f0_metrics(f0, up)
    assert float(res.rmse_cents) == pytest.approx(50.0, abs=1e-6)
    v = torch.isfinite(f0)
    hand = torch.sqrt(((up - f0)[v] ** 2).mean())
    assert float(res.rmse_hz) == pytest.approx(float(hand), rel=1e-9)
    assert float(res.vuv_error) == 0.0
    assert torch.equal(torch.tensor(voiced), v)


# -------------------------------------------------------------------- durations
def test_duration_metrics_by_hand():
    ref = torch.tensor([10.0, 20.0, 30.0])
    hyp = torch.tensor([12.0, 20.0, 25.0])
    res = duration_metrics(ref, hyp, frame_shift_ms=5.0, tolerance=2)
    assert float(res.mae_frames) == pytest.approx(7 / 3, abs=1e-12)
    assert float(res.mae_ms) == pytest.approx(35 / 3, abs=1e-12)
    assert float(res.rmse_frames) == pytest.approx(math.sqrt(29 / 3), abs=1e-12)
    assert float(res.accuracy) == pytest.approx(2 / 3, abs=1e-12)  # |2| <= 2 counts
    ms = duration_metrics(ref, hyp, tolerance=10, tolerance_unit="ms")
    assert float(ms.accuracy) == pytest.approx(2 / 3, abs=1e-12)
    rel = duration_metrics(ref, hyp, tolerance=0.1, tolerance_unit="relative")
    assert float(rel.accuracy) == pytest.approx(1 / 3, abs=1e-12)  # tolerances 1, 2, 3
    same = duration_metrics(ref, ref, tolerance=0)
    assert float(same.mae_frames) == 0.0 and float(same.accuracy) == 1.0
    back = duration_metrics(hyp, ref, tolerance=2)
    assert float(back.mae_frames) == float(res.mae_frames)


def test_duration_metrics_lengths_and_pooling():
    ref = torch.tensor([[10, 20, 30], [4, 4, 0]])
    hyp = torch.tensor([[12, 20, 25], [5, 8, 99]])
    res = duration_metrics(ref, hyp, torch.tensor([3, 2]), tolerance=1)
    assert res.n_phones.tolist() == [3, 2]
    assert res.mae_frames.tolist() == pytest.approx([7 / 3, 2.5])
    assert res.mean_mae_frames == pytest.approx((7 + 5) / 5)
    assert res.mean_accuracy == pytest.approx(2 / 5)  # 0 and 1 frame errors pass
    with pytest.raises(ValueError, match="tolerance_unit"):
        duration_metrics(ref, hyp, tolerance_unit="s")
    with pytest.raises(ValueError, match="3 frames but hyp has 2"):
        duration_metrics(ref, hyp[:, :2])


def test_duration_metrics_on_arctic_state_labels():
    """Phone durations from the state labels vs the phone labels are the same."""
    _, from_states = segments_to_durations(
        read_lab(ARCTIC / "arctic_a0009_state.lab"), 0.005, n_states=5
    )
    _, phones = segments_to_durations(read_lab(ARCTIC / "arctic_a0009_phone.lab"), 0.005)
    res = duration_metrics(phones, from_states.sum(1), tolerance=0)
    assert float(res.mae_ms) == 0.0 and float(res.accuracy) == 1.0


# -------------------------------------------------------------------- alignment
def test_frame_accuracy_by_hand():
    ref = torch.tensor([[0, 0, 1, 1, 2], [3, 3, 3, 0, 0]])
    hyp = torch.tensor([[0, 1, 1, 1, 2], [3, 0, 3, 9, 9]])
    res = frame_accuracy(ref, hyp, torch.tensor([5, 3]))
    assert res.accuracy.tolist() == pytest.approx([0.8, 2 / 3])
    assert res.n_frames.tolist() == [5, 3]
    assert res.mean == pytest.approx(6 / 8)
    ign = frame_accuracy(ref, hyp, torch.tensor([5, 3]), ignore_index=3)
    assert ign.n_frames.tolist() == [5, 0] and ign.accuracy.tolist() == [0.8, 0.0]
    assert frame_accuracy(ref, ref).mean == 1.0
    with pytest.raises(ValueError, match="5 frames but hyp has 4"):
        frame_accuracy(ref, hyp[:, :4])


def test_boundary_accuracy_by_hand():
    ref = [(0.0, 0.1, "a"), (0.1, 0.25, "b"), (0.25, 0.4, "c"), (0.4, 0.5, "d")]
    hyp = [(0.0, 0.105, "a"), (0.105, 0.235, "b"), (0.235, 0.43, "c"), (0.43, 0.5, "d")]
    res = boundary_accuracy(ref, hyp)
    # boundary errors +5, -15, +30 ms
    np.testing.assert_allclose(res.errors_ms, [5.0, -15.0, 30.0], rtol=0, atol=1e-9)
    assert res.n_boundaries == 3
    assert res.within == pytest.approx({0.010: 1 / 3, 0.020: 2 / 3, 0.025: 2 / 3, 0.050: 1.0})
    assert res.mean_error_ms == pytest.approx(50 / 3)
    assert res.median_error_ms == pytest.approx(15.0)
    # symmetric in the absolute errors
    rev = boundary_accuracy(hyp, ref)
    assert rev.within == res.within and rev.mean_error_ms == pytest.approx(res.mean_error_ms)
    # edges included (both 0 error): 5 boundaries
    edges = boundary_accuracy(ref, hyp, include_edges=True)
    assert edges.n_boundaries == 5 and edges.within[0.010] == pytest.approx(3 / 5)
    # boundary time arrays and several utterances pooled
    arr = boundary_accuracy(np.array([0.1, 0.25, 0.4]), np.array([0.105, 0.235, 0.43]))
    assert arr.within == res.within
    two = boundary_accuracy([ref, ref], [hyp, ref], tolerances=(0.02,))
    assert two.n_boundaries == 6 and two.within == {0.02: pytest.approx(5 / 6)}
    ident = boundary_accuracy(ref, ref)
    assert ident.within[0.010] == 1.0 and ident.mean_error_ms == 0.0


def test_boundary_accuracy_bad_input_and_empty():
    ref = [(0.0, 0.1, "a"), (0.1, 0.2, "b")]
    with pytest.raises(ValueError, match="label sequences differ"):
        boundary_accuracy(ref, [(0.0, 0.1, "a"), (0.1, 0.2, "c")])
    with pytest.raises(ValueError, match="2 boundaries but hypothesis has 1"):
        boundary_accuracy(np.array([0.1, 0.2]), np.array([0.1]))
    with pytest.raises(ValueError, match="1 utterance"):
        boundary_accuracy([ref], [ref, ref])
    one = boundary_accuracy([(0.0, 1.0, "a")], [(0.0, 1.0, "a")])
    assert one.n_boundaries == 0 and one.within[0.02] == 0.0 and one.mean_error_ms == 0.0


def test_boundary_accuracy_on_festival_labels():
    """Exact Festival timings vs the same rounded to a 10 ms grid: every error <= 5 ms."""
    lab = sorted((DATA / "festival-dev" / "lab").glob("dev_kal_*.lab"))[0]
    ref = read_lab(lab)
    hyp = [(round(s / 0.01) * 0.01, round(e / 0.01) * 0.01, p) for s, e, p in ref]
    res = boundary_accuracy(ref, hyp)
    assert res.n_boundaries == len(ref) - 1
    assert np.abs(res.errors_ms).max() <= 5.0 + 1e-6
    assert res.within[0.010] == 1.0
    bounds = np.array([s.start for s in ref[1:]])
    expect = np.abs(np.round(bounds / 0.01) * 0.01 - bounds).mean() * 1000
    assert res.mean_error_ms == pytest.approx(expect, abs=1e-9)


def test_mcd_dtw_symmetric_and_batched_lengths():
    rng = np.random.default_rng(3)
    a = torch.tensor(rng.normal(size=(2, 15, 8)))
    b = torch.tensor(rng.normal(size=(2, 11, 8)))
    la, lb = torch.tensor([15, 9]), torch.tensor([11, 6])
    ab = mel_cepstral_distortion(a, b, la, lb, dtw_align=True)
    ba = mel_cepstral_distortion(b, a, lb, la, dtw_align=True)
    torch.testing.assert_close(ab.mcd, ba.mcd, rtol=0, atol=1e-12)
    assert ab.n_frames.tolist() == ba.n_frames.tolist()
    one = mel_cepstral_distortion(a[1, :9], b[1, :6], dtw_align=True)
    assert float(ab.mcd[1]) == pytest.approx(float(one.mcd), abs=1e-12)
    assert ab.paths[1][-1].tolist() == [8, 5]
