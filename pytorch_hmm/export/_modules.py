"""Self-contained, scriptable ``nn.Module``s behind :mod:`pytorch_hmm.export`.

Each holds a snapshot of a model's parameters as buffers and computes, from features ``x``
(B, T, D) and ``lengths`` (B,), the emission log-likelihoods and then a recursion over time.
Everything here is written for ``torch.jit.script`` and the TorchScript-based ONNX exporter:

- the time loops are ``for t in range(T)`` with ``T = x.shape[1]``: scripted, they stay real
  loops (ONNX ``Loop`` nodes whose trip count is read from the input's shape);
- nothing is updated in place inside a loop (the exporter has been seen to drop such
  updates, and drops ``list.reverse()`` silently): every step builds new tensors, per-frame
  results are appended to lists started with a first element of the right dtype (an empty
  list becomes a float sequence in ONNX) and stacked after the loop, a backtrace collected
  backwards is put in order with ``torch.flip``;
- log-sum-exp is :func:`_lse` (``-inf`` when every term is ``-inf``, never NaN);
- padded frames (``t >= lengths[b]``) are zeroed before the emissions and never change a
  recursion's state (``torch.where`` on a mask carries it through).
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import nn


def _lse(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``logsumexp`` over ``dim`` that gives -inf (not NaN) when every term is -inf."""
    m = x.amax(dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return (x - m).exp().sum(dim).log() + m.squeeze(dim)


def _time_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool: frame t is a real frame of sequence b."""
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = _time_mask(lengths, x.shape[1]).unsqueeze(-1)
    return torch.where(mask, x, torch.zeros_like(x))


# ------------------------------------------------------------------------------------------
# emissions: x (B, T, D) -> log p(x_t | state k) (B, T, K)


class DiagGaussianEmissions(nn.Module):
    """Diagonal Gaussians (mixtures when ``num_mixtures > 1``): the library's density as two
    matrix products of ``x^2`` and ``x`` with a bias, then a log-sum-exp over components."""

    def __init__(
        self, means: torch.Tensor, log_vars: torch.Tensor, log_weights: torch.Tensor, K: int
    ):
        super().__init__()
        S, D = means.shape
        prec = torch.exp(-log_vars)
        bias = log_weights.reshape(-1) - 0.5 * (
            D * math.log(2 * math.pi) + log_vars.sum(-1) + (means * means * prec).sum(-1)
        )
        self.register_buffer("w_sq", (-0.5 * prec).t().contiguous())  # (D, S)
        self.register_buffer("w_lin", (means * prec).t().contiguous())  # (D, S)
        self.register_buffer("bias", bias.contiguous())  # (S,)
        self.num_states = K
        self.num_mixtures = S // K

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape[0], x.shape[1], x.shape[2]
        xf = x.reshape(B * T, D)
        out = torch.addmm(torch.addmm(self.bias, xf * xf, self.w_sq), xf, self.w_lin)
        if self.num_mixtures == 1:
            return out.reshape(B, T, self.num_states)
        return _lse(out.reshape(B, T, self.num_states, self.num_mixtures), 3)


class FullGaussianEmissions(nn.Module):
    """Full-covariance Gaussians (mixtures when ``num_mixtures > 1``): ``-0.5 |P x - P mu|^2
    + const`` with ``P`` the inverse Cholesky factor (computed once, in float64, at export:
    ONNX has no triangular solve)."""

    def __init__(
        self, means: torch.Tensor, scale_tril: torch.Tensor, log_weights: torch.Tensor, K: int
    ):
        super().__init__()
        S, D = means.shape
        dt = means.dtype
        L = scale_tril.detach().double()
        eye = torch.eye(D, dtype=torch.float64).expand(S, D, D)
        P = torch.linalg.solve_triangular(L, eye, upper=False)  # (S, D, D) = L^-1
        b = (P @ means.detach().double().unsqueeze(-1)).squeeze(-1)  # (S, D)
        logdet = 2.0 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
        const = log_weights.reshape(-1).double() - 0.5 * (logdet + D * math.log(2 * math.pi))
        self.register_buffer("w", P.reshape(S * D, D).t().contiguous().to(dt))  # (D, S*D)
        self.register_buffer("b", b.reshape(-1).to(dt))  # (S*D,)
        self.register_buffer("const", const.to(dt))  # (S,)
        self.num_states = K
        self.num_mixtures = S // K
        self.num_components = S
        self.feature_dim = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape[0], x.shape[1], x.shape[2]
        y = x.reshape(B * T, D) @ self.w - self.b  # (N, S*D)
        y = y.reshape(B * T, self.num_components, self.feature_dim)
        out = self.const - 0.5 * (y * y).sum(-1)  # (N, S)
        if self.num_mixtures == 1:
            return out.reshape(B, T, self.num_states)
        return _lse(out.reshape(B, T, self.num_states, self.num_mixtures), 3)


class GivenEmissions(nn.Module):
    """``HMMPyTorch``: the input already is the emission log-likelihoods (B, T, K)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# ------------------------------------------------------------------------------------------
# HMM recursions (the library's arithmetic: frame-relative emissions, scores normalised to
# their best state every frame, the normalisers summed in float64)


def _relative(em: torch.Tensor, relative: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Emissions relative to each frame's best state (float32 models, as the engine) and the
    shift (B, T) float64; float64 models: unchanged, shift 0."""
    if relative:
        m = em.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        return em - m, m.squeeze(-1).double()
    return em, torch.zeros(em.shape[0], em.shape[1], dtype=torch.float64, device=em.device)


def _normalise(v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    m = v.amax(-1, keepdim=True).clamp(min=-1e30)  # all -inf: -1e30, no NaN
    return v - m, m.squeeze(-1)


class HMMLogLikelihood(nn.Module):
    """``x`` (B, T, D), ``lengths`` (B,) -> log-likelihood (B,) (the forward algorithm)."""

    def __init__(self, emissions: nn.Module, log_initial: torch.Tensor, log_trans: torch.Tensor):
        super().__init__()
        self.emissions = emissions
        self.register_buffer("log_initial", log_initial.detach().clone())
        self.register_buffer("log_transitions", log_trans.detach().clone())
        self.relative = log_initial.dtype != torch.float64

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        em, shift = _relative(self.emissions(_zero_padding(x, lengths)), self.relative)
        cur, m = _normalise(self.log_initial.unsqueeze(0) + em[:, 0])
        off = m.double() + shift[:, 0]
        for t in range(1, T):
            v = _lse(cur.unsqueeze(-1) + self.log_transitions, 1) + em[:, t]
            nxt, m = _normalise(v)
            on = lengths > t
            cur = torch.where(on.unsqueeze(-1), nxt, cur)
            off = torch.where(on, off + m.double() + shift[:, t], off)
        return (_lse(cur, 1).double() + off).to(x.dtype)


def _hmm_backtrace(
    backs: List[torch.Tensor], state: torch.Tensor, lengths: torch.Tensor, T: int
) -> torch.Tensor:
    """Path (B, T) from back-pointers ``backs[t]`` (B, K) (the best predecessor of each state
    at frame t) and the best last state of each sequence; -1 on padding."""
    st = state
    rev: List[torch.Tensor] = [st]  # frames T-1, T-2, ..., 0
    for i in range(T - 1):
        t = T - 1 - i
        prev = backs[t].gather(1, st.unsqueeze(1)).squeeze(1)
        st = torch.where(lengths > t, prev, st)
        rev.append(st)
    path = torch.flip(torch.stack(rev, 1), [1]).long()  # .long(): ONNX loses the dtype
    neg = torch.full(path.shape, -1, dtype=torch.long, device=path.device)
    return torch.where(_time_mask(lengths, T), path, neg)


class HMMViterbi(nn.Module):
    """``x`` (B, T, D), ``lengths`` (B,) -> ``(path (B, T) int64, score (B,))``: the best
    state path (-1 on padding and for sequences no path can produce) and its log joint
    probability, summed in float64 along the path as the library does (-inf when none)."""

    def __init__(self, emissions: nn.Module, log_initial: torch.Tensor, log_trans: torch.Tensor):
        super().__init__()
        self.emissions = emissions
        self.register_buffer("log_initial", log_initial.detach().clone())
        self.register_buffer("log_transitions", log_trans.detach().clone())
        self.relative = log_initial.dtype != torch.float64

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        B, T = x.shape[0], x.shape[1]
        lb = self.emissions(_zero_padding(x, lengths))
        em, _ = _relative(lb, self.relative)
        K = lb.shape[2]
        cur, _m = _normalise(self.log_initial.unsqueeze(0) + em[:, 0])
        backs: List[torch.Tensor] = [torch.full((B, K), -1, dtype=torch.long, device=x.device)]
        for t in range(1, T):
            s = cur.unsqueeze(-1) + self.log_transitions  # (B, j, k)
            a = s.argmax(1)
            v = s.amax(1) + em[:, t]
            nxt, _m = _normalise(v)
            on = (lengths > t).unsqueeze(-1)
            cur = torch.where(on, nxt, cur)
            backs.append(a)
        best = cur.amax(-1)
        ok = torch.isfinite(best)
        path = _hmm_backtrace(backs, cur.argmax(-1), lengths, T)
        path = torch.where(ok.unsqueeze(1), path, torch.full_like(lengths, -1).unsqueeze(1))
        # the path's score in float64, as the library's (the recursion's values are relative)
        mask = path >= 0
        z = path.clamp(min=0)
        e = lb.gather(2, z.unsqueeze(-1)).squeeze(-1)
        total = torch.where(mask, e, torch.zeros_like(e)).double().sum(1)
        total = total + self.log_initial[z[:, 0]].double()
        tr = self.log_transitions.reshape(-1)[z[:, :-1] * K + z[:, 1:]]  # (B, T-1), maybe empty
        total = total + torch.where(mask[:, 1:], tr, torch.zeros_like(tr)).double().sum(1)
        score = torch.where(ok, total, torch.full_like(total, float("-inf"))).to(x.dtype)
        return path, score


# ------------------------------------------------------------------------------------------
# HSMM: the segment recursion in float64 (as the engine), over a rolling window of the last
# max_duration frames: seg[:, d-1] is the emission sum of the segment of d frames ending at
# t, starts[:, d-1] the score of a segment starting at t+1-d


class _HSMMBase(nn.Module):
    # a constant when scripted: uncensored models hold one duration table (two equal buffers
    # would be merged by the ONNX exporter, which onnxruntime then warns about)
    __constants__ = ["censored"]

    def __init__(
        self,
        emissions: nn.Module,
        log_initial: torch.Tensor,
        log_trans: torch.Tensor,
        log_durations: torch.Tensor,
        end_durations: torch.Tensor,
        log_final: torch.Tensor,
    ):
        super().__init__()
        d = torch.float64
        self.emissions = emissions
        self.register_buffer("log_initial", log_initial.detach().to(d).clone())
        self.register_buffer("log_transitions", log_trans.detach().to(d).clone())
        # (Dm, K): row d-1 for a segment of d frames
        self.register_buffer("log_durations", log_durations.detach().to(d).t().contiguous())
        self.censored = not torch.equal(end_durations, log_durations)
        ends = end_durations if self.censored else end_durations[:, :0]
        self.register_buffer("end_durations", ends.detach().to(d).t().contiguous())
        self.register_buffer("log_final", log_final.detach().to(d).clone())
        self.max_duration = int(log_durations.shape[-1])


class HSMMLogLikelihood(_HSMMBase):
    """``x`` (B, T, D), ``lengths`` (B,) -> log-likelihood (B,), -inf where no segmentation
    can produce a sequence."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[0], x.shape[1]
        em = self.emissions(_zero_padding(x, lengths)).double()
        K = em.shape[2]
        Dm = self.max_duration
        starts = torch.full((B, Dm, K), float("-inf"), dtype=torch.float64, device=x.device)
        seg = torch.zeros((B, Dm, K), dtype=torch.float64, device=x.device)
        u = self.log_initial.unsqueeze(0).expand(B, K)
        final = torch.full((B, K), float("-inf"), dtype=torch.float64, device=x.device)
        last = lengths - 1
        for t in range(T):
            e = em[:, t].unsqueeze(1)
            seg = torch.cat([e, seg[:, : Dm - 1] + e], 1)
            starts = torch.cat([u.unsqueeze(1), starts[:, : Dm - 1]], 1)
            is_end = (last == t).view(B, 1, 1)
            w = self.log_durations
            if self.censored:
                w = torch.where(is_end, self.end_durations, self.log_durations)
            alpha = _lse(starts + w + seg, 1)  # (B, K)
            final = torch.where(is_end.view(B, 1), alpha, final)
            u = _lse(alpha.unsqueeze(-1) + self.log_transitions, 1)
        return _lse(final + self.log_final, 1).to(x.dtype)


class HSMMViterbi(_HSMMBase):
    """``x`` (B, T, D), ``lengths`` (B,) -> ``(path (B, T) int64, score (B,))``: the state of
    each frame on the best segmentation (-1 on padding and for sequences with none) and its
    log-probability (-inf when none)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        B, T = x.shape[0], x.shape[1]
        em = self.emissions(_zero_padding(x, lengths)).double()
        K = em.shape[2]
        Dm = self.max_duration
        dev = x.device
        starts = torch.full((B, Dm, K), float("-inf"), dtype=torch.float64, device=dev)
        seg = torch.zeros((B, Dm, K), dtype=torch.float64, device=dev)
        u = self.log_initial.unsqueeze(0).expand(B, K)
        final = torch.full((B, K), float("-inf"), dtype=torch.float64, device=dev)
        last = lengths - 1
        minus1 = torch.full((B, K), -1, dtype=torch.long, device=dev)
        bpd: List[torch.Tensor] = [minus1]  # best duration index (d - 1) per frame, from 1
        bpj: List[torch.Tensor] = [minus1]  # best predecessor of a segment starting at t
        for t in range(T):
            e = em[:, t].unsqueeze(1)
            seg = torch.cat([e, seg[:, : Dm - 1] + e], 1)
            starts = torch.cat([u.unsqueeze(1), starts[:, : Dm - 1]], 1)
            is_end = (last == t).view(B, 1, 1)
            w = self.log_durations
            if self.censored:
                w = torch.where(is_end, self.end_durations, self.log_durations)
            terms = starts + w + seg
            alpha = terms.amax(1)
            bpd.append(torch.where(torch.isfinite(alpha), terms.argmax(1), minus1))
            final = torch.where(is_end.view(B, 1), alpha, final)
            tr = alpha.unsqueeze(-1) + self.log_transitions  # (B, j, k)
            u = tr.amax(1)
            bpj.append(torch.where(torch.isfinite(u), tr.argmax(1), minus1))
        # .long(): the exporter loses the dtype of a stacked sequence (a Cast restores it)
        D = torch.stack(bpd, 1)[:, 1:].long()  # (B, T, K)
        J = torch.stack(bpj, 1)[:, :T].long()  # (B, T, K): J[:, t] for a segment starting at t
        lastsc = final + self.log_final
        score = lastsc.amax(-1)
        valid = torch.isfinite(score)
        cur = torch.where(valid, lastsc.argmax(-1), torch.full_like(lengths, -1))
        t_end = last.clamp(min=0)
        d_end = D.gather(1, t_end.view(B, 1, 1).expand(B, 1, K)).squeeze(1)
        first = t_end - d_end.gather(1, cur.clamp(min=0).unsqueeze(1)).squeeze(1)
        rev: List[torch.Tensor] = [torch.full_like(lengths, -1)]  # frames T-1 .. 0, then cut
        for i in range(T - 1):
            t = T - 1 - i
            on = (lengths > t) & (cur >= 0)
            rev.append(torch.where(on, cur, torch.full_like(lengths, -1)))
            here = on & (first == t)
            cc = cur.clamp(min=0).unsqueeze(1)
            nxt = J[:, t].gather(1, cc).squeeze(1)
            cur = torch.where(here, nxt, cur).long()  # .long(): keeps the dtype in ONNX
            cn = cur.clamp(min=0).unsqueeze(1)
            new_first = (t - 1) - D[:, t - 1].gather(1, cn).squeeze(1)
            first = torch.where(here, new_first, first).long()
        on0 = (lengths > 0) & (cur >= 0)
        rev.append(torch.where(on0, cur, torch.full_like(lengths, -1)))
        path = torch.flip(torch.stack(rev, 1)[:, 1:], [1]).long()
        return path, score.to(x.dtype)


# ------------------------------------------------------------------------------------------
# streaming: one chunk of the online forward (filter) and Viterbi recursions


class StreamingStep(nn.Module):
    """One chunk of :class:`~pytorch_hmm.StreamingHMMProcessor`'s recursions, with the
    carries as explicit inputs and outputs (see :mod:`pytorch_hmm.export` for the names).

    ``forward(x (B, n, D), lengths (B,), frames (B,), forward_scores (B, K), forward_offset
    (B,) float64, viterbi_scores (B, K))`` -> ``(forward_scores, forward_offset,
    viterbi_scores, back (B, n, K) int64, current_state (B,), confidence (B,), posteriors
    (B, K), log_likelihood (B,) float64, frames (B,))``. A stream with ``frames == 0`` starts
    from the initial distribution (its carries are not read); ``lengths[b] = 0`` leaves
    stream b unchanged. ``back[b, t, k]``: the best predecessor of state k at the chunk's
    frame t (-1 at a stream's first frame and on padding), what
    :class:`~pytorch_hmm.core.online.OnlineViterbi` commits frames from."""

    def __init__(
        self,
        emissions: nn.Module,
        log_initial: torch.Tensor,
        log_trans: torch.Tensor,
        beam: float,
    ):
        super().__init__()
        self.emissions = emissions
        self.register_buffer("log_initial", log_initial.detach().clone())
        self.register_buffer("log_transitions", log_trans.detach().clone())
        self.relative = log_initial.dtype != torch.float64
        self.beam = float(beam)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        frames: torch.Tensor,
        forward_scores: torch.Tensor,
        forward_offset: torch.Tensor,
        viterbi_scores: torch.Tensor,
    ) -> Tuple[
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
    ]:
        B, n = x.shape[0], x.shape[1]
        lb = self.emissions(_zero_padding(x, lengths))
        em, shift = _relative(lb, self.relative)
        K = lb.shape[2]
        fs, fo, vs = forward_scores, forward_offset, viterbi_scores
        minus1 = torch.full((B, K), -1, dtype=torch.long, device=x.device)
        backs: List[torch.Tensor] = [minus1]
        lpi = self.log_initial.unsqueeze(0)
        for t in range(n):
            fresh = (frames + t == 0).unsqueeze(-1)
            on = lengths > t
            # filter
            f = torch.where(fresh, lpi, _lse(fs.unsqueeze(-1) + self.log_transitions, 1))
            f_new, fm = _normalise(f + em[:, t])
            fo = torch.where(on, fo + fm.double() + shift[:, t], fo)
            fs = torch.where(on.unsqueeze(-1), f_new, fs)
            # best path
            s = vs.unsqueeze(-1) + self.log_transitions
            v = torch.where(fresh, lpi, s.amax(1))
            a = torch.where(fresh, minus1, s.argmax(1))
            v_new, _vm = _normalise(v + em[:, t])
            vs = torch.where(on.unsqueeze(-1), v_new, vs)
            backs.append(torch.where(on.unsqueeze(-1), a, minus1))
        back = torch.stack(backs, 1)[:, 1:].long()  # .long(): ONNX loses the dtype
        # the beam prunes the best-path scores of the streams that advanced (once a chunk)
        active = (lengths > 0).unsqueeze(-1)
        top = vs.amax(-1, keepdim=True)
        pruned = vs.masked_fill(vs < top - self.beam, float("-inf"))
        vs = torch.where(active, pruned, vs)
        new_frames = frames + lengths
        lse = _lse(fs, 1)
        post = (fs - lse.unsqueeze(-1)).exp()
        conf = post.amax(-1)
        state = post.argmax(-1)
        ll = fo + lse.double()
        seen = new_frames > 0
        post = torch.where(seen.unsqueeze(-1), post, torch.zeros_like(post))
        conf = torch.where(seen, conf, torch.zeros_like(conf))
        state = torch.where(seen, state, torch.full_like(frames, -1))
        ll = torch.where(seen, ll, torch.zeros_like(ll))
        return fs, fo, vs, back, state, conf, post, ll, new_frames
