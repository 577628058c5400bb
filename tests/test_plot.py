"""Pictures (issue 15): ``plot_alignment``, ``plot_training_curve``, ``pytorch-hmm plot`` and
the demo's alignment picture, on the bundled speech (festival-dev, CMU ARCTIC a0009)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("praatio")
pytest.importorskip("soundfile")

from pytorch_hmm.cli import PLOT_EXIT_STATUS, main  # noqa: E402
from pytorch_hmm.errors import HMMTypeError, HMMValueError  # noqa: E402
from pytorch_hmm.io import read_lab, write_textgrid  # noqa: E402
from pytorch_hmm.plot import plot_alignment, plot_training_curve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FEST = ROOT / "data" / "festival-dev"
ARCTIC = ROOT / "data" / "arctic"
NAME = "dev_slt_0001"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def fest_tiers(name: str = NAME) -> dict:
    return {
        "words": read_lab(FEST / "lab" / f"{name}.wrd"),
        "phones": read_lab(FEST / "lab" / f"{name}.lab"),
    }


@pytest.fixture(scope="module")
def textgrid(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tg") / f"{NAME}.TextGrid"
    write_textgrid(path, fest_tiers())
    return path


def axes_by_label(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes}


def boundary_times(ax, tier: str) -> list:
    return sorted(
        round(float(ln.get_xdata()[0]), 6) for ln in ax.lines if ln.get_gid() == f"boundary:{tier}"
    )


def labels_of(ax, tier: str) -> list:
    texts = [t for t in ax.texts if t.get_gid() == f"label:{tier}"]
    return [t.get_text() for t in sorted(texts, key=lambda t: t.get_position()[0])]


def edges(segs) -> list:
    return sorted({round(t, 6) for s in segs for t in (s.start, s.end)})


# ------------------------------------------------------------------------------------------
# plot_alignment


def test_alignment_png_tiers_labels_and_boundaries(textgrid, tmp_path):
    out = tmp_path / "sub" / "a.png"  # a missing parent folder is created
    fig = plot_alignment(FEST / "wav" / f"{NAME}.wav", textgrid, out, figsize=(10, 4.4), dpi=80)
    assert png_size(out) == (800, 352)
    ax = axes_by_label(fig)
    assert list(ax) == ["spectrogram", "tier:words", "tier:phones"]
    ref = fest_tiers()
    duration = 3.185
    assert ax["spectrogram"].get_xlim() == pytest.approx((0.0, duration))
    # the spectrogram image covers the audio (frames centred every 5 ms)
    (img,) = ax["spectrogram"].images
    left, right, _, _ = img.get_extent()
    assert left < 0 < duration < right + 0.01 and img.get_array().shape[0] == 80
    for tier in ("words", "phones"):
        segs = ref[tier]
        # labels centred in their intervals, in order
        assert labels_of(ax[f"tier:{tier}"], tier) == [s.label for s in segs]
        centres = sorted(
            t.get_position()[0] for t in ax[f"tier:{tier}"].texts if t.get_gid() == f"label:{tier}"
        )
        assert centres == pytest.approx([(s.start + s.end) / 2 for s in segs])
        # boundaries at the TextGrid's times, across the spectrogram and in the tier's strip
        assert boundary_times(ax["spectrogram"], tier) == pytest.approx(edges(segs), abs=1e-6)
        assert boundary_times(ax[f"tier:{tier}"], tier) == pytest.approx(edges(segs), abs=1e-6)
    # the pauses are drawn light: a grey box and grey text
    pau = [t for t in ax["tier:phones"].texts if t.get_text() == "pau"]
    speech = [t for t in ax["tier:phones"].texts if t.get_text() == "dh"]
    assert pau and speech and pau[0].get_color() != speech[0].get_color()
    boxes = ax["tier:words"].patches
    assert len(boxes) == sum(s.label == "pau" for s in ref["words"])
    assert ax["tier:phones"].get_xlabel() == "time (s)"
    assert ax["spectrogram"].get_title() == f"{NAME}.wav"


def test_alignment_default_size_and_other_inputs(textgrid, tmp_path):
    from pytorch_hmm.speech.features import load_audio

    wav, sr = load_audio(FEST / "wav" / f"{NAME}.wav")
    out = tmp_path / "w.png"
    # a waveform tensor + a dict of tiers, a single tier chosen, the linear spectrogram
    fig = plot_alignment(
        wav, fest_tiers(), out, sample_rate=sr, tiers=["phones"], spectrogram="linear", dpi=50
    )
    w, h = fig.get_size_inches()
    assert png_size(out) == (round(w * 50), round(h * 50))
    assert [a.get_label() for a in fig.axes] == ["spectrogram", "tier:phones"]
    assert fig.axes[0].get_ylim() == pytest.approx((0, sr / 2))
    # a numpy (channels, N) waveform, every tier (None), a list of segments as one tier
    stereo = np.stack([wav.numpy(), wav.numpy()])
    fig = plot_alignment(stereo, textgrid, sample_rate=sr, tiers=None)
    assert [a.get_label() for a in fig.axes] == ["spectrogram", "tier:words", "tier:phones"]
    fig = plot_alignment(wav, fest_tiers()["words"], sample_rate=sr, tiers=["words"])
    assert labels_of(axes_by_label(fig)["tier:words"], "words")[1] == "this"
    # a phones-only .lab: the default draws the tiers of words / phones present
    fig = plot_alignment(ARCTIC / "arctic_a0009.wav", ARCTIC / "arctic_a0009_phone.lab")
    ax = axes_by_label(fig)
    assert list(ax) == ["spectrogram", "tier:phones"]
    ref = read_lab(ARCTIC / "arctic_a0009_phone.lab")
    assert labels_of(ax["tier:phones"], "phones") == [s.label for s in ref]
    assert boundary_times(ax["spectrogram"], "phones") == pytest.approx(edges(ref), abs=1e-6)
    # an aligner result (attributes words / phones)
    from types import SimpleNamespace

    res = SimpleNamespace(**fest_tiers(), states=[])
    fig = plot_alignment(wav, res, sample_rate=sr)
    assert [a.get_label() for a in fig.axes] == ["spectrogram", "tier:words", "tier:phones"]


def test_alignment_bad_inputs_are_named(textgrid, tmp_path):
    wav = FEST / "wav" / f"{NAME}.wav"
    with pytest.raises(HMMValueError, match="does not exist"):
        plot_alignment(tmp_path / "missing.wav", textgrid)
    with pytest.raises(HMMValueError, match="alignment file .*missing.TextGrid.* does not exist"):
        plot_alignment(wav, tmp_path / "missing.TextGrid")
    with pytest.raises(HMMValueError, match=r"no tier 'states'; tiers present: \['words', 'phon"):
        plot_alignment(wav, textgrid, tiers=["phones", "states"])
    only_states = tmp_path / "states.TextGrid"
    write_textgrid(only_states, {"states": fest_tiers()["phones"]})
    with pytest.raises(HMMValueError, match=r"none of the tiers \['words', 'phones'\]"):
        plot_alignment(wav, only_states)
    # the TextGrid of another (longer) file: durations 3.185 s vs 5.48 s
    with pytest.raises(HMMValueError, match=r"ends at 3.185 s but the audio .* lasts 5.480 s"):
        plot_alignment(FEST / "wav" / "dev_slt_0061.wav", textgrid)
    plot_alignment(FEST / "wav" / "dev_slt_0061.wav", textgrid, tolerance=None)  # unchecked
    not_tg = tmp_path / "x.TextGrid"
    not_tg.write_text("hello", encoding="utf-8")
    with pytest.raises(HMMValueError, match="not a readable TextGrid"):
        plot_alignment(wav, not_tg)
    with pytest.raises(HMMValueError, match="sample_rate is needed"):
        plot_alignment(torch.zeros(16000), fest_tiers())
    with pytest.raises(HMMValueError, match="NaN or inf"):
        plot_alignment(torch.full((16000,), float("nan")), fest_tiers(), sample_rate=16000)
    with pytest.raises(HMMTypeError, match="audio must be a file path or a waveform"):
        plot_alignment(3.0, textgrid)
    with pytest.raises(HMMTypeError, match="alignment must be"):
        plot_alignment(wav, 42)
    with pytest.raises(HMMValueError, match="spectrogram must be 'mel' or 'linear'"):
        plot_alignment(wav, textgrid, spectrogram="cqt")
    with pytest.raises(HMMValueError, match="unknown picture format"):
        plot_alignment(wav, textgrid, tmp_path / "a.xyz")
    with pytest.raises(HMMValueError, match=r"alignment\['phones'\]\[0\]"):
        plot_alignment(wav, {"phones": [(1.0, 0.5, "a")]})


def test_missing_matplotlib_says_how_to_install(monkeypatch, textgrid, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'pytorch-hmm\[plot\]'"):
        plot_alignment(FEST / "wav" / f"{NAME}.wav", textgrid)
    with pytest.raises(ImportError, match=r"pytorch-hmm\[plot\]"):
        plot_training_curve([1.0, 2.0])
    rc = main(["plot", str(FEST / "wav" / f"{NAME}.wav"), str(textgrid), "-o", str(tmp_path / "a")])
    assert rc == 2 and "pytorch-hmm[plot]" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# plot_training_curve


def test_training_curve_from_em_history_and_losses(tmp_path):
    import pytorch_hmm as ph

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, 2, generator=g) + m for m in (-4.0, 0.0, 4.0)])[None]
    model = ph.GaussianHMM(3, 2, "diag")
    model.fit(x, n_iter=6)
    hist = list(model.log_likelihood_history)
    assert len(hist) >= 2
    out = tmp_path / "ll.png"
    fig = plot_training_curve(model, out, title="EM")
    w, h = fig.get_size_inches()
    assert png_size(out) == (round(w * 100), round(h * 100))
    (ax,) = fig.axes
    (line,) = ax.lines
    assert list(line.get_xdata()) == list(range(1, len(hist) + 1))
    assert np.allclose(line.get_ydata(), hist)
    assert ax.get_ylabel() == "log-likelihood" and ax.get_title() == "EM"
    # the plain history list; several curves; gradient losses with their own label
    fig = plot_training_curve(hist)
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), hist)
    fig = plot_training_curve({"train": [3.0, 2.0, 1.5], "dev": [3.1, 2.4, float("nan")]})
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["train", "dev"]
    fig = plot_training_curve(torch.tensor([2.0, 1.0, 0.5]), ylabel="loss", xlabel="epoch")
    assert fig.axes[0].get_ylabel() == "loss" and fig.axes[0].get_xlabel() == "epoch"


def test_training_curve_bad_inputs():
    import pytorch_hmm as ph

    with pytest.raises(HMMValueError, match="empty"):
        plot_training_curve([])
    with pytest.raises(HMMValueError, match="no finite value"):
        plot_training_curve([float("nan"), float("inf")])
    with pytest.raises(HMMTypeError, match="list of numbers"):
        plot_training_curve(["a", "b"])
    with pytest.raises(HMMTypeError, match="list of numbers"):
        plot_training_curve("1 2 3")
    with pytest.raises(HMMValueError, match="empty|fit it first"):
        plot_training_curve(ph.GaussianHMM(2, 2, "diag"))


# ------------------------------------------------------------------------------------------
# pytorch-hmm plot


def test_cli_plot_one_file(textgrid, tmp_path, capsys):
    wav = str(FEST / "wav" / f"{NAME}.wav")
    out = tmp_path / "one.png"
    rc = main(["plot", wav, str(textgrid), "-o", str(out), "--width", "9", "--dpi", "40"])
    assert rc == 0 and png_size(out) == (360, round((3.5 + 0.5 * 2) * 40))
    assert f"wrote {out}" in capsys.readouterr().err
    # a tier the TextGrid lacks: the file failed (1), named with the reason
    rc = main(["plot", wav, str(textgrid), "-o", str(tmp_path / "x.png"), "--tiers", "states"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{NAME}: " in err and "no tier 'states'" in err
    assert not (tmp_path / "x.png").exists()
    # bad arguments: 2
    assert main(["plot", wav, str(tmp_path / "nope.TextGrid"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["plot", str(FEST / "wav"), str(textgrid), "-o", str(out)]) == 2
    assert "corpus folder and the folder of TextGrids" in capsys.readouterr().err
    assert main(["plot", wav, str(textgrid), "-o", str(out), "--dpi", "0"]) == 2
    assert sorted(PLOT_EXIT_STATUS) == [0, 1, 2]


def test_cli_plot_folders(tmp_path, capsys):
    corpus, grids, out = tmp_path / "corpus", tmp_path / "aligned", tmp_path / "png"
    corpus.mkdir()
    grids.mkdir()
    names = ["dev_slt_0001", "dev_slt_0004"]
    for n in names + ["dev_slt_0007"]:
        shutil.copy(FEST / "wav" / f"{n}.wav", corpus / f"{n}.wav")
    for n in names:
        write_textgrid(grids / f"{n}.TextGrid", fest_tiers(n))
    args = ["plot", str(corpus), str(grids), "-o", str(out), "--dpi", "30", "--width", "6", "-q"]
    # dev_slt_0007 has no TextGrid (align failed on it): named, exit 1, the others written
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "dev_slt_0007: no dev_slt_0007.TextGrid" in err and "1 of 3 picture(s) failed" in err
    assert sorted(os.listdir(out)) == [n + ".png" for n in names]
    for n in names:
        png_size(out / f"{n}.png")
    for n in ("dev_slt_0004", "dev_slt_0007"):
        os.remove(corpus / f"{n}.wav")
    os.remove(grids / "dev_slt_0004.TextGrid")
    assert main(args) == 0
    # a corpus of speaker folders (MFA layout): align's output mirrors it, and so does plot's
    nested, nested_tg = tmp_path / "nested" / "spk", tmp_path / "nested_tg" / "spk"
    nested.mkdir(parents=True)
    nested_tg.mkdir(parents=True)
    for ext in (".wav", ".txt"):
        shutil.copy(FEST / "wav" / f"{NAME}{ext}", nested / f"{NAME}{ext}")
    shutil.copy(grids / f"{NAME}.TextGrid", nested_tg / f"{NAME}.TextGrid")
    nested_args = [str(nested.parent), str(nested_tg.parent), "-o", str(tmp_path / "nested_png")]
    assert main(["plot", *nested_args, "--dpi", "30", "--width", "6", "-q"]) == 0
    png_size(tmp_path / "nested_png" / "spk" / f"{NAME}.png")
    # -o a file, with folders: bad arguments
    (tmp_path / "f").write_text("", encoding="utf-8")
    assert main(["plot", str(corpus), str(grids), "-o", str(tmp_path / "f")]) == 2


# ------------------------------------------------------------------------------------------
# the demo's picture


def test_demo_writes_the_alignment_picture(tmp_path):
    """examples/demo.py's alignment_picture, on a TextGrid like section 4 writes (reference
    labels here, so the test does not train an aligner)."""
    spec = importlib.util.spec_from_file_location("pytorch_hmm_demo", ROOT / "examples/demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    phones = read_lab(ARCTIC / "arctic_a0009_phone.lab")
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from forced_alignment import ARCTIC_WORD_PHONES, ARCTIC_WORDS
    finally:
        sys.path.remove(str(ROOT / "examples"))
    speech = [p for p in phones if p.label not in ("sil", "pau")]
    words, i = [], 0
    for w, n in zip(ARCTIC_WORDS, ARCTIC_WORD_PHONES):
        words.append((speech[i].start, speech[i + n - 1].end, w))
        i += n
    write_textgrid(tmp_path / "arctic_a0009.TextGrid", {"words": words, "phones": phones})
    png = demo.alignment_picture(tmp_path, quick=False)
    assert png == tmp_path / "arctic_a0009.png"
    w, h = png_size(png)
    assert w >= 800 and h == round((3.5 + 0.5 * 2) * 100)
    write_textgrid(tmp_path / f"{NAME}.TextGrid", fest_tiers())
    assert demo.alignment_picture(tmp_path, quick=True) == tmp_path / f"{NAME}.png"
    png_size(tmp_path / f"{NAME}.png")
