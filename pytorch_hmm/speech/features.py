"""Acoustic front end: log-mel spectrogram, MFCC, deltas and CMVN (batched, CPU/GPU).

Filterbank and DCT come from maintained libraries and are applied with torch:

* the mel filterbank is ``librosa.filters.mel`` (Slaney mel scale and area normalisation by
  default; ``htk=True`` for the HTK scale) and the analysis window ``librosa.filters.get_window``;
* the DCT is the matrix of ``scipy.fft.dct`` (type 2, orthonormal by default) applied to the
  log-mel energies, exactly as ``librosa.feature.mfcc`` does;
* the STFT is ``torch.stft`` (centred frames, zero padding by default, like librosa >= 0.10).

torchaudio is not used (it does not install beside the torch this package targets). With the
same settings the results equal ``librosa.feature.melspectrogram`` / ``power_to_db`` /
``librosa.feature.mfcc`` up to floating-point rounding. Measured on the bundled CMU ARCTIC
utterance (n_fft 512, hop 80, 40 mels): float64 log-mel within 3e-7 dB and MFCC (lifter 22)
within 3e-6; float32 MFCC within 1.3e-3 (tests assert 1e-4 and 1e-2). Audio files are read
with ``soundfile``.

Tensors are batch-first: waveforms ``(B, N)`` with ``lengths`` ``(B,)`` in samples, features
``(B, T, F)`` with ``lengths`` ``(B,)`` in frames.

Input rules (every function here checks its input before computing and raises
:class:`~pytorch_hmm.errors.HMMValueError` / :class:`~pytorch_hmm.errors.HMMTypeError` naming
the argument): waveforms may be tensors, numpy arrays or lists; float32 / float64 are computed
as given, float16 / bfloat16 in float32 (features returned in float32; they then equal the
float32 features of the same samples), int16 / int32 PCM scaled as soundfile reads it
(``x / 2**15``, ``x / 2**31``) and computed in float32; other integer, bool and complex
dtypes, ``None`` and strings are refused. A batch of zero signals gives zero feature rows;
an empty signal, NaN / inf in a real sample, a signal shorter than ``n_fft`` with
``center=False`` (or not longer than ``n_fft // 2`` with ``pad_mode="reflect"``) are refused;
padding past ``lengths`` is never read. float32 signals loud enough to overflow the float32
power spectrum (``|x| n_fft > 1e17``) are computed in float64.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..core.validation import check_lengths, check_real_frames, to_tensor
from ..errors import HMMTypeError, HMMValueError

__all__ = [
    "Features",
    "LogMelSpectrogram",
    "MFCC",
    "load_audio",
    "log_mel_spectrogram",
    "mfcc",
    "deltas",
    "add_deltas",
    "cmvn",
    "frame_lengths",
]


class Features(NamedTuple):
    """Frame features ``(B, T, F)`` (zero past ``lengths``) and ``lengths`` ``(B,)`` in frames.

    Unbatched input gives ``(T, F)`` features and a 0-dim ``lengths``.
    """

    features: torch.Tensor
    lengths: torch.Tensor


def load_audio(
    path: Union[str, os.PathLike],
    *,
    sample_rate: Optional[int] = None,
    mono: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Tuple[torch.Tensor, int]:
    """Read an audio file with ``soundfile``.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, ...).
        sample_rate: the rate the caller expects; a file at another rate is a ``ValueError``
            (resample it first, e.g. with ``librosa.resample``). ``None`` accepts any rate.
        mono: average the channels to one.
        dtype: float dtype of the returned samples (scaled to ``[-1, 1]``).

    Returns:
        ``(waveform, rate)``: ``(N,)`` when ``mono`` else ``(channels, N)``, and the file's rate.
        A well-formed file holding no samples gives ``N = 0``.

    Raises:
        HMMValueError: a missing path, a directory, an empty (0-byte) or non-audio file, a WAV
            file cut short of the samples its header declares, or a rate other than
            ``sample_rate``; the message names the file.
        HMMTypeError: ``path`` not a string / path, ``dtype`` not a floating dtype.
    """
    import soundfile as sf

    if not isinstance(path, (str, os.PathLike)):
        raise HMMTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise HMMTypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if sample_rate is not None:
        sample_rate = _check_rate_value(sample_rate, "sample_rate")
    name = os.fspath(path)
    if not os.path.exists(name):
        raise HMMValueError(f"audio file {name!r} does not exist (no such file)")
    if os.path.isdir(name):
        raise HMMValueError(f"audio file {name!r} is a directory, expected an audio file")
    if os.path.getsize(name) == 0:
        raise HMMValueError(f"audio file {name!r} is empty (0 bytes), expected an audio file")
    try:
        data, rate = sf.read(name, dtype="float64", always_2d=True)  # (N, C)
    except (RuntimeError, sf.SoundFileError) as err:
        raise HMMValueError(
            f"audio file {name!r} could not be read as audio (libsndfile: {err})"
        ) from err
    declared = _wav_declared_frames(name)
    if declared is not None and declared > data.shape[0]:
        raise HMMValueError(
            f"audio file {name!r} is truncated: its WAV header declares {declared} frames but "
            f"the file holds {data.shape[0]}"
        )
    if sample_rate is not None and int(rate) != sample_rate:
        raise HMMValueError(
            f"{name} is sampled at {rate} Hz but sample_rate={sample_rate} was "
            "expected; resample it first (e.g. librosa.resample)"
        )
    wav = torch.from_numpy(data.T.copy()).to(dtype)
    if mono:
        wav = wav.mean(0)
    return wav, int(rate)


def _wav_declared_frames(name: str) -> Optional[int]:
    """Frames a RIFF/WAVE header declares (None: not a WAV file, or a streaming header that
    declares no size); libsndfile reads a truncated WAV without complaint."""
    import struct

    with open(name, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size)
                if len(fmt) >= 14:
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                if size % 2:
                    f.seek(1, 1)
            elif cid == b"data":
                if size in (0, 0xFFFFFFFF) or not block_align:
                    return None
                return size // block_align
            else:
                f.seek(size + (size % 2), 1)


def _check_int(value, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (bools and fractions refused), naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise HMMTypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise HMMValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_number(value, name: str, *, positive: bool = False, minimum=None) -> float:
    """A finite real number (``> 0`` with ``positive``; ``>= minimum`` when given)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise HMMTypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or (positive and v <= 0) or (minimum is not None and v < minimum):
        want = "> 0" if positive else (f">= {minimum}" if minimum is not None else "finite")
        raise HMMValueError(f"{name} must be a finite number {want}, got {value!r}")
    return v


def _check_rate_value(value, name: str = "sample_rate") -> int:
    """A sample rate: a positive whole number of Hz (16000 or 16000.0; not 16000.5)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise HMMTypeError(f"{name} must be a positive whole number of Hz, got {value!r}")
    if not np.isfinite(float(value)) or float(value) <= 0 or float(value) != int(value):
        raise HMMValueError(f"{name} must be a positive whole number of Hz, got {value!r}")
    return int(value)


def frame_lengths(
    lengths: torch.Tensor, n_fft: int, hop_length: int, center: bool = True
) -> torch.Tensor:
    """Frames per signal of ``lengths`` samples: ``1 + N // hop`` when centred, else
    ``1 + (N - n_fft) // hop`` (0 when ``N < n_fft``)."""
    n_fft = _check_int(n_fft, "n_fft")
    hop_length = _check_int(hop_length, "hop_length")
    try:
        lengths = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError) as err:
        raise HMMTypeError(
            f"lengths must be integer sample counts, got {type(lengths).__name__}"
        ) from err
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise HMMTypeError(f"lengths must be integer sample counts, got {lengths.dtype}")
    lengths = lengths.long()
    if lengths.numel() and int(lengths.min()) < 0:
        raise HMMValueError(f"lengths must be >= 0 samples, got {lengths.tolist()}")
    if center:
        return 1 + torch.div(lengths, hop_length, rounding_mode="floor")
    return (1 + torch.div(lengths - n_fft, hop_length, rounding_mode="floor")).clamp(min=0)


@lru_cache(maxsize=32)
def _mel_basis(sr, n_fft, n_mels, fmin, fmax, htk, norm) -> np.ndarray:
    import librosa

    return librosa.filters.mel(
        sr=sr,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        htk=htk,
        norm=norm,
        dtype=np.float64,
    )


@lru_cache(maxsize=32)
def _window(window: str, win_length: int) -> np.ndarray:
    import librosa

    return np.asarray(librosa.filters.get_window(window, win_length, fftbins=True), np.float64)


@lru_cache(maxsize=32)
def _dct_matrix(n_mels: int, n_mfcc: int, dct_type: int, norm: Optional[str]) -> np.ndarray:
    from scipy.fft import dct

    # column j is the DCT of the j-th unit vector, so dct(x) == D @ x
    return dct(np.eye(n_mels), type=dct_type, norm=norm, axis=0)[:n_mfcc]


# integer PCM is scaled as soundfile / libsndfile read it: int16 / 2**15, int32 / 2**31
_PCM_SCALE = {torch.int16: 2.0**15, torch.int32: 2.0**31}


def _as_waveform(waveform, name: str = "waveform") -> torch.Tensor:
    """``waveform`` as a float tensor, the front end's input rules:

    * float32 / float64 tensors pass as they are; numpy arrays and (nested) lists are
      converted (``torch.as_tensor``);
    * float16 / bfloat16 are computed in float32 (the FFT has no half-precision kernel on
      the CPU and the dB floor ``amin = 1e-10`` is below float16's range): features come
      back in float32;
    * int16 and int32 PCM are scaled to ``[-1, 1)`` as soundfile reads them
      (``x / 2**15``, ``x / 2**31``) and computed in float32; other integer, bool and
      complex dtypes are refused (scale them yourself).
    """
    waveform = to_tensor(waveform, name, "a tensor, numpy array or list of samples")
    if waveform.dtype in _PCM_SCALE:
        return waveform.to(torch.float32) / _PCM_SCALE[waveform.dtype]
    if waveform.dtype in (torch.float16, torch.bfloat16):
        return waveform.to(torch.float32)
    if waveform.dtype not in (torch.float32, torch.float64):
        raise HMMTypeError(
            f"{name} must be a floating-point tensor (float32 / float64; float16 / bfloat16 "
            f"are computed in float32) or int16 / int32 PCM, got {waveform.dtype}"
        )
    return waveform


def _prepare_waveform(
    waveform: torch.Tensor, lengths: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, bool]:
    waveform = _as_waveform(waveform)
    unbatched = waveform.dim() == 1
    if unbatched:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2:
        raise HMMValueError(f"waveform must have shape (B, N) or (N,), got {tuple(waveform.shape)}")
    B, N = waveform.shape
    lengths = check_lengths(lengths, B, N, waveform.device, min_value=0, what="samples")
    if B and (N == 0 or int(lengths.min()) <= 0):
        raise HMMValueError(
            f"waveform is empty (shape {tuple(waveform.shape)}, lengths {lengths.tolist()}); "
            "every signal needs at least one sample"
        )
    # zero the padding (whatever it holds: it is never read) so a padded item sees the same
    # zeros as librosa's constant padding; NaN or inf in a real sample is refused
    mask = torch.arange(N, device=waveform.device)[None] < lengths[:, None]
    waveform = torch.where(mask, waveform, waveform.new_zeros(()))
    if not bool(torch.isfinite(waveform).all()):
        b, i = torch.nonzero(~torch.isfinite(waveform))[0].tolist()
        what = "NaN" if bool(torch.isnan(waveform[b, i])) else "inf"
        raise HMMValueError(
            f"waveform contains NaN or inf: {what} in signal {b} at sample {i} (a real sample "
            f"as lengths[{b}] = {int(lengths[b])}); samples must be finite (padding past "
            "lengths is never read)"
        )
    return waveform, lengths, unbatched


def _masked_max(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Max over (T, F) of ``x`` ``(B, T, F)`` counting frames ``valid`` ``(B, T)`` only."""
    neg = torch.finfo(x.dtype).min
    return torch.where(valid[..., None], x, torch.full_like(x, neg)).amax(dim=(1, 2))


class LogMelSpectrogram(nn.Module):
    """Log-mel spectrogram of batched waveforms (librosa filterbank applied with torch).

    Pipeline: ``|STFT|^power`` (``torch.stft``, window from ``librosa.filters.get_window``) ->
    mel filterbank ``librosa.filters.mel`` -> log. With ``log="db"`` the log is librosa's
    ``power_to_db``: ``10*log10(max(S, amin)) - 10*log10(max(ref, amin))``, then, if ``top_db``
    is set, floored at (max over the utterance's valid frames and bins) ``- top_db``. With
    ``log="ln"``: ``ln(max(S, amin))`` (``ref``/``top_db`` unused).

    Args:
        sample_rate: rate of the waveforms (Hz); a call with another ``sample_rate`` fails.
        n_fft: FFT size. win_length: window length (default ``n_fft``), centred in ``n_fft``.
        hop_length: frame shift in samples.
        window: window name for ``librosa.filters.get_window`` (periodic).
        n_mels: mel bands. fmin, fmax: band edges in Hz (``fmax`` default ``sample_rate / 2``).
        htk: HTK mel scale instead of Slaney's. mel_norm: ``"slaney"`` area normalisation or None.
        power: 2 for power, 1 for magnitude spectrogram.
        center: centre frames (pad ``n_fft // 2`` each side with ``pad_mode``).
        pad_mode: ``"constant"`` (zeros, librosa's default) or ``"reflect"``. With ``reflect``
            the last frames of a shorter item in a padded batch see the batch's zero padding.
        log: ``"db"`` or ``"ln"``. amin, ref, top_db: see above.

    Shapes:
        ``forward(waveform (B, N) or (N,), lengths (B,) samples)`` ->
        :class:`Features` ``(B, T, n_mels)``, ``lengths`` ``(B,)`` with
        ``T = 1 + N // hop_length`` (centred).
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        n_fft: int = 512,
        win_length: Optional[int] = None,
        hop_length: int = 160,
        window: str = "hann",
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        htk: bool = False,
        mel_norm: Optional[str] = "slaney",
        power: float = 2.0,
        center: bool = True,
        pad_mode: str = "constant",
        log: str = "db",
        amin: float = 1e-10,
        ref: float = 1.0,
        top_db: Optional[float] = 80.0,
    ) -> None:
        super().__init__()
        sample_rate = _check_rate_value(sample_rate)
        n_fft = _check_int(n_fft, "n_fft")
        hop_length = _check_int(hop_length, "hop_length")
        win_length = n_fft if win_length is None else _check_int(win_length, "win_length")
        if not 0 < win_length <= n_fft:
            raise HMMValueError(f"win_length must be in [1, n_fft={n_fft}], got {win_length}")
        n_mels = _check_int(n_mels, "n_mels")
        if n_mels > n_fft // 2 + 1:
            raise HMMValueError(
                f"n_mels={n_mels} is more than the n_fft // 2 + 1 = {n_fft // 2 + 1} frequency "
                f"bins of n_fft={n_fft}; use fewer mel bands or a larger n_fft"
            )
        if log not in ("db", "ln"):
            raise HMMValueError(f"log must be 'db' or 'ln', got {log!r}")
        if pad_mode not in ("constant", "reflect"):
            raise HMMValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if not isinstance(window, str):
            raise HMMTypeError(f"window must be a window name (str), got {window!r}")
        if mel_norm is not None and mel_norm != "slaney":
            raise HMMValueError(f"mel_norm must be 'slaney' or None, got {mel_norm!r}")
        power = _check_number(power, "power", positive=True)
        amin = _check_number(amin, "amin", positive=True)
        ref = _check_number(ref, "ref", positive=True)
        if top_db is not None:
            top_db = _check_number(top_db, "top_db", minimum=0.0)
        fmin = _check_number(fmin, "fmin", minimum=0.0)
        fmax = sample_rate / 2.0 if fmax is None else _check_number(fmax, "fmax")
        if not 0 <= fmin < fmax <= sample_rate / 2.0:
            raise HMMValueError(
                f"need 0 <= fmin < fmax <= sample_rate/2 = {sample_rate / 2}, got fmin={fmin}, "
                f"fmax={fmax}"
            )
        self.sample_rate = int(sample_rate)
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.n_mels, self.power, self.center, self.pad_mode = n_mels, power, center, pad_mode
        self.log, self.amin, self.ref, self.top_db = log, amin, ref, top_db
        basis = _mel_basis(self.sample_rate, n_fft, n_mels, float(fmin), fmax, htk, mel_norm)
        self.register_buffer("mel_basis", torch.from_numpy(basis.copy()), persistent=False)
        try:
            win = _window(window, win_length)
        except Exception as err:  # librosa's ParameterError / scipy's ValueError
            raise HMMValueError(
                f"window={window!r} is not a window librosa.filters.get_window knows ({err})"
            ) from err
        self.register_buffer("window", torch.from_numpy(win.copy()), persistent=False)

    def _check_rate(self, sample_rate: Optional[int]) -> None:
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise HMMValueError(
                f"sample_rate={sample_rate} does not match this front end's "
                f"sample_rate={self.sample_rate}; resample the audio or build a new front end"
            )

    def mel_power(
        self,
        waveform: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        center: Optional[bool] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, bool]:
        """Mel power spectrogram ``(B, T, n_mels)`` (before the log), frame lengths, unbatched.
        ``center`` overrides the front end's (the streaming front end frames its own padded
        buffer with ``center=False``). Input dtypes: see :func:`_as_waveform`; the mel power
        is float64 where a float32 signal's power spectrum would overflow float32."""
        return self._mel_power(waveform, lengths, center)[:3]

    def _mel_power(self, waveform, lengths=None, center=None):
        """:meth:`mel_power` and the dtype the features are returned in."""
        center = self.center if center is None else center
        wav, lengths, unbatched = _prepare_waveform(waveform, lengths)
        B, N = wav.shape
        n_frames = frame_lengths(lengths, self.n_fft, self.hop_length, center)
        if B and not center and int(n_frames.min()) == 0:
            raise HMMValueError(
                f"a signal is shorter than n_fft={self.n_fft} samples (lengths "
                f"{lengths.tolist()}) and center=False; give at least n_fft samples"
            )
        if B and center and self.pad_mode == "reflect" and N <= self.n_fft // 2:
            raise HMMValueError(
                f"waveform has {N} samples; pad_mode='reflect' needs more than n_fft // 2 = "
                f"{self.n_fft // 2} (use pad_mode='constant' for shorter signals)"
            )
        T = int(frame_lengths(torch.tensor(N), self.n_fft, self.hop_length, center))
        if B == 0:
            return wav.new_zeros(0, T, self.n_mels), n_frames, unbatched, wav.dtype
        out_dtype = dtype = wav.dtype
        # a float32 power spectrum overflows past |x| ~ 1e16 / n_fft: compute such signals in
        # float64 (the dB values fit float32 again)
        if dtype == torch.float32 and float(wav.abs().amax()) * self.n_fft > 1e17:
            dtype = torch.float64
        spec = torch.stft(
            wav.to(dtype),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(device=wav.device, dtype=dtype),
            center=center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )  # (B, n_fft//2+1, T)
        mag = spec.abs()
        pw = mag**self.power if self.power != 1.0 else mag
        mel = torch.einsum("mf,bft->btm", self.mel_basis.to(device=wav.device, dtype=dtype), pw)
        if not bool(torch.isfinite(mel).all()):
            b = int(torch.nonzero(~torch.isfinite(mel))[0, 0])
            raise HMMValueError(
                f"waveform signal {b} (max |sample| {float(wav[b].abs().amax()):.3g}) overflows "
                f"the {dtype} power spectrum; scale the audio to [-1, 1]"
            )
        return mel, n_frames, unbatched, out_dtype

    def _log(self, mel: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.log == "ln":
            return torch.log(mel.clamp(min=self.amin))
        out = 10.0 * torch.log10(mel.clamp(min=self.amin))
        out = out - 10.0 * float(np.log10(max(self.amin, self.ref)))
        if self.top_db is not None:
            floor = _masked_max(out, valid) - self.top_db
            out = torch.maximum(out, floor[:, None, None])
        return out

    def forward(
        self,
        waveform: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
    ) -> Features:
        self._check_rate(sample_rate)
        mel, n_frames, unbatched, out_dtype = self._mel_power(waveform, lengths)
        valid = torch.arange(mel.shape[1], device=mel.device)[None] < n_frames[:, None]
        out = (self._log(mel, valid) * valid[..., None].to(mel.dtype)).to(out_dtype)
        return Features(out[0], n_frames[0]) if unbatched else Features(out, n_frames)


class MFCC(nn.Module):
    """MFCCs with optional liftering, CMVN and delta / delta-delta features.

    Pipeline (librosa's ``feature.mfcc``): :class:`LogMelSpectrogram` in dB -> DCT
    (``scipy.fft.dct`` matrix, keep ``n_mfcc``) -> liftering ``c_n *= 1 + (L/2) sin(pi (n+1)/L)``
    for ``n = 0..n_mfcc-1`` if ``lifter = L > 0`` (librosa's convention) -> per-utterance CMVN
    on the statics if ``cmvn`` -> HTK regression deltas (:func:`add_deltas`, ``delta_order``
    of 0, 1 or 2, half-width ``delta_width``), as in Kaldi (CMVN then deltas).

    Args:
        sample_rate: Hz. n_mfcc: coefficients kept (c0 included). dct_type, dct_norm: for
            ``scipy.fft.dct``. lifter: liftering parameter (0: none). cmvn: normalise
            mean (and variance if ``cmvn_variance``). delta_order, delta_width: see above.
        **mel_kwargs: options of :class:`LogMelSpectrogram` (default ``n_mels=40``,
            ``log="db"``, ``top_db=80``).

    Shapes:
        ``forward(waveform (B, N) or (N,), lengths (B,))`` -> :class:`Features`
        ``(B, T, n_mfcc * (1 + delta_order))``.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        n_mfcc: int = 13,
        dct_type: int = 2,
        dct_norm: Optional[str] = "ortho",
        lifter: float = 0.0,
        cmvn: bool = False,
        cmvn_variance: bool = True,
        delta_order: int = 0,
        delta_width: int = 2,
        **mel_kwargs,
    ) -> None:
        super().__init__()
        mel_kwargs.setdefault("n_mels", 40)
        if mel_kwargs.get("log", "db") != "db":
            raise HMMValueError("MFCC uses the dB log-mel spectrogram (log='db')")
        self.melspec = LogMelSpectrogram(sample_rate, **mel_kwargs)
        n_mels = self.melspec.n_mels
        n_mfcc = _check_int(n_mfcc, "n_mfcc")
        if not 0 < n_mfcc <= n_mels:
            raise HMMValueError(f"n_mfcc must be in [1, n_mels={n_mels}], got {n_mfcc}")
        lifter = _check_number(lifter, "lifter", minimum=0.0)
        if isinstance(delta_order, bool) or delta_order not in (0, 1, 2):
            raise HMMValueError(f"delta_order must be 0, 1 or 2, got {delta_order!r}")
        delta_width = _check_int(delta_width, "delta_width")
        if dct_type not in (1, 2, 3, 4) or isinstance(dct_type, bool):
            raise HMMValueError(f"dct_type must be 1, 2, 3 or 4, got {dct_type!r}")
        if dct_norm not in (None, "ortho"):
            raise HMMValueError(f"dct_norm must be 'ortho' or None, got {dct_norm!r}")
        if dct_type == 1 and dct_norm == "ortho" and n_mels < 2:
            raise HMMValueError("dct_type=1 needs n_mels >= 2")
        self.sample_rate = self.melspec.sample_rate
        self.n_mfcc, self.lifter, self.cmvn = n_mfcc, float(lifter), cmvn
        self.cmvn_variance, self.delta_order, self.delta_width = (
            cmvn_variance,
            delta_order,
            delta_width,
        )
        dct = _dct_matrix(n_mels, n_mfcc, dct_type, dct_norm)
        self.register_buffer("dct_matrix", torch.from_numpy(dct.copy()), persistent=False)
        if lifter > 0:
            lift = 1.0 + (lifter / 2.0) * np.sin(np.pi * np.arange(1, 1 + n_mfcc) / lifter)
        else:
            lift = np.ones(n_mfcc)
        self.register_buffer("lifter_weights", torch.from_numpy(lift), persistent=False)

    def cepstra(self, logmel: torch.Tensor) -> torch.Tensor:
        """DCT and liftering of dB log-mel frames ``(..., n_mels)`` -> ``(..., n_mfcc)``."""
        c = logmel @ self.dct_matrix.to(device=logmel.device, dtype=logmel.dtype).T
        return c * self.lifter_weights.to(device=logmel.device, dtype=logmel.dtype)

    def forward(
        self,
        waveform: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        sample_rate: Optional[int] = None,
    ) -> Features:
        logmel = self.melspec(waveform, lengths, sample_rate)
        x, n = logmel
        if x.dim() == 2:
            x, n = x.unsqueeze(0), n.reshape(1)
            unbatched = True
        else:
            unbatched = False
        c = self.cepstra(x)
        if self.cmvn:
            c = cmvn(c, n, variance=self.cmvn_variance)
        if self.delta_order:
            c = add_deltas(c, n, order=self.delta_order, width=self.delta_width)
        valid = torch.arange(c.shape[1], device=c.device)[None] < n[:, None]
        c = c * valid[..., None].to(c.dtype)
        return Features(c[0], n[0]) if unbatched else Features(c, n)


def log_mel_spectrogram(
    waveform: torch.Tensor,
    sample_rate: int,
    lengths: Optional[torch.Tensor] = None,
    **kwargs,
) -> Features:
    """Functional :class:`LogMelSpectrogram` (same keyword options), on ``waveform``'s device."""
    return LogMelSpectrogram(sample_rate, **kwargs).to(_device_of(waveform))(waveform, lengths)


def mfcc(
    waveform: torch.Tensor,
    sample_rate: int,
    lengths: Optional[torch.Tensor] = None,
    **kwargs,
) -> Features:
    """Functional :class:`MFCC` (same keyword options), on ``waveform``'s device."""
    return MFCC(sample_rate, **kwargs).to(_device_of(waveform))(waveform, lengths)


def _device_of(x) -> torch.device:
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")


def _batched(x, lengths, name: str = "features"):
    x = to_tensor(x, name)
    if x.dtype == torch.bool or x.is_complex():
        raise HMMTypeError(f"{name} must be a real tensor, got {x.dtype}")
    if x.dtype not in (torch.float32, torch.float64):
        # integers and float16 / bfloat16: computed and returned in float32
        x = x.to(torch.float32)
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise HMMValueError(f"{name} must have shape (B, T, F) or (T, F), got {tuple(x.shape)}")
    B, T, _ = x.shape
    lengths = check_lengths(lengths, B, T, x.device, min_value=0, what="frames")
    # padded frames are never read: replaced by 0 (zero gradient), NaN / inf in a real frame
    # refused with the sequence and frame named
    x = check_real_frames(name, x, lengths, allow_neg_inf=False)
    return x, lengths, unbatched


def deltas(
    features: torch.Tensor, lengths: Optional[torch.Tensor] = None, *, width: int = 2
) -> torch.Tensor:
    """HTK regression deltas ``d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum_{n=1..N} n^2)``.

    Frames beyond a sequence's ends are replaced by its first / last valid frame (HTK's edge
    replication), per sequence of a padded batch. ``N = width``.

    Args:
        features: ``(B, T, F)`` or ``(T, F)`` (tensor, numpy array or list; integer and
            float16 / bfloat16 features are computed and returned in float32).
        lengths: ``(B,)`` valid frames.

    Returns:
        deltas with the shape of ``features`` (zero past ``lengths``).
    """
    width = _check_int(width, "width")
    x, n, unbatched = _batched(features, lengths)
    B, T, F = x.shape
    if T == 0:
        return x[0].clone() if unbatched else x.clone()
    t = torch.arange(T, device=x.device)
    last = (n - 1).clamp(min=0)[:, None]
    out = torch.zeros_like(x)
    for k in range(1, width + 1):
        fwd = torch.minimum((t + k)[None].expand(B, T), last)
        bwd = torch.minimum((t - k).clamp(min=0)[None].expand(B, T), last)
        out = out + k * (
            torch.gather(x, 1, fwd[..., None].expand(B, T, F))
            - torch.gather(x, 1, bwd[..., None].expand(B, T, F))
        )
    out = out / (2.0 * sum(k * k for k in range(1, width + 1)))
    out = out * (t[None] < n[:, None])[..., None].to(out.dtype)
    return out[0] if unbatched else out


def add_deltas(
    features: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    order: int = 2,
    width: int = 2,
) -> torch.Tensor:
    """Append deltas (and delta-deltas, the deltas of the deltas, as HTK) along the last axis.

    Returns ``(B, T, F * (1 + order))`` (or ``(T, ...)``): ``[c | delta c | delta-delta c]``,
    zero past ``lengths``.
    """
    if isinstance(order, bool) or order not in (0, 1, 2):
        raise HMMValueError(f"order must be 0, 1 or 2, got {order!r}")
    width = _check_int(width, "width")
    x, lengths, unbatched = _batched(features, lengths)  # padding replaced, real frames checked
    parts = [x[0] if unbatched else x]
    for _ in range(order):
        parts.append(deltas(parts[-1], lengths, width=width))
    return torch.cat(parts, dim=-1)


def cmvn(
    features: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    variance: bool = True,
    eps: float = 1e-10,
) -> torch.Tensor:
    """Per-utterance cepstral mean (and variance) normalisation over the valid frames.

    ``(x - mean) / max(std, sqrt(eps))`` per feature, with mean and (biased) standard deviation
    taken over frames ``t < lengths[b]``; a constant feature (e.g. silent audio) maps to 0.
    Padded frames are returned as 0. Shapes: ``(B, T, F)`` or ``(T, F)`` in and out.
    """
    eps = _check_number(eps, "eps", positive=True)
    x, n, unbatched = _batched(features, lengths)
    dtype = x.dtype
    # statistics in float64: float32 features of 1e20 and more overflow a float32 variance
    x = x.double()
    valid = (torch.arange(x.shape[1], device=x.device)[None] < n[:, None])[..., None].to(x.dtype)
    count = n.clamp(min=1).to(x.dtype)[:, None, None]
    mean = (x * valid).sum(1, keepdim=True) / count
    out = (x - mean) * valid
    if variance:
        var = (out * out).sum(1, keepdim=True) / count
        out = out / var.clamp(min=eps).sqrt()
    out = out.to(dtype)
    return out[0] if unbatched else out
