"""StreamingHMMProcessor: online decoding of feature frames or audio, chunk after chunk.

Every chunk runs the engine's :func:`~pytorch_hmm.core.forward` and
:func:`~pytorch_hmm.core.viterbi` with their carries (no recursion of its own here), and the
partial traceback of :class:`~pytorch_hmm.core.online.OnlineViterbi`:

- the filtered distribution ``p(z_t | x_0..x_t)`` of the newest frame (``posteriors``; its
  argmax is ``current_state``, its probability ``confidence``);
- exact online Viterbi: ``committed_states`` are frames every surviving path agrees on, so
  the committed states of all chunks plus those of :meth:`flush` equal offline Viterbi on
  the whole stream; ``max_delay`` bounds how long a frame may stay undecided;
- optional fixed-lag smoothing: ``p(z_t | x_0..x_{t+lag})`` for frames ``lag`` behind.

Scores are carried relative to a float64 offset per stream, so float32 streams of any
length keep their precision (an offline float32 run longer than 4096 frames accumulates in
float64 instead; exact agreement of near-ties is then a float64 matter).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .. import core
from ..core.inference import ForwardCarry, ViterbiCarry
from ..core.online import OnlineViterbi
from ..errors import HMMTypeError, HMMValueError
from ..io.model_file import (
    ModelFileMixin,
    build_nested,
    fitted_attributes,
    nested_config,
    set_fitted_attributes,
)
from ..models._common import check_count, check_real
from ..models.base import as_tensor_arg
from ..models.factory import left_to_right_hmm
from .features import StreamingFrontEnd

__all__ = ["StreamingHMMProcessor"]


class StreamingHMMProcessor(ModelFileMixin, nn.Module):
    """Online decoding with any model of the library that gives emission log-likelihoods.

    Args:
        num_states, feature_dim: without ``model``, a left-to-right Gaussian HMM of this size
            is built (train it with :meth:`fit`). With ``feature_extractor`` and no
            ``feature_dim`` the extractor's dimension is used.
        chunk_size: the nominal chunk, in frames (in samples with a ``feature_extractor``:
            160 = 10 ms at 16 kHz). Chunks of any other size are accepted too.
        overlap: how many items at the start of every chunk after a stream's first repeat
            the end of the previous chunk (a sliding-window source); they are skipped, so
            every frame is decoded once. 0 when chunks are consecutive.
        model: a model with ``emission_log_likelihood(x (B, T, D)) -> (B, T, K)``,
            ``log_initial()`` (K,) and ``log_transitions()`` (K, K) (GaussianHMM,
            MixtureGaussianHMM, HMMPyTorch, ...).
        feature_extractor: a :class:`~pytorch_hmm.speech.LogMelSpectrogram` or
            :class:`~pytorch_hmm.speech.MFCC` (built with ``top_db=None``); chunks are then
            audio samples, ``(n,)`` or ``(B, n)``.
        max_delay: the most frames a frame may stay undecided (None: exact, never forced).
        beam: prune best-path hypotheses more than ``beam`` (log units) below the best at
            each frame (None: none). Exact online Viterbi commits a frame only once every
            surviving path agrees on it; in a left-to-right model the path that never left
            an early state survives (improbably) until the end, so without ``beam`` or
            ``max_delay`` such a model commits little before :meth:`flush`. A beam of 20-50
            commits within a few frames and changes the result only where a path that far
            behind would later have won.
        smoothing_lag: L > 0 adds ``smoothed_posteriors``: ``p(z_t | x_0..x_{t+L})``.
        covariance_type, dtype: of the model built without ``model``.
        backend: engine backend ("auto", "numba", "torch").

    Chunks are ``(n, D)`` feature frames for one stream, or ``(B, n, D)`` for B streams at
    once with optional ``lengths`` (B,) (frames of each stream in this chunk, 0 allowed);
    with a ``feature_extractor``, ``(n,)`` or ``(B, n)`` samples (the same ``n`` for every
    stream). See :meth:`process_chunk` for what comes back.

    ``save(path)`` / ``StreamingHMMProcessor.load(path)`` keep the model (with what its
    ``fit`` left) and the processor's settings, not the streams: a loaded processor starts
    with fresh streams (``state_dict()`` / ``load_state_dict`` carry a stream mid-way).
    """

    def __init__(
        self,
        num_states: Optional[int] = None,
        feature_dim: Optional[int] = None,
        chunk_size: int = 160,
        overlap: int = 0,
        *,
        model: Optional[nn.Module] = None,
        feature_extractor: Optional[nn.Module] = None,
        max_delay: Optional[int] = None,
        beam: Optional[float] = None,
        smoothing_lag: int = 0,
        covariance_type: str = "diag",
        dtype: torch.dtype = torch.float32,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        chunk_size = check_count("chunk_size", chunk_size)
        if not 0 <= check_count("overlap", overlap, minimum=0) < chunk_size:
            raise HMMValueError(f"overlap must be in [0, chunk_size={chunk_size}), got {overlap}")
        check_count("smoothing_lag", smoothing_lag, minimum=0)
        if max_delay is not None:
            check_count("max_delay", max_delay)
        if beam is not None:
            check_real("beam", beam, low=0.0, low_open=True)
        if num_states is not None:
            check_count("num_states", num_states)
        if feature_dim is not None:
            check_count("feature_dim", feature_dim)
        front = None
        if feature_extractor is not None:
            front = StreamingFrontEnd(feature_extractor)  # refuses what cannot stream
            if feature_dim is None:
                feature_dim = front.dim
            elif int(feature_dim) != front.dim:
                raise HMMValueError(
                    f"feature_dim={feature_dim} but the feature extractor gives {front.dim}"
                )
        if model is None:
            if num_states is None or feature_dim is None:
                raise HMMValueError(
                    "give num_states and feature_dim (a left-to-right Gaussian HMM is built), "
                    "or a model"
                )
            model = left_to_right_hmm(num_states, feature_dim, covariance_type, dtype=dtype)
        for name in ("emission_log_likelihood", "log_initial", "log_transitions"):
            if not callable(getattr(model, name, None)):
                raise HMMTypeError(
                    f"model must have {name}() (a pytorch_hmm model), got {type(model).__name__}"
                )
        K = int(model.log_initial().shape[-1])
        if num_states is not None and int(num_states) != K:
            raise HMMValueError(f"num_states={num_states} but the model has {K} states")
        D = getattr(model, "feature_dim", None)
        if feature_dim is not None and D is not None and int(feature_dim) != int(D):
            raise HMMValueError(f"feature_dim={feature_dim} but the model takes {D}-dim features")
        self.model = model
        self.feature_extractor = feature_extractor
        self.num_states = K
        self.feature_dim = int(D if D is not None else feature_dim) if (D or feature_dim) else None
        self.chunk_size, self.overlap = int(chunk_size), int(overlap)
        self.max_delay = None if max_delay is None else int(max_delay)
        self.beam = None if beam is None else float(beam)
        self.smoothing_lag = int(smoothing_lag)
        self.backend = backend
        self._front_template = front
        self._static = None
        self.reset()

    # -- files (pytorch_hmm.io.model_file) --------------------------------------------------
    def _config(self) -> Dict[str, Any]:
        fe = self.feature_extractor
        return {
            "chunk_size": self.chunk_size,
            "overlap": self.overlap,
            "max_delay": self.max_delay,
            "beam": self.beam,
            "smoothing_lag": self.smoothing_lag,
            "backend": self.backend,
            "model": nested_config(self.model, "StreamingHMMProcessor.model"),
            "feature_extractor": None
            if fe is None
            else nested_config(fe, "StreamingHMMProcessor.feature_extractor"),
        }

    @classmethod
    def _config_kwargs(cls, config: Dict[str, Any]) -> Dict[str, Any]:
        kw = dict(config)
        if "model" in kw:
            kw["model"] = build_nested(kw["model"], "config['model']")
        if kw.get("feature_extractor") is not None:
            kw["feature_extractor"] = build_nested(
                kw["feature_extractor"], "config['feature_extractor']"
            )
        return kw

    def _file_state(self):
        sd, extra = super()._file_state()
        extra["model"] = fitted_attributes(self.model)
        return sd, extra

    def _set_file_state(self, state_dict, extra) -> None:
        super()._set_file_state(state_dict, extra)
        set_fitted_attributes(self.model, extra.get("model") or {})

    # -- stream state ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the streams (the model is kept); the next chunk starts new ones."""
        self._B: Optional[int] = None
        self._unbatched = True
        self._chunks = 0
        self._front: Optional[StreamingFrontEnd] = None
        self._frames = torch.zeros(0, dtype=torch.long)
        self._fs = self._vs = None  # (B, K) forward / best-path scores at the newest frame
        self._fo = self._vo = None  # (B,) float64 offsets
        self._dec: Optional[OnlineViterbi] = None
        self._sm: List[Dict[str, Any]] = []

    def _start(self, B: int, unbatched: bool, dtype: torch.dtype, device) -> None:
        K = self.num_states
        self._B, self._unbatched = B, unbatched
        self._frames = torch.zeros(B, dtype=torch.long)
        self._fs = torch.full((B, K), -math.inf, dtype=dtype, device=device)
        self._vs = self._fs.clone()
        self._fo = torch.zeros(B, dtype=torch.float64, device=device)
        self._vo = self._fo.clone()
        self._dec = OnlineViterbi(B, K, self.max_delay, self.backend)
        if self._front_template is not None:
            self._front = StreamingFrontEnd(self.feature_extractor, B)
        self._sm = [
            {"em": None, "pred": None, "next": 0} for _ in range(B if self.smoothing_lag else 0)
        ]

    @property
    def frames_seen(self) -> torch.Tensor:
        """Frames decoded so far per stream, (B,) (empty before the first chunk)."""
        return self._frames.clone()

    def buffer_sizes(self) -> Dict[str, int]:
        """Sizes of what the processor holds between chunks (for bounded-memory checks):
        pending back-pointer frames (capacity), smoothing window frames, buffered samples and
        delta context frames."""
        out = {"pending_capacity": 0, "pending": 0, "smoothing": 0, "samples": 0, "deltas": 0}
        if self._dec is not None:
            out["pending_capacity"] = self._dec.capacity
            out["pending"] = int(self._dec.count.max()) if self._B else 0
        for s in self._sm:
            if s["em"] is not None:
                out["smoothing"] = max(out["smoothing"], int(s["em"].shape[0]))
        if self._front is not None:
            if self._front.buf is not None:
                out["samples"] = int(self._front.buf.shape[1])
            if self._front.static is not None:
                out["deltas"] = int(self._front.static.shape[1])
        return out

    # -- input -----------------------------------------------------------------------------
    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def _as_input(self, chunk, lengths):
        p = self._param()
        chunk = as_tensor_arg("chunk", chunk)  # refuses None, strings, ragged lists
        if not chunk.is_floating_point():
            raise HMMTypeError(f"chunk must hold floating-point values, got dtype {chunk.dtype}")
        if chunk.device != p.device:
            raise HMMValueError(
                f"chunk is on device {chunk.device} but the model is on {p.device}; move one of "
                "them"
            )
        audio = self._front_template is not None
        base = 1 if audio else 2  # dims of one stream's chunk
        what = "(n,) or (B, n) audio samples" if audio else "(n, D) or (B, n, D) frames"
        if chunk.dim() not in (base, base + 1):
            raise HMMValueError(f"chunk must have shape {what}, got {tuple(chunk.shape)}")
        unbatched = chunk.dim() == base
        x = chunk.unsqueeze(0) if unbatched else chunk
        B, n = x.shape[0], x.shape[1]
        if n == 0:
            raise HMMValueError(
                f"chunk is empty (shape {tuple(chunk.shape)}): send at least one item"
            )
        if not audio and self.feature_dim is not None and x.shape[2] != self.feature_dim:
            raise HMMValueError(
                f"chunk has feature dimension {x.shape[2]} (shape {tuple(chunk.shape)}), the "
                f"model takes {self.feature_dim}"
            )
        if self._B is not None:
            if B != self._B or unbatched != self._unbatched:
                raise HMMValueError(
                    f"chunk has shape {tuple(chunk.shape)} but this stream was started with "
                    f"{'one stream' if self._unbatched else f'{self._B} streams'}; call reset() "
                    "to start new streams"
                )
        if lengths is not None:
            if audio:
                raise HMMValueError(
                    "lengths: audio streams advance together (every stream gets the chunk's "
                    "n samples); lengths are for feature frames"
                )
            if unbatched:
                raise HMMValueError("lengths is for batched chunks (B, n, D)")
            lengths = core.validation.check_lengths(
                lengths, B, n, None, min_value=0, name="lengths", what="frames"
            ).cpu()
        else:
            lengths = torch.full((B,), n, dtype=torch.long)
        skip = self.overlap if self._chunks > 0 else 0
        if skip:
            if n < skip:
                raise HMMValueError(
                    f"chunk has {n} items but overlap={skip} of them repeat the previous chunk"
                )
            x = x[:, skip:]
            lengths = (lengths - skip).clamp(min=0)
        valid = torch.arange(x.shape[1])[None] < lengths[:, None]
        real = x[valid.to(x.device)] if bool((lengths < x.shape[1]).any()) else x
        if not bool(torch.isfinite(real).all()):
            vm = valid.to(x.device)
            bad = ~torch.isfinite(x) & (vm if x.dim() == 2 else vm[..., None])
            idx = torch.nonzero(bad)[0].tolist()
            raise HMMValueError(
                f"chunk contains NaN or inf (stream {idx[0]}, {'sample' if audio else 'frame'} "
                f"{idx[1] + skip} of the chunk); the stream is unchanged"
            )
        if bool((lengths < x.shape[1]).any()):  # padding may hold anything: never read
            vm = valid.to(x.device)
            x = torch.where(
                vm if x.dim() == 2 else vm[..., None], x, torch.zeros((), dtype=x.dtype)
            )
        return x.to(p.dtype), lengths, unbatched

    # -- the step --------------------------------------------------------------------------
    def process_chunk(self, chunk, lengths: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        """Decode one chunk. Returns a dict (per stream: tensors of shape (B, ...) or lists
        for batched chunks; scalars and 1-D tensors for one stream):

        - ``current_state``, ``confidence``, ``posteriors`` (K,): the filtered distribution
          of the newest frame (-1 and 0 before any frame);
        - ``committed_states`` (1-D long, maybe empty) from frame ``committed_start``;
          ``latency_frames``: frames not yet committed; ``forced``: ``max_delay`` decided;
        - ``frames``: frames decoded so far; ``new_frames``: in this chunk;
          ``log_likelihood``: ``log p(x_0..x_t)`` so far;
        - with ``smoothing_lag``: ``smoothed_posteriors`` (n, K) from ``smoothed_start``.

        On bad input (wrong shape, dtype, device or feature dimension, NaN, an empty chunk)
        it raises and the streams are unchanged."""
        x, lengths, unbatched = self._as_input(chunk, lengths)
        if self._B is None:
            self._start(x.shape[0], unbatched, self._param().dtype, self._param().device)
        front_state = None if self._front is None else self._front.state()
        try:
            if self._front is not None:
                x = self._front.push(x)
                lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
            out = self._decode(x, lengths, final=False)
        except Exception:
            if self._front is not None:
                self._front.load_state(front_state)
            raise
        self._chunks += 1
        return out

    def flush(self) -> Dict[str, Any]:
        """End of the streams: decode what the front end still holds, commit every pending
        frame along the best path, smooth the last frames; same form as
        :meth:`process_chunk`. The processor is then reset for new streams."""
        if self._B is None:
            raise RuntimeError("flush() before any chunk: there is no stream to end")
        p = self._param()
        if self._front is not None:
            x = self._front.flush().to(p.dtype)
        else:
            x = torch.zeros(self._B, 0, self.feature_dim or 0, dtype=p.dtype, device=p.device)
        lengths = torch.full((self._B,), x.shape[1], dtype=torch.long)
        out = self._decode(x, lengths, final=True)
        self.reset()
        return out

    def _static_inputs(self):
        """``(transitions operator, log_initial, log_transitions matrix, check)``, rebuilt
        only when a model parameter changed (``check``: validate them on this call)."""
        key = (id(self.model), tuple(p._version for p in self.model.parameters()))
        if self._static is None or self._static[0] != key:
            with torch.no_grad():
                lA = self.model.log_transitions().detach()
                lpi = self.model.log_initial().detach()
            self._static = (key, core.make_transitions(lA), lpi, lA)
            return self._static[1], lpi, lA, True
        return self._static[1], self._static[2], self._static[3], False

    def _decode(self, x: torch.Tensor, lengths: torch.Tensor, final: bool) -> Dict[str, Any]:
        B, n, K = x.shape[0], x.shape[1], self.num_states
        dev = self._fs.device
        fs, vs, fo, vo = self._fs, self._vs, self._fo, self._vo
        back = None
        pred_all = None
        em = None
        active = lengths > 0
        if n > 0 and bool(active.any()):
            with torch.no_grad():
                em = self.model.emission_log_likelihood(x).detach()
            if em.shape != (B, n, K):
                raise HMMValueError(
                    f"model gave emissions of shape {tuple(em.shape)}, not {(B, n, K)}"
                )
            if bool(torch.isnan(em).any()):
                raise HMMValueError("the model's emission log-likelihoods contain NaN")
            fresh = self._frames == 0
            n_fresh = int(fresh.sum())
            if bool(active.all()) and n_fresh in (0, B):  # the usual case: one engine call each
                fs, fo, vs, vo, back, pred_all = self._run_group(
                    em, lengths, self._frames, fs, vs, fo, vo, n_fresh == B
                )
            else:
                fs, vs, fo, vo = fs.clone(), vs.clone(), fo.clone(), vo.clone()
                back = torch.zeros(B, n, K, dtype=torch.long)
                pred_all = em.new_full((B, n, K), -math.inf) if self.smoothing_lag else None
                for is_fresh in (True, False):
                    idx = torch.nonzero((fresh if is_fresh else ~fresh) & active).squeeze(1)
                    if not len(idx):
                        continue
                    di = idx.to(dev)
                    out = self._run_group(
                        em.index_select(0, di),
                        lengths.index_select(0, idx),
                        self._frames.index_select(0, idx),
                        fs.index_select(0, di),
                        vs.index_select(0, di),
                        fo.index_select(0, di),
                        vo.index_select(0, di),
                        is_fresh,
                    )
                    fs[di], fo[di], vs[di], vo[di], back[idx] = out[:5]
                    if pred_all is not None:
                        pred_all[di] = out[5]
        if back is None:
            back = torch.zeros(B, n, K, dtype=torch.long)
        res, kill = self._dec.step(back, lengths, vs, final=final)
        if bool(kill.any()):
            vs = vs.masked_fill(kill.to(dev), -math.inf)
        smoothed = self._smooth(em, pred_all, lengths, final) if self.smoothing_lag else None
        # every computation done: commit the new state
        self._fs, self._vs, self._fo, self._vo = fs, vs, fo, vo
        self._frames = self._frames + lengths
        return self._result(res, lengths, smoothed)

    def _run_group(self, em, lengths, frames, fs, vs, fo, vo, fresh: bool):
        """The engine's forward and Viterbi passes over one chunk of streams that all start
        (``fresh``: from log_initial) or all continue (from their carries). Returns the new
        forward scores and offsets, best-path scores and offsets, back-pointers (CPU long)
        and, when smoothing, the predicted distributions log p(z_t | x_0..x_{t-1})."""
        trans, lpi, lA, check = self._static_inputs()
        dev = em.device
        ln = lengths.to(dev)
        if fresh:  # a stream's first frames start from log_initial
            fc = vc = None
        else:
            z = torch.zeros(em.shape[0], dtype=torch.float64, device=dev)
            fc = ForwardCarry(fs, z, frames)
            vc = ViterbiCarry(vs, z, frames, (), ())
        kw = dict(backend=self.backend, on_impossible="ignore", check_stochastic=check)
        f = core.forward(em, lpi, trans, ln, carry=fc, **kw)
        v = core.viterbi(em, lpi, trans, ln, carry=vc, return_carry=True, **kw)
        vsc = v.carry.scores
        if self.beam is not None:
            top = vsc.amax(-1, keepdim=True)
            vsc = vsc.masked_fill(vsc < top - self.beam, -math.inf)
        pred = None
        if self.smoothing_lag:
            K = self.num_states
            prev = torch.log_softmax(f.log_alpha[:, :-1], -1)
            if not fresh:
                prev = torch.cat([torch.log_softmax(fs, -1).unsqueeze(1), prev], 1)
            pred = torch.logsumexp(prev.unsqueeze(-1) + lA, -2)
            if fresh:
                pred = torch.cat([lpi.expand(em.shape[0], 1, K), pred], 1)
        back = v.carry.back[-1].to("cpu", torch.long)
        return f.carry.scores, fo + f.carry.offset, vsc, vo + v.carry.offset, back, pred

    def _smooth(self, em, pred, lengths, final):
        """Fixed-lag smoothing: for every frame t with ``lag`` frames after it (all frames at
        the end), ``p(z_t | x_0..x_{t+lag})``: the engine's posteriors over the window
        ``t..t+lag`` with the predicted distribution ``p(z_t | x_0..x_{t-1})`` (``pred``) as
        the window's initial distribution, all windows as one batch."""
        L = self.smoothing_lag
        K = self.num_states
        wins, wl, inits, owners = [], [], [], []
        for b, s in enumerate(self._sm):
            nb_ = int(lengths[b])
            if nb_:
                s["em"] = em[b, :nb_] if s["em"] is None else torch.cat([s["em"], em[b, :nb_]])
                s["pred"] = (
                    pred[b, :nb_] if s["pred"] is None else torch.cat([s["pred"], pred[b, :nb_]])
                )
            W = 0 if s["em"] is None else s["em"].shape[0]
            ready = W if final else max(0, W - L)
            if ready:
                e = s["em"]
                if final:  # windows shortened at the end of the stream
                    e = torch.cat([e, e.new_zeros(L, K)])
                w = e.unfold(0, L + 1, 1)[:ready].transpose(1, 2)  # (ready, L+1, K)
                wins.append(w)
                inits.append(s["pred"][:ready])
                wl.append(torch.clamp(W - torch.arange(ready), max=L + 1))
            owners.append(ready)
        outs: List[torch.Tensor] = []
        starts = []
        if wins:
            w = torch.cat(wins)
            gam = core.posteriors(
                w.contiguous(),
                torch.cat(inits),
                self._static_inputs()[0],
                torch.cat(wl).to(w.device),
                backend=self.backend,
                on_impossible="ignore",
            ).state_posteriors[:, 0]
        pos = 0
        for b, s in enumerate(self._sm):
            r = owners[b]
            starts.append(s["next"])
            if r:
                outs.append(gam[pos : pos + r])
                pos += r
                s["em"], s["pred"] = s["em"][r:], s["pred"][r:]
                s["next"] += r
            else:
                outs.append(torch.zeros(0, K, dtype=self._fs.dtype))
        return outs, torch.tensor(starts, dtype=torch.long)

    def _result(self, res, lengths, smoothed) -> Dict[str, Any]:
        lse = torch.logsumexp(self._fs, -1, keepdim=True)
        post = torch.exp(self._fs - lse)
        conf, state = post.amax(-1), post.argmax(-1)
        ll = self._fo + lse.squeeze(-1).double()
        if not bool((self._frames > 0).all()):  # streams without a frame yet
            seen = (self._frames > 0).to(post.device)
            post = torch.where(seen.unsqueeze(-1), post, torch.zeros_like(post))
            conf = torch.where(seen, conf, torch.zeros_like(conf))
            state = torch.where(seen, state, -1)
            ll = torch.where(seen, ll, torch.zeros_like(ll))
        out: Dict[str, Any] = {
            "current_state": state,
            "confidence": conf,
            "posteriors": post,
            "committed_states": res.states,
            "committed_start": res.start,
            "latency_frames": res.pending,
            "forced": res.forced,
            "frames": self._frames.clone(),
            "new_frames": lengths.clone(),
            "log_likelihood": ll,
        }
        if smoothed is not None:
            out["smoothed_posteriors"], out["smoothed_start"] = smoothed
        if self._unbatched:
            out = {k: (v[0] if isinstance(v, (list, torch.Tensor)) else v) for k, v in out.items()}
            for k in (
                "committed_start",
                "latency_frames",
                "frames",
                "new_frames",
                "smoothed_start",
            ):
                if k in out:
                    out[k] = int(out[k])
            out["forced"] = bool(out["forced"])
        return out

    # -- training and state ----------------------------------------------------------------
    def fit(self, x, lengths=None, **kwargs) -> StreamingHMMProcessor:
        """Train the model on whole feature sequences (the model's ``fit``: EM for the
        library's HMMs); the streams are reset."""
        if not callable(getattr(self.model, "fit", None)):
            raise HMMTypeError(f"{type(self.model).__name__} has no fit(); train it directly")
        self.model.fit(x, lengths, **kwargs)
        self.reset()
        return self

    def get_extra_state(self) -> Dict[str, Any]:
        if self._B is None:
            return {"started": False}
        return {
            "started": True,
            "B": self._B,
            "unbatched": self._unbatched,
            "chunks": self._chunks,
            "frames": self._frames.clone(),
            "fs": self._fs.clone(),
            "vs": self._vs.clone(),
            "fo": self._fo.clone(),
            "vo": self._vo.clone(),
            "decoder": self._dec.state(),
            "front": None if self._front is None else self._front.state(),
            "smoothing": [dict(s) for s in self._sm],
        }

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self.reset()
        if not state.get("started"):
            return
        p = self._param()
        self._start(int(state["B"]), bool(state["unbatched"]), p.dtype, p.device)
        self._chunks = int(state["chunks"])
        self._frames = state["frames"].clone()
        self._fs, self._vs = state["fs"].to(p), state["vs"].to(p)
        self._fo, self._vo = state["fo"].to(p.device), state["vo"].to(p.device)
        self._dec.load_state(state["decoder"])
        if self._front is not None and state["front"] is not None:
            self._front.load_state(state["front"])
        self._sm = [dict(s) for s in state["smoothing"]]

    def extra_repr(self) -> str:
        return (
            f"num_states={self.num_states}, feature_dim={self.feature_dim}, "
            f"chunk_size={self.chunk_size}, overlap={self.overlap}, max_delay={self.max_delay}, "
            f"beam={self.beam}, "
            f"smoothing_lag={self.smoothing_lag}"
        )
