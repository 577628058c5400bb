"""create_speech_hmm: every model type builds, scores, decodes and survives a state_dict round
trip; bad arguments give errors that list the valid choices."""

import io

import pytest
import torch

import pytorch_hmm as ph

TYPES = [
    ("gaussian", {}),
    ("mixture_gaussian", {"num_mixtures": 2}),
    ("mixture_gaussian", {}),  # the seed's basic usage: a default number of mixtures
    ("hsmm", {"max_duration": 6}),
    ("streaming", {"chunk_size": 4}),
]


def _model(obj):
    return obj.model if isinstance(obj, ph.StreamingHMMProcessor) else obj


@pytest.mark.parametrize("topology", ["left_to_right", "ergodic"])
@pytest.mark.parametrize("model_type,kw", TYPES)
def test_every_type_builds_scores_and_round_trips(model_type, kw, topology):
    torch.manual_seed(0)
    obj = ph.create_speech_hmm(4, 3, model_type, topology=topology, **kw)
    model = _model(obj)
    model.set_means(torch.randn(model.means.shape))
    x = torch.randn(2, 12, 3)
    lengths = torch.tensor([12, 9])
    ll = model.log_likelihood(x, lengths)
    assert ll.shape == (2,) and torch.isfinite(ll).all()
    path = model.viterbi(x, lengths).path
    assert path.shape == (2, 12) and (path[1, 9:] == -1).all() and (path[:, :9] >= 0).all()
    if topology == "left_to_right":
        assert path[0, 0] == 0
    buf = io.BytesIO()
    torch.save(obj.state_dict(), buf)
    buf.seek(0)
    fresh = ph.create_speech_hmm(4, 3, model_type, topology=topology, **kw)
    fresh.load_state_dict(torch.load(buf))
    torch.testing.assert_close(_model(fresh).log_likelihood(x, lengths), ll)
    if model_type != "streaming":
        assert model.generate_sequence(torch.tensor([2, 1, 3, 1])).shape == (7, 3)


def test_bad_arguments_list_the_choices():
    with pytest.raises(ValueError, match="gaussian.*hsmm"):
        ph.create_speech_hmm(3, 2, "bogus")
    with pytest.raises(ValueError, match="topology"):
        ph.create_speech_hmm(3, 2, "gaussian", topology="circular")
    with pytest.raises(TypeError, match="max_duration"):
        ph.create_speech_hmm(3, 2, "gaussian", max_duration=5)
    with pytest.raises(TypeError, match="allowed"):
        ph.create_speech_hmm(3, 2, "hsmm", chunk_size=5)
    with pytest.raises(ValueError, match="max_duration"):
        ph.create_speech_hmm(3, 2, "hsmm", max_duration=0)
    with pytest.raises(TypeError):
        ph.create_speech_hmm(3, 2, "neural", max_duration=4)


def test_seed_signatures():
    m = ph.create_speech_hmm(num_states=10, feature_dim=80, model_type="hsmm", max_duration=20)
    assert isinstance(m, ph.HSMM) and m.log_durations().shape == (10, 20)
    m = ph.create_speech_hmm(
        num_states=12, feature_dim=80, model_type="mixture_gaussian", num_mixtures=4
    )
    assert m.num_mixtures == 4
    p = ph.create_speech_hmm(num_states=8, feature_dim=80, model_type="streaming", chunk_size=160)
    assert p.chunk_size == 160
    n = ph.create_speech_hmm(num_states=15, feature_dim=80, model_type="neural", hidden_dim=256)
    assert isinstance(n, ph.NeuralHMM) and n.num_symbols == 15 and n.hidden_dim == 256


def test_neural_type_scores_decodes_and_round_trips():
    torch.manual_seed(0)
    kw = dict(num_symbols=6, hidden_dim=16, prenet_dim=8)
    m = ph.create_speech_hmm(4, 3, "neural", **kw).eval()
    sym, sl = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    x, L = torch.randn(2, 12, 3), torch.tensor([12, 9])
    ll = m.log_likelihood(sym, sl, x, L)
    assert torch.isfinite(ll).all()
    assert m.viterbi(sym, sl, x, L).path.shape == (2, 12)
    fresh = ph.create_speech_hmm(4, 3, "neural", **kw).eval()
    fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(fresh.log_likelihood(sym, sl, x, L), ll)
