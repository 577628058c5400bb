"""DurationModel on hand cases and on the bundled Festival / ARCTIC alignments."""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from pytorch_hmm.io import read_lab, segments_to_durations
from pytorch_hmm.metrics import duration_metrics
from pytorch_hmm.speech import DurationModel

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def festival_slt():
    files = sorted((DATA / "festival-dev" / "lab").glob("dev_slt_*.lab"))
    assert len(files) >= 30
    return [segments_to_durations(read_lab(f), 0.005) for f in files]


def test_gaussian_by_hand():
    # a: durations 2, 4 -> mean 3, var 1;  b: 4, 8 -> mean 6, var 4
    model = DurationModel(variance_floor=1e-6).fit(
        [["a", "b"], ["a", "b"]], [torch.tensor([2, 4]), torch.tensor([4, 8])]
    )
    torch.testing.assert_close(model.means["a"], torch.tensor([3.0]).double())
    torch.testing.assert_close(model.variances["b"], torch.tensor([4.0]).double())
    p = model.predict(["a", "b"])
    assert p.durations.tolist() == [3, 6] and p.rho == 0.0
    # HTS speaking rate: mean + rho * variance
    assert model.predict(["a", "b"], rho=1.0).durations.tolist() == [4, 10]
    # target total 14 frames: rho = (14 - 9) / (1 + 4) = 1
    t = model.predict(["a", "b"], total_frames=14)
    assert t.rho == pytest.approx(1.0) and t.durations.tolist() == [4, 10]
    # rho = -0.5: continuous 2.5, 4.0; rounding carries the remainder: 3 then 4 (sum 7)
    fast = model.predict(["a", "b"], rho=-0.5)
    assert fast.means.tolist() == pytest.approx([2.5, 4.0])
    assert fast.durations.tolist() == [3, 4]
    # unseen phone -> the global model (mean of all four tokens = 4.5, rounded half up)
    u = model.predict(["zz"])
    assert u.units == ["*"] and u.durations.tolist() == [5]


def test_means_match_numpy_groupby(festival_slt):
    phones = [p for p, _ in festival_slt]
    durs = [d for _, d in festival_slt]
    model = DurationModel(min_count=1).fit(phones, durs)
    groups = defaultdict(list)
    for ps, ds in zip(phones, durs):
        for p, d in zip(ps, ds.tolist()):
            groups[p].append(d)
    for p, vals in groups.items():
        assert float(model.means[p]) == pytest.approx(np.mean(vals), abs=1e-9)
        floor = 0.01 * np.var(np.concatenate([np.array(v) for v in groups.values()]))
        assert float(model.variances[p]) == pytest.approx(max(np.var(vals), floor), abs=1e-9)
    assert model.phone_set == sorted(groups)


def test_lognormal_and_total_frames(festival_slt):
    phones = [p for p, _ in festival_slt]
    durs = [d for _, d in festival_slt]
    model = DurationModel(distribution="lognormal").fit(phones, durs)
    vals = [d for ps, ds in zip(phones, durs) for p, d in zip(ps, ds.tolist()) if p == "pau"]
    expect = np.exp(np.mean(np.log(np.maximum(vals, 1))))
    assert float(model.predict(["pau"]).means) == pytest.approx(expect, rel=1e-9)
    seq = phones[0]
    p = model.predict(seq, total_frames=500)
    assert float(p.means.sum()) == pytest.approx(500.0, rel=1e-9)
    assert abs(int(p.durations.sum()) - 500) <= 1
    slow = model.predict(seq, rho=0.5).durations.sum()
    assert slow > model.predict(seq).durations.sum()


def test_triphone_backoff():
    seqs = [["pau", "a", "b", "pau"]] * 3 + [["pau", "b", "a", "pau"]]
    durs = [torch.tensor([10, 4, 6, 10])] * 3 + [torch.tensor([10, 8, 2, 10])]
    model = DurationModel(context="triphone", min_count=2).fit(seqs, durs)
    p = model.predict(["pau", "a", "b", "pau"])
    assert p.units[1] == "pau-a+b" and p.durations.tolist()[1:3] == [4, 6]
    # "pau-b+a" seen once (< min_count) -> monophone b, mean (6*3 + 8) / 4
    q = model.predict(["pau", "b", "a", "pau"])
    assert q.units[1] == "b" and float(q.means[1]) == pytest.approx(6.5)


def test_state_durations_arctic():
    _, dur = segments_to_durations(
        read_lab(DATA / "arctic" / "arctic_a0009_state.lab"), 0.005, n_states=5
    )
    labels, _ = segments_to_durations(read_lab(DATA / "arctic" / "arctic_a0009_phone.lab"), 0.005)
    model = DurationModel(n_states=5, min_count=1).fit([labels], [dur])
    p = model.predict(labels)
    assert p.durations.shape == (40, 5) and p.durations.dtype == torch.long
    # trained on this utterance alone: the predicted total equals the true length
    assert int(p.durations.sum()) == int(dur.sum())
    assert int(p.durations.min()) >= 1


def test_heldout_accuracy_beats_global_mean(festival_slt):
    """The "duration prediction accuracy" figure: share of held-out phones within 25 ms."""
    train, test = festival_slt[:30], festival_slt[30:]
    ref = torch.cat([d for _, d in test])
    mean_frames = float(torch.cat([d for _, d in train]).double().mean())
    base = duration_metrics(ref, torch.full_like(ref, round(mean_frames)), tolerance=5)
    for context in ("none", "triphone"):
        model = DurationModel(context=context).fit([p for p, _ in train], [d for _, d in train])
        hyp, lengths = model.predict_batch([p for p, _ in test])
        flat = torch.cat([hyp[b, :n] for b, n in enumerate(lengths.tolist())])
        res = duration_metrics(ref, flat, tolerance=5)  # 5 frames = 25 ms
        assert res.mean_mae_ms < base.mean_mae_ms
        assert res.mean_accuracy > base.mean_accuracy


def test_round_trip_and_bad_input(tmp_path):
    model = DurationModel(context="triphone").fit([["a", "b"]] * 2, [torch.tensor([3, 5])] * 2)
    path = tmp_path / "dur.json"
    path.write_text(json.dumps(model.to_dict()))
    back = DurationModel.from_dict(json.loads(path.read_text()))
    assert (
        back.predict(["a", "b"]).durations.tolist() == model.predict(["a", "b"]).durations.tolist()
    )
    with pytest.raises(RuntimeError, match="not fitted"):
        DurationModel().predict(["a"])
    with pytest.raises(ValueError, match=r"durations\[0\] must have shape \(2,\)"):
        DurationModel().fit([["a", "b"]], [torch.tensor([1, 2, 3])])
    with pytest.raises(ValueError, match=r"must have shape \(2, 5\)"):
        DurationModel(n_states=5).fit([["a", "b"]], [torch.ones(2, 3)])
    with pytest.raises(ValueError, match="2 phone sequences but 1"):
        DurationModel().fit([["a"], ["b"]], [torch.tensor([1])])
    with pytest.raises(TypeError, match="not a str"):
        model.predict("ab")
    with pytest.raises(ValueError, match="distribution"):
        DurationModel(distribution="gamma")
