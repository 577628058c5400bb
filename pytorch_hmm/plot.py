"""Pictures: an alignment over its spectrogram, and a training curve (matplotlib, optional).

* :func:`plot_alignment`: a log-mel (or linear) spectrogram of the audio, computed with the
  library's own front end (:class:`~pytorch_hmm.speech.features.LogMelSpectrogram`), time in
  seconds, with one labelled strip per tier below it (``words``, ``phones``, ...). Every
  tier's boundaries are vertical lines across the spectrogram and its own strip; labels are
  centred in their intervals; empty and silence intervals are drawn light.
* :func:`plot_training_curve`: the log-likelihood per EM iteration (a model's
  ``log_likelihood_history``, the history ``ForcedAligner.fit`` returns) or the losses
  ``fit_gradient`` returns.

Both return a :class:`matplotlib.figure.Figure` and write it when given ``out_png``
(atomically: an existing file is either kept or replaced whole). Figures are made with
matplotlib's non-interactive Agg canvas, without ``pyplot``: no display is needed and no
global figure state is touched. From the shell: ``pytorch-hmm plot AUDIO TEXTGRID -o OUT.png``.

matplotlib is an optional dependency: ``pip install 'pytorch-hmm[plot]'``.

The figure's parts can be found again (for tests, or to restyle a figure): the spectrogram
axes carry the label ``"spectrogram"`` and each strip ``"tier:NAME"``; boundary lines have
the gid ``"boundary:NAME"`` and interval labels the gid ``"label:NAME"``.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import HMMTypeError, HMMValueError

__all__ = ["DEFAULT_TIERS", "SILENCE_LABELS", "plot_alignment", "plot_training_curve"]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_TIERS: Tuple[str, ...] = ("words", "phones")
"""The tiers :func:`plot_alignment` draws by default (those of them present)."""

SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "pau", "<sil>", "SIL", "<eps>", "#"})
"""Labels drawn light, like empty intervals (the aligner's ``sil``, festival's ``pau``, ...)."""

_TIER_COLOURS = {"words": "#d62728", "phones": "#1f77b4", "states": "#2ca02c"}
_OTHER_COLOURS = ("#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_LIGHT_FILL = "#ececec"
_LIGHT_TEXT = "#8a8a8a"


def _matplotlib():
    """matplotlib's Figure and Agg canvas, or an ImportError saying how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "pytorch_hmm.plot needs matplotlib: pip install 'pytorch-hmm[plot]'"
        ) from err
    return Figure, FigureCanvasAgg


# ------------------------------------------------------------------------------------------
# inputs


def _load_waveform(audio: Any, sample_rate: Optional[int]) -> Tuple[np.ndarray, int]:
    """(samples (N,) float32, rate) from a path or a waveform (tensor / array)."""
    from .speech.features import load_audio

    if isinstance(audio, (str, os.PathLike)):
        wav, sr = load_audio(audio, sample_rate=sample_rate)
        wav = wav.numpy()
    elif isinstance(audio, (torch.Tensor, np.ndarray)):
        if sample_rate is None:
            raise HMMValueError(
                "sample_rate is needed with a waveform (tensor or array); pass sample_rate=..."
            )
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
            if not (isinstance(sample_rate, float) and sample_rate.is_integer()):
                raise HMMTypeError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
        sr = int(sample_rate)
        if sr <= 0:
            raise HMMValueError(f"sample_rate must be > 0 Hz, got {sample_rate!r}")
        t = audio.detach().cpu() if isinstance(audio, torch.Tensor) else torch.as_tensor(audio)
        if t.is_complex() or t.dtype == torch.bool:
            raise HMMTypeError(f"the waveform must hold real samples, got dtype {t.dtype}")
        if t.dim() == 2 and t.shape[0] <= 8 and t.shape[1] > t.shape[0]:
            t = t.double().mean(0)  # (channels, N): mono
        if t.dim() != 1:
            raise HMMValueError(
                f"the waveform must be (N,) samples or (channels, N), got shape {tuple(t.shape)}"
            )
        wav = t.double().numpy().astype(np.float32)
        if not np.isfinite(wav).all():
            raise HMMValueError("the waveform holds NaN or inf samples")
    else:
        raise HMMTypeError(
            "audio must be a file path or a waveform (torch.Tensor / numpy array), got "
            f"{type(audio).__name__}"
        )
    if wav.shape[0] == 0:
        raise HMMValueError(f"the audio {_name(audio)} holds no samples")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def _name(obj: Any) -> str:
    return repr(os.fspath(obj)) if isinstance(obj, (str, os.PathLike)) else "waveform"


def _read_alignment(alignment: Any, tiers: Optional[Sequence[str]]) -> Dict[str, list]:
    """Every tier of ``alignment`` (name -> segments, in order), before tier selection."""
    from .io.labels import _as_segments, read_lab
    from .io.textgrid import read_textgrid

    if isinstance(alignment, (str, os.PathLike)):
        path = os.fspath(alignment)
        if not os.path.exists(path):
            raise HMMValueError(f"alignment file {path!r} does not exist (no such file)")
        if os.path.isdir(path):
            raise HMMValueError(f"alignment file {path!r} is a directory, expected a TextGrid")
        if path.lower().endswith(".lab"):
            return {"phones": read_lab(path)}
        return read_textgrid(path, include_empty=True)
    if isinstance(alignment, Mapping):
        if not alignment:
            raise HMMValueError("the alignment holds no tiers (an empty dict)")
        out = {}
        for name, segs in alignment.items():
            if not isinstance(name, str):
                raise HMMTypeError(f"tier names must be strings, got {name!r}")
            out[name] = _as_segments(segs, f"alignment[{name!r}]")
        return out
    if isinstance(alignment, (list, tuple)):
        # one tier given as its segments: named by `tiers` when that names just one
        name = tiers[0] if tiers is not None and len(tiers) == 1 else "phones"
        return {name: _as_segments(alignment, "alignment")}
    names = [n for n in (tiers or DEFAULT_TIERS) if isinstance(getattr(alignment, n, None), list)]
    if names:  # an object with tier attributes: an UtteranceAlignment
        return {n: _as_segments(getattr(alignment, n), f"alignment.{n}") for n in names}
    raise HMMTypeError(
        "alignment must be a TextGrid (or .lab) path, a dict tier -> [(start, end, label)], "
        "a list of (start, end, label) or an UtteranceAlignment, got "
        f"{type(alignment).__name__}"
    )


def _select_tiers(
    present: Dict[str, list], tiers: Optional[Sequence[str]], source: str
) -> Dict[str, list]:
    if tiers is None:
        return present
    if tiers is DEFAULT_TIERS:  # the default: those of words / phones present
        chosen = {n: present[n] for n in DEFAULT_TIERS if n in present}
        if not chosen:
            raise HMMValueError(
                f"{source} has none of the tiers {list(DEFAULT_TIERS)}; tiers present: "
                f"{list(present)} (choose with tiers=[...])"
            )
        return chosen
    missing = [n for n in tiers if n not in present]
    if missing:
        raise HMMValueError(f"{source} has no tier {missing[0]!r}; tiers present: {list(present)}")
    return {n: present[n] for n in tiers}


def _check_tiers_arg(tiers: Any) -> Optional[Sequence[str]]:
    if tiers is None or tiers is DEFAULT_TIERS:
        return tiers
    if isinstance(tiers, str):
        return (tiers,)
    try:
        names = tuple(tiers)
    except TypeError as err:
        raise HMMTypeError(f"tiers must be a list of tier names, got {tiers!r}") from err
    if not names:
        raise HMMValueError("tiers must name at least one tier (or be None for all of them)")
    for n in names:
        if not isinstance(n, str):
            raise HMMTypeError(f"tiers must be tier names (strings), got {n!r}")
    if len(set(names)) != len(names):
        raise HMMValueError(f"tiers names a tier twice: {list(names)}")
    return names


# ------------------------------------------------------------------------------------------
# spectrogram


def _spectrogram(
    wav: np.ndarray, sr: int, kind: str, n_mels: int, hop: float, fmax: Optional[float]
) -> Tuple[np.ndarray, float, np.ndarray, str]:
    """(dB image (F, T), frame shift in s, frequencies in Hz (F,; mel: F + 2 with 0 and
    fmax), y label)."""
    from .speech.features import LogMelSpectrogram, _window

    hop_length = max(1, int(round(hop * sr)))
    n_fft = 1 << max(6, math.ceil(math.log2(0.025 * sr)))  # >= a 25 ms window
    fmax = sr / 2.0 if fmax is None else min(float(fmax), sr / 2.0)
    x = torch.from_numpy(wav)
    if kind == "mel":
        front = LogMelSpectrogram(
            sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmax=fmax, top_db=80.0
        )
        with torch.no_grad():
            img = front(x).features.numpy().T  # (n_mels, T)
        import librosa

        # 0, the band centres, fmax (librosa.filters.mel's points)
        freqs = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=fmax)
        return img, hop_length / sr, freqs, "kHz (mel scale)"
    window = torch.from_numpy(_window("hann", n_fft).astype(np.float32))
    with torch.no_grad():
        spec = torch.stft(
            x, n_fft, hop_length, window=window, center=True, pad_mode="constant",
            return_complex=True,
        ).abs() ** 2  # fmt: skip
    db = 10.0 * np.log10(np.maximum(spec.numpy(), 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    freqs = np.arange(db.shape[0]) * sr / n_fft
    keep = freqs <= fmax + 1e-9
    return db[keep], hop_length / sr, freqs[keep], "frequency (kHz)"


def _freq_ticks(ax, freqs: np.ndarray, kind: str) -> None:
    if kind == "mel":
        # freqs: 0, the n band centres, fmax; band i is drawn from i to i + 1
        n = len(freqs) - 2
        cands = [f for f in (0, 500, 1000, 2000, 4000, 8000, 16000) if f <= freqs[-1] + 1.0]
        pos = np.interp(cands, freqs, np.r_[0.0, np.arange(n) + 0.5, n])
        ax.set_yticks(pos)
        ax.set_yticklabels([f"{f / 1000:g}" for f in cands])
    else:
        top = freqs[-1]
        step = 1000 if top <= 8000 else 2000 if top <= 16000 else 4000
        cands = np.arange(0, top + 1, step)
        ax.set_yticks(cands)
        ax.set_yticklabels([f"{f / 1000:g}" for f in cands])


# ------------------------------------------------------------------------------------------
# alignment picture


def _boundaries(segs, t_max: float) -> List[float]:
    times = sorted({round(t, 9) for s in segs for t in (s.start, s.end)})
    return [t for t in times if 0.0 <= t <= t_max]


def _fit_fontsize(label: str, width_pt: float, size: float, smallest: float = 5.0) -> float:
    """A font size at which ``label`` fits ``width_pt`` points (about 0.6 em a character)."""
    need = 0.62 * max(len(label), 1)
    return max(smallest, min(size, width_pt / need)) if need else size


def plot_alignment(
    audio: Any,
    alignment: Any,
    out_png: Optional[PathLike] = None,
    *,
    sample_rate: Optional[int] = None,
    tiers: Optional[Sequence[str]] = DEFAULT_TIERS,
    title: Optional[str] = None,
    spectrogram: str = "mel",
    n_mels: int = 80,
    frame_shift: float = 0.005,
    fmax: Optional[float] = None,
    tolerance: Optional[float] = 0.1,
    silence: Sequence[str] = SILENCE_LABELS,
    figsize: Optional[Tuple[float, float]] = None,
    dpi: int = 100,
    cmap: str = "Greys",
):
    """Draw an alignment under the spectrogram of its audio; optionally write it as a PNG.

    Args:
        audio: an audio file path (anything :func:`~pytorch_hmm.speech.features.load_audio`
            reads), or a waveform: a ``(N,)`` (or ``(channels, N)``) tensor / array, with
            ``sample_rate``.
        alignment: a Praat TextGrid path (read with :func:`~pytorch_hmm.io.read_textgrid`,
            empty intervals kept) or an HTK ``.lab`` path (one tier ``phones``); a dict
            tier name -> list of ``(start, end, label)`` in seconds; a single list of
            ``(start, end, label)`` (one tier, named by ``tiers`` when that names just one,
            else ``phones``); or an ``UtteranceAlignment`` (``ForcedAligner.align``'s result).
        out_png: write the figure here (PNG, or another format matplotlib knows by the
            extension); missing parent folders are created. ``None``: only return it.
        sample_rate: the waveform's rate (Hz), needed with a waveform; with a path it is the
            rate the file must have.
        tiers: the tiers to draw, top to bottom. The default draws those of ``words`` and
            ``phones`` present (at least one must be); a list given explicitly must all be
            present; ``None`` draws every tier.
        title: text above the figure (default: the audio file's name).
        spectrogram: ``"mel"`` (log-mel, ``n_mels`` bands) or ``"linear"`` (log power of the
            STFT), in dB with an 80 dB range.
        frame_shift: the spectrogram's frame shift in seconds (window: >= 25 ms).
        fmax: the highest frequency shown (Hz; default half the sample rate).
        tolerance: how far (seconds) the alignment's end may be from the audio's duration;
            a larger difference (the wrong audio for this TextGrid?) is an error. ``None``
            skips the check.
        silence: labels drawn light, like empty intervals.
        figsize: ``(width, height)`` in inches; ``None`` (or either as ``None``): the width
            grows with the duration (8 to 40 whole inches) and the height with the tiers
            (``3.5 + 0.5 * tiers``).
        dpi: resolution of the written file; the PNG is ``figsize * dpi`` pixels.
        cmap: matplotlib colour map of the spectrogram.

    Returns:
        the :class:`matplotlib.figure.Figure`.

    Raises:
        HMMValueError: a missing or unreadable audio / TextGrid file, a TextGrid without a
            requested tier (the message lists those present), an alignment that ends more
            than ``tolerance`` from the audio's end, an out-of-range option.
        HMMTypeError: arguments of the wrong type.
        ImportError: matplotlib is not installed (``pip install 'pytorch-hmm[plot]'``).
    """
    Figure, FigureCanvasAgg = _matplotlib()
    if figsize is not None and (
        isinstance(figsize, (str, bytes)) or not hasattr(figsize, "__len__") or len(figsize) != 2
    ):
        raise HMMTypeError(f"figsize must be (width, height) in inches, got {figsize!r}")
    if spectrogram not in ("mel", "linear"):
        raise HMMValueError(f"spectrogram must be 'mel' or 'linear', got {spectrogram!r}")
    _check_positive(frame_shift, "frame_shift")
    _check_positive(dpi, "dpi")
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)) or n_mels < 2:
        raise HMMValueError(f"n_mels must be a whole number >= 2, got {n_mels!r}")
    if tolerance is not None:
        _check_positive(tolerance, "tolerance", allow_zero=True)
    if fmax is not None:
        _check_positive(fmax, "fmax")
    if isinstance(silence, str):
        raise HMMTypeError(f"silence must be a collection of labels, got the string {silence!r}")
    silence = frozenset(silence)
    tiers = _check_tiers_arg(tiers)

    wav, sr = _load_waveform(audio, sample_rate)
    duration = wav.shape[0] / sr
    is_file = isinstance(alignment, (str, os.PathLike))
    source = f"alignment {_name(alignment)}" if is_file else "the alignment"
    chosen = _select_tiers(_read_alignment(alignment, tiers), tiers, source)
    end = max((s.end for segs in chosen.values() for s in segs), default=0.0)
    if not any(chosen.values()):
        raise HMMValueError(f"{source}: the tiers {list(chosen)} hold no intervals")
    if tolerance is not None and abs(end - duration) > tolerance:
        raise HMMValueError(
            f"{source} ends at {end:.3f} s but the audio {_name(audio)} lasts {duration:.3f} s "
            f"(more than the tolerance of {tolerance:g} s apart): is it the TextGrid of "
            "another file? (tolerance=None skips this check)"
        )
    t_max = max(duration, end)

    img, shift, freqs, ylabel = _spectrogram(wav, sr, spectrogram, n_mels, frame_shift, fmax)

    n_tiers = len(chosen)
    width, height = (None, None) if figsize is None else figsize
    for v, nm in ((width, "width"), (height, "height")):
        if v is not None:
            _check_positive(v, f"figsize {nm}")
    figsize = (
        float(round(min(40.0, max(8.0, 2.0 + 3.2 * t_max)))) if width is None else float(width),
        3.5 + 0.5 * n_tiers if height is None else float(height),
    )
    if title is None and isinstance(audio, (str, os.PathLike)):
        title = os.path.basename(os.fspath(audio))
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    rects = _layout(figsize, n_tiers, bool(title))
    ax = fig.add_axes(rects[0])
    ax.set_label("spectrogram")
    y_top = img.shape[0] if spectrogram == "mel" else freqs[-1]
    ax.imshow(
        img,
        origin="lower",
        aspect="auto",
        cmap=cmap,
        interpolation="nearest",
        extent=(-shift / 2, (img.shape[1] - 0.5) * shift, 0, y_top),
    )
    ax.set_xlim(0.0, t_max)
    ax.set_ylim(0, y_top)
    _freq_ticks(ax, freqs, spectrogram)
    ax.set_ylabel(ylabel)
    ax.tick_params(labelbottom=False)
    if title:
        ax.set_title(title)

    # points per second along the time axis, for fitting labels into their intervals
    width_pt = figsize[0] * 72.0 * rects[0][2]
    pt_per_s = width_pt / t_max if t_max > 0 else 1.0
    strip = None
    for i, (name, segs) in enumerate(chosen.items()):
        colour = _TIER_COLOURS.get(name, _OTHER_COLOURS[i % len(_OTHER_COLOURS)])
        strip = fig.add_axes(rects[1 + i], sharex=ax)
        strip.set_label(f"tier:{name}")
        strip.set_ylim(0, 1)
        strip.set_yticks([])
        strip.set_ylabel(name, rotation=0, ha="right", va="center")
        is_last = i == n_tiers - 1
        strip.tick_params(labelbottom=is_last, bottom=is_last)
        top = name == "words" or (i == 0 and "words" not in chosen and n_tiers > 1)
        lw, alpha = (1.4, 0.85) if top else (0.8, 0.7)  # word boundaries bolder
        for t in _boundaries(segs, t_max):
            for target, a in ((ax, alpha), (strip, 1.0)):
                line = target.axvline(t, color=colour, linewidth=lw, alpha=a)
                line.set_gid(f"boundary:{name}")
        base = 9.0 if i == 0 else 8.0
        for s in segs:
            light = s.label.strip() in silence or s.label in silence
            if light:
                strip.axvspan(s.start, s.end, facecolor=_LIGHT_FILL, edgecolor="none", zorder=0)
            if not s.label.strip():
                continue
            size = _fit_fontsize(s.label, (s.end - s.start) * pt_per_s, base)
            txt = strip.text(
                (s.start + s.end) / 2.0,
                0.5,
                s.label,
                ha="center",
                va="center",
                fontsize=size,
                color=_LIGHT_TEXT if light else "black",
                clip_on=True,
            )
            txt.set_gid(f"label:{name}")
    if strip is not None:
        strip.set_xlabel("time (s)")
    ax.set_xlim(0.0, t_max)
    if out_png is not None:
        _save(fig, out_png, dpi)
    return fig


def _layout(figsize, n_tiers: int, title: bool) -> List[Tuple[float, float, float, float]]:
    """Axes rectangles (figure fractions): the spectrogram, then a strip per tier below it.
    Margins in inches (a fixed layout: quicker to draw than matplotlib's constrained one)."""
    w, h = figsize
    left, right, bottom, top = 0.95, 0.2, 0.5, (0.35 if title else 0.12)
    gap, strip = 0.12, 0.45
    room = h - bottom - top - (gap if n_tiers else 0.0)
    strip = min(strip, 0.4 * room / max(n_tiers, 1))  # a short figure: thinner strips
    spec = room - strip * n_tiers
    x, width = left / w, max(w - left - right, 0.1) / w
    rects = [(x, (bottom + strip * n_tiers + gap) / h, width, spec / h)]
    for i in range(n_tiers):
        rects.append((x, (bottom + strip * (n_tiers - 1 - i)) / h, width, strip / h))
    return rects


def _check_positive(value: Any, name: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise HMMTypeError(f"{name} must be a number, got {value!r}")
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(float(value)) and ok):
        raise HMMValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, "
                            f"got {value!r}")  # fmt: skip


def _save(fig, out_png: PathLike, dpi: int) -> None:
    from .io._atomic import atomic_path

    if not isinstance(out_png, (str, os.PathLike)):
        raise HMMTypeError(f"out_png must be a file path, got {type(out_png).__name__}")
    path = os.fspath(out_png)
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    formats = fig.canvas.get_supported_filetypes()
    if ext not in formats:
        raise HMMValueError(
            f"out_png {path!r}: unknown picture format {ext!r}; use one of {sorted(formats)}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise HMMValueError(f"cannot write {path!r}: {folder!r} is a file, not a folder")
    if os.path.isdir(path):
        raise HMMValueError(f"cannot write {path!r}: it is a folder")
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path, suffix="." + ext) as tmp:
        fig.savefig(tmp, dpi=dpi, format=ext)


# ------------------------------------------------------------------------------------------
# training curve


def _as_history(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    if isinstance(values, (str, bytes)) or values is None:
        raise HMMTypeError(f"{name} must be a list of numbers, got {values!r}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise HMMTypeError(f"{name} must be a list of numbers, got {values!r}") from err
    if arr.ndim != 1:
        raise HMMValueError(f"{name} must be a flat list of numbers, got shape {arr.shape}")
    if arr.size == 0:
        raise HMMValueError(f"{name} is empty: nothing to plot (was the model trained?)")
    arr = np.where(np.isfinite(arr), arr, np.nan)  # NaN / inf: gaps in the curve
    if np.isnan(arr).all():
        raise HMMValueError(f"{name} holds no finite value (every entry is NaN or inf)")
    return arr


def plot_training_curve(
    history: Any,
    out_png: Optional[PathLike] = None,
    *,
    title: Optional[str] = None,
    ylabel: Optional[str] = None,
    xlabel: str = "iteration",
    figsize: Tuple[float, float] = (6.4, 4.0),
    dpi: int = 100,
):
    """Plot a training history: log-likelihood per EM iteration, or loss per epoch.

    Args:
        history: a list / array / tensor of numbers, one per iteration (``ForcedAligner.fit``'s
            return value, ``fit_gradient``'s losses); a fitted model (its
            ``log_likelihood_history``); or a dict name -> list for several curves on one
            axes (e.g. ``{"train": ..., "validation": ...}``). NaN / inf values are gaps.
        out_png: write the figure here (missing parent folders are created).
        title: text above the plot.
        ylabel: the y axis' name (default ``"log-likelihood"`` for a model's history and
            for a list, ``"value"`` for a dict).
        xlabel: the x axis' name; iterations are numbered from 1.
        figsize, dpi: size in inches and resolution of the written file.

    Returns:
        the :class:`matplotlib.figure.Figure`.

    Raises:
        HMMValueError: an empty history (an unfitted model), one without a finite value.
        HMMTypeError: a history that is not numbers.
        ImportError: matplotlib is not installed (``pip install 'pytorch-hmm[plot]'``).
    """
    Figure, FigureCanvasAgg = _matplotlib()
    _check_positive(dpi, "dpi")
    if isinstance(history, torch.nn.Module) or (
        hasattr(history, "log_likelihood_history")
        and not isinstance(history, (list, tuple, Mapping, np.ndarray, torch.Tensor))
    ):
        values = getattr(history, "log_likelihood_history", None)
        if values is None or len(values) == 0:
            raise HMMValueError(
                f"{type(history).__name__} has no log_likelihood_history yet: fit it first"
            )
        curves = {"": _as_history(values, f"{type(history).__name__}.log_likelihood_history")}
        ylabel = "log-likelihood" if ylabel is None else ylabel
    elif isinstance(history, Mapping):
        if not history:
            raise HMMValueError("history is an empty dict: nothing to plot")
        curves = {str(k): _as_history(v, f"history[{k!r}]") for k, v in history.items()}
        ylabel = "value" if ylabel is None else ylabel
    else:
        curves = {"": _as_history(history, "history")}
        ylabel = "log-likelihood" if ylabel is None else ylabel
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_label("training curve")
    for name, arr in curves.items():
        x = np.arange(1, arr.size + 1)
        ax.plot(x, arr, marker="o" if arr.size <= 60 else None, markersize=3.5, label=name or None)
    if any(curves):
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if out_png is not None:
        _save(fig, out_png, dpi)
    return fig
