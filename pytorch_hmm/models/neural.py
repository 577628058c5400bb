"""NeuralHMM: neural HMM text-to-speech on the engine (Mehta et al., ICASSP 2022, "Neural HMMs
are all you need"; the acoustic model of OverFlow, Interspeech 2023).

A left-to-right HMM over an input symbol sequence (phones or characters): each symbol owns
``states_per_phone`` states. An encoder reads the symbols; a network maps each state's
encoding (and, autoregressively, the previous output frame through a pre-net) to a diagonal
Gaussian over the frame and to the probability of moving on to the next state. Training
maximises the exact log-likelihood from the engine (time-varying banded transitions, the last
state required at the end), whose explicit backward pass needs O(B*T*S) memory and no tape of
T steps; the emission network runs over all frames at once, in frame chunks that are
recomputed in the backward pass (``torch.utils.checkpoint``), so its activations never sit in
memory for the whole utterance.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import core
from ..core.transitions import Transitions
from ..core.validation import check_lengths
from ..errors import HMMTypeError, HMMValueError
from ..io.model_file import ModelFileMixin
from ._common import StateGuard, check_count, check_real
from .base import as_features, as_tensor_arg, check_model_dtype

ENCODERS = ("conv", "lstm", "transformer")
LOG_2PI = math.log(2 * math.pi)


class NeuralHMMOutputs(NamedTuple):
    """What the networks give the engine for a batch: ``log_emissions`` (B, T, S),
    ``transitions`` (a time-varying banded :class:`~pytorch_hmm.core.Transitions`, values
    (B, T-1, S, 2): stay, advance), ``log_initial`` (S,), ``log_final`` (B, S) (0 at each
    utterance's last state), ``lengths`` (B,) frames, ``num_states`` (B,)."""

    log_emissions: torch.Tensor
    transitions: Transitions
    log_initial: torch.Tensor
    log_final: torch.Tensor
    lengths: torch.Tensor
    num_states: torch.Tensor


class Generated(NamedTuple):
    """``features`` (B, T, D) zero-padded, ``lengths`` (B,) frames, ``durations`` (B, N)
    frames per symbol (0 on padding), ``states`` (B, T) the state of each frame (-1 on
    padding)."""

    features: torch.Tensor
    lengths: torch.Tensor
    durations: torch.Tensor
    states: torch.Tensor


class _Encoder(nn.Module):
    def __init__(self, kind: str, dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.kind = kind
        if kind == "conv":
            self.convs = nn.ModuleList(nn.Conv1d(dim, dim, 5, padding=2) for _ in range(layers))
            self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
            self.drop = nn.Dropout(dropout)
        elif kind == "lstm":
            self.rnn = nn.LSTM(dim, dim // 2, num_layers=1, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * (dim // 2), dim)
        else:
            layer = nn.TransformerEncoderLayer(
                dim, nhead=4 if dim % 4 == 0 else 1, dim_feedforward=2 * dim, dropout=dropout,
                batch_first=True,
            )  # fmt: skip
            self.tf = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
            self.max_len = 4096
            self.pos = nn.Parameter(torch.randn(self.max_len, dim) * 0.02)

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, N, H) embeddings -> (B, N, H) encodings; padding neither read nor written."""
        B, N, _ = h.shape
        mask = (torch.arange(N, device=h.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
        h = h * mask
        if self.kind == "conv":
            for conv, norm in zip(self.convs, self.norms):  # residual: each symbol keeps its own
                h = h + self.drop(torch.relu(norm(conv(h.transpose(1, 2)).transpose(1, 2)))) * mask
            return h
        if self.kind == "lstm":
            packed = nn.utils.rnn.pack_padded_sequence(
                h, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            out, _ = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=N)
            return self.out(out) * mask
        if N > self.max_len:
            raise HMMValueError(f"the transformer encoder reads at most {self.max_len} symbols")
        h = h + self.pos[:N]
        return self.tf(h, src_key_padding_mask=~mask.squeeze(-1)) * mask


class NeuralHMM(ModelFileMixin, StateGuard, nn.Module):
    """Neural HMM acoustic model for TTS, trained by the engine's exact log-likelihood.

    ``NeuralHMM(num_symbols, feature_dim=80, states_per_phone=2, hidden_dim=256,
    encoder="conv"|"lstm"|"transformer", autoregressive=True)``.

    - ``log_likelihood(symbols (B, N), symbol_lengths (B,), x (B, T, D), lengths (B,))`` ->
      (B,): exact, differentiable; -inf (with a warning) for an utterance with fewer frames
      than states, whose gradient is zero while the rest of the batch trains normally;
      :meth:`loss` is the per-frame negative log-likelihood over the utterances that have a
      path.
    - :meth:`viterbi` / :meth:`align`: the best state path and frames per symbol (FastSpeech
      duration targets), batched.
    - :meth:`generate`: durations by sampling the stay/advance decisions or by a quantile of
      them (the papers' speaking-rate control), frames as the emission means or sampled with
      a temperature; batched.

    With ``autoregressive=True`` each frame's Gaussian and transition also depend on the
    previous frame through a pre-net (with dropout, as in the paper); with False, on the
    state alone (then emissions cost two matrix products). Variances are floored at
    ``variance_floor``. ``chunk_frames``: frames per emission-network chunk in training (the
    memory/recompute trade-off).
    """

    def __init__(
        self,
        num_symbols: int,
        feature_dim: int = 80,
        *,
        states_per_phone: int = 2,
        hidden_dim: int = 256,
        encoder: str = "conv",
        encoder_layers: int = 3,
        autoregressive: bool = True,
        prenet_dim: int = 256,
        prenet_dropout: float = 0.5,
        dropout: float = 0.1,
        variance_floor: float = 1e-3,
        chunk_frames: int = 32,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        for name, v in (
            ("num_symbols", num_symbols),
            ("feature_dim", feature_dim),
            ("states_per_phone", states_per_phone),
            ("hidden_dim", hidden_dim),
            ("chunk_frames", chunk_frames),
        ):
            if isinstance(v, bool) or int(v) != v or int(v) < 1:
                raise HMMValueError(f"{name} must be an integer >= 1, got {v!r}")
        check_count("encoder_layers", encoder_layers, minimum=0)
        check_count("prenet_dim", prenet_dim)
        check_real("dropout", dropout, low=0.0, high=1.0, high_open=True)
        check_real("prenet_dropout", prenet_dropout, low=0.0, high=1.0, high_open=True)
        check_model_dtype(dtype)
        if not isinstance(encoder, str) or encoder not in ENCODERS:
            raise HMMValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        check_real("variance_floor", variance_floor, low=0.0, low_open=True)
        H, D = int(hidden_dim), int(feature_dim)
        self.num_symbols, self.feature_dim = int(num_symbols), D
        self.states_per_phone = int(states_per_phone)
        self.hidden_dim = H
        self.autoregressive = bool(autoregressive)
        self.variance_floor = float(variance_floor)
        self.chunk_frames = int(chunk_frames)
        # the constructor arguments not kept elsewhere (for get_config)
        self._arch = {
            "encoder": encoder,
            "encoder_layers": int(encoder_layers),
            "prenet_dim": int(prenet_dim),
            "prenet_dropout": float(prenet_dropout),
            "dropout": float(dropout),
        }
        self.embedding = nn.Embedding(self.num_symbols, H)
        self.encoder = _Encoder(encoder, H, int(encoder_layers), dropout)
        self.state_position = nn.Parameter(torch.randn(self.states_per_phone, H) * 0.1)
        self.state_proj = nn.Linear(H, H)
        if self.autoregressive:
            self.prenet = nn.Sequential(
                nn.Linear(D, prenet_dim), nn.ReLU(), nn.Dropout(prenet_dropout),
                nn.Linear(prenet_dim, prenet_dim), nn.ReLU(), nn.Dropout(prenet_dropout),
            )  # fmt: skip
            self.frame_proj = nn.Linear(prenet_dim, H, bias=False)
        self.out = nn.Linear(H, 2 * D + 1)
        with torch.no_grad():  # start near "advance with probability 1/2", unit variances
            self.out.bias.zero_()
        self.to(dtype)

    def _config(self) -> dict:
        return {
            "num_symbols": self.num_symbols,
            "feature_dim": self.feature_dim,
            "states_per_phone": self.states_per_phone,
            "hidden_dim": self.hidden_dim,
            "autoregressive": self.autoregressive,
            "variance_floor": self.variance_floor,
            "chunk_frames": self.chunk_frames,
            **self._arch,
            "dtype": self.out.weight.dtype,
        }

    # -- inputs -----------------------------------------------------------------------------
    def _check_symbols(self, symbols, symbol_lengths) -> Tuple[torch.Tensor, torch.Tensor]:
        dev = self.out.weight.device
        symbols = as_tensor_arg("symbols", symbols, list_dtype=None).to(dev)
        if symbols.dim() == 1:
            symbols = symbols.unsqueeze(0)
        if symbols.dim() != 2:
            raise HMMValueError(
                f"symbols must have shape (B, N) or (N,), got {tuple(symbols.shape)}"
            )
        if symbols.dtype.is_floating_point or symbols.dtype == torch.bool:
            raise HMMTypeError(f"symbols must hold integer ids, got {symbols.dtype}")
        B, N = symbols.shape
        if B == 0:
            raise HMMValueError("symbols has no utterances (B=0): pass at least one")
        if N == 0:
            raise HMMValueError("symbols is empty (N=0): every utterance needs at least one symbol")
        sl = check_lengths(symbol_lengths, B, N, dev, name="symbol_lengths")
        real = torch.arange(N, device=dev).unsqueeze(0) < sl.unsqueeze(1)
        bad = real & ((symbols < 0) | (symbols >= self.num_symbols))
        if bool(bad.any()):
            b, n = torch.nonzero(bad)[0].tolist()
            raise HMMValueError(
                f"symbols[{b}, {n}] = {int(symbols[b, n])} is outside [0, {self.num_symbols}) "
                f"(num_symbols={self.num_symbols})"
            )
        return symbols.long().masked_fill(~real, 0), sl

    def _check_frames(self, x, lengths, B: int) -> Tuple[torch.Tensor, torch.Tensor]:
        w = self.out.weight
        x = as_features(x, w)  # refuses None, strings, integer tensors; any float dtype
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[0] != B or x.shape[2] != self.feature_dim:
            raise HMMValueError(
                f"x must have shape (B, T, D) = ({B}, T, {self.feature_dim}), got {tuple(x.shape)}"
            )
        if x.shape[1] == 0:
            raise HMMValueError("x has no frames (T=0)")
        L = check_lengths(lengths, B, x.shape[1], w.device)
        mask = torch.arange(x.shape[1], device=w.device).unsqueeze(0) < L.unsqueeze(1)
        bad = ~torch.isfinite(x).all(-1) & mask
        if bool(bad.any()):
            b, t = torch.nonzero(bad)[0].tolist()
            raise HMMValueError(f"x contains NaN or inf (utterance {b}, frame {t})")
        return torch.where(
            mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device)
        ), L

    # -- networks -----------------------------------------------------------------------------
    def encode_states(self, symbols, symbol_lengths) -> Tuple[torch.Tensor, torch.Tensor]:
        """State encodings (B, S, H) with S = N * states_per_phone, and states per utterance
        (B,)."""
        symbols, sl = self._check_symbols(symbols, symbol_lengths)
        h = self.encoder(self.embedding(symbols), sl)  # (B, N, H)
        B, N, H = h.shape
        s = h.unsqueeze(2) + self.state_position.view(1, 1, -1, H)
        return self.state_proj(
            s.reshape(B, N * self.states_per_phone, H)
        ), sl * self.states_per_phone

    def _outputs(self, states: torch.Tensor, frame_part: Optional[torch.Tensor]):
        """Network outputs for state encodings (B, S, H) and frame parts (B, c, H) (or None):
        mean (B, c|1, S, D), variance, advance logit (B, c|1, S)."""
        z = states.unsqueeze(1)
        if frame_part is not None:
            z = z + frame_part.unsqueeze(2)
        o = self.out(torch.tanh(z))
        D = self.feature_dim
        mean, raw_var, adv = o[..., :D], o[..., D : 2 * D], o[..., 2 * D]
        var = nn.functional.softplus(raw_var) + self.variance_floor
        return mean, var, adv

    def _chunk(self, states, prev, x):
        """Log emissions (B, c, S) and log stay/advance (B, c, S, 2) of one frame chunk."""
        fp = self.frame_proj(self.prenet(prev)) if self.autoregressive else None
        mean, var, adv = self._outputs(states, fp)
        lb = -0.5 * (((x.unsqueeze(2) - mean) ** 2 / var) + var.log() + LOG_2PI).sum(-1)
        mv = torch.stack([nn.functional.logsigmoid(-adv), nn.functional.logsigmoid(adv)], -1)
        return lb, mv

    def network_outputs(self, symbols, symbol_lengths, x, lengths=None) -> NeuralHMMOutputs:
        """Everything the engine needs for a batch (:class:`NeuralHMMOutputs`)."""
        x_in = x
        states, S_b = self.encode_states(symbols, symbol_lengths)
        x, L = self._check_frames(x_in, lengths, states.shape[0])
        B, T, _ = x.shape
        S = states.shape[1]
        if not self.autoregressive:
            mean, var, adv = self._outputs(states, None)  # (B, 1, S, D)
            mean, var, adv = mean[:, 0], var[:, 0], adv[:, 0]
            # sum_d (x - m)^2 / v as two matrix products
            iv = 1.0 / var
            lb = -0.5 * (
                torch.bmm(x * x, iv.transpose(1, 2))
                - 2 * torch.bmm(x, (mean * iv).transpose(1, 2))
                + ((mean * mean * iv) + var.log() + LOG_2PI).sum(-1).unsqueeze(1)
            )
            mv = torch.stack([nn.functional.logsigmoid(-adv), nn.functional.logsigmoid(adv)], -1)
            mv = mv.unsqueeze(1).expand(B, max(T - 1, 1), S, 2)
        else:
            prev = torch.cat([x.new_zeros(B, 1, self.feature_dim), x[:, :-1]], 1)
            lbs, mvs = [], []
            c = self.chunk_frames
            use_ckpt = torch.is_grad_enabled() and T > c
            for t0 in range(0, T, c):
                args = (states, prev[:, t0 : t0 + c], x[:, t0 : t0 + c])
                if use_ckpt:
                    lb_c, mv_c = checkpoint(self._chunk, *args, use_reentrant=False)
                else:
                    lb_c, mv_c = self._chunk(*args)
                lbs.append(lb_c)
                mvs.append(mv_c)
            lb, mv = torch.cat(lbs, 1), torch.cat(mvs, 1)[:, : max(T - 1, 1)]
        # the last real state of each utterance is absorbing; later (padding) states unreachable
        s_idx = torch.arange(S, device=x.device).view(1, 1, S)
        last = s_idx >= (S_b - 1).view(B, 1, 1)
        zero = torch.zeros((), dtype=mv.dtype, device=mv.device)
        stay = torch.where(last, zero, mv[..., 0])
        move = torch.where(last, -math.inf, mv[..., 1])
        values = torch.stack([stay, move], -1)
        if T == 1:
            values = values[:, :0]
        log_initial = torch.full((S,), -math.inf, dtype=lb.dtype, device=lb.device)
        log_initial[0] = 0.0
        log_final = torch.where(s_idx.view(1, S) == (S_b - 1).view(B, 1), 0.0, -math.inf).to(
            lb.dtype
        )
        lb = lb.masked_fill(s_idx >= S_b.view(B, 1, 1), -math.inf)
        return NeuralHMMOutputs(
            lb, Transitions.banded(values, lo=0), log_initial, log_final, L, S_b
        )

    # -- training -----------------------------------------------------------------------------
    def log_likelihood(self, symbols, symbol_lengths, x, lengths=None) -> torch.Tensor:
        """Exact log-likelihood of each utterance (B,), differentiable (the engine's explicit
        backward); -inf with a warning where an utterance has fewer frames than states."""
        o = self.network_outputs(symbols, symbol_lengths, x, lengths)
        short = o.lengths < o.num_states
        if bool(short.any()):
            idx = torch.nonzero(short).flatten().tolist()
            warnings.warn(
                f"NeuralHMM: utterance(s) {idx[:10]} have fewer frames than states "
                f"(frames {o.lengths[short][:10].tolist()}, states "
                f"{o.num_states[short][:10].tolist()}): log-likelihood -inf, no gradient",
                RuntimeWarning,
                stacklevel=2,
            )
        return core.log_likelihood(
            o.log_emissions, o.log_initial, o.transitions, o.lengths, log_final=o.log_final,
            check_stochastic=False,
        )  # fmt: skip

    def forward(self, symbols, symbol_lengths, x, lengths=None) -> torch.Tensor:
        """``model(symbols, symbol_lengths, x, lengths)`` is :meth:`log_likelihood`."""
        return self.log_likelihood(symbols, symbol_lengths, x, lengths)

    def loss(self, symbols, symbol_lengths, x, lengths=None) -> torch.Tensor:
        """Negative log-likelihood per frame over the utterances that have a path (a scalar to
        minimise); utterances with no path are left out (with :meth:`log_likelihood`'s
        warning)."""
        ll = self.log_likelihood(symbols, symbol_lengths, x, lengths)
        L = check_lengths(lengths, ll.shape[0], as_tensor_arg("x", x).shape[-2], ll.device)
        ok = torch.isfinite(ll)
        if not bool(ok.any()):
            raise HMMValueError("loss: no utterance in the batch has a path (all too short)")
        return -ll[ok].sum() / L[ok].sum().to(ll.dtype)

    # -- alignment ----------------------------------------------------------------------------
    @torch.no_grad()
    def viterbi(self, symbols, symbol_lengths, x, lengths=None) -> core.ViterbiResult:
        """The best state path (B, T) (state s belongs to symbol s // states_per_phone)."""
        o = self.network_outputs(symbols, symbol_lengths, x, lengths)
        return core.viterbi(
            o.log_emissions, o.log_initial, o.transitions, o.lengths, log_final=o.log_final,
            check_stochastic=False,
        )  # fmt: skip

    @torch.no_grad()
    def align(self, symbols, symbol_lengths, x, lengths=None) -> torch.Tensor:
        """Frames per symbol (B, N) on the best path (0 on padding and for utterances with no
        path); each row sums to the utterance's length."""
        was = self.training
        self.eval()
        try:
            v = self.viterbi(symbols, symbol_lengths, x, lengths)
        finally:
            self.train(was)
        sym, sl = self._check_symbols(symbols, symbol_lengths)
        B, N = sym.shape
        phone = torch.where(v.path >= 0, v.path // self.states_per_phone, N)
        out = torch.zeros(B, N + 1, dtype=torch.long, device=phone.device)
        out.scatter_add_(1, phone, torch.ones_like(phone))
        return out[:, :N]

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        symbols,
        symbol_lengths=None,
        *,
        duration: str = "quantile",
        quantile: float = 0.5,
        temperature: float = 0.0,
        max_frames: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Generated:
        """Frames for symbol sequences (batched): each state lasts until its advance decision,
        ``duration="sample"`` (a draw from the advance probability, per frame) or
        ``"quantile"`` (deterministic: move on once the probability of having moved exceeds
        ``quantile``; larger = slower speech); each frame is the emission mean, or a sample
        with standard deviation scaled by ``temperature``. ``max_frames`` caps the output
        (default 50 frames per state). The networks run in eval mode."""
        if not isinstance(duration, str) or duration not in ("quantile", "sample"):
            raise HMMValueError(f"duration must be 'quantile' or 'sample', got {duration!r}")
        quantile = check_real("quantile", quantile, low=0.0, high=1.0, low_open=True,
                              high_open=True)  # fmt: skip
        temperature = check_real("temperature", temperature, low=0.0)
        if max_frames is not None:
            max_frames = check_count("max_frames", max_frames)
        was = self.training
        self.eval()
        try:
            return self._generate(
                symbols, symbol_lengths, duration, quantile, temperature, max_frames, generator
            )
        finally:
            self.train(was)

    def _generate(self, symbols, symbol_lengths, duration, quantile, temperature, max_frames, gen):
        states, S_b = self.encode_states(symbols, symbol_lengths)
        B, S, H = states.shape
        D = self.feature_dim
        dev, dt = states.device, states.dtype
        cap = int(max_frames) if max_frames is not None else 50 * S
        frames = torch.zeros(B, cap, D, dtype=dt, device=dev)
        path = torch.full((B, cap), -1, dtype=torch.long, device=dev)
        cur = torch.zeros(B, dtype=torch.long, device=dev)
        stayed = torch.zeros(B, dtype=dt, device=dev)  # log P(not yet moved on) in this state
        alive = torch.ones(B, dtype=torch.bool, device=dev)
        lengths = torch.zeros(B, dtype=torch.long, device=dev)
        prev = torch.zeros(B, D, dtype=dt, device=dev)
        ar = torch.arange(B, device=dev)
        log_keep = math.log(1.0 - quantile)
        for t in range(cap):
            st = states[ar, cur].unsqueeze(1)  # (B, 1, H)
            fp = self.frame_proj(self.prenet(prev)).unsqueeze(1) if self.autoregressive else None
            mean, var, adv = self._outputs(st, fp)
            mean, var, adv = mean[:, 0, 0], var[:, 0, 0], adv[:, 0, 0]
            y = mean
            if temperature > 0:
                eps = torch.randn(mean.shape, generator=gen, dtype=dt).to(dev)
                y = mean + temperature * var.sqrt() * eps
            frames[:, t] = torch.where(alive.unsqueeze(-1), y, 0.0)
            path[:, t] = torch.where(alive, cur, -1)
            lengths += alive.long()
            prev = y
            if duration == "sample":
                u = torch.rand(B, generator=gen, dtype=dt).to(dev)
                move = u < torch.sigmoid(adv)
            else:
                stayed = stayed + nn.functional.logsigmoid(-adv)
                move = stayed < log_keep
            move = move & alive
            done = move & (cur >= S_b - 1)
            alive = alive & ~done
            cur = torch.where(move & ~done, cur + 1, cur)
            stayed = torch.where(move, torch.zeros_like(stayed), stayed)
            if not bool(alive.any()):
                break
        T = int(lengths.max())
        sym, sl = self._check_symbols(symbols, symbol_lengths)
        N = sym.shape[1]
        phone = torch.where(path[:, :T] >= 0, path[:, :T] // self.states_per_phone, N)
        dur = torch.zeros(B, N + 1, dtype=torch.long, device=dev)
        dur.scatter_add_(1, phone, torch.ones_like(phone))
        return Generated(frames[:, :T], lengths, dur[:, :N], path[:, :T])

    def extra_repr(self) -> str:
        return (
            f"num_symbols={self.num_symbols}, feature_dim={self.feature_dim}, "
            f"states_per_phone={self.states_per_phone}, hidden_dim={self.hidden_dim}, "
            f"encoder={self.encoder.kind!r}, autoregressive={self.autoregressive}"
        )
