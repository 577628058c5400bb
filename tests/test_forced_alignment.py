"""ForcedAligner: flat-start training on festival-dev, known-answer alignment, writers,
save/load, arbitrary phone sets, per-utterance errors."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from pytorch_hmm.alignment.corpus import phone_boundary_accuracy
from pytorch_hmm.alignment.forced import (
    AlignerConfig,
    AlignmentError,
    ForcedAligner,
    Utterance,
)
from pytorch_hmm.alignment.lexicon import Lexicon, MissingWordError, read_lexicon
from pytorch_hmm.io import read_lab, read_textgrid

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "festival-dev")
WAV = os.path.join(DATA, "wav")


def _reference_pronunciations(name):
    """Each word's phones in the reference .lab (pauses left out)."""
    wrd = read_lab(os.path.join(DATA, "lab", name + ".wrd"))
    lab = read_lab(os.path.join(DATA, "lab", name + ".lab"))
    out = []
    for s, e, w in wrd:
        if w == "pau":
            continue
        out.append([p for a, b, p in lab if a >= s - 1e-6 and b <= e + 1e-6 and p != "pau"])
    return out


def _words(name):
    with open(os.path.join(WAV, name + ".txt"), encoding="utf-8") as f:
        return f.read().split()


# ------------------------------------------------------------------------------------------
# synthetic model with a known answer


def _toy_aligner(phones, config=None, lexicon=None):
    """An aligner whose phones emit well separated constant features: phone i's states all
    have mean i * 4 in every dimension (silence: 0), unit variances."""
    cfg = config or AlignerConfig(n_mfcc=2, delta_order=0)
    al = ForcedAligner(phones, cfg, lexicon)
    with torch.no_grad():
        for i in range(len(al.phones)):
            off, n = al.phone_offset[i], al.phone_states[i]
            al.means[off : off + n] = 4.0 * i
    return al


def _toy_features(al, spans):
    """Features (T, D) for a list of (phone, frames), noise-free, plus the segment ends."""
    D = al.config.feature_dim
    rows = []
    for p, n in spans:
        rows.append(torch.full((n, D), 4.0 * al.phone_index[p]))
    return torch.cat(rows)


def test_known_answer_phone_mode():
    al = _toy_aligner(["a", "b", "c"])
    spans = [("sil", 10), ("a", 20), ("b", 7), ("sil", 6), ("c", 12), ("sil", 5)]
    x = _toy_features(al, spans)
    # "pau" marks where a pause may be; the silences at the edges are always optional
    r = al.align(Utterance("toy", x, "a b pau c"))
    fs = al.config.frame_shift
    assert [p.label for p in r.phones] == [s for s, _ in spans]
    ends = [sum(n for _, n in spans[: i + 1]) for i in range(len(spans))]
    for seg, e in zip(r.phones[:-1], ends[:-1]):
        assert seg.end == pytest.approx((e - 0.5) * fs)
    assert r.phones[0].start == 0.0 and r.phones[-1].end == pytest.approx(x.shape[0] * fs)
    assert [w.label for w in r.words] == ["a", "b", "c"]
    assert len(r.states) >= 3 * 3 + 3 * 3
    assert r.states[1].label == "sil[3]" and math.isfinite(r.score)


def test_known_answer_pause_skipped_and_lexicon_choice():
    lex = Lexicon({"ab": [["a", "b"]], "word": [["a", "c"], ["b", "c"]]})
    al = _toy_aligner(["a", "b", "c"], lexicon=lex)
    # no leading pause, no pause between the words, second pronunciation of "word"
    spans = [("a", 9), ("b", 9), ("b", 9), ("c", 9), ("sil", 9)]
    x = _toy_features(al, spans)
    r = al.align(Utterance("toy", x, "ab word"))
    assert [p.label for p in r.phones] == ["a", "b", "b", "c", "sil"]
    assert [w.label for w in r.words] == ["ab", "word"]
    fs = al.config.frame_shift
    # (where "b b" splits is a tie here: identical emissions)
    assert r.words[0].start == 0.0 and r.words[1].end == pytest.approx(35.5 * fs)
    assert r.phones[-1].start == pytest.approx(35.5 * fs)


def test_non_english_phone_sets(tmp_path):
    # Hangul jamo and pinyin with tones, through a lexicon with a Hangul word
    jamo = ["ㅎ", "ㅏ", "ㄴ", "ㄱ", "ㅡ", "ㄹ"]
    pinyin = ["ni3", "hao3"]
    lex = Lexicon({"한글": [jamo], "你好": [pinyin]})
    al = _toy_aligner(jamo + pinyin, lexicon=lex)
    spans = [("sil", 5)] + [(p, 4) for p in jamo] + [("sil", 5)] + [(p, 6) for p in pinyin]
    r = al.align(Utterance("유니코드", _toy_features(al, spans), "한글 你好"))
    assert [p.label for p in r.phones] == [s for s, _ in spans]
    assert [w.label for w in r.words] == ["한글", "你好"]
    r.write_textgrid(tmp_path / "u.TextGrid")
    tg = read_textgrid(tmp_path / "u.TextGrid")
    assert [s.label for s in tg["phones"]] == [s for s, _ in spans]
    r.write_json(tmp_path / "u.json")
    assert json.loads((tmp_path / "u.json").read_text("utf-8"))["words"][0]["label"] == "한글"
    # and saved / loaded with its lexicon
    al.save(tmp_path / "m.pt")
    al2 = ForcedAligner.load(tmp_path / "m.pt")
    r2 = al2.align(Utterance("유니코드", _toy_features(al, spans), "한글 你好"))
    assert r2.phones == r.phones


def test_transcript_too_long_is_a_clear_per_utterance_error():
    al = _toy_aligner(["a", "b"])
    short = Utterance("short", _toy_features(al, [("a", 3), ("b", 3)]), "a b a b a b")
    good = Utterance("good", _toy_features(al, [("a", 5), ("b", 5)]), "a b")
    errors = {}
    out = al.align([short, good], errors=errors)
    assert [r.name for r in out] == ["good"]
    assert "too long" in errors["short"] and "6 frames" in errors["short"]
    with pytest.raises(AlignmentError, match="short: transcript is too long"):
        al.align(short)


def test_missing_word_and_unknown_phone_reported():
    lex = Lexicon({"ab": [["a", "b"]]})
    al = _toy_aligner(["a", "b"], lexicon=lex)
    x = _toy_features(al, [("a", 5), ("b", 5)])
    errors = {}
    out = al.align([Utterance("u1", x, "ab zork ab qux"), Utterance("u2", x, "ab")], errors=errors)
    assert [r.name for r in out] == ["u2"]
    assert "'zork'" in errors["u1"] and "'qux'" in errors["u1"]
    with pytest.raises(MissingWordError):
        lex.lookup(["nope"])
    al2 = _toy_aligner(["a", "b"])
    with pytest.raises(AlignmentError, match="'z'"):
        al2.align(Utterance("u3", x, "a z"))


def test_lexicon_reader(tmp_path):
    p = tmp_path / "lex.dict"
    p.write_text("a ax\nA ey\n\n# comment\nthe\t0.9 dh ax\nthe dh iy\n", encoding="utf-8")
    lex = read_lexicon(p)
    assert lex["a"] == [("ax",), ("ey",)]
    assert lex["the"] == [("dh", "ax"), ("dh", "iy")]
    assert lex.phones() == ["ax", "ey", "dh", "iy"]
    lex.write(tmp_path / "out.dict")
    assert read_lexicon(tmp_path / "out.dict").to_dict() == lex.to_dict()


# ------------------------------------------------------------------------------------------
# flat start on real data (12 festival-dev slt utterances)


@pytest.fixture(scope="module")
def slt_model():
    lex = read_lexicon(os.path.join(DATA, "lexicon.dict"))
    al = ForcedAligner(lex.phones(), AlignerConfig(), lex)
    names = sorted(
        f[:-4] for f in os.listdir(WAV) if f.startswith("dev_slt_") and f.endswith(".wav")
    )
    utts = [al.load_utterance(os.path.join(WAV, n + ".wav"), _words(n), name=n) for n in names[:12]]
    for u in utts:
        u.pronunciations = _reference_pronunciations(u.name)
    history = al.fit(utts, iterations=6, method="baum-welch")
    return al, utts, history


def test_flat_start_reaches_boundary_accuracy(slt_model):
    al, utts, history = slt_model
    assert history[-1] > history[0]
    results = al.align(utts)
    assert len(results) == len(utts)
    refs = [read_lab(os.path.join(DATA, "lab", r.name + ".lab")) for r in results]
    acc = phone_boundary_accuracy(refs, [r.phones for r in results])
    # measured (12 utterances, 6 Baum-Welch iterations, 2 s): 39.5/56.1/60.3/76.2% within
    # 10/20/25/50 ms (the figure documented here before; the full corpus with 4 Gaussians a
    # state reaches 87% within 25 ms, examples/forced_alignment.py); bars 2 points below
    assert acc.within[0.025] >= 0.58, acc.within
    assert acc.within[0.05] >= 0.74, acc.within
    assert acc.n_boundaries > 400


def test_lexicon_alignment_and_writers(slt_model, tmp_path):
    al, utts, _ = slt_model
    u = Utterance(utts[0].name, utts[0].features, utts[0].transcript, None, utts[0].duration)
    r = al.align(u)
    assert r.phones[0].start == 0.0 and r.phones[-1].end == pytest.approx(u.duration)
    for a, b in zip(r.phones[:-1], r.phones[1:]):
        assert a.end == b.start and a.end >= a.start
    assert [w.label for w in r.words] == list(u.transcript)
    r.write_textgrid(tmp_path / "a.TextGrid", states=True)
    tg = read_textgrid(tmp_path / "a.TextGrid")
    assert list(tg) == ["words", "phones", "states"]
    assert [s.label for s in tg["words"]] == list(u.transcript)
    assert [s.label for s in tg["phones"]] == [p.label for p in r.phones]
    for (s1, e1, _), (s2, e2, _) in zip(tg["phones"], r.phones):
        assert s1 == pytest.approx(s2) and e1 == pytest.approx(e2)
    r.write_lab(tmp_path / "a.lab")
    lab = read_lab(tmp_path / "a.lab")
    assert [s.label for s in lab] == [p.label for p in r.phones]
    assert lab[-1].end == pytest.approx(r.phones[-1].end, abs=1e-6)
    r.write_json(tmp_path / "a.json")
    d = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert d["phones"][1]["label"] == r.phones[1].label and d["name"] == r.name


def test_save_load_identical(slt_model, tmp_path):
    al, utts, _ = slt_model
    al.save(tmp_path / "model.pt")
    al2 = ForcedAligner.load(tmp_path / "model.pt")
    assert al2.config == al.config and al2.phones == al.phones
    a = al.align(utts[:3])
    b = al2.align(utts[:3])
    for x, y in zip(a, b):
        assert x.phones == y.phones and x.states == y.states
        assert x.score == pytest.approx(y.score)


def test_baum_welch_mixtures_and_labelled_training(slt_model, tmp_path):
    al, utts, _ = slt_model
    al.save(tmp_path / "m.pt")
    al2 = ForcedAligner.load(tmp_path / "m.pt")
    hist = al2.fit(
        utts[:6],
        iterations=1,
        method="baum-welch",
        mixtures=2,
        split_iterations=1,
        flat_start=False,
    )
    assert al2.n_mixtures == 2 and len(hist) == 2 and all(math.isfinite(h) for h in hist)
    assert len(al2.align(utts[:2])) == 2
    # a model trained on labelled data (the reference segmentations) aligns well at once
    al3 = ForcedAligner(al.phones, al.config, al.lexicon)
    refs = [read_lab(os.path.join(DATA, "lab", u.name + ".lab")) for u in utts]
    al3.fit_labelled(utts, refs)
    res = al3.align(utts)
    acc = phone_boundary_accuracy(refs, [r.phones for r in res])
    # measured: 93.6/99.6/99.8/100% within 10/20/25/50 ms; bars a few points below
    assert acc.within[0.01] >= 0.9, acc.within
    assert acc.within[0.025] >= 0.97, acc.within


def test_viterbi_training_runs(slt_model, tmp_path):
    al, utts, _ = slt_model
    al.save(tmp_path / "m.pt")
    al2 = ForcedAligner.load(tmp_path / "m.pt")
    hist = al2.fit(utts[:4], iterations=2, method="viterbi", flat_start=False)
    assert len(hist) == 2 and hist[1] >= hist[0] - 1e-3
    with pytest.raises(ValueError, match="method"):
        al2.fit(utts[:1], method="em")


def test_phone_boundary_accuracy_sets_pauses_aside():
    ref = [(0.0, 0.2, "pau"), (0.2, 0.3, "a"), (0.3, 0.5, "b"), (0.5, 0.6, "pau"), (0.6, 0.9, "c")]
    # the hypothesis misses the pause after "b" and puts one before "c" 10 ms late
    hyp = [(0.0, 0.21, "sil"), (0.21, 0.3, "a"), (0.3, 0.52, "b"), (0.52, 0.9, "c")]
    acc = phone_boundary_accuracy([ref], [hyp], tolerances=(0.015,))
    # compared: start of a, start of b, end of b (pause follows in the reference), start of c
    assert acc.n_boundaries == 4
    assert acc.errors_ms == pytest.approx([10.0, 0.0, 20.0, -80.0])
    assert acc.within[0.015] == 0.5
