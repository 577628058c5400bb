"""Semi-Markov (HSMM) inference: forward, backward, posteriors and Viterbi over segments.

A hidden semi-Markov model emits a *segment* of ``d`` frames each time it enters a state,
with ``d`` drawn from the state's duration distribution, instead of deciding at every
frame whether to stay. Every function here takes what an HSMM has to produce:

- ``log_emissions`` (B, T, K): ``log p(x_t | state k)`` per frame, as for an HMM;
- ``log_initial`` (K,) or (B, K): the first segment's state;
- ``log_transitions`` (K, K) or (B, K, K): from the state of one segment to the next.
  Models use a zero diagonal (-inf: a state's stay is its duration); the recursion allows
  any matrix;
- ``log_durations`` (K, Dm) or (B, K, Dm): entry ``d - 1`` is ``log p(duration = d)``, for
  ``d = 1..Dm`` (``Dm`` = ``max_duration``);
- ``lengths`` (B,) long, optional; ``log_final`` (K,) or (B, K), optional: a score added for
  the state of each sequence's last segment (-inf: may not end there).

Conventions: segments tile each sequence exactly: the first starts at frame 0, the last
ends at frame ``lengths[b] - 1``. With ``right_censored=True`` the last segment may be cut
short by the end of the sequence: its duration term is ``log P(duration >= d)`` instead of
``log P(duration = d)``. Scores need not be normalised (the result is then a score, not a
log-likelihood). A sequence that no segmentation can produce (too short for a left-to-right
model to finish, say) gets -inf, a warning or :class:`~pytorch_hmm.core.NoValidPathError`
(``on_impossible``), and leaves the rest of the batch unaffected.

A segment's emission score is a difference of prefix sums computed once per sequence, in
float64; impossible frames (-inf) are counted separately, so a segment that contains one
scores exactly -inf (never ``inf - inf``). The recursions run in float64 whatever the input
dtype (segment sums over long sequences would lose precision in float32) and results are
returned in the input dtype.

Where the recursion is: one per backend, in the log or max semiring: :func:`_torch_forward`
/ :func:`_torch_backward` (torch, every device; a loop over frames, vectorised over the
batch, states and durations) and ``semi_forward`` / ``semi_backward`` in
:mod:`pytorch_hmm.core._cpu_kernels` (compiled CPU loops, sequences in parallel), chosen by
the engine's dispatch point (:mod:`pytorch_hmm.core.backend`). Cost O(B*T*K*(Dm + P)) for P
allowed predecessors per state: O(B*T*K*Dm) for left-to-right models, O(B*T*(K^2 + K*Dm))
for ergodic ones; memory O(B*T*K). Gradients of :func:`hsmm_log_likelihood` come from the
explicit backward pass (the expected counts), not an autograd tape.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional

import torch

from ..errors import HMMValueError
from .backend import cpu_kernels, kernel_call
from .inference import KERNELS, _check_mode, _eager, _report_impossible, _same, _state_scores
from .validation import check_float, check_lengths, check_no_nan, check_real_frames, shape_str

NEG_INF = -math.inf
# elements of the (B, chunk, ., K) temporaries of the expected counts
_CHUNK = 1 << 21


class HSMMPosteriorResult(NamedTuple):
    """Posteriors of an HSMM, all (but ``log_likelihood``) in the input dtype.

    ``state_posteriors`` (B, T, K): P(frame t lies in a segment of state k | x), 0 on padding.
    ``initial_counts`` (B, K): P(the first segment is in state k | x).
    ``transition_counts`` (B, K, K): expected number of moves from a segment of state j to one
    of state k. ``duration_counts`` (B, K, Dm): expected number of segments of state k lasting
    d frames (index d - 1), the last segment included (for a left-to-right model, each
    state's duration posterior); right-censored, the last segment's full duration is
    unknown beyond its observed length d, and its count is spread over every d' >= d in
    proportion to p(d') (EM's statistic; it equals the gradient of the log-likelihood with
    respect to ``log_durations`` in every case). ``log_likelihood`` (B,)."""

    state_posteriors: torch.Tensor
    initial_counts: torch.Tensor
    transition_counts: torch.Tensor
    duration_counts: torch.Tensor
    log_likelihood: torch.Tensor


class HSMMViterbiResult(NamedTuple):
    """The best segmentation of each sequence.

    ``path`` (B, T) long: the state of each frame, -1 on padding and for sequences with no
    valid segmentation. ``score`` (B,): its log-probability (-inf when none). ``segments``: a
    list of B long tensors (N_b, 3), one row ``[state, start_frame, duration]`` per segment
    in time order (empty when none). ``valid`` (B,) bool."""

    path: torch.Tensor
    score: torch.Tensor
    segments: List[torch.Tensor]
    valid: torch.Tensor


# ------------------------------------------------------------------------------------------
# inputs


class _SemiProblem:
    """Validated inputs of one HSMM call, in float64 (B, ...) form."""

    def __init__(
        self,
        log_emissions,
        log_initial,
        log_transitions,
        log_durations,
        lengths,
        *,
        right_censored=False,
        log_final=None,
        backend=None,
    ):
        check_float("log_emissions", log_emissions)
        if log_emissions.dim() != 3:
            raise HMMValueError(
                f"log_emissions must have shape (B, T, K), got {shape_str(log_emissions)}"
            )
        B, T, K = log_emissions.shape
        if T == 0:
            raise HMMValueError(
                "log_emissions has T=0 frames: sequences must have at least one frame"
            )
        if K == 0:
            raise HMMValueError("log_emissions has no columns (K=0 states)")
        dev, dt = log_emissions.device, log_emissions.dtype
        # padded frames are never read: checked and computed on with padding replaced by 0
        self.lengths = check_lengths(lengths, B, T, dev)
        log_emissions = check_real_frames("log_emissions", log_emissions, self.lengths)
        self.lpi = _state_scores("log_initial", log_initial, B, K, dt, dev)
        check_float("log_transitions", log_transitions)
        _same(log_transitions, "log_transitions", dt, dev)
        if log_transitions.shape not in ((K, K), (B, K, K)):
            raise HMMValueError(
                f"log_transitions must have shape (K, K) or (B, K, K) = ({K}, {K}) or "
                f"({B}, {K}, {K}), got {shape_str(log_transitions)}"
            )
        check_no_nan("log_transitions", log_transitions)
        check_float("log_durations", log_durations)
        _same(log_durations, "log_durations", dt, dev)
        if (
            log_durations.dim() not in (2, 3)
            or log_durations.shape[-2] != K
            or (log_durations.dim() == 3 and log_durations.shape[0] != B)
        ):
            raise HMMValueError(
                f"log_durations must have shape (K, max_duration) or (B, K, max_duration) with "
                f"K={K}, B={B}, got {shape_str(log_durations)}"
            )
        if log_durations.shape[-1] < 1:
            raise HMMValueError("log_durations has max_duration=0 columns: durations start at 1")
        check_no_nan("log_durations", log_durations)
        self.lf = (
            None if log_final is None else _state_scores("log_final", log_final, B, K, dt, dev)
        )
        self.lb, self.lA, self.ldur = log_emissions, log_transitions, log_durations
        self.right_censored = bool(right_censored)
        self.B, self.T, self.K, self.Dm = B, T, K, log_durations.shape[-1]
        self.dtype, self.device = dt, dev
        self.kern = cpu_kernels(KERNELS, dev, backend)

    def end_durations(self) -> torch.Tensor:
        """The duration scores of the segment that ends a sequence: log P(D >= d) when
        right-censored (differentiable), else the duration table itself."""
        if not self.right_censored:
            return self.ldur
        return torch.logcumsumexp(self.ldur.flip(-1), -1).flip(-1)


class _Tables(NamedTuple):
    """float64 (B, ...) views of a problem's inputs."""

    C: torch.Tensor  # (B, T+1, K) prefix sums of the finite emission scores
    N: torch.Tensor  # (B, T+1, K) int32 prefix counts of impossible frames
    lpi: torch.Tensor  # (B, K)
    A: torch.Tensor  # (Bx, K, K)
    dur: torch.Tensor  # (Bx, K, Dm)
    dend: torch.Tensor  # (Bx, K, Dm)
    lf: torch.Tensor  # (Bx, K)
    lengths: torch.Tensor


def _tables(p: _SemiProblem, lpi, A, dur, dend, lf) -> _Tables:
    d = torch.float64
    lb = p.lb.detach().to(d)
    fin = torch.isfinite(lb)
    z = torch.where(fin, lb, torch.zeros((), dtype=d, device=lb.device))
    C = torch.nn.functional.pad(torch.cumsum(z, 1), (0, 0, 1, 0))
    N = torch.nn.functional.pad(
        torch.cumsum((~fin).to(torch.int32), 1, dtype=torch.int32), (0, 0, 1, 0)
    )
    K = p.K

    def b3(x):
        x = x.detach().to(d)
        return x if x.dim() == 3 else x.unsqueeze(0)

    lf_ = torch.zeros(1, K, dtype=d, device=lb.device) if lf is None else lf.detach().to(d)
    return _Tables(C, N, lpi.detach().to(d), b3(A), b3(dur), b3(dend), lf_, p.lengths)


def _neighbours(A: torch.Tensor, incoming: bool):
    """Allowed predecessors (``incoming``) or successors of each state: (Bx, K, K) int64
    indices (the first ``n[b, k]`` valid) and (Bx, K) counts."""
    mask = torch.isfinite(A)
    if incoming:
        mask = mask.transpose(-1, -2)
    order = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)
    return order.contiguous(), mask.sum(-1).to(torch.int64).contiguous()


def _np(x: torch.Tensor):
    return x.detach().contiguous().numpy()


def _valid_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


# ------------------------------------------------------------------------------------------
# the recursions


class _Messages(NamedTuple):
    alpha: torch.Tensor  # (B, T, K) a segment of k ends at t, with everything before
    U: torch.Tensor  # (B, T, K) a segment of k starts at t, with everything before
    bpd: Optional[torch.Tensor]  # (B, T, K) best duration index (max semiring)
    bpj: Optional[torch.Tensor]  # (B, T, K) best predecessor of a segment starting at t


def _forward(p: _SemiProblem, tb: _Tables, maxmode: bool) -> _Messages:
    if p.kern is not None:
        B, T, K = p.B, p.T, p.K
        alpha = torch.empty(B, T, K, dtype=torch.float64)
        U = torch.empty_like(alpha)
        bpd = torch.empty(B, T, K, dtype=torch.int32)
        bpj = torch.empty_like(bpd)
        nbr, nn = _neighbours(tb.A, incoming=True)
        work = B * T * K * (p.Dm + int(nn.amax()))
        with kernel_call(work, B):
            p.kern.semi_forward(
                _np(tb.C), _np(tb.N), _np(tb.lpi), _np(tb.A), _np(nbr), _np(nn), _np(tb.dur),
                _np(tb.dend), _np(tb.lengths), maxmode, alpha.numpy(), U.numpy(),
                bpd.numpy(), bpj.numpy(),
            )  # fmt: skip
        return _Messages(alpha, U, bpd if maxmode else None, bpj if maxmode else None)
    return _torch_forward(p, tb, maxmode)


def _torch_forward(p: _SemiProblem, tb: _Tables, maxmode: bool) -> _Messages:
    """The reference recursion (torch, any device): a loop over frames."""
    B, T, K, Dm = p.B, p.T, p.K, p.Dm
    dev = tb.C.device
    alpha = torch.full((B, T, K), NEG_INF, dtype=torch.float64, device=dev)
    U = torch.full_like(alpha, NEG_INF)
    bpd = torch.full((B, T, K), -1, dtype=torch.int32, device=dev) if maxmode else None
    bpj = torch.full_like(bpd, -1) if maxmode else None
    U[:, 0] = tb.lpi
    dur, dend = tb.dur.transpose(1, 2), tb.dend.transpose(1, 2)  # (Bx, Dm, K)
    A = tb.A
    ar = torch.arange(1, Dm + 1, device=dev)
    last_frame = tb.lengths - 1
    for t in range(T):
        s = t + 1 - ar
        ok = (s >= 0).view(1, Dm, 1)
        sc = s.clamp(min=0)
        seg = tb.C[:, t + 1].unsqueeze(1) - tb.C[:, sc]
        good = ok & (tb.N[:, t + 1].unsqueeze(1) == tb.N[:, sc])
        w = torch.where((last_frame == t).view(B, 1, 1), dend, dur)
        terms = torch.where(good, U[:, sc] + w + seg, NEG_INF)
        if maxmode:
            v, a = terms.amax(1), terms.argmax(1)  # Tensor.max(dim) is slow on CPU
            alpha[:, t] = v
            bpd[:, t] = torch.where(torch.isfinite(v), a, -1).to(torch.int32)
        else:
            alpha[:, t] = torch.logsumexp(terms, 1)
        if t + 1 < T:
            tr = alpha[:, t].unsqueeze(-1) + A  # (B, j, k)
            if maxmode:
                v, a = tr.amax(1), tr.argmax(1)
                U[:, t + 1] = v
                bpj[:, t + 1] = torch.where(torch.isfinite(v), a, -1).to(torch.int32)
            else:
                U[:, t + 1] = torch.logsumexp(tr, 1)
    pad = ~_valid_mask(tb.lengths, T).unsqueeze(-1)
    alpha = alpha.masked_fill(pad, NEG_INF)
    U = U.masked_fill(pad, NEG_INF)
    return _Messages(alpha, U, bpd, bpj)


def _backward(p: _SemiProblem, tb: _Tables):
    """(E, S), each (B, T, K) float64: E[t, k] everything after a segment of k that ends at
    t; S[s, k] a segment of k that starts at s and everything after it."""
    B, T, K, Dm = p.B, p.T, p.K, p.Dm
    if p.kern is not None:
        E = torch.empty(B, T, K, dtype=torch.float64)
        S = torch.empty_like(E)
        nbr, nn = _neighbours(tb.A, incoming=False)
        work = B * T * K * (Dm + int(nn.amax()))
        with kernel_call(work, B):
            p.kern.semi_backward(
                _np(tb.C), _np(tb.N), _np(tb.A), _np(nbr), _np(nn), _np(tb.dur), _np(tb.dend),
                _np(tb.lf), _np(tb.lengths), E.numpy(), S.numpy(),
            )  # fmt: skip
        return E, S
    return _torch_backward(p, tb)


def _torch_backward(p: _SemiProblem, tb: _Tables):
    B, T, K, Dm = p.B, p.T, p.K, p.Dm
    dev = tb.C.device
    E = torch.full((B, T, K), NEG_INF, dtype=torch.float64, device=dev)
    S = torch.full_like(E, NEG_INF)
    dur, dend = tb.dur.transpose(1, 2), tb.dend.transpose(1, 2)
    lf = tb.lf.expand(B, K)
    L = tb.lengths.view(B, 1)
    ar = torch.arange(1, Dm + 1, device=dev)
    for t in range(T - 1, -1, -1):
        if t + 1 < T:
            nxt = torch.logsumexp(tb.A + S[:, t + 1].unsqueeze(1), -1)  # (B, k) over j
        else:
            nxt = torch.full((B, K), NEG_INF, dtype=torch.float64, device=dev)
        E[:, t] = torch.where(L - 1 == t, lf, torch.where(t < L - 1, nxt, NEG_INF))
        e = t + ar  # one past each segment's last frame
        ec = e.clamp(max=T)
        ok = (e.view(1, Dm) <= L).unsqueeze(-1)
        seg = tb.C[:, ec] - tb.C[:, t].unsqueeze(1)
        good = ok & (tb.N[:, ec] == tb.N[:, t].unsqueeze(1))
        w = torch.where((e.view(1, Dm) == L).unsqueeze(-1), dend, dur)
        terms = torch.where(good, w + seg + E[:, ec - 1], NEG_INF)
        S[:, t] = torch.where(t < L, torch.logsumexp(terms, 1), NEG_INF)
    return E, S


def _log_z(tb: _Tables, alpha: torch.Tensor, lf) -> torch.Tensor:
    B = alpha.shape[0]
    last = alpha[torch.arange(B, device=alpha.device), tb.lengths - 1]
    if lf is not None:
        last = last + tb.lf
    return torch.logsumexp(last, -1)


# ------------------------------------------------------------------------------------------
# expected counts from the messages (shared by both backends)


class _Counts(NamedTuple):
    gamma: torch.Tensor  # (B, T, K)
    initial: torch.Tensor  # (B, K)
    trans: torch.Tensor  # (B, K, K)
    dur_mid: torch.Tensor  # (B, K, Dm) segments that do not end a sequence
    dur_end: torch.Tensor  # (B, K, Dm) the last segment of each sequence
    final: torch.Tensor  # (B, K) the last segment's state


def _counts(p: _SemiProblem, tb: _Tables, fw: _Messages, E, S, logZ) -> _Counts:
    if p.kern is not None:
        return _kernel_counts(p, tb, fw, E, S, logZ)
    return _torch_counts(p, tb, fw, E, S, logZ)


def _kernel_counts(p: _SemiProblem, tb: _Tables, fw: _Messages, E, S, logZ) -> _Counts:
    B, T, K, Dm = p.B, p.T, p.K, p.Dm
    f64 = torch.float64
    gamma = torch.empty(B, T, K, dtype=f64)
    trans = torch.empty(B, K, K, dtype=f64)
    mid = torch.empty(B, K, Dm, dtype=f64)
    end = torch.empty_like(mid)
    nbr, nn = _neighbours(tb.A, incoming=False)
    with kernel_call(B * T * K * (Dm + int(nn.amax())), B):
        p.kern.semi_counts(
            _np(tb.C), _np(tb.N), _np(tb.A), _np(nbr), _np(nn), _np(tb.dur), _np(tb.dend),
            _np(tb.lengths), _np(logZ), _np(fw.alpha), _np(fw.U), _np(E), _np(S),
            gamma.numpy(), trans.numpy(), mid.numpy(), end.numpy(),
        )  # fmt: skip
    ar = torch.arange(B)
    last = tb.lengths - 1
    ok = torch.isfinite(logZ).unsqueeze(-1)
    final = torch.exp(fw.alpha[ar, last] + E[ar, last] - torch.where(ok, logZ.unsqueeze(-1), 0.0))
    final = final.masked_fill(~ok, 0.0)
    initial = torch.exp(fw.U[:, 0] + S[:, 0] - torch.where(ok, logZ.unsqueeze(-1), 0.0))
    return _Counts(gamma, initial.masked_fill(~ok, 0.0), trans, mid, end, final)


def _torch_counts(p: _SemiProblem, tb: _Tables, fw: _Messages, E, S, logZ) -> _Counts:
    B, T, K, Dm = p.B, p.T, p.K, p.Dm
    dev = tb.C.device
    ok = torch.isfinite(logZ)
    Z = torch.where(ok, logZ, 0.0).view(B, 1, 1)
    kill = (~ok).view(B, 1, 1)
    p_start = torch.exp(fw.U + S - Z).masked_fill(kill, 0.0)
    p_end = torch.exp(fw.alpha + E - Z).masked_fill(kill, 0.0)
    gamma = (torch.cumsum(p_start, 1) - torch.cumsum(p_end, 1) + p_end).clamp_(0.0, 1.0)
    gamma = gamma.masked_fill(~_valid_mask(tb.lengths, T).unsqueeze(-1), 0.0)
    ar = torch.arange(B, device=dev)
    final = p_end[ar, tb.lengths - 1]
    # transitions: exp(alpha[t, j] + A[j, k] + S[t+1, k] - Z), summed over t, in time chunks
    trans = torch.zeros(B, K, K, dtype=torch.float64, device=dev)
    step = max(1, _CHUNK // max(1, B * K * K))
    for t0 in range(0, T - 1, step):
        t1 = min(T - 1, t0 + step)
        a = fw.alpha[:, t0:t1].unsqueeze(-1)  # (B, c, j, 1)
        s = S[:, t0 + 1 : t1 + 1].unsqueeze(-2)  # (B, c, 1, k)
        x = torch.exp(a + tb.A.unsqueeze(1) + s - Z.unsqueeze(-1))
        trans += x.masked_fill(kill.unsqueeze(-1), 0.0).nan_to_num_(0.0).sum(1)
    # durations: exp(U[s, k] + w + seg(s, s+d) + E[s+d-1, k] - Z), in chunks of start frames
    dur, dend = tb.dur.transpose(1, 2).unsqueeze(1), tb.dend.transpose(1, 2).unsqueeze(1)
    mid = torch.zeros(B, Dm, K, dtype=torch.float64, device=dev)
    end = torch.zeros_like(mid)
    L = tb.lengths.view(B, 1, 1)
    ar_d = torch.arange(1, Dm + 1, device=dev)
    step = max(1, _CHUNK // max(1, B * K * Dm))
    for s0 in range(0, T, step):
        s1 = min(T, s0 + step)
        s = torch.arange(s0, s1, device=dev)
        e = s.view(-1, 1) + ar_d.view(1, -1)  # (c, Dm) one past the last frame
        ec = e.clamp(max=T)
        seg = tb.C[:, ec] - tb.C[:, s].unsqueeze(2)  # (B, c, Dm, K)
        good = (tb.N[:, ec] == tb.N[:, s].unsqueeze(2)) & (e.view(1, *e.shape) <= L).unsqueeze(-1)
        base = fw.U[:, s0:s1].unsqueeze(2) + seg + E[:, ec - 1] - Z.unsqueeze(-1)
        base = torch.where(good, base, NEG_INF)
        is_end = (e.view(1, *e.shape) == L).unsqueeze(-1)
        mid += torch.exp(torch.where(is_end, NEG_INF, base + dur)).sum(1)
        end += torch.exp(torch.where(is_end, base + dend, NEG_INF)).sum(1)
    mid = mid.masked_fill(kill, 0.0).transpose(1, 2)
    end = end.masked_fill(kill, 0.0).transpose(1, 2)
    return _Counts(gamma, p_start[:, 0], trans, mid, end, final)


def _full_durations(tb: _Tables, dur_end: torch.Tensor, censored: bool) -> torch.Tensor:
    """Expected counts of the last segments' full durations (B, K, Dm). Uncensored, the
    counts themselves. Right-censored, a last segment seen for d frames lasted some d' >= d,
    with probability p(d') / P(D >= d): its count is spread over those durations, which makes
    the duration counts EM's statistic (and the gradient w.r.t. ``log_durations``)."""
    if not censored:
        return dur_end
    surv = tb.dend  # log P(D >= d), (Bx, K, Dm)
    ratio = torch.where(dur_end > 0, dur_end * torch.exp(-surv), 0.0)
    return torch.exp(tb.dur) * torch.cumsum(ratio, -1)


# ------------------------------------------------------------------------------------------
# autograd: log Z with the expected counts as its gradient


class _HSMMLogLikelihood(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lb, lpi, A, dur, dend, lf, p):
        tb = _tables(p, lpi, A, dur, dend, lf)
        fw = _forward(p, tb, False)
        logZ = _log_z(tb, fw.alpha, lf)
        ctx.p, ctx.tb, ctx.fw, ctx.logZ = p, tb, fw, logZ
        ctx.shapes = (lpi.shape, A.shape, dur.shape, dend.shape, None if lf is None else lf.shape)
        return logZ.to(p.dtype)

    @staticmethod
    def backward(ctx, grad):
        p, tb, fw = ctx.p, ctx.tb, ctx.fw
        E, S = _backward(p, tb)
        c = _counts(p, tb, fw, E, S, ctx.logZ)
        g = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad)).double()
        dt = p.dtype

        def scale(x, shape):
            y = x * g.view(-1, *([1] * (x.dim() - 1)))
            if len(shape) < y.dim():
                y = y.sum(0)
            return y.reshape(shape).to(dt)

        s_pi, s_A, s_d, s_e, s_f = ctx.shapes
        need = ctx.needs_input_grad
        return (
            scale(c.gamma, p.lb.shape) if need[0] else None,
            scale(c.initial, (p.B, p.K)) if need[1] else None,
            scale(c.trans, s_A) if need[2] else None,
            scale(c.dur_mid, s_d) if need[3] else None,
            scale(c.dur_end, s_e) if need[4] else None,
            scale(c.final, (p.B, p.K)) if need[5] else None,
            None,
        )


# ------------------------------------------------------------------------------------------
# public API


def _problem(args: dict) -> _SemiProblem:
    _check_mode(args["on_impossible"])
    return _SemiProblem(
        args["log_emissions"],
        args["log_initial"],
        args["log_transitions"],
        args["log_durations"],
        args["lengths"],
        right_censored=args["right_censored"],
        log_final=args["log_final"],
        backend=args["backend"],
    )


@_eager
def hsmm_log_likelihood(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    right_censored: bool = False,
    log_final: Optional[torch.Tensor] = None,
    backend: Optional[str] = None,
    on_impossible: str = "ignore",
) -> torch.Tensor:
    """Log-likelihood of each sequence under an HSMM, (B,) in the input dtype.

    Differentiable with respect to every input (emissions, initial, transition, duration
    and final scores) through the explicit backward pass: the gradients are the expected
    counts of :func:`hsmm_posteriors`. -inf where no segmentation is possible. Shapes and
    conventions: :mod:`pytorch_hmm.core.semimarkov`."""
    p = _problem(locals())
    dend = p.end_durations()
    ins = (p.lb, p.lpi, log_transitions, log_durations, dend, p.lf)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ins):
        out = _HSMMLogLikelihood.apply(*ins, p)
    else:
        tb = _tables(p, p.lpi, log_transitions, log_durations, dend, p.lf)
        out = _log_z(tb, _forward(p, tb, False).alpha, p.lf).to(p.dtype)
    _report_impossible(out, "hsmm_log_likelihood", on_impossible)
    return out


@_eager
def hsmm_posteriors(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    right_censored: bool = False,
    log_final: Optional[torch.Tensor] = None,
    backend: Optional[str] = None,
    on_impossible: str = "warn",
) -> HSMMPosteriorResult:
    """State posteriors per frame and expected initial, transition and duration counts
    (:class:`HSMMPosteriorResult`): the E-step of EM. Not differentiable (inference)."""
    p = _problem(locals())
    with torch.no_grad():
        tb = _tables(p, p.lpi, log_transitions, log_durations, p.end_durations(), p.lf)
        fw = _forward(p, tb, False)
        logZ = _log_z(tb, fw.alpha, p.lf)
        E, S = _backward(p, tb)
        c = _counts(p, tb, fw, E, S, logZ)
    _report_impossible(logZ, "hsmm_posteriors", on_impossible)
    dt = p.dtype
    return HSMMPosteriorResult(
        c.gamma.to(dt),
        c.initial.to(dt),
        c.trans.to(dt),
        (c.dur_mid + _full_durations(tb, c.dur_end, p.right_censored)).to(dt),
        logZ.to(dt),
    )


@_eager
def hsmm_viterbi(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    right_censored: bool = False,
    log_final: Optional[torch.Tensor] = None,
    backend: Optional[str] = None,
    on_impossible: str = "warn",
) -> HSMMViterbiResult:
    """The most likely segmentation of each sequence (:class:`HSMMViterbiResult`): frame
    path, score, and segments ``[state, start, duration]``."""
    p = _problem(locals())
    with torch.no_grad():
        tb = _tables(p, p.lpi, log_transitions, log_durations, p.end_durations(), p.lf)
        fw = _forward(p, tb, True)
        B, T = p.B, p.T
        ar = torch.arange(B, device=tb.C.device)
        last = fw.alpha[ar, tb.lengths - 1] + tb.lf
        score, state = last.amax(-1), last.argmax(-1)
        valid = torch.isfinite(score)
        state = torch.where(valid, state, -1)
        path, starts = _backtrack(p, fw, state, tb.lengths)
    _report_impossible(score, "hsmm_viterbi", on_impossible)
    return HSMMViterbiResult(path, score.to(p.dtype), _segments(path, starts, tb.lengths), valid)


def _backtrack(p: _SemiProblem, fw: _Messages, state: torch.Tensor, lengths: torch.Tensor):
    B, T = p.B, p.T
    if p.kern is not None:
        path = torch.empty(B, T, dtype=torch.int64)
        starts = torch.empty(B, T, dtype=torch.bool)
        with kernel_call(B * T, B):
            p.kern.semi_backtrack(
                _np(fw.bpd), _np(fw.bpj), _np(state), _np(lengths), path.numpy(), starts.numpy()
            )
        return path, starts
    # torch: one step per frame, vectorised over the batch
    dev = state.device
    path = torch.full((B, T), -1, dtype=torch.int64, device=dev)
    starts = torch.zeros(B, T, dtype=torch.bool, device=dev)
    ar = torch.arange(B, device=dev)
    cur = state.clone()
    t_end = (lengths - 1).clamp(min=0)
    first = t_end - fw.bpd[ar, t_end, cur.clamp(min=0)].long()  # start of the last segment
    for t in range(T - 1, -1, -1):
        on = (t < lengths) & (cur >= 0)
        path[:, t] = torch.where(on, cur, -1)
        here = on & (first == t)
        starts[:, t] = here
        if t == 0:
            break
        nxt = fw.bpj[ar, t, cur.clamp(min=0)].long()
        cur = torch.where(here, nxt, cur)
        new_first = (t - 1) - fw.bpd[ar, t - 1, cur.clamp(min=0)].long()
        first = torch.where(here, new_first, first)
    return path, starts


def _segments(
    path: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor
) -> List[torch.Tensor]:
    """Per sequence, (N_b, 3) long rows ``[state, start, duration]`` from the frame path and
    the segment-start flags."""
    B, T = path.shape
    b_idx, t_idx = torch.nonzero(starts, as_tuple=True)
    states = path[b_idx, t_idx]
    # each segment ends where the next starts (or at its sequence's end)
    nxt = torch.cat([t_idx[1:], t_idx.new_zeros(1)])
    same = torch.cat([b_idx[1:] == b_idx[:-1], b_idx.new_zeros(1, dtype=torch.bool)])
    stop = torch.where(same, nxt, lengths[b_idx])
    rows = torch.stack([states, t_idx, stop - t_idx], 1)
    counts = torch.bincount(b_idx, minlength=B).tolist()
    return list(torch.split(rows, counts))


__all__ = [
    "HSMMPosteriorResult",
    "HSMMViterbiResult",
    "hsmm_log_likelihood",
    "hsmm_posteriors",
    "hsmm_viterbi",
]
