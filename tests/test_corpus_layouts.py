"""Corpora as users have them on disk (issue 15): layouts, audio formats and rates, MFA-style
text normalisation, unknown words (``spn``), failures, duplicate names, ``--jobs``.

Every corpus is built in ``tmp_path`` from the bundled festival-dev speech (resampled and
converted with soundfile / soxr). Most runs align with an untrained saved model (``n_mfcc=2``,
no deltas: quick); one module fixture trains a small model flat-start to compare a resampled
file's alignment with the same file at 16 kHz.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from pytorch_hmm.alignment.corpus import (
    UNKNOWN_PHONE,
    corpus_entries,
    detect_layout,
    load_corpus,
    normalize_transcript,
    read_audio,
    resolve_words,
)
from pytorch_hmm.alignment.forced import AlignerConfig, ForcedAligner
from pytorch_hmm.alignment.lexicon import read_lexicon
from pytorch_hmm.cli import main
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.io import read_textgrid

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "festival-dev")
LEX = os.path.join(DATA, "lexicon.dict")
A, B, C = "dev_kal_0002", "dev_ked_0003", "dev_slt_0001"  # 'test whether a path exists' ...
TINY = dict(n_mfcc=2, delta_order=0)


def _text(name: str) -> str:
    with open(os.path.join(DATA, "wav", name + ".txt"), encoding="utf-8") as f:
        return f.read().strip()


def _audio(name, dst, sr=16000, channels=1, subtype=None, fmt=None):
    """festival-dev NAME.wav written to dst at another rate / channel count / encoding."""
    import soxr

    x, rate = sf.read(os.path.join(DATA, "wav", name + ".wav"), dtype="float64")
    if sr != rate:
        x = soxr.resample(x, rate, sr)
    if channels > 1:
        x = np.stack([x * (1.0 - 0.1 * c) for c in range(channels)], axis=1)
    os.makedirs(os.path.dirname(str(dst)), exist_ok=True)
    sf.write(str(dst), x, sr, subtype=subtype, format=fmt)


def _write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained saved aligner with the festival lexicon and the unknown-word phone."""
    lex = read_lexicon(LEX)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    ForcedAligner(lex.phones() + [UNKNOWN_PHONE], AlignerConfig(**TINY), lex).save(path)
    return str(path)


def _align(corpus, out, model, *extra):
    return main(["align", str(corpus), "--out", str(out), "--model", model, "-q", *extra])


def _words(path):
    return [s.label for s in read_textgrid(path)["words"]]


def _phones(path):
    return [s.label for s in read_textgrid(path)["phones"]]


# ------------------------------------------------------------------------------------------
# text normalisation


def test_normalize_transcript_like_mfa():
    assert normalize_transcript("Uh, I DON'T know... [laughter] <unk>") == [
        "uh",
        "i",
        "don't",
        "know",
        "[laughter]",
        "<unk>",
    ]
    assert normalize_transcript("“Well,” she said—um—it’s a well-known fact!") == [
        "well",
        "she",
        "said",
        "um",
        "it's",
        "a",
        "well-known",
        "fact",
    ]
    assert normalize_transcript("'quoted' -dash- (aside) e.g. 3.5") == [
        "quoted",
        "dash",
        "(aside)",
        "e",
        "g",
        "3",
        "5",
    ]
    assert (
        normalize_transcript("HE BEGAN A CONFUSED COMPLAINT")
        == "he began a confused complaint".split()
    )
    assert normalize_transcript("  ...  ") == []
    assert normalize_transcript("<cutoff-montreal>, montreal") == ["<cutoff-montreal>", "montreal"]


def test_resolve_words_splits_compounds_and_names_unknown_words():
    lex = read_lexicon(LEX)
    words, unknown = resolve_words(["test", "path-exists", "xyzzy", "uh", "xyzzy"], lex)
    assert words == ["test", "path", "exists", "xyzzy", "uh", "xyzzy"]
    assert unknown == ["xyzzy", "uh"]  # each once, in order


# ------------------------------------------------------------------------------------------
# layouts


def _flat(root):
    for n in (A, B):
        _audio(n, root / f"{n}.wav")
        _write(root / f"{n}.txt", _text(n))
    return {A: _text(A), B: _text(B)}


def _mfa(root):
    _audio(A, root / "spk1" / "u1.wav")
    _write(root / "spk1" / "u1.lab", _text(A).upper() + ".")  # MFA .lab: text
    _audio(B, root / "spk2" / "sess" / "u1.flac", fmt="FLAC")  # nested folder
    _write(root / "spk2" / "sess" / "u1.txt", _text(B))
    return {"spk1/u1": _text(A), "spk2/sess/u1": _text(B)}


def _librispeech(root):
    d = root / "19" / "198"
    _audio(A, d / "19-198-0000.flac", fmt="FLAC")
    _audio(B, d / "19-198-0001.flac", fmt="FLAC")
    _write(
        d / "19-198.trans.txt",
        f"19-198-0000 {_text(A).upper()}\n19-198-0001 {_text(B).upper()}\n",
    )
    return {"19/198/19-198-0000": _text(A), "19/198/19-198-0001": _text(B)}


def _ljspeech(root):
    _audio(A, root / "wavs" / "LJ001-0001.wav", sr=22050)
    _audio(B, root / "wavs" / "LJ001-0002.wav", sr=22050)
    _write(
        root / "metadata.csv",
        f"LJ001-0001|{_text(A).capitalize()}.|{_text(A).capitalize()}.\n"
        f"LJ001-0002|{_text(B)}|\n",  # an empty normalised column: the text column is used
    )
    return {"wavs/LJ001-0001": _text(A), "wavs/LJ001-0002": _text(B)}


def _kss(root):
    _audio(A, root / "1" / "1_0000.wav", sr=44100)
    _audio(B, root / "1" / "1_0001.wav", sr=44100)
    _write(
        root / "transcript.v.1.4.txt",
        f"1/1_0000.wav|{_text(A)}|{_text(A)}|x|2.1|English\n"
        f"1/1_0001.wav|{_text(B)}|{_text(B)}|x|2.5|English\n",
    )
    return {"1/1_0000": _text(A), "1/1_0001": _text(B)}


BUILDERS = {"flat": _flat, "mfa": _mfa, "librispeech": _librispeech, "ljspeech": _ljspeech}
BUILDERS["kss"] = _kss


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_each_layout_is_detected_and_aligned(layout, model, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = BUILDERS[layout](corpus)
    assert detect_layout(corpus) == layout
    found, entries = corpus_entries(corpus)
    assert found == layout and [e.name for e in entries] == sorted(expected)
    out = tmp_path / "out"
    assert _align(corpus, out, model) == 0, capsys.readouterr().err
    for name, text in expected.items():
        assert _words(out / (name + ".TextGrid")) == text.split()  # normalised, mirrored path
    # the layout can also be given, and a wrong one is a bad argument (exit status 2)
    assert corpus_entries(corpus, layout)[1] == entries
    if layout in ("flat", "mfa"):
        wrong = "ljspeech"
    else:
        wrong = "kss" if layout != "kss" else "ljspeech"
    assert _align(corpus, tmp_path / "out3", model, "--layout", wrong) == 2
    assert "--layout" in capsys.readouterr().err


def test_speakers_are_recorded(tmp_path, model):
    corpus = tmp_path / "c"
    _mfa(corpus)
    al = ForcedAligner.load(model)
    utts = load_corpus(al, corpus)
    assert [(u.name, u.speaker) for u in utts] == [("spk1/u1", "spk1"), ("spk2/sess/u1", "spk2")]
    lj = tmp_path / "lj"
    _ljspeech(lj)
    assert {u.speaker for u in load_corpus(al, lj)} == {"lj"}
    flat = tmp_path / "flat"
    flat.mkdir()
    _flat(flat)
    assert {u.speaker for u in load_corpus(al, flat)} == {None}


def test_listing_problems_are_reported_by_name(tmp_path, model, capsys):
    # LibriSpeech: a listed utterance without audio, an audio file in no list
    corpus = tmp_path / "ls"
    _librispeech(corpus)
    d = corpus / "19" / "198"
    with open(d / "19-198.trans.txt", "a", encoding="utf-8") as f:
        f.write("19-198-0002 GONE\n")
    _audio(C, d / "19-198-0009.flac", fmt="FLAC")
    out = tmp_path / "out"
    assert _align(corpus, out, model) == 1
    err = capsys.readouterr().err
    assert "19/198/19-198-0002: no audio file 19-198-0002.flac for the line" in err
    assert "19/198/19-198-0009: no transcript" in err and "2 of 4 file(s) failed" in err
    assert sorted(os.listdir(out / "19" / "198")) == [
        "19-198-0000.TextGrid",
        "19-198-0001.TextGrid",
    ]
    # LJSpeech: a line naming a missing file
    lj = tmp_path / "lj"
    _ljspeech(lj)
    with open(lj / "metadata.csv", "a", encoding="utf-8") as f:
        f.write("LJ009-0009|gone|gone\n")
    assert _align(lj, tmp_path / "out2", model) == 1
    assert "wavs/LJ009-0009: no audio file wavs/LJ009-0009.wav" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# a corpus as it comes: mixed formats and rates, a corrupt file, an empty transcript, words
# the lexicon lacks, one name in two speakers, two audio files with one name


def _messy(root):
    _audio(A, root / "spkA" / "a8k.wav", sr=8000)  # 8 kHz 16-bit
    _write(root / "spkA" / "a8k.txt", "Test whether a PATH exists!")
    _audio(B, root / "spkA" / "same.wav", sr=44100, channels=2, subtype="PCM_24")
    _write(root / "spkA" / "same.lab", "Uh, write the snapshot into a xyzzy file.")
    _audio(C, root / "spkB" / "same.flac", sr=48000, fmt="FLAC")  # same name, other speaker
    _write(root / "spkB" / "same.txt", _text(C))
    _audio(A, root / "spkB" / "f32.wav", sr=22050, subtype="FLOAT")
    _write(root / "spkB" / "f32.txt", _text(A))
    _audio(B, root / "spkB" / "vorbis.ogg", fmt="OGG", subtype="VORBIS")
    _write(root / "spkB" / "vorbis.txt", _text(B))
    _audio(A, root / "spkB" / "mp3.mp3", sr=24000, fmt="MP3")
    _write(root / "spkB" / "mp3.txt", _text(A))
    _audio(C, root / "spkB" / "opus.opus", sr=48000, fmt="OGG", subtype="OPUS")
    _write(root / "spkB" / "opus.txt", _text(C))
    # failures: not audio, an empty transcript, a second audio file named like the first
    (root / "spkB" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    _write(root / "spkB" / "corrupt.txt", "test")
    _audio(A, root / "spkB" / "empty.wav")
    _write(root / "spkB" / "empty.txt", " \n")
    _audio(B, root / "spkB" / "f32.flac", fmt="FLAC")


GOOD = ["spkA/a8k", "spkA/same", "spkB/f32", "spkB/mp3", "spkB/opus", "spkB/same", "spkB/vorbis"]


def test_messy_corpus(tmp_path, model, capsys):
    corpus = tmp_path / "corpus"
    _messy(corpus)
    out = tmp_path / "out"
    # an output of another file already in OUT is kept
    _write(out / "notes.txt", "mine")
    assert _align(corpus, out, model, "--format", "TextGrid", "--format", "json", "-j", "2") == 1
    err = capsys.readouterr().err
    for n in GOOD:
        assert os.path.isfile(out / (n + ".TextGrid")), (n, err)
        assert os.path.isfile(out / (n + ".json"))
    assert (out / "notes.txt").read_text() == "mine"
    assert _words(out / "spkA" / "a8k.TextGrid") == "test whether a path exists".split()
    # hesitation and unknown word aligned with spn, and reported
    assert _words(out / "spkA" / "same.TextGrid") == (
        "uh write the snapshot into a xyzzy file".split()
    )
    assert _phones(out / "spkA" / "same.TextGrid").count(UNKNOWN_PHONE) == 2
    assert "2 word(s) not in the lexicon, aligned as 'spn': 'uh' (spkA/same), 'xyzzy'" in err
    assert _words(out / "spkB" / "same.TextGrid") == _text(C).split()
    assert "spkB/corrupt: cannot read audio corrupt.wav" in err
    assert "spkB/empty: transcript empty.txt is empty" in err
    assert "spkB/f32.flac: skipped: it has the same name as f32.wav" in err
    assert "3 of 10 file(s) failed (exit status 1)" in err
    # the audio durations survive resampling (8 kHz and 44.1 kHz stereo 24-bit)
    for n, src in (("spkA/a8k", A), ("spkA/same", B)):
        tg = read_textgrid(out / (n + ".TextGrid"))
        assert tg["phones"][-1].end == pytest.approx(
            sf.info(f"{DATA}/wav/{src}.wav").duration, abs=1e-3
        )
    # --strict: the file with unknown words is skipped, its earlier output removed
    assert _align(corpus, out, model, "--strict") == 1
    err = capsys.readouterr().err
    assert "spkA/same: word(s) not in the lexicon: 'uh', 'xyzzy' (skipped: --strict)" in err
    assert "removed the stale same.TextGrid" in err
    assert not os.path.exists(out / "spkA" / "same.TextGrid")
    assert os.path.isfile(out / "spkB" / "same.TextGrid")


def test_model_without_spn_reports_unknown_words(tmp_path, capsys):
    lex = read_lexicon(LEX)
    m = tmp_path / "m.pt"
    ForcedAligner(lex.phones(), AlignerConfig(**TINY), lex).save(m)
    corpus = tmp_path / "c"
    corpus.mkdir()
    _audio(A, corpus / "a.wav")
    _write(corpus / "a.txt", _text(A) + " xyzzy")
    _audio(B, corpus / "b.wav")
    _write(corpus / "b.txt", _text(B))
    assert _align(corpus, tmp_path / "o", str(m)) == 1
    err = capsys.readouterr().err
    assert "a: word(s) not in the lexicon: 'xyzzy' (skipped: the model has no 'spn' phone)" in err
    assert os.listdir(tmp_path / "o") == ["b.TextGrid"]


def test_flat_start_learns_spn_and_reports_the_summary(tmp_path, capsys):
    corpus = tmp_path / "c"
    for i, n in enumerate((A, B, C)):
        _audio(n, corpus / "spk" / f"{i}.wav", sr=(16000, 32000, 11025)[i])
        _write(corpus / "spk" / f"{i}.txt", _text(n) + (" um" if i == 1 else ""))
    out = tmp_path / "out"
    m = tmp_path / "m.pt"
    rc = main(
        ["align", str(corpus), "--out", str(out), "--lexicon", LEX, "--iterations", "1",
         "--mixtures", "1", "--save-model", str(m), "--threads", "1"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "mfa layout" in err and "aligned 3 of 3 files (mfa layout, 1 speaker(s))" in err
    assert "h of audio" in err and "wall time" in err and "real-time factor" in err
    assert "'um' (spk/1)" in err
    assert _phones(out / "spk" / "1.TextGrid").count(UNKNOWN_PHONE) == 1
    saved = ForcedAligner.load(m)
    assert UNKNOWN_PHONE in saved.phones and "um" not in saved.lexicon  # lexicon unchanged


# ------------------------------------------------------------------------------------------
# audio and workers


def test_read_audio_resamples_and_downmixes(tmp_path):
    src = os.path.join(DATA, "wav", A + ".wav")
    ref, sr = sf.read(src, dtype="float32")
    for rate, ch, sub in ((8000, 1, "PCM_16"), (44100, 2, "PCM_24"), (48000, 1, "FLOAT")):
        p = tmp_path / f"{rate}.wav"
        _audio(A, p, sr=rate, channels=ch, subtype=sub)
        wav, dur, file_rate = read_audio(p, 16000)
        assert file_rate == rate and dur == pytest.approx(len(ref) / sr, abs=2e-4)
        assert abs(wav.numel() - len(ref)) <= 2 and wav.dtype == torch.float32
        if rate > 16000:  # nothing lost but the 0.95 mean gain of the second channel
            n = min(len(ref), wav.numel())
            scale = 0.95 if ch == 2 else 1.0
            err = np.abs(wav.numpy()[:n] - scale * ref[:n]).max()
            assert err < 0.02
    with pytest.raises(HMMValueError, match="bad.wav"):
        (tmp_path / "bad.wav").write_bytes(b"nope")
        read_audio(tmp_path / "bad.wav", 16000)


def test_jobs_give_identical_features(tmp_path, model):
    corpus = tmp_path / "c"
    _messy(corpus)
    al = ForcedAligner.load(model)
    e1, e4 = {}, {}
    u1 = load_corpus(al, corpus, errors=e1)
    u4 = load_corpus(al, corpus, errors=e4, jobs=4)
    assert e1 == e4 and [u.name for u in u1] == [u.name for u in u4] == GOOD
    for a, b in zip(u1, u4):
        assert torch.equal(a.features, b.features) and a.duration == b.duration
    assert _align(corpus, tmp_path / "bad", model, "--jobs", "0") == 2


# ------------------------------------------------------------------------------------------
# a resampled file aligns like the same file at 16 kHz


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    names = ["dev_slt_0001", "dev_slt_0004", "dev_slt_0007", "dev_slt_0010"]
    root = tmp_path_factory.mktemp("train")
    for n in names:
        shutil.copy(os.path.join(DATA, "wav", n + ".wav"), root / (n + ".wav"))
        shutil.copy(os.path.join(DATA, "wav", n + ".txt"), root / (n + ".txt"))
    m = root / "m.pt"
    rc = main(
        ["align", str(root), "--out", str(root / "o"), "--lexicon", LEX, "--iterations", "3",
         "--mixtures", "1", "--save-model", str(m), "--threads", "1", "-q"]
    )  # fmt: skip
    assert rc == 0
    return str(m), root


def _bounds(path):
    return np.array([s.start for s in read_textgrid(path)["phones"]][1:])


def test_resampled_audio_aligns_like_16k(trained, tmp_path):
    m, root = trained
    corpus = tmp_path / "c"
    n = "dev_slt_0004"
    for rate, sub in ((16000, "PCM_16"), (8000, "PCM_16"), (44100, "PCM_24"), (48000, "FLOAT")):
        _audio(n, corpus / f"r{rate}" / f"{n}.wav", sr=rate, subtype=sub)
        _write(corpus / f"r{rate}" / f"{n}.txt", _text(n))
    out = tmp_path / "out"
    assert _align(corpus, out, m) == 0
    ref = _bounds(out / "r16000" / f"{n}.TextGrid")
    for rate in (44100, 48000):  # same band: the boundaries agree within a frame
        b = _bounds(out / f"r{rate}" / f"{n}.TextGrid")
        assert b.shape == ref.shape and np.median(np.abs(b - ref)) <= 0.0101
    b8 = _bounds(out / "r8000" / f"{n}.TextGrid")  # 4 kHz of band lost: close, not equal
    assert b8.shape == ref.shape and np.median(np.abs(b8 - ref)) <= 0.03
