"""HTK .lab and TextGrid readers/writers, against the bundled labels and hand-written files."""

from pathlib import Path

import pytest
import torch

from pytorch_hmm.io import (
    Segment,
    parse_full_context,
    read_lab,
    read_textgrid,
    segments_to_durations,
    segments_to_frame_labels,
    write_lab,
    write_textgrid,
)

DATA = Path(__file__).resolve().parents[1] / "data"
ARCTIC = DATA / "arctic"


def test_parse_full_context():
    assert parse_full_context("x^sil-hh+iy=t@1_2/A:0_0_0") == "hh"
    assert parse_full_context("x^x-sil+hh=iy@x_x/A:0_0_0/J:13+9-2[3]") == "sil"
    assert parse_full_context("pau") == "pau"
    assert parse_full_context("aa[2]") == "aa"
    with pytest.raises(TypeError, match="label"):
        parse_full_context(3)


def test_read_arctic_phone_lab():
    segs = read_lab(ARCTIC / "arctic_a0009_phone.lab")
    assert len(segs) == 40
    # first lines of the file, by hand: "0 1300000 x^x-sil+hh...", "1300000 2050000 x^sil-hh+iy..."
    assert segs[0] == Segment(0.0, 0.13, "sil")
    assert segs[1] == Segment(0.13, 0.205, "hh")
    assert segs[2].label == "iy"
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    raw = read_lab(ARCTIC / "arctic_a0009_phone.lab", phone_only=False)
    assert raw[1].label.startswith("x^sil-hh+iy=t@")


def test_state_lab_groups_into_phone_lab():
    phones = read_lab(ARCTIC / "arctic_a0009_phone.lab")
    states = read_lab(ARCTIC / "arctic_a0009_state.lab")
    assert len(states) == 5 * len(phones)
    labels, dur = segments_to_durations(states, 0.005, n_states=5)
    assert dur.shape == (40, 5) and dur.dtype == torch.long
    assert labels == [p.label for p in phones]
    plabels, pdur = segments_to_durations(phones, 0.005)
    assert torch.equal(dur.sum(1), pdur)
    # the last phone ends at the utterance end on the 5 ms grid
    assert int(pdur.sum()) == round(phones[-1].end / 0.005)


def test_write_lab_exact_text_and_round_trip(tmp_path):
    segs = [(0.0, 0.13, "sil"), (0.13, 0.205, "hh"), (0.205, 0.27, "iy")]
    path = tmp_path / "x.lab"
    write_lab(path, segs)
    assert path.read_text() == "0 1300000 sil\n1300000 2050000 hh\n2050000 2700000 iy\n"
    assert read_lab(path) == [Segment(*s) for s in segs]


def test_lab_bad_input(tmp_path):
    bad = tmp_path / "bad.lab"
    bad.write_text("0 100 a\n100 b\n")
    with pytest.raises(ValueError, match=r"bad.lab:2"):
        read_lab(bad)
    bad.write_text("200 100 a\n")
    with pytest.raises(ValueError, match="before start"):
        read_lab(bad)
    with pytest.raises(ValueError, match="without spaces"):
        write_lab(tmp_path / "o.lab", [(0.0, 1.0, "a b")])
    with pytest.raises(ValueError, match="before start"):
        write_lab(tmp_path / "o.lab", [(1.0, 0.5, "a")])
    with pytest.raises(ValueError, match="multiple of n_states"):
        segments_to_durations([(0.0, 0.1, "a")], 0.005, n_states=2)


def test_segments_to_frame_labels_by_hand():
    segs = [(0.0, 0.02, "a"), (0.02, 0.035, "b"), (0.035, 0.05, "a")]
    idx, vocab = segments_to_frame_labels(segs, 0.01)
    # frame centres 5, 15, 25, 35, 45 ms -> a, a, b, a, a
    assert vocab == ["a", "b"]
    assert idx.tolist() == [0, 0, 1, 0, 0]
    idx, _ = segments_to_frame_labels(segs, 0.01, n_frames=6, vocabulary=["b", "a"])
    assert idx.tolist() == [1, 1, 0, 1, 1, -1]


PRAAT_LONG = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 0.5
tiers? <exists>
size = 1
item []:
    item [1]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 0.5
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.1
            text = "sil"
        intervals [2]:
            xmin = 0.1
            xmax = 0.3
            text = ""
        intervals [3]:
            xmin = 0.3
            xmax = 0.5
            text = "aa"
"""


def test_read_handwritten_textgrid(tmp_path):
    path = tmp_path / "h.TextGrid"
    path.write_text(PRAAT_LONG)
    tiers = read_textgrid(path)
    assert list(tiers) == ["phones"]
    assert tiers["phones"] == [Segment(0.0, 0.1, "sil"), Segment(0.3, 0.5, "aa")]
    with_empty = read_textgrid(path, include_empty=True)["phones"]
    assert [s.label for s in with_empty] == ["sil", "", "aa"]
    with pytest.raises(KeyError, match="words"):
        read_textgrid(path, tiers=["words"])


def test_textgrid_round_trip_two_tiers(tmp_path):
    phones = read_lab(ARCTIC / "arctic_a0009_phone.lab")
    words = [(0.13, 0.6, "he"), (0.6, 1.0, "turned")]
    path = tmp_path / "a0009.TextGrid"
    write_textgrid(path, {"words": words, "phones": phones})
    text = path.read_text()
    assert 'name = "words"' in text and 'name = "phones"' in text
    back = read_textgrid(path)
    assert list(back) == ["words", "phones"]
    assert len(back["phones"]) == 40
    for a, b in zip(back["phones"], phones):
        assert a.label == b.label
        assert a.start == pytest.approx(b.start, abs=1e-9)
        assert a.end == pytest.approx(b.end, abs=1e-9)
    # gaps around the words are written as empty intervals and skipped on reading
    assert [s.label for s in back["words"]] == ["he", "turned"]
    assert [(s.start, s.end) for s in back["words"]] == [(0.13, 0.6), (0.6, 1.0)]
    assert len(read_textgrid(path, include_empty=True)["words"]) == 4
    with pytest.raises(ValueError, match="xmax"):
        write_textgrid(path, {"phones": phones}, xmax=1.0)
    with pytest.raises(ValueError, match="at least one tier"):
        write_textgrid(path, {})


def test_textgrid_times_are_written_rounded(tmp_path):
    # frame arithmetic gives 0.1 + 0.075 = 0.17500000000000002: written as 0.175
    from pytorch_hmm.io import read_textgrid, write_textgrid

    p = tmp_path / "a.TextGrid"
    write_textgrid(p, {"phones": [(0.0, 0.1, "a"), (0.1, 0.1 + 0.075, "b")]})
    text = p.read_text()
    assert "0.17500000000000002" not in text and "xmax = 0.175 " in text
    assert [s.end for s in read_textgrid(p)["phones"]] == [0.1, 0.175]
