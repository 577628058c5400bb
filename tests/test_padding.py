"""Padding is never read (issue 16): NaN, +inf or -inf in the padded frames of a batch
change nothing, in results or gradients, at every entry point that takes lengths; and
NaN / inf in a *real* frame of a padded batch is refused with the sequence and frame named
(or, for log-likelihood inputs, -inf is taken as "impossible", its mathematical meaning).
"""

from __future__ import annotations

import math

import pytest
import torch

from pytorch_hmm import core
from pytorch_hmm.alignment import ctc_forced_align
from pytorch_hmm.metrics import mel_cepstral_distortion
from pytorch_hmm.models import GaussianHMM, HMMPyTorch, MixtureGaussianHMM
from pytorch_hmm.speech import MFCC, LogMelSpectrogram, add_deltas, cmvn, deltas

D = torch.float64
PADS = [math.nan, math.inf, -math.inf]
PAD_IDS = ["nan", "+inf", "-inf"]
BAD = [(math.nan, "NaN"), (math.inf, r"\+inf")]


def pad_with(x: torch.Tensor, lengths, value: float) -> torch.Tensor:
    """A copy of ``x`` (B, T, ...) with every frame t >= lengths[b] set to ``value``."""
    x = x.clone()
    for b, L in enumerate(list(lengths)):
        x[b, int(L) :] = value
    return x


def hmm(K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    lA = torch.log_softmax(torch.randn(K, K, generator=g, dtype=D), -1)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=D), -1)
    return lpi, lA


LENGTHS = torch.tensor([6, 3, 1])


def emissions(B=3, T=6, K=3, seed=1):
    return torch.randn(B, T, K, generator=torch.Generator().manual_seed(seed), dtype=D)


# ------------------------------------------------------------------------------------------
# the engine


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
def test_engine_padding_never_read(value):
    lpi, lA = hmm()
    lb = emissions()
    x = pad_with(lb, LENGTHS, value).requires_grad_(True)
    ll = core.log_likelihood(x, lpi, lA, LENGTHS)
    ll.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1, 3:] == 0).all()
    fw = core.forward(x.detach(), lpi, lA, LENGTHS)
    bw = core.backward(x.detach(), lpi, lA, LENGTHS)
    post = core.posteriors(x.detach(), lpi, lA, LENGTHS)
    vit = core.viterbi(x.detach(), lpi, lA, LENGTHS)
    for b, L in enumerate(LENGTHS.tolist()):
        one = lb[b : b + 1, :L].clone().requires_grad_(True)
        ll1 = core.log_likelihood(one, lpi, lA)
        ll1.sum().backward()
        torch.testing.assert_close(ll[b], ll1[0])
        torch.testing.assert_close(x.grad[b, :L], one.grad[0])
        torch.testing.assert_close(fw.log_alpha[b, :L], core.forward(one, lpi, lA).log_alpha[0])
        torch.testing.assert_close(bw[b, :L], core.backward(one.detach(), lpi, lA)[0])
        p1 = core.posteriors(one.detach(), lpi, lA)
        torch.testing.assert_close(post.state_posteriors[b, :L], p1.state_posteriors[0])
        torch.testing.assert_close(post.transition_counts[b], p1.transition_counts[0])
        v1 = core.viterbi(one.detach(), lpi, lA)
        assert vit.path[b, :L].tolist() == v1.path[0].tolist()
        torch.testing.assert_close(vit.score[b], v1.score[0])


@pytest.mark.parametrize("value, what", BAD, ids=["nan", "+inf"])
@pytest.mark.parametrize(
    "fn", [core.log_likelihood, core.forward, core.backward, core.posteriors, core.viterbi]
)
def test_engine_bad_real_frame_named(fn, value, what):
    lpi, lA = hmm()
    x = pad_with(emissions(), LENGTHS, math.nan)
    x[1, 2, 0] = value  # a real frame of a padded sequence (lengths[1] = 3)
    msg = rf"log_emissions contains {what} \(first at index \(1, 2, 0\): sequence 1, frame 2"
    with pytest.raises(ValueError, match=msg):
        fn(x, lpi, lA, LENGTHS)


def test_engine_neg_inf_real_frame_is_impossible_not_an_error():
    lpi, lA = hmm()
    lb = emissions()
    lb[1, 1, 0] = -math.inf  # state 0 impossible at frame 1 of sequence 1
    lb[2, 0, :] = -math.inf  # sequence 2 (one frame): nothing possible
    x = pad_with(lb, LENGTHS, math.nan).requires_grad_(True)
    ll = core.log_likelihood(x, lpi, lA, LENGTHS)
    ll1 = core.log_likelihood(lb[1:2, :3], lpi, lA)
    torch.testing.assert_close(ll[1], ll1[0])
    assert ll[2] == -math.inf and math.isfinite(float(ll[0].detach()))
    ll[:2].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[1, 1, 0] == 0
    v = core.viterbi(x.detach(), lpi, lA, LENGTHS, on_impossible="ignore")
    assert v.path[1, 1] != 0 and v.path[2].tolist() == [-1] * 6


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
def test_hsmm_padding_never_read(value):
    lpi, lA = hmm()
    lA = torch.log_softmax(lA.masked_fill(torch.eye(3, dtype=torch.bool), -math.inf), -1)
    ldur = torch.log_softmax(torch.randn(3, 3, dtype=D), -1)
    lb = emissions()
    x = pad_with(lb, LENGTHS, value).requires_grad_(True)
    ll = core.hsmm_log_likelihood(x, lpi, lA, ldur, LENGTHS)
    ll.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1, 3:] == 0).all()
    post = core.hsmm_posteriors(x.detach(), lpi, lA, ldur, LENGTHS)
    vit = core.hsmm_viterbi(x.detach(), lpi, lA, ldur, LENGTHS)
    for b, L in enumerate(LENGTHS.tolist()):
        one = lb[b : b + 1, :L].clone().requires_grad_(True)
        ll1 = core.hsmm_log_likelihood(one, lpi, lA, ldur)
        ll1.sum().backward()
        torch.testing.assert_close(ll[b], ll1[0])
        torch.testing.assert_close(x.grad[b, :L], one.grad[0])
        p1 = core.hsmm_posteriors(one.detach(), lpi, lA, ldur)
        torch.testing.assert_close(post.state_posteriors[b, :L], p1.state_posteriors[0])
        torch.testing.assert_close(post.duration_counts[b], p1.duration_counts[0])
        v1 = core.hsmm_viterbi(one.detach(), lpi, lA, ldur)
        assert vit.path[b, :L].tolist() == v1.path[0].tolist()
    x = x.detach().clone()
    x[0, 4, 2] = math.nan
    with pytest.raises(ValueError, match=r"log_emissions contains NaN .*sequence 0, frame 4"):
        core.hsmm_viterbi(x, lpi, lA, ldur, LENGTHS)


# ------------------------------------------------------------------------------------------
# models


def _models():
    torch.manual_seed(0)
    return [
        GaussianHMM(3, 2, "diag", dtype=D),
        GaussianHMM(3, 2, "full", dtype=D),
        MixtureGaussianHMM(3, 2, 2, dtype=D),
    ]


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
@pytest.mark.parametrize("which", [0, 1, 2], ids=["diag", "full", "mixture"])
def test_models_padding_never_read(which, value):
    m = _models()[which]
    x = torch.randn(3, 6, 2, dtype=D)
    xp = pad_with(x, LENGTHS, value)
    ll = m.log_likelihood(xp, LENGTHS)
    m.zero_grad()
    ll.sum().backward()
    grads = [p.grad.clone() for p in m.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    m.zero_grad()
    ll1 = torch.cat([m.log_likelihood(x[b : b + 1, :L]) for b, L in enumerate(LENGTHS.tolist())])
    ll1.sum().backward()
    torch.testing.assert_close(ll, ll1)
    for g, p in zip(grads, [p for p in m.parameters() if p.grad is not None]):
        torch.testing.assert_close(g, p.grad)
    v = m.viterbi(xp, LENGTHS)
    post = m.posteriors(xp, LENGTHS)
    for b, L in enumerate(LENGTHS.tolist()):
        assert v.path[b, :L].tolist() == m.viterbi(x[b : b + 1, :L]).path[0].tolist()
        torch.testing.assert_close(
            post.state_posteriors[b, :L], m.posteriors(x[b : b + 1, :L]).state_posteriors[0]
        )


@pytest.mark.parametrize("value, what", [(math.nan, "NaN"), (math.inf, "inf"), (-math.inf, "inf")])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["diag", "full", "mixture"])
def test_models_bad_real_frame_named(which, value, what):
    """Before: in a padded batch +-inf in a real frame slipped past the check (diag: "contains
    NaN" from the engine, full covariance: -inf silently)."""
    m = _models()[which]
    x = pad_with(torch.randn(3, 6, 2, dtype=D), LENGTHS, math.nan)
    x[1, 2, 1] = value
    for call in (m.log_likelihood, m.viterbi, m.posteriors):
        with pytest.raises(ValueError, match=rf"x contains {what} \(sequence 1, frame 2\)"):
            call(x, LENGTHS)


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
def test_hmmpytorch_padding_and_real_frames(value):
    h = HMMPyTorch(torch.tensor([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]]), dtype=D)
    lb = torch.log_softmax(emissions(), -1)
    xp = pad_with(lb, LENGTHS, value)
    ll = h.log_likelihood(xp, LENGTHS)
    v = h.viterbi(xp, LENGTHS)
    for b, L in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(ll[b], h.log_likelihood(lb[b : b + 1, :L])[0])
        assert v.path[b, :L].tolist() == h.viterbi(lb[b : b + 1, :L]).path[0].tolist()
    for bad, what in BAD:
        x = xp.clone()
        x[1, 2, 0] = bad
        with pytest.raises(ValueError, match=rf"log_emissions contains {what} .*sequence 1, fr"):
            h.log_likelihood(x, LENGTHS)
    x = xp.clone()
    x[0, 3, :] = -math.inf  # impossible frame: -inf log-likelihood, not an error
    assert h.log_likelihood(x, LENGTHS)[0] == -math.inf


# ------------------------------------------------------------------------------------------
# CTC


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
@pytest.mark.parametrize("method", ["engine", "kernel"])
def test_ctc_padding_never_read(method, value):
    from pytorch_hmm.alignment import CTCAligner

    if method == "kernel":
        pytest.importorskip("numba")
    lp = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(3)).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3], [2, 2, 0], [4, 0, 0]])
    il, tl = torch.tensor([8, 5, 2]), torch.tensor([3, 2, 1])
    al = CTCAligner(method=method)
    r = al.align(pad_with(lp, il, value), targets, il, tl)
    for b in range(3):
        L, S = int(il[b]), int(tl[b])
        r1 = al.align(lp[b : b + 1, :L], targets[b : b + 1, :S])
        assert r.labels[b, :L].tolist() == r1.labels[0].tolist()
        assert (r.labels[b, L:] == -1).all()
        torch.testing.assert_close(r.score[b], r1.score[0])
        assert torch.isfinite(r.scores[b]).all()
    for bad, what in BAD:
        x = pad_with(lp, il, value)
        x[1, 4, 2] = bad
        with pytest.raises(ValueError, match=rf"log_probs contains {what} .*utterance 1, frame 4"):
            ctc_forced_align(x, targets, il, tl)
    x = pad_with(lp, il, value)
    x[1, 4, :] = -math.inf  # an impossible frame: that utterance cannot be aligned
    with pytest.warns(RuntimeWarning, match="impossible"):
        r = al.align(x, targets, il, tl)
    assert r.valid.tolist() == [True, False, True]


# ------------------------------------------------------------------------------------------
# feature extractors


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
@pytest.mark.parametrize("cls", [LogMelSpectrogram, MFCC])
def test_feature_extractors_padding_never_read(cls, value):
    fe = cls(16000)
    g = torch.Generator().manual_seed(4)
    wav = torch.randn(2, 4000, generator=g)
    lens = torch.tensor([4000, 2500])
    out = fe(pad_with(wav, lens, value), lens)
    assert torch.isfinite(out.features).all()
    for b in range(2):
        one = fe(wav[b : b + 1, : int(lens[b])])
        n = int(out.lengths[b])
        assert n == int(one.lengths[0])
        torch.testing.assert_close(out.features[b, :n], one.features[0, :n])
    bad = pad_with(wav, lens, value)
    bad[1, 100] = math.nan
    with pytest.raises(ValueError, match=r"waveform contains NaN or inf: NaN in signal 1 at "):
        fe(bad, lens)


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
@pytest.mark.parametrize(
    "fn", [deltas, add_deltas, cmvn, lambda f, n: cmvn(f, n, variance=False)], ids=range(4)
)
def test_frame_features_padding_never_read(fn, value):
    x = torch.randn(3, 7, 4, dtype=D)
    n = torch.tensor([7, 4, 0])
    xp = pad_with(x, n, value).requires_grad_(True)
    y = fn(xp, n)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(xp.grad).all() and (xp.grad[1, 4:] == 0).all()
    for b in range(2):
        L = int(n[b])
        torch.testing.assert_close(y[b, :L], fn(x[b, :L], None))
        assert (y[b, L:] == 0).all()
    for bad, what in [(math.nan, "NaN"), (math.inf, r"\+inf"), (-math.inf, "-inf")]:
        xb = xp.detach().clone()
        xb[1, 3, 2] = bad
        with pytest.raises(ValueError, match=rf"features contains {what} .*sequence 1, frame 3"):
            fn(xb, n)


# ------------------------------------------------------------------------------------------
# mel-cepstral distortion


@pytest.mark.parametrize("value", PADS, ids=PAD_IDS)
@pytest.mark.parametrize("dtw_align", [False, True])
def test_mcd_padding_excluded(value, dtw_align):
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(2, 6, 5, generator=g, dtype=D)
    hyp = ref + 0.1 * torch.randn(2, 6, 5, generator=g, dtype=D)
    n = torch.tensor([6, 3])
    r = mel_cepstral_distortion(
        pad_with(ref, n, value), pad_with(hyp, n, -value), n, dtw_align=dtw_align
    )
    assert math.isfinite(r.mean) and torch.isfinite(r.mcd).all()
    one = [
        mel_cepstral_distortion(ref[b, : int(n[b])], hyp[b, : int(n[b])], dtw_align=dtw_align)
        for b in range(2)
    ]
    torch.testing.assert_close(r.mcd, torch.cat([o.mcd.reshape(1) for o in one]).to(r.mcd.dtype))
    frames = sum(int(o.n_frames.sum()) for o in one)
    assert r.mean == pytest.approx(sum(o.mean * int(o.n_frames.sum()) for o in one) / frames)
    bad = pad_with(ref, n, value)
    bad[1, 2, 3] = math.nan
    with pytest.raises(ValueError, match=r"ref contains NaN .*sequence 1, frame 2"):
        mel_cepstral_distortion(bad, hyp, n, dtw_align=dtw_align)
