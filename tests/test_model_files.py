"""The one model file format (pytorch_hmm.io.model_file): save / load round trips of every
model class and the aligner, configs that rebuild models, and files refused by name."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings

import pytest
import torch

import pytorch_hmm
from pytorch_hmm import HMMTypeError, HMMValueError
from pytorch_hmm.alignment import AlignerConfig, ForcedAligner, Utterance
from pytorch_hmm.alignment.lexicon import Lexicon
from pytorch_hmm.io import model_file
from pytorch_hmm.models import (
    HSMM,
    BaseHMM,
    GaussianHMM,
    HMMPyTorch,
    MixtureGaussianHMM,
    NeuralHMM,
)
from pytorch_hmm.speech import DurationModel
from pytorch_hmm.streaming import StreamingHMMProcessor


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(B=2, T=12, D=2, seed=0):
    x = torch.randn(B, T, D, generator=_gen(seed))
    x[:, T // 2 :] += 3.0
    return x


LENGTHS = torch.tensor([12, 9])


def _quiet_fit(m, x, lengths=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m.fit(x, lengths, n_iter=3, **kw)


# -- builders: (model, outputs(model) -> comparable values) ----------------------------------
def _gaussian():
    m = _quiet_fit(GaussianHMM(3, 2), _x(), LENGTHS)
    return m, lambda m: (m.log_likelihood(_x(), LENGTHS), m.viterbi(_x(), LENGTHS).path)


def _gaussian_full64():
    m = _quiet_fit(GaussianHMM(2, 2, "full", dtype=torch.float64, min_covar=1e-2), _x(), LENGTHS)
    return m, lambda m: (m.log_likelihood(_x(), LENGTHS), m.viterbi(_x(), LENGTHS).path)


def _mixture():
    m = _quiet_fit(MixtureGaussianHMM(2, 2, num_mixtures=2, covariance_center="previous"), _x())
    return m, lambda m: (m.log_likelihood(_x()), m.viterbi(_x()).path)


def _hsmm():
    m = HSMM(3, 2, max_duration=6, duration="poisson", right_censored=True)
    _quiet_fit(m, _x(), LENGTHS)
    return m, lambda m: (m.log_likelihood(_x(), LENGTHS), m.viterbi(_x(), LENGTHS).path)


def _hsmm_mixture():
    m = HSMM(2, 2, max_duration=5, emission="mixture", num_mixtures=2, topology="ergodic")
    _quiet_fit(m, _x(T=8), None)
    return m, lambda m: (m.log_likelihood(_x(T=8)),)


def _plain():
    m = HMMPyTorch(torch.tensor([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]]))
    le = torch.randn(2, 7, 3, generator=_gen(1)).log_softmax(-1)
    return m, lambda m: (m.log_likelihood(le), m.viterbi(le).path)


def _base():
    m = BaseHMM(3, startprob=[0.5, 0.5, 0.0], dtype=torch.float64)
    return m, lambda m: (m.startprob, m.transmat)


SYM = torch.tensor([[1, 2, 3], [2, 1, 0]])
SYM_LEN = torch.tensor([3, 2])


def _neural():
    torch.manual_seed(0)
    m = NeuralHMM(
        5, 2, hidden_dim=8, prenet_dim=8, encoder_layers=1, encoder="lstm", chunk_frames=4
    ).eval()
    x = _x(T=10)
    return m, lambda m: (
        m.eval().log_likelihood(SYM, SYM_LEN, x, torch.tensor([10, 8])),
        m.eval().viterbi(SYM, SYM_LEN, x, torch.tensor([10, 8])).path,
    )


def _processor():
    model = _quiet_fit(GaussianHMM(3, 2), _x(), LENGTHS)
    p = StreamingHMMProcessor(chunk_size=4, model=model, beam=20.0, smoothing_lag=2)

    def out(p):
        p.reset()
        r = [p.process_chunk(_x(B=1, T=12)[0, i : i + 4]) for i in range(0, 12, 4)]
        return [(d["current_state"], d["posteriors"], d["log_likelihood"]) for d in r]

    return p, out


def _duration():
    m = DurationModel(n_states=2, distribution="lognormal", min_count=1)
    m.fit([["a", "b", "a"], ["b", "a"]], [torch.tensor([[2, 3], [4, 1], [3, 3]]),
                                          torch.tensor([[5, 2], [2, 2]])])  # fmt: skip
    return m, lambda m: tuple(m.predict(["a", "b", "b"], rho=0.5)[:3])


CFG = dict(n_mfcc=2, delta_order=0)
SPANS = [("sil", 4), ("a", 6), ("b", 6), ("sil", 4)]


def _aligner_features(al):
    return torch.cat([torch.full((n, 2), 4.0 * al.phone_index[p]) for p, n in SPANS])


def _aligner():
    lex = Lexicon({"ab": [["a", "b"]]})
    al = ForcedAligner(["a", "b"], AlignerConfig(**CFG), lex, n_mixtures=2)
    with torch.no_grad():
        for i in range(len(al.phones)):
            off, n = al.phone_offset[i], al.phone_states[i]
            al.means[off : off + n] = 4.0 * i
        al.feature_floor.fill_(0.02)

    def out(al):
        r = al.align(Utterance("u", _aligner_features(al), "ab"))
        return r.phones, r.words, r.score

    return al, out


BUILDERS = {
    "GaussianHMM": _gaussian,
    "GaussianHMM_full_float64": _gaussian_full64,
    "MixtureGaussianHMM": _mixture,
    "HSMM": _hsmm,
    "HSMM_mixture_ergodic": _hsmm_mixture,
    "HMMPyTorch": _plain,
    "BaseHMM": _base,
    "NeuralHMM": _neural,
    "StreamingHMMProcessor": _processor,
    "DurationModel": _duration,
    "ForcedAligner": _aligner,
}


def _same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    else:
        assert a == b


def _state(m):
    if isinstance(m, torch.nn.Module):
        return {k: v for k, v in m.state_dict().items() if isinstance(v, torch.Tensor)}
    return m.to_dict()


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_round_trip(kind, tmp_path):
    m, outputs = BUILDERS[kind]()
    before = outputs(m)
    p = tmp_path / "m.pt"
    m.save(p)
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary left
    for i, loaded in enumerate((type(m).load(p), pytorch_hmm.load(p))):
        assert type(loaded) is type(m)
        assert loaded.get_config() == m.get_config()
        _same(_state(loaded), _state(m))
        if i == 0:
            _same(outputs(loaded), before)
        for a in ("n_iter_", "converged", "log_likelihood_history"):
            inner = getattr(m, "model", m)
            if hasattr(inner, a):
                assert getattr(getattr(loaded, "model", loaded), a) == getattr(inner, a)
    head = model_file.read_header(p)
    assert head["class"] == type(m).__name__ and head["format_version"] == 1
    assert head["config"] == m.get_config() and head["library_version"]


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_config_rebuilds_the_model(kind):
    m, outputs = BUILDERS[kind]()
    cfg = m.get_config()
    assert json.loads(json.dumps(cfg)) == cfg  # plain JSON data
    fresh = type(m).from_config(cfg)
    assert type(fresh) is type(m) and fresh.get_config() == cfg
    if isinstance(m, torch.nn.Module):
        want = {k: (v.shape, v.dtype) for k, v in _state(m).items()}
        assert {k: (v.shape, v.dtype) for k, v in _state(fresh).items()} == want
        fresh.load_state_dict(m.state_dict())
        if isinstance(m, ForcedAligner):  # the lexicon is data, kept in the file's payload
            fresh.lexicon = m.lexicon
        _same(outputs(fresh), outputs(m))


def test_fitted_attributes_kept(tmp_path):
    m, _ = _gaussian()
    assert m.n_iter_ >= 1 and len(m.log_likelihood_history) == m.n_iter_
    m.transmat_prior = 2.0
    m.save(tmp_path / "m.pt")
    g = GaussianHMM.load(tmp_path / "m.pt")
    assert g.n_iter_ == m.n_iter_ and g.converged == m.converged
    assert g.log_likelihood_history == m.log_likelihood_history and g.transmat_prior == 2.0
    assert "n_iter_" not in vars(GaussianHMM.load(_saved(tmp_path, GaussianHMM(2, 2))))


def test_aligner_lexicon_and_override(tmp_path):
    al, _ = _aligner()
    al.save(tmp_path / "m.pt")
    got = ForcedAligner.load(tmp_path / "m.pt")
    assert got.lexicon.to_dict() == al.lexicon.to_dict() and got.n_mixtures == 2
    other = Lexicon({"ba": [["b", "a"]]})
    assert ForcedAligner.load(tmp_path / "m.pt", lexicon=other).lexicon is other
    assert torch.equal(got.feature_floor, al.feature_floor)


def test_aligner_format_2_still_loads_with_a_warning(tmp_path):
    import io

    al, outputs = _aligner()
    buf = io.BytesIO()
    torch.save(
        {
            "format": "pytorch_hmm.ForcedAligner/1",
            "config": al.config.to_dict(),
            "phones": list(al.phones),
            "lexicon": al.lexicon.to_dict(),
            "lexicon_case_sensitive": al.lexicon.case_sensitive,
            "state_dict": _state(al),
        },
        buf,
    )
    payload = buf.getvalue()
    p = tmp_path / "old.pt"
    digest = hashlib.sha256(payload).hexdigest().encode()
    p.write_bytes(b"pytorch_hmm.ForcedAligner/2\nsha256 " + digest + b"\n" + payload)
    for load in (ForcedAligner.load, pytorch_hmm.load):
        with pytest.warns(UserWarning, match="re-save"):
            got = load(p)
        _same(_state(got), _state(al))
        _same(outputs(got), outputs(al))
    with pytest.raises(HMMValueError, match="old.pt is not a saved GaussianHMM"):
        GaussianHMM.load(p)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(HMMValueError, match="old.pt: checksum mismatch"):
        ForcedAligner.load(p)


def test_processor_saves_model_not_streams(tmp_path):
    p, _ = _processor()
    p.process_chunk(_x(B=1, T=4)[0])
    p.save(tmp_path / "p.pt")
    q = StreamingHMMProcessor.load(tmp_path / "p.pt")
    assert q.get_extra_state() == {"started": False}
    assert q.model.get_config() == p.model.get_config() and q.beam == 20.0


def test_unsavable_parts_named(tmp_path):
    class Custom(torch.nn.Module):  # a model of the caller's: works, but has no file format
        def __init__(self):
            super().__init__()
            self.inner = GaussianHMM(2, 2)

        def emission_log_likelihood(self, x):
            return self.inner.emission_log_likelihood(x)

        def log_initial(self):
            return self.inner.log_initial()

        def log_transitions(self):
            return self.inner.log_transitions()

    p = StreamingHMMProcessor(chunk_size=4, model=Custom())
    with pytest.raises(HMMTypeError, match="StreamingHMMProcessor.model is a Custom"):
        p.save(tmp_path / "p.pt")
    with pytest.raises(HMMTypeError, match="save_model needs a pytorch_hmm model"):
        model_file.save_model(torch.nn.Linear(2, 2), tmp_path / "l.pt")
    assert os.listdir(tmp_path) == []


def test_from_config_refusals():
    with pytest.raises(HMMTypeError, match="GaussianHMM.from_config needs a dict"):
        GaussianHMM.from_config([3, 2])
    with pytest.raises(HMMValueError, match="GaussianHMM.from_config: .*nonsense"):
        GaussianHMM.from_config({"num_states": 3, "feature_dim": 2, "nonsense": 1})
    with pytest.raises(HMMValueError, match=r"config\['dtype'\] must be 'float32' or 'float64'"):
        GaussianHMM.from_config({"num_states": 3, "feature_dim": 2, "dtype": "float16"})


# -- files refused by name ---------------------------------------------------------------
def _saved(tmp_path, m=None, name="m.pt"):
    p = tmp_path / name
    (m if m is not None else GaussianHMM(3, 2)).save(p)
    return p


def _rewrite(p, mangle_header):
    """Rewrite a file's header line with ``mangle_header(dict)`` and a valid checksum."""
    lines = p.read_bytes().split(b"\n", 3)
    head = json.loads(lines[1])
    mangle_header(head)
    header = json.dumps(head).encode()
    digest = hashlib.sha256(header + b"\n" + lines[3]).hexdigest().encode()
    p.write_bytes(lines[0] + b"\n" + header + b"\nsha256 " + digest + b"\n" + lines[3])


def _flip(data, at):
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize(
    "mangle, pattern",
    [
        (lambda d: d[: len(d) - 100], r"m.pt: checksum mismatch: .*truncated \(\d+ of \d+"),
        (lambda d: _flip(d, len(d) - 200), "m.pt: checksum mismatch: .*altered"),
        (lambda d: d.replace(b'"num_states": 3', b'"num_states": 4'), "m.pt: checksum"),
        (lambda d: d[:40], "m.pt: saved GaussianHMM truncated in its header"),
        (lambda d: d.replace(b"sha256 ", b"sha255 "), "m.pt: .*damaged header"),
        (lambda d: d.replace(b'{"class"', b'["class"', 1), "m.pt: .*damaged header"),
        (lambda d: d.replace(b"pytorch_hmm/1", b"pytorch_hmm/2", 1), "m.pt was written by a newer"),
        (lambda d: d.replace(b"pytorch_hmm/1", b"pytorch_hmm/x", 1), "m.pt is not a saved"),
        (lambda d: b"", "m.pt is not a saved GaussianHMM"),
        (lambda d: b"hello world\n" * 10, "m.pt is not a saved GaussianHMM"),
    ],
    ids=[
        "truncated",
        "one_flipped_byte",
        "altered_config",
        "truncated_header",
        "no_sha256_line",
        "header_not_json",
        "newer_version",
        "damaged_version",
        "empty",
        "not_a_model_file",
    ],
)
def test_damaged_files_refused(tmp_path, mangle, pattern):
    p = _saved(tmp_path)
    p.write_bytes(mangle(p.read_bytes()))
    with pytest.raises(HMMValueError, match=pattern):
        GaussianHMM.load(p)


def test_wrong_class_says_what_the_file_holds(tmp_path):
    p = _saved(tmp_path, HSMM(2, 2, max_duration=3))
    with pytest.raises(HMMValueError, match="m.pt holds class HSMM, not GaussianHMM"):
        GaussianHMM.load(p)
    with pytest.raises(HMMValueError, match="holds class HSMM, not BaseHMM"):
        BaseHMM.load(p)
    with pytest.raises(HMMValueError, match="holds class HSMM, not ForcedAligner"):
        ForcedAligner.load(p)
    q = _saved(tmp_path, GaussianHMM(2, 2), "g.pt")
    assert type(BaseHMM.load(q)) is GaussianHMM  # a subclass of the class asked for
    with pytest.raises(HMMValueError, match="g.pt holds class GaussianHMM, not HSMM"):
        HSMM.load(q)


def test_crafted_files_refused(tmp_path):
    p = _saved(tmp_path)
    _rewrite(p, lambda h: h.update({"class": "EvilModel"}))
    with pytest.raises(HMMValueError, match="holds class EvilModel, which this library does not"):
        pytorch_hmm.load(p)
    p = _saved(tmp_path)
    _rewrite(p, lambda h: h["config"].update({"covariance_type": "spherical"}))
    with pytest.raises(HMMValueError, match="the saved config does not build a GaussianHMM"):
        GaussianHMM.load(p)
    p = _saved(tmp_path)
    _rewrite(p, lambda h: h["config"].update({"feature_dim": 5}))
    with pytest.raises(HMMValueError, match="inconsistent saved GaussianHMM"):
        GaussianHMM.load(p)
    m = GaussianHMM(2, 2)
    with torch.no_grad():
        m.means[0, 0] = float("nan")
    with pytest.raises(HMMValueError, match="saved parameter means contains NaN"):
        GaussianHMM.load(_saved(tmp_path, m, "nan.pt"))


def test_non_files_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        GaussianHMM.load(tmp_path / "missing.pt")
    with pytest.raises(HMMValueError, match="is a folder, not a pytorch_hmm model file"):
        pytorch_hmm.load(tmp_path)
    with pytest.raises(HMMTypeError, match="path must be a file name"):
        pytorch_hmm.load(None)
    sd = tmp_path / "sd.pt"
    torch.save(GaussianHMM(2, 2).state_dict(), sd)  # what BaseHMM users saved before
    with pytest.raises(HMMValueError, match="sd.pt is not a saved GaussianHMM .*bare torch.save"):
        GaussianHMM.load(sd)
    with pytest.raises(HMMValueError, match="sd.pt is not a saved pytorch_hmm model"):
        pytorch_hmm.load(sd)
    with pytest.raises(HMMTypeError, match="map_location must be a device"):
        pytorch_hmm.load(_saved(tmp_path), map_location=lambda s, loc: s)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    p = _saved(tmp_path)
    old = p.read_bytes()
    real = model_file.atomic_write

    @contextlib.contextmanager
    def failing(path, mode):
        with real(path, mode) as f:

            class Half:
                calls = 0

                def write(self, data):
                    Half.calls += 1
                    if Half.calls == 3:
                        raise OSError("disk full")
                    return f.write(data)

            yield Half()

    monkeypatch.setattr(model_file, "atomic_write", failing)
    m, _ = _gaussian()
    with pytest.raises(OSError, match="disk full"):
        m.save(p)
    assert p.read_bytes() == old and os.listdir(tmp_path) == ["m.pt"]
    monkeypatch.undo()

    def no_rename(*a):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="rename failed"):
        m.save(p)
    assert p.read_bytes() == old and os.listdir(tmp_path) == ["m.pt"]
