"""Streaming front end: log-mel / MFCC frames from audio arriving in chunks of any size.

Each feature frame is computed once, when the samples its window covers have arrived, with
the offline front end's own STFT, filterbank, log and DCT (so streamed features equal
:class:`~pytorch_hmm.speech.LogMelSpectrogram` / :class:`~pytorch_hmm.speech.MFCC` on the
whole signal up to FFT rounding, whatever the chunk boundaries). Centred frames see the
offline zero padding: ``n_fft // 2`` zeros before the first sample, and at :meth:`flush`
after the last. Deltas (MFCC ``delta_order``) wait for ``delta_order * delta_width`` frames
of look-ahead and use HTK edge replication at the true start and end, as offline.

What cannot stream exactly is refused at construction: ``top_db`` (floors every frame at the
utterance's maximum minus ``top_db``), per-utterance CMVN and ``pad_mode="reflect"`` with
centred frames (needs the end of the signal before the last frames). Build the front end
with ``top_db=None`` (and ``cmvn=False``).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from ..errors import HMMTypeError, HMMValueError
from ..speech.features import MFCC, LogMelSpectrogram, _as_waveform, add_deltas

FrontEnd = Union[LogMelSpectrogram, MFCC]


def check_streamable(front_end: FrontEnd) -> Tuple[LogMelSpectrogram, Optional[MFCC]]:
    """``(log-mel part, MFCC or None)``; ValueError when ``front_end`` cannot stream exactly."""
    if isinstance(front_end, MFCC):
        mel, cep = front_end.melspec, front_end
        if cep.cmvn:
            raise HMMValueError(
                "feature_extractor: MFCC(cmvn=True) normalises by the whole utterance's mean "
                "and variance and cannot stream; build it with cmvn=False (normalise with "
                "statistics from training data instead)"
            )
    elif isinstance(front_end, LogMelSpectrogram):
        mel, cep = front_end, None
    else:
        raise HMMTypeError(
            "feature_extractor must be a pytorch_hmm.speech.LogMelSpectrogram or MFCC, got "
            f"{type(front_end).__name__}"
        )
    if mel.log == "db" and mel.top_db is not None:
        raise HMMValueError(
            f"feature_extractor: top_db={mel.top_db} floors every frame at the whole "
            "utterance's maximum and cannot stream; build the front end with top_db=None"
        )
    if mel.center and mel.pad_mode != "constant":
        raise HMMValueError(
            f"feature_extractor: pad_mode={mel.pad_mode!r} pads centred frames with the end of "
            "the signal, which a stream does not have yet; use pad_mode='constant'"
        )
    return mel, cep


class StreamingFrontEnd:
    """Feature frames of B synchronous audio streams, chunk after chunk.

    Args:
        front_end: a :class:`LogMelSpectrogram` or :class:`MFCC` (see the module notes).
        num_streams: B.

    :meth:`push` takes ``(B, n)`` samples (every stream the same ``n``) and returns the frames
    completed by them, ``(B, F, D)``; :meth:`flush` the rest at the end of the streams.
    """

    def __init__(self, front_end: FrontEnd, num_streams: int = 1) -> None:
        self.mel, self.cep = check_streamable(front_end)
        self.front_end = front_end
        if isinstance(num_streams, bool) or not isinstance(num_streams, int):
            raise HMMTypeError(f"num_streams must be an integer >= 1, got {num_streams!r}")
        if num_streams < 1:
            raise HMMValueError(f"num_streams must be an integer >= 1, got {num_streams!r}")
        self.B = int(num_streams)
        m = self.mel
        self.n_fft, self.hop = m.n_fft, m.hop_length
        self.pad = m.n_fft // 2 if m.center else 0
        order = 0 if self.cep is None else self.cep.delta_order
        self.order = order
        self.width = 0 if self.cep is None else self.cep.delta_width
        self.lookahead = order * self.width  # frames a delta frame waits for
        self.reset()

    @property
    def dim(self) -> int:
        if self.cep is None:
            return self.mel.n_mels
        return self.cep.n_mfcc * (1 + self.order)

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    def reset(self) -> None:
        self.buf: Optional[torch.Tensor] = None  # (B, L) samples from the next frame's start
        self.samples = 0  # per stream
        self.frames = 0  # static frames computed
        self.static: Optional[torch.Tensor] = None  # (B, S, C) kept for deltas
        self.static_start = 0  # frame index of static[:, 0]
        self.emitted = 0  # frames returned

    def _statics(self, buf: torch.Tensor) -> torch.Tensor:
        """Static features of every full window in ``buf`` (B, L): (B, F, C)."""
        mel, _, _ = self.mel.mel_power(buf, center=False)
        valid = torch.ones(mel.shape[:2], dtype=torch.bool, device=mel.device)
        x = self.mel._log(mel, valid)
        x = x if self.cep is None else self.cep.cepstra(x)
        # very loud float32 audio is computed in float64 (as offline); frames in buf's dtype
        return x.to(buf.dtype)

    def _advance(self, buf: torch.Tensor, total_frames: Optional[int] = None) -> torch.Tensor:
        """Frames from ``buf`` (starting at the next frame's window); returns (B, F, C) and
        keeps the samples the next frame needs."""
        L = buf.shape[1]
        n = 0 if L < self.n_fft else 1 + (L - self.n_fft) // self.hop
        if total_frames is not None:
            n = min(n, total_frames - self.frames)
        if n <= 0:
            self.buf = buf
            return buf.new_zeros(self.B, 0, self._static_dim())
        x = self._statics(buf[:, : (n - 1) * self.hop + self.n_fft])
        self.buf = buf[:, n * self.hop :]
        self.frames += n
        return x

    def _static_dim(self) -> int:
        return self.mel.n_mels if self.cep is None else self.cep.n_mfcc

    def _emit(self, new: torch.Tensor, final: bool) -> torch.Tensor:
        if self.order == 0:
            self.emitted += new.shape[1]
            return new
        a = self.lookahead
        st = new if self.static is None else torch.cat([self.static, new], 1)
        hi = self.static_start + st.shape[1]  # static frames available (absolute)
        end = hi if final else max(self.emitted, hi - a)
        if end > self.emitted:
            lens = torch.full((self.B,), st.shape[1], dtype=torch.long, device=st.device)
            full = add_deltas(st, lens, order=self.order, width=self.width)
            out = full[:, self.emitted - self.static_start : end - self.static_start]
        else:
            out = st.new_zeros(self.B, 0, self.dim)
        self.emitted = end
        keep_from = max(0, self.emitted - a)  # left context of the next frames to emit
        self.static = st[:, keep_from - self.static_start :]
        self.static_start = keep_from
        return out

    def push(self, samples: torch.Tensor) -> torch.Tensor:
        """Add ``samples`` (B, n); return the frames they complete, (B, F, dim).

        ``samples`` follows the offline front end's input rules (tensor, numpy array or list;
        float16 / bfloat16 computed in float32, int16 / int32 PCM scaled by ``2**15`` /
        ``2**31``); every chunk of a stream must come in the same (converted) dtype. Bad input
        (wrong type, dtype or shape, NaN or inf) raises, naming the stream and sample, and
        leaves the stream unchanged."""
        samples = _as_waveform(samples, "samples")
        if samples.dim() != 2 or samples.shape[0] != self.B:
            raise HMMValueError(
                f"samples must have shape (B, n) = ({self.B}, n), got {tuple(samples.shape)}"
            )
        if self.buf is not None and samples.dtype != self.buf.dtype:
            raise HMMTypeError(
                f"samples are {samples.dtype} but this stream started in {self.buf.dtype}; "
                "give every chunk of a stream in the same dtype (or reset())"
            )
        if not bool(torch.isfinite(samples).all()):
            b, i = torch.nonzero(~torch.isfinite(samples))[0].tolist()
            what = "NaN" if bool(torch.isnan(samples[b, i])) else "inf"
            raise HMMValueError(
                f"samples contain NaN or inf: {what} in stream {b} at chunk sample {i} (stream "
                f"sample {self.samples + i}); samples must be finite"
            )
        if samples.shape[1] == 0:
            return samples.new_zeros(self.B, 0, self.dim)
        if self.buf is None:
            buf = torch.cat([samples.new_zeros(self.B, self.pad), samples], 1)
        else:
            buf = torch.cat([self.buf, samples], 1)
        before = self.state()
        try:
            out = self._emit(self._advance(buf), final=False)
        except Exception:
            self.load_state(before)
            raise
        self.samples += samples.shape[1]
        return out

    def flush(self) -> torch.Tensor:
        """The frames left at the end of the streams (the offline count, ``1 + N // hop``
        centred), with the end padding; (B, F, dim). Then :meth:`reset` for a new stream."""
        if self.buf is None:
            return torch.zeros(self.B, 0, self.dim)
        total = 1 + self.samples // self.hop if self.mel.center else (
            0 if self.samples < self.n_fft else 1 + (self.samples - self.n_fft) // self.hop
        )  # fmt: skip
        buf = torch.cat([self.buf, self.buf.new_zeros(self.B, self.pad)], 1)
        out = self._emit(self._advance(buf, total), final=True)
        self.reset()
        return out

    def state(self) -> dict:
        return {
            "buf": None if self.buf is None else self.buf.clone(),
            "samples": self.samples,
            "frames": self.frames,
            "static": None if self.static is None else self.static.clone(),
            "static_start": self.static_start,
            "emitted": self.emitted,
        }

    def load_state(self, st: dict) -> None:
        self.buf, self.static = st["buf"], st["static"]
        self.samples, self.frames = int(st["samples"]), int(st["frames"])
        self.static_start, self.emitted = int(st["static_start"]), int(st["emitted"])
