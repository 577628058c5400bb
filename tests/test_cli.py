"""``pytorch-hmm align`` end to end on a tiny corpus (in-process ``main([...])``)."""

from __future__ import annotations

import os
import shutil

import pytest

from pytorch_hmm.alignment.forced import AlignerConfig, ForcedAligner
from pytorch_hmm.cli import EXIT_STATUS, build_parser, main
from pytorch_hmm.io import read_lab, read_textgrid

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "festival-dev")
NAMES = ["dev_slt_0001", "dev_slt_0004", "dev_slt_0007", "dev_slt_0010", "dev_slt_0013"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for n in NAMES:
        for ext in (".wav", ".txt"):
            shutil.copy(os.path.join(DATA, "wav", n + ext), d / (n + ext))
    # a file that is not audio, and a transcript with a word the lexicon lacks
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00not a wave file at all")
    (d / "broken.txt").write_text("this is", encoding="utf-8")
    shutil.copy(os.path.join(DATA, "wav", "dev_slt_0016.wav"), d / "oov.wav")
    (d / "oov.txt").write_text("this is xyzzyplugh", encoding="utf-8")
    return d


def test_parser_has_align_subcommand():
    p = build_parser()
    args = p.parse_args(["align", "c", "--out", "o"])
    assert args.command == "align" and args.corpus_dir == "c" and args.lexicon is None
    with pytest.raises(SystemExit):
        p.parse_args(["align", "c"])  # --out is required


def test_align_corpus_with_lexicon_then_with_saved_model(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    model = tmp_path / "model.pt"
    lex = os.path.join(DATA, "lexicon.dict")
    rc = main(
        ["align", str(corpus), "--out", str(out), "--lexicon", lex, "--iterations", "3",
         "--mixtures", "1", "--save-model", str(model), "--format", "TextGrid", "--format", "lab",
         "--strict", "-q"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1  # some files failed: exit status 1, and the summary names them
    assert "2 of 7 file(s) failed" in err
    # the two bad files are named with their reasons (--strict: a word the lexicon lacks skips
    # its file instead of being aligned as spn); the others are aligned
    assert "broken" in err and "cannot read audio" in err
    assert "oov" in err and "xyzzyplugh" in err
    assert sorted(os.listdir(out)) == sorted(
        [n + ".TextGrid" for n in NAMES] + [n + ".lab" for n in NAMES]
    )
    for n in NAMES:
        tg = read_textgrid(out / (n + ".TextGrid"))
        assert list(tg) == ["words", "phones"]
        words = open(os.path.join(DATA, "wav", n + ".txt"), encoding="utf-8").read().split()
        assert [w.label for w in tg["words"]] == words
        assert [s.label for s in read_lab(out / (n + ".lab"))] == [s.label for s in tg["phones"]]
    # a saved model aligns new speech without retraining (its lexicon was saved with it)
    assert ForcedAligner.load(model).lexicon is not None
    out2 = tmp_path / "out2"
    rc = main(["align", str(corpus), "--out", str(out2), "--model", str(model), "-q"])
    assert rc == 1
    for n in NAMES:
        a = read_textgrid(out / (n + ".TextGrid"))["phones"]
        b = read_textgrid(out2 / (n + ".TextGrid"))["phones"]
        assert a == b


def test_align_phone_transcripts_and_progress(tmp_path, capsys):
    # without --lexicon each transcript is the phone sequence itself (here with the pauses
    # of the reference, which mark where a pause may be)
    d = tmp_path / "phones"
    d.mkdir()
    for n in NAMES[:4]:
        shutil.copy(os.path.join(DATA, "wav", n + ".wav"), d / (n + ".wav"))
        phones = [s.label for s in read_lab(os.path.join(DATA, "lab", n + ".lab"))]
        (d / (n + ".txt")).write_text(" ".join(phones), encoding="utf-8")
    out = tmp_path / "out"
    rc = main(
        [
            "align",
            str(d),
            "--out",
            str(out),
            "--iterations",
            "2",
            "--mixtures",
            "2",
            "--format",
            "json",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "aligned 4 of 4 files" in err
    assert sorted(os.listdir(out)) == sorted(n + ".json" for n in NAMES[:4])


def test_nothing_aligned_is_an_error(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "x.wav").write_bytes(b"garbage")
    (d / "x.txt").write_text("a b", encoding="utf-8")
    assert main(["align", str(d), "--out", str(tmp_path / "o"), "-q"]) == 1
    assert "x: cannot read audio" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["align", str(empty), "--out", str(tmp_path / "o"), "-q"]) == 2


def test_bad_arguments_are_reported(tmp_path, capsys):
    assert main(["align", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    d = tmp_path / "c"
    d.mkdir()
    missing = str(tmp_path / "missing.dict")
    assert main(["align", str(d), "--out", str(tmp_path / "o"), "--lexicon", missing]) == 2
    assert "cannot read the lexicon" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert main(["align", str(d), "--out", str(tmp_path / "o"), "--model", str(bad)]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_help_documents_the_exit_status():
    sub = build_parser()._subparsers._group_actions[0].choices["align"]
    text = " ".join(sub.format_help().split())
    assert "exit status: 0 every file was aligned" in text
    assert sorted(EXIT_STATUS) == [0, 1, 2]


def _phone_corpus(tmp_path, names):
    d = tmp_path / "c"
    d.mkdir()
    phones = set()
    for n in names:
        shutil.copy(os.path.join(DATA, "wav", n + ".wav"), d / (n + ".wav"))
        ph = [s.label for s in read_lab(os.path.join(DATA, "lab", n + ".lab"))]
        (d / (n + ".txt")).write_text(" ".join(ph), encoding="utf-8")
        phones |= set(ph)
    return d, sorted(phones - {"pau"})


def test_failed_file_exit_status_and_stale_output_removed(tmp_path, capsys):
    # an untrained saved model (no training: quick); phone transcripts
    names = NAMES[:2]
    d, phones = _phone_corpus(tmp_path, names)
    model = tmp_path / "m.pt"
    ForcedAligner(phones, AlignerConfig(n_mfcc=2, delta_order=0)).save(model)
    out = tmp_path / "out"
    args = ["align", str(d), "--out", str(out), "--model", str(model), "-q"]
    assert main(args) == 0
    assert sorted(os.listdir(out)) == sorted(n + ".TextGrid" for n in names)
    capsys.readouterr()
    # the second file now fails: its old TextGrid must not pass for a current result
    (d / (names[1] + ".txt")).write_text("zz", encoding="utf-8")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{names[1]}: phone(s) 'zz'" in err
    assert f"removed the stale {names[1]}.TextGrid" in err and "1 of 2 file(s) failed" in err
    assert os.listdir(out) == [names[0] + ".TextGrid"]


def test_output_folder_checked_before_training(tmp_path, capsys):
    d, _ = _phone_corpus(tmp_path, NAMES[:1])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, why in ((blocker, "is not a folder"), (blocker / "sub", "cannot create")):
        assert main(["align", str(d), "--out", str(out), "--iterations", "50", "-q"]) == 2
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err and "training" not in err
    assert blocker.read_text() == "x"
