"""Batched HMM inference in log space: forward, backward, posteriors, Viterbi and sampling.

Every function takes the same inputs, which is all a model has to produce:

- ``log_emissions`` (B, T, K): ``log p(x_t | z_t = k)`` for each of B padded sequences.
- ``log_initial`` (K,) or (B, K): ``log p(z_0 = k)``.
- ``log_transitions`` (K, K) or (B, K, K): ``log p(z_t = j | z_{t-1} = i)`` at ``[i, j]``;
  ``-inf`` marks a forbidden move. Left-to-right (banded) matrices are detected and run in
  O(T*K*W) for W allowed moves per state (see :mod:`pytorch_hmm.core.transitions`).
- ``lengths`` (B,) long, optional: the true length of each sequence; frames ``t >= lengths[b]``
  are padding and never read.

All recursions are one code path run in a semiring (log-sum-exp for likelihoods, max for
Viterbi). For the log semiring with dense transitions that have no zero entry, a rescaled
probability-space recursion (matrix products) is used for speed; any sequence on which it would
underflow is recomputed by the exact log-space recursion, so results never silently lose a
valid path. Chains and other sparse graphs always take the exact log-space recursion.

Cost: O(B*T*K*K) time (O(B*T*K*W) banded) and O(B*T*K) memory; gradients of
:func:`log_likelihood` come from an explicit backward pass (posteriors), not an autograd tape.

On CPU, with numba installed, the time loops of the rescaled recursion and of the banded
log-space recursion run as compiled kernels (:mod:`pytorch_hmm.core._cpu_kernels`), the
same algorithms without per-frame dispatch; the torch loops below are the reference and the
path of every other device (``PYTORCH_HMM_DISABLE_NUMBA=1`` selects them on CPU too).
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from typing import Iterator, NamedTuple, Optional, Tuple

import torch

from ._numba import load_kernels
from .semiring import LogSemiring, MaxSemiring
from .transitions import NEG_INF, Transitions, make_transitions
from .validation import check_inputs

# ------------------------------------------------------------------------------------------
# results


class ForwardResult(NamedTuple):
    """``log_alpha`` (B, T, K): ``log p(x_0..x_t, z_t = k)``; padded frames are -inf.
    ``log_likelihood`` (B,): ``log p(x_0..x_{L-1})`` (-inf when no state path is possible)."""

    log_alpha: torch.Tensor
    log_likelihood: torch.Tensor


class PosteriorResult(NamedTuple):
    """``log_likelihood`` (B,); ``state_posteriors`` (B, T, K): ``p(z_t = k | x)``, zero on
    padded frames; ``transition_counts`` (B, K, K): ``sum_t p(z_t = i, z_{t+1} = j | x)``.
    Sequences with no valid path have ``log_likelihood = -inf`` and zero posteriors."""

    log_likelihood: torch.Tensor
    state_posteriors: torch.Tensor
    transition_counts: torch.Tensor


class ViterbiResult(NamedTuple):
    """``path`` (B, T) long: the best state sequence, -1 on padded frames (and on every frame
    of a sequence with no valid path); ``score`` (B,): its log joint probability (-inf when
    there is no valid path)."""

    path: torch.Tensor
    score: torch.Tensor


# ------------------------------------------------------------------------------------------
# preparation


def _prepare(log_emissions, log_initial, log_transitions, lengths, topology, check_stochastic):
    lb, lpi, lA, lengths = check_inputs(
        log_emissions, log_initial, log_transitions, lengths, check_stochastic=check_stochastic
    )
    trans = make_transitions(lA, topology)
    return lb, lpi, trans, lengths


def _time_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(T, B) bool, True on real frames."""
    return torch.arange(T, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)


# ------------------------------------------------------------------------------------------
# exact log-space recursions (any semiring, dense or banded)


# Log-space recursions add log-probabilities to running scores; in float32 the round-off of
# those additions (relative to the score, not to the increment) builds up over long
# sequences, so above this many frames the exact recursions accumulate in float64.
LONG_SEQUENCE = 4096
# frames between normalisations of the rescaled recursion (each frame's mass falls by at most
# its scale c_t; an underflow shows as a scale below sqrt(float tiny) and is recomputed)
NORMALISE_EVERY = 4
# log of the smallest emission likelihood, relative to the frame's best state, that the
# rescaled recursion keeps (about 1e-37; see _shifted_emissions)
EMISSION_FLOOR = math.log(torch.finfo(torch.float32).tiny) + 1.0


@contextlib.contextmanager
def _one_thread(x: torch.Tensor) -> Iterator[None]:
    """Run a per-frame loop on one CPU thread. Each frame's operations are small (a (B, K) by
    (K, K) product); splitting them over threads costs more in synchronisation than it saves
    (measured: a 32x64 by 64x64 ``mm`` takes 4 us on one thread, 9 us on two). The setting is
    restored afterwards, so the large operations around the loop keep every thread."""
    n = torch.get_num_threads()
    if x.device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _kernels(x: torch.Tensor):
    """The compiled CPU kernels (:mod:`pytorch_hmm.core._cpu_kernels`) when ``x`` is a
    float32/float64 CPU tensor and numba is available, else None (torch paths)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return load_kernels("pytorch_hmm.core._cpu_kernels")


# numba's parallel loops must not be entered from two Python threads at once (its workqueue
# threading layer aborts the process): kernel calls are serialised
_KERNEL_LOCK = threading.Lock()


def _np(x: torch.Tensor):
    """A numpy view of a CPU tensor for the kernels (made contiguous first)."""
    return x.detach().contiguous().numpy()


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    if x.dtype == torch.float32 and x.shape[0] > LONG_SEQUENCE:
        return torch.float64
    return x.dtype


def _frame_max(lb_tm: torch.Tensor) -> torch.Tensor:
    """Best emission score of each frame (T, B), 0 where every state is impossible."""
    m = lb_tm.amax(-1)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _recentre(x: torch.Tensor, inc: torch.Tensor) -> None:
    """Subtract each row's max from ``x`` (B, K) in place and record it in ``inc`` (B, 1).

    Scores are only compared or normalised within one frame, so a per-frame offset changes
    nothing, but it keeps float32 scores near zero, where their round-off is smallest; the
    offsets are summed in float64. A row of -inf (no valid path) records -1e30, not -inf, so
    no NaN appears; its log-likelihood is -inf all the same."""
    torch.amax(x, -1, keepdim=True, out=inc)
    inc.clamp_(min=-1e30)
    x.sub_(inc)


class _ForwardPass(NamedTuple):
    """Result of :func:`_semiring_forward`, all time-major. The true forward score is
    ``alpha + offset`` (offset (T, B) float64); ``em`` (T, B, K) are the emissions relative to
    each frame's best state, as the recursion used them, and ``inc`` (T, B, 1) the maxima
    subtracted when re-centring each frame. Without history (``lengths`` given) ``alpha`` is
    (B, K), each sequence's scores at its last frame, and ``offset`` (B,) their offsets."""

    alpha: torch.Tensor
    offset: torch.Tensor
    inc: torch.Tensor
    em: torch.Tensor


def _semiring_forward(
    semiring,
    lb_tm: torch.Tensor,
    log_pi: torch.Tensor,
    trans: Transitions,
    every: Optional[int] = None,
    lengths: Optional[torch.Tensor] = None,
) -> _ForwardPass:
    """The forward recursion in a semiring (log forward probabilities for LogSemiring,
    Viterbi scores for MaxSemiring). ``lb_tm`` (T, B, K) time-major emissions.

    With ``lengths`` (B,) only each sequence's last frame is kept (a log-likelihood needs no
    more): two alternating frame buffers instead of a (T, B, K) table.

    Each frame's scores are re-centred (their max subtracted, after emissions relative to the
    frame's best state): only differences within a frame matter to any result, and scores near
    zero keep float32 round-off small; the offsets are kept in float64."""
    acc_dtype = _accumulation_dtype(lb_tm)
    if acc_dtype != lb_tm.dtype:
        lb_tm, log_pi, trans = lb_tm.to(acc_dtype), log_pi.to(acc_dtype), trans.to(acc_dtype)
    T, B, K = lb_tm.shape
    # sums (and their posteriors) need every frame re-centred; max decisions tolerate drift
    # over a few frames, and the Viterbi score is re-summed along the path anyway
    if every is None:
        every = 1 if semiring is LogSemiring else 8
    history = lengths is None
    kernels = _kernels(lb_tm) if trans.banded else None
    if kernels is not None and (not history or semiring is MaxSemiring):
        return _banded_forward_compiled(kernels, semiring, lb_tm, log_pi, trans, lengths)
    lb_tm = lb_tm.contiguous()
    inc = lb_tm.new_zeros(T, B, 1)
    m = _frame_max(lb_tm)
    em_all = lb_tm - m.unsqueeze(-1)
    incl, em = inc.unbind(0), em_all.unbind(0)
    # frame buffers, each padded by W - 1 slots of -inf for the banded windows
    W, hi = (trans.width, trans.hi) if trans.banded else (1, 0)
    buf = lb_tm.new_full((T if history else 2, B, K + W - 1), NEG_INF)
    slots = buf.unbind(0)
    al = [x[:, hi : hi + K] for x in slots]
    torch.add(log_pi, em[0], out=al[0])
    # sequences ending at each frame (history-free mode keeps their last scores)
    ends = {}
    if not history:
        final = lb_tm.new_empty(B, K)
        for b, n in enumerate(lengths.tolist()):
            ends.setdefault(n - 1, []).append(b)
        ends = {t: torch.tensor(b, device=lb_tm.device) for t, b in ends.items()}

    def keep(t, cur):
        idx = ends.get(t)
        if idx is not None:
            final.index_copy_(0, idx, cur.index_select(0, idx))

    if not history:
        keep(0, al[0])
    n_slots = len(slots)
    # a banded frame is a few small operations: one thread; a dense one reduces (B, K, K)
    # scores, large enough to share out
    with _one_thread(buf) if trans.banded else contextlib.nullcontext():
        if trans.banded:
            # the W predecessors of every state, as one ready-made (W, B, K) view per slot
            # (slicing inside the loop costs as much as the arithmetic): a frame is one
            # addition of the band, W - 1 binary pluses and one addition of the emissions
            st = buf.stride(1)
            win = [x.as_strided((W, B, K), (1, st, 1), x.storage_offset()) for x in slots]
            band = trans.band_dst.to(buf.dtype).permute(2, 0, 1).contiguous()  # (W, 1|B, K)
            scratch = buf.new_empty(W, B, K)
            cols = scratch.unbind(0)
            acc = buf.new_empty(B, K)
            plus = semiring.plus
            for t in range(1, T):
                cur = al[t % n_slots]
                torch.add(win[(t - 1) % n_slots], band, out=scratch)
                if W == 1:
                    torch.add(cols[0], em[t], out=cur)
                else:
                    plus(cols[0], cols[1], out=acc if W > 2 else cur)
                    for d in range(2, W):
                        plus(acc, cols[d], out=acc if d < W - 1 else cur)
                    cur.add_(em[t])
                if t % every == 0:
                    _recentre(cur, incl[t])
                if not history:
                    keep(t, cur)
        else:
            # dense: every (source -> state) score, reduced over sources
            gather, reduce = trans.gather_predecessors, semiring.reduce
            for t in range(1, T):
                cur = al[t % n_slots]
                torch.add(reduce(gather(al[(t - 1) % n_slots]), -1), em[t], out=cur)
                if t % every == 0:
                    _recentre(cur, incl[t])
                if not history:
                    keep(t, cur)
    offset = (inc.squeeze(-1).double() + m.double()).cumsum(0)
    if not history:
        ar = torch.arange(B, device=lb_tm.device)
        return _ForwardPass(final, offset[lengths - 1, ar], inc, em_all)
    return _ForwardPass(buf[:, :, hi : hi + K], offset, inc, em_all)


def _banded_forward_compiled(kernels, semiring, lb_tm, log_pi, trans, lengths):
    """:func:`_semiring_forward` over a band by the compiled CPU kernel, for a log-likelihood
    (``lengths`` given: last frames only) or Viterbi scores (every frame). The result's
    ``offset`` is already cumulative; ``inc`` and ``em`` are not produced (None)."""
    T, B, K = lb_tm.shape
    history = lengths is None
    L = torch.full((B,), T, dtype=torch.long) if history else lengths
    alpha = lb_tm.new_empty(T if history else 2, B, K)
    offset = torch.empty(T, B, dtype=torch.float64)
    final = lb_tm.new_empty(B, K)
    band_t = trans.band_dst.to(lb_tm.dtype).permute(0, 2, 1)  # (1|B, W, K)
    # a term this far below the largest leaves a float log-sum unchanged
    cut = -20.0 if lb_tm.dtype == torch.float32 else -40.0
    with _KERNEL_LOCK:
        kernels.banded_forward(
            _np(lb_tm.transpose(0, 1)),
            _np(log_pi.expand(B, K)),
            _np(band_t),
            trans.hi,
            _np(L),
            semiring is MaxSemiring,
            cut,
            alpha.numpy(),
            offset.numpy(),
            final.numpy(),
        )
    if history:
        return _ForwardPass(alpha, offset, None, None)
    ar = torch.arange(B)
    return _ForwardPass(final, offset[lengths - 1, ar], None, None)


def _banded_posteriors_compiled(kernels, lb_tm, log_pi, trans, lengths):
    """:func:`_exact_posteriors` over a band by the compiled CPU kernels: the forward pass
    keeps every frame, the backward pass writes the posteriors and band counts directly."""
    out_dtype = lb_tm.dtype
    acc_dtype = _accumulation_dtype(lb_tm)
    if acc_dtype != out_dtype:
        lb_tm, log_pi, trans = lb_tm.to(acc_dtype), log_pi.to(acc_dtype), trans.to(acc_dtype)
    T, B, K = lb_tm.shape
    fwd = _banded_forward_compiled(kernels, LogSemiring, lb_tm, log_pi, trans, None)
    ar = torch.arange(B)
    logZ = torch.logsumexp(fwd.alpha[lengths - 1, ar], -1).double() + fwd.offset[lengths - 1, ar]
    gamma = lb_tm.new_zeros(T, B, K)
    xi = lb_tm.new_zeros(B, K, trans.width)
    cut = -20.0 if lb_tm.dtype == torch.float32 else -40.0
    with _KERNEL_LOCK:
        kernels.banded_backward(
            _np(lb_tm.transpose(0, 1)),
            _np(trans.band_src.to(lb_tm.dtype)),
            trans.lo,
            _np(lengths),
            fwd.alpha.numpy(),
            fwd.offset.numpy(),
            cut,
            gamma.numpy(),
            xi.numpy(),
        )
    xi = trans.band_to_dense(xi)
    return logZ.to(out_dtype), gamma.to(out_dtype), xi.to(out_dtype)


def _log_backward(fwd: _ForwardPass, trans: Transitions, lengths: torch.Tensor) -> torch.Tensor:
    """Exact log beta, scaled by the forward pass's offsets (Rabiner's scaling in log form).

    Returns ``beta_s`` (T, B, K) with ``beta = beta_s + log Z - offset``: then
    ``alpha_s + beta_s = log p(z_t | x)`` directly, and scores of states that matter stay
    near zero, whatever the other states do."""
    em_all = fwd.em
    T, B, K = em_all.shape
    trans = trans.to(em_all.dtype) if trans.log_A.dtype != em_all.dtype else trans
    ar = torch.arange(B, device=em_all.device)
    last = torch.logsumexp(fwd.alpha[lengths - 1, ar], -1)
    last = torch.where(torch.isfinite(last), last, torch.zeros_like(last))
    beta = (-last).view(1, B, 1).expand(T, B, K).contiguous()
    t_idx = torch.arange(T, device=em_all.device)
    active = (t_idx.unsqueeze(1) < (lengths - 1).unsqueeze(0)).unsqueeze(-1)  # (T, B, 1)
    # beta_s[t] = logsumexp_j(log_A[i, j] + em[t+1, j] + beta_s[t+1, j]) - inc[t+1]
    bl, em, al, il = beta.unbind(0), em_all.unbind(0), active.unbind(0), fwd.inc.unbind(0)
    if trans.banded:
        W, lo = trans.width, trans.lo
        scratch = em_all.new_full((B, K + W - 1), NEG_INF)
        sv = scratch[:, -lo : -lo + K]
        bands = [trans.band_src[..., d].contiguous() for d in range(W)]
        for t in range(T - 2, -1, -1):
            torch.add(em[t + 1], bl[t + 1], out=sv)
            acc = scratch[:, 0:K] + bands[0]
            for d in range(1, W):
                acc = torch.logaddexp(acc, scratch[:, d : d + K] + bands[d])
            bl[t].copy_(torch.where(al[t], acc - il[t + 1], bl[t]))
    else:
        gather = trans.gather_successors
        for t in range(T - 2, -1, -1):
            bt = torch.logsumexp(gather(em[t + 1] + bl[t + 1]), dim=-1)
            bl[t].copy_(torch.where(al[t], bt - il[t + 1], bl[t]))
    return beta


def _log_total(fwd: _ForwardPass, lengths: torch.Tensor) -> torch.Tensor:
    """Log-likelihood (B,) from a forward pass: logsumexp of alpha at ``L - 1``, in float64."""
    if fwd.alpha.dim() == 2:  # history-free pass: last frames only
        return torch.logsumexp(fwd.alpha, dim=-1).double() + fwd.offset
    B = fwd.alpha.shape[1]
    ar = torch.arange(B, device=fwd.alpha.device)
    return (
        torch.logsumexp(fwd.alpha[lengths - 1, ar], dim=-1).double() + fwd.offset[lengths - 1, ar]
    )


def _exact_posteriors(lb_tm, log_pi, trans, lengths):
    """Exact log-space forward-backward. Returns (logZ (B,), gamma (T,B,K), xi (B,K,K))."""
    out_dtype = lb_tm.dtype
    T, B, K = lb_tm.shape
    kernels = _kernels(lb_tm) if trans.banded else None
    if kernels is not None:
        return _banded_posteriors_compiled(kernels, lb_tm, log_pi, trans, lengths)
    lb_tm = lb_tm.contiguous()
    fwd = _semiring_forward(LogSemiring, lb_tm, log_pi, trans)
    trans = trans.to(fwd.alpha.dtype) if fwd.alpha.dtype != out_dtype else trans
    beta = _log_backward(fwd, trans, lengths)
    alpha, em = fwd.alpha, fwd.em
    logZ64 = _log_total(fwd, lengths)
    ok = torch.isfinite(logZ64)
    mask = _time_mask(lengths, T) & ok.unsqueeze(0)
    gamma = torch.where(mask.unsqueeze(-1), (alpha + beta).exp(), 0.0)
    # expected transition counts, in chunks of frames to bound memory:
    # xi_t(i, j) = exp(alpha_s[t, i] + log_A[i, j] + em[t+1, j] + beta_s[t+1, j] - inc[t+1])
    W = K if not trans.banded else trans.width
    xi = alpha.new_zeros(B, K, W)
    chunk = max(1, min(T - 1, (1 << 22) // max(1, B * K * W))) if T > 1 else 1
    v = em + beta
    step = fwd.inc.squeeze(-1)
    for t0 in range(0, T - 1, chunk):
        t1 = min(T - 1, t0 + chunk)
        s = trans.gather_successors(v[t0 + 1 : t1 + 1]) + alpha[t0:t1].unsqueeze(-1)
        s = s - step[t0 + 1 : t1 + 1].view(t1 - t0, B, 1, 1)
        m = mask[t0 + 1 : t1 + 1].view(t1 - t0, B, 1, 1)
        xi += torch.where(m, s.exp(), 0.0).sum(0)
    if trans.banded:
        xi = trans.band_to_dense(xi)
    return logZ64.to(out_dtype), gamma.to(out_dtype), xi.to(out_dtype)


# ------------------------------------------------------------------------------------------
# fast rescaled recursion (log semiring, dense transitions)


def _end_frames(lengths: torch.Tensor) -> dict:
    """``{t: indices of the sequences whose last frame is t}`` (a history-free recursion keeps
    each sequence's last frame as it passes)."""
    ends: dict = {}
    for b, n in enumerate(lengths.tolist()):
        ends.setdefault(n - 1, []).append(b)
    return {t: torch.tensor(b, device=lengths.device) for t, b in ends.items()}


def _shifted_emissions(lb_tm: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Emission likelihoods relative to each frame's best state: ``exp(lb - m)`` (T, B, K) and
    the shift ``m`` (T, B, 1) (0 on frames where every state is impossible).

    Emissions below ``EMISSION_FLOOR`` of the frame's best state are set to exactly zero
    (clamped before exp, zeroed after it, each in place): in float32 they would be denormals
    (7-30x slower arithmetic on x86; exp(-inf) is a slow path too), and in float64 their
    products with small forward probabilities are. With transitions that have no zero entry
    (the only ones this recursion takes) every state receives at least ``min A / max A`` of
    the frame's mass, so a dropped term changes a frame's total by less than
    ``EMISSION_FLOOR * max A / min A`` relatively: far below float64 round-off."""
    m = lb_tm.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    floor = max(EMISSION_FLOOR, math.log(torch.finfo(lb_tm.dtype).tiny) + 1.0)
    bs = torch.sub(lb_tm, m).clamp_(min=floor).exp_()
    torch.nn.functional.threshold_(bs, 1.5 * math.exp(floor), 0.0)
    return bs, m


class _ScaledForward(NamedTuple):
    """Result of :func:`_scaled_forward`: ``alpha`` (T, B, K) rescaled forward probabilities
    (None without history); ``log_c`` (T, B) the log scale of each frame, emission shift
    included, so that ``log p(x) = sum_t log_c``; ``bs`` (T, B, K) the shifted emission
    likelihoods (1 on padding); ``c`` (T, B, 1) the scales (1 between normalisations);
    ``underflow`` (B,) sequences to recompute exactly; ``A`` (1|B, K, K) the transition
    probabilities; ``rest`` (B,) the mass left at each sequence's last frame."""

    alpha: Optional[torch.Tensor]
    log_c: torch.Tensor
    bs: torch.Tensor
    c: torch.Tensor
    underflow: torch.Tensor
    A: torch.Tensor
    rest: torch.Tensor


def _scaled_forward(lb_tm, log_pi, log_A, lengths, history: bool = True) -> _ScaledForward:
    """Rabiner-scaled forward in probability space (matrix products). Without ``history``
    only two frame buffers are kept (a log-likelihood needs no more). On CPU the compiled
    kernel runs it (every frame normalised, each sequence stopping at its length)."""
    T, B, K = lb_tm.shape
    mask = _time_mask(lengths, T)  # (T, B)
    bs, m = _shifted_emissions(lb_tm)
    kernels = _kernels(lb_tm)
    if kernels is not None:
        A = log_A.exp().contiguous()
        alpha = lb_tm.new_empty(T if history else 2, B, K)
        c = lb_tm.new_empty(T, B)
        flags = torch.zeros(B, dtype=torch.uint8)
        tiny = torch.finfo(lb_tm.dtype).tiny ** 0.5
        pi = log_pi.exp().expand(B, K)
        with _KERNEL_LOCK:
            kernels.scaled_forward(
                _np(bs),
                _np(pi),
                _np(A),
                _np(lengths),
                alpha.numpy(),
                c.numpy(),
                tiny,
                flags.numpy(),
            )
        log_c = torch.where(mask, c.log() + m.squeeze(-1), torch.zeros_like(c))
        return _ScaledForward(
            alpha if history else None, log_c, bs, c.unsqueeze(-1), flags.bool(), A, c.new_ones(B)
        )
    if bool((lengths < T).any()):
        bs = torch.where(mask.unsqueeze(-1), bs, torch.ones_like(bs))  # padding: neutral frames
    A = log_A.exp()
    shared = A.shape[0] == 1
    A0 = A[0]
    alpha = lb_tm.new_empty(T if history else 2, B, K)
    # the scale c_t may be any positive number as long as the backward pass uses the same:
    # normalising every NORMALISE_EVERY frames (c_t = 1 in between) halves the work a frame
    c = lb_tm.new_ones(T, B, 1)
    al, cl, bl = alpha.unbind(0), c.unbind(0), bs.unbind(0)
    n_slots = len(al)
    a = log_pi.exp() * bs[0]
    torch.sum(a, -1, keepdim=True, out=cl[0])
    torch.div(a, cl[0], out=al[0])
    # what the last real frame of each sequence still holds (1 when it was normalised)
    rest = lb_tm.new_ones(B)
    ends = {} if history else _end_frames(lengths)

    def keep(t, cur):
        idx = ends.get(t)
        if idx is not None:
            rest.index_copy_(0, idx, cur.index_select(0, idx).sum(-1))

    keep(0, al[0])
    with _one_thread(lb_tm):
        for t in range(1, T):
            prev, cur = al[(t - 1) % n_slots], al[t % n_slots]
            if shared:
                torch.mm(prev, A0, out=cur)
            else:
                cur.copy_(torch.bmm(prev.unsqueeze(1), A).squeeze(1))
            cur.mul_(bl[t])
            if t % NORMALISE_EVERY == 0:
                torch.sum(cur, -1, keepdim=True, out=cl[t])
                cur.div_(cl[t])
            if ends:
                keep(t, cur)
    ar = torch.arange(B, device=lb_tm.device)
    if history:
        rest = alpha[lengths - 1, ar].sum(-1)  # (B,)
    c2 = c.squeeze(-1)
    tiny = torch.finfo(lb_tm.dtype).tiny ** 0.5
    good = (c2 > tiny) | ~mask  # NaN compares False
    underflow = ~good.all(0) | ~(rest > tiny)
    log_c = torch.where(mask, c2.log() + m.squeeze(-1), torch.zeros_like(c2))
    log_c[lengths - 1, ar] += rest.log()
    return _ScaledForward(alpha if history else None, log_c, bs, c, underflow, A, rest)


def _scaled_posteriors(lb_tm, log_pi, log_A, lengths):
    T, B, K = lb_tm.shape
    alpha, log_c, bs, c, underflow, A, rest = _scaled_forward(lb_tm, log_pi, log_A, lengths)
    logZ = log_c.double().sum(0).to(log_c.dtype)
    kernels = _kernels(lb_tm)
    if kernels is not None:  # compiled backward: posteriors and transition counts directly
        gamma = torch.empty_like(alpha)
        xi = alpha.new_empty(B, K, K)
        At = A.transpose(1, 2).contiguous()
        with _KERNEL_LOCK:
            kernels.scaled_backward(
                _np(bs),
                _np(A),
                _np(At),
                _np(lengths),
                alpha.numpy(),
                _np(c.squeeze(-1)),
                gamma.numpy(),
                xi.numpy(),
            )
        return logZ, gamma, xi, underflow
    mask = _time_mask(lengths, T)
    shared = A.shape[0] == 1
    At = A[0].t().contiguous()
    # p(x) = prod(c) * rest: starting beta at 1 / rest makes alpha * beta the posteriors
    inv_rest = (1.0 / rest).view(B, 1)
    beta = lb_tm.new_empty(T, B, K)
    beta[T - 1] = inv_rest
    # V_t = b_t * beta_t / c_t, the weight of arriving in each state at frame t (c_t is 1
    # except on the normalised frames)
    V = lb_tm.new_empty(T, B, K)
    betl, Vl, bsl, cl = beta.unbind(0), V.unbind(0), bs.unbind(0), c.unbind(0)
    padded = bool((lengths < T).any())
    if padded:
        t_idx = torch.arange(T, device=lb_tm.device)
        reset = (t_idx.unsqueeze(1) >= (lengths - 1).unsqueeze(0)).unsqueeze(-1)
        rl = reset.unbind(0)
    with _one_thread(lb_tm):
        for t in range(T - 2, -1, -1):
            v = Vl[t + 1]
            torch.mul(bsl[t + 1], betl[t + 1], out=v)
            if (t + 1) % NORMALISE_EVERY == 0:
                v.div_(cl[t + 1])
            if shared:
                torch.mm(v, At, out=betl[t])
            else:
                betl[t].copy_(torch.bmm(A, v.unsqueeze(-1)).squeeze(-1))
            if padded:  # beta is 1 / rest at and after each sequence's last frame
                torch.where(rl[t], inv_rest, betl[t], out=betl[t])
    Vm = torch.where(mask[1:].unsqueeze(-1), V[1:], 0.0) if padded else V[1:]  # (T-1, B, K)
    xi = torch.bmm(alpha[:-1].permute(1, 2, 0), Vm.transpose(0, 1)) * A  # (B, K, K)
    gamma = alpha.mul_(beta)  # alpha is not needed any more: the posteriors take its place
    if padded:
        gamma = torch.where(mask.unsqueeze(-1), gamma, 0.0)
    return logZ, gamma, xi, underflow


# ------------------------------------------------------------------------------------------
# shared drivers


def _use_scaled(trans: Transitions) -> bool:
    """The rescaled recursion keeps one scale per frame, so a state whose mass drifts far
    below the others' (possible when moves are forbidden: chains, sparse graphs) could be lost
    without any sign. Every state feeds every other in a matrix with no zero entry, which
    bounds that drift; anything else takes the exact log-space recursion."""
    if trans.banded:
        return False
    if trans.scaled_ok is None:
        trans.scaled_ok = bool(torch.isfinite(trans.log_A).all())
    return trans.scaled_ok


def _posteriors_tm(lb_tm, log_pi, trans, lengths):
    """Posteriors in time-major layout: (logZ (B,), gamma (T,B,K), xi (B,K,K)). ``lb_tm``
    may be a time-major view of batch-major emissions (the compiled kernels read those)."""
    if not _use_scaled(trans):
        return _exact_posteriors(lb_tm, log_pi, trans, lengths)
    lb_tm = lb_tm.contiguous()
    logZ, gamma, xi, underflow = _scaled_posteriors(lb_tm, log_pi, trans.log_A, lengths)
    if underflow.any():
        idx = torch.nonzero(underflow).squeeze(1)
        sub = Transitions(trans.log_A if trans.log_A.shape[0] == 1 else trans.log_A[idx], False)
        z2, g2, x2 = _exact_posteriors(lb_tm[:, idx], log_pi[idx], sub, lengths[idx])
        logZ = logZ.index_copy(0, idx, z2)
        gamma = gamma.index_copy(1, idx, g2)
        xi = xi.index_copy(0, idx, x2)
    bad = ~torch.isfinite(logZ)
    if bad.any():
        gamma = torch.where(bad.view(1, -1, 1), 0.0, gamma)
        xi = torch.where(bad.view(-1, 1, 1), 0.0, xi)
        logZ = torch.where(bad, torch.full_like(logZ, NEG_INF), logZ)
    return logZ, gamma, xi


class _HMMLogLikelihood(torch.autograd.Function):
    """log Z with an explicit backward: d log Z / d log_b = posteriors, d / d log_A = expected
    transition counts, d / d log_pi = first-frame posteriors. Memory O(B*T*K)."""

    @staticmethod
    def forward(ctx, log_emissions, log_initial, log_transitions, lengths, topology):
        lb_tm = log_emissions.transpose(0, 1).contiguous()
        B = log_emissions.shape[0]
        lpi = log_initial.expand(B, -1) if log_initial.dim() == 1 else log_initial
        lA = log_transitions if log_transitions.dim() == 3 else log_transitions.unsqueeze(0)
        trans = make_transitions(lA, topology)
        ctx.save_for_backward(lb_tm, lpi, lA, lengths)
        ctx.topology = topology
        ctx.pi_shape = log_initial.shape
        ctx.A_shape = log_transitions.shape
        if not any(ctx.needs_input_grad[:3]):
            return _log_likelihood_tm(lb_tm, lpi, trans, lengths)
        logZ, gamma, xi = _posteriors_tm(lb_tm, lpi, trans, lengths)
        ctx.gamma, ctx.xi = gamma, xi
        return logZ

    @staticmethod
    def backward(ctx, grad):
        gamma, xi = ctx.gamma, ctx.xi
        g = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
        g_b = (gamma * g.view(1, -1, 1)).transpose(0, 1)
        g_pi = gamma[0] * g.view(-1, 1)
        if len(ctx.pi_shape) == 1:
            g_pi = g_pi.sum(0)
        g_A = xi * g.view(-1, 1, 1)
        if len(ctx.A_shape) == 2:
            g_A = g_A.sum(0)
        return g_b, g_pi, g_A, None, None


def _log_likelihood_tm(lb_tm, log_pi, trans, lengths):
    if not _use_scaled(trans):
        # a likelihood alone tolerates a few frames of drift between re-centrings
        fwd = _semiring_forward(LogSemiring, lb_tm, log_pi, trans, every=8, lengths=lengths)
        return _log_total(fwd, lengths).to(lb_tm.dtype)
    lb_tm = lb_tm.contiguous()
    sf = _scaled_forward(lb_tm, log_pi, trans.log_A, lengths, history=False)
    log_c, underflow = sf.log_c, sf.underflow
    logZ = log_c.double().sum(0).to(log_c.dtype)
    if underflow.any():
        idx = torch.nonzero(underflow).squeeze(1)
        sub = Transitions(trans.log_A if trans.log_A.shape[0] == 1 else trans.log_A[idx], False)
        fwd = _semiring_forward(LogSemiring, lb_tm[:, idx], log_pi[idx], sub, lengths=lengths[idx])
        logZ = logZ.index_copy(0, idx, _log_total(fwd, lengths[idx]).to(logZ.dtype))
    return torch.where(torch.isfinite(logZ), logZ, torch.full_like(logZ, NEG_INF))


# ------------------------------------------------------------------------------------------
# public API


def _eager(fn):
    """Keep torch.compile (dynamo) out of the engine: its time loops would be unrolled frame by
    frame. A compiled model graph-breaks here and compiles everything around the engine."""
    compiler = getattr(torch, "compiler", None)
    disable = getattr(compiler, "disable", None)
    return disable(fn) if disable is not None else fn


@_eager
def log_likelihood(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    topology: str = "auto",
    check_stochastic: bool = True,
) -> torch.Tensor:
    """Log-likelihood ``log p(x_0..x_{L-1})`` of each sequence, (B,).

    Differentiable with respect to all three log-probability inputs through an explicit
    backward pass (the posteriors), in O(B*T*K) memory. -inf for a sequence that no state path
    can produce. ``topology``: "auto" (banded fast path when the matrix is banded), "dense" or
    "banded". ``check_stochastic``: verify that rows of ``exp(log_transitions)`` and
    ``exp(log_initial)`` sum to one (pass False for unnormalised scores).
    """
    lb, lpi, lA, lengths = check_inputs(
        log_emissions, log_initial, log_transitions, lengths, check_stochastic=check_stochastic
    )
    if not (
        torch.is_grad_enabled()
        and any(t.requires_grad for t in (log_emissions, log_initial, log_transitions))
    ):
        # no gradient wanted: the forward pass alone (a time-major view: the compiled
        # kernels read the emissions batch-major, the torch paths make it contiguous)
        lb_tm = lb.transpose(0, 1)
        return _log_likelihood_tm(lb_tm, lpi, make_transitions(lA, topology), lengths)
    del lpi, lA  # the autograd function broadcasts the originals, so gradients keep their shapes
    return _HMMLogLikelihood.apply(lb, log_initial, log_transitions, lengths, topology)


@_eager
def forward(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    topology: str = "auto",
    check_stochastic: bool = True,
) -> ForwardResult:
    """The forward pass: ``log_alpha`` (B, T, K) and ``log_likelihood`` (B,). Exact log space.

    Not differentiable through an explicit backward: use :func:`log_likelihood` for gradients.
    """
    lb, lpi, trans, lengths = _prepare(
        log_emissions, log_initial, log_transitions, lengths, topology, check_stochastic
    )
    lb_tm = lb.transpose(0, 1).contiguous()
    with torch.no_grad():
        fwd = _semiring_forward(LogSemiring, lb_tm, lpi, trans)
        logZ = _log_total(fwd, lengths).to(lb.dtype)
        alpha = (fwd.alpha.double() + fwd.offset.unsqueeze(-1)).to(lb.dtype)
        mask = _time_mask(lengths, lb.shape[1]).unsqueeze(-1)
        alpha = torch.where(mask, alpha, NEG_INF)
    return ForwardResult(alpha.transpose(0, 1), logZ)


@_eager
def backward(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    topology: str = "auto",
    check_stochastic: bool = True,
) -> torch.Tensor:
    """The backward pass: ``log_beta`` (B, T, K) = ``log p(x_{t+1}..x_{L-1} | z_t = k)``;
    0 at the last real frame, -inf on padded frames."""
    lb, lpi, trans, lengths = _prepare(
        log_emissions, log_initial, log_transitions, lengths, topology, check_stochastic
    )
    lb_tm = lb.transpose(0, 1).contiguous()
    with torch.no_grad():
        fwd = _semiring_forward(LogSemiring, lb_tm, lpi, trans)
        beta_s = _log_backward(fwd, trans, lengths)
        z = _log_total(fwd, lengths)
        z = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
        beta = (beta_s.double() + (z.unsqueeze(0) - fwd.offset).unsqueeze(-1)).to(lb.dtype)
        mask = _time_mask(lengths, lb.shape[1]).unsqueeze(-1)
        beta = torch.where(mask, beta, NEG_INF)
    return beta.transpose(0, 1)


@_eager
def posteriors(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    topology: str = "auto",
    check_stochastic: bool = True,
) -> PosteriorResult:
    """State posteriors (B, T, K), expected transition counts (B, K, K) summed over time, and
    the log-likelihood (B,): the E-step of Baum-Welch. Sequences with no valid path get
    ``log_likelihood = -inf`` and all-zero posteriors (and a warning)."""
    lb, lpi, trans, lengths = _prepare(
        log_emissions, log_initial, log_transitions, lengths, topology, check_stochastic
    )
    with torch.no_grad():
        logZ, gamma, xi = _posteriors_tm(lb.transpose(0, 1), lpi, trans, lengths)
    _warn_impossible(logZ, "posteriors")
    return PosteriorResult(logZ, gamma.transpose(0, 1), xi)


@_eager
def viterbi(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    topology: str = "auto",
    check_stochastic: bool = True,
) -> ViterbiResult:
    """Most likely state path of each sequence (max semiring of the same recursion).

    Returns ``path`` (B, T) long, -1 on padded frames, and ``score`` (B,), the path's log joint
    probability. A sequence that no path can produce gets score -inf, a path of -1 and a
    warning saying there is no valid path. No back-pointer table is stored: back-tracking
    recomputes the best predecessor of the chosen state at each frame (memory O(B*T*K) for the
    scores only).
    """
    lb, lpi, trans, lengths = _prepare(
        log_emissions, log_initial, log_transitions, lengths, topology, check_stochastic
    )
    B, T, K = lb.shape
    lb_tm = lb.transpose(0, 1)  # a view, as in log_likelihood
    # (the kernel stores each back-pointer as a band slot in int8)
    kernels = _kernels(lb) if trans.banded and trans.width <= 127 else None
    if kernels is not None:  # compiled forward and back-tracking over the band
        with torch.no_grad():
            path = torch.empty(B, T, dtype=torch.long)
            ok = torch.empty(B, dtype=torch.uint8)
            band_t = trans.band_dst.to(lb.dtype).permute(0, 2, 1)  # (1|B, W, K)
            with _KERNEL_LOCK:
                kernels.banded_viterbi(
                    _np(lb),
                    _np(lpi.expand(B, K)),
                    _np(band_t),
                    trans.hi,
                    _np(lengths),
                    path.numpy(),
                    ok.numpy(),
                )
            ok = ok.bool()
            score = _path_score(lb_tm, lpi, trans.log_A, path.t(), lengths)
            score = torch.where(ok, score, torch.full_like(score, NEG_INF))
        _warn_impossible(score, "viterbi")
        return ViterbiResult(path, score)
    with torch.no_grad():
        # per-frame offsets of the scores change no decision: they are dropped
        delta = _semiring_forward(MaxSemiring, lb_tm, lpi, trans).alpha
        ar = torch.arange(B, device=lb.device)
        score, state = delta[lengths - 1, ar].max(-1)
        # back-tracking recomputes each back-pointer for the one chosen state (O(B*K) a frame)
        # instead of storing a (T, B, K) table: the forward pass then needs only max values
        t_idx = torch.arange(T, device=lb.device)
        beyond = (t_idx.unsqueeze(1) >= lengths.unsqueeze(0)).unsqueeze(-1)  # (T, B, 1)
        dl = delta.unbind(0)
        cur = state
        steps = [cur]  # states from the last frame back to the first
        if trans.banded:
            # W is small: every back-pointer in one vectorised pass, then a chain of gathers.
            # Frames past a sequence's end point to its best final state, so one loop serves
            # every length.
            pred = trans.banded_backpointers(delta)
            pred = torch.where(beyond, state.view(1, B, 1).to(pred.dtype), pred).unbind(0)
            for t in range(T - 1, 0, -1):
                cur = pred[t].gather(1, cur.unsqueeze(1)).squeeze(1).long()
                steps.append(cur)
        else:
            # dense: recompute the best predecessor of the one chosen state (O(B*K) a frame)
            # instead of storing a (T, B, K) table, so the forward pass needs only max values
            padded = bool((lengths < T).any())
            bl = beyond.squeeze(-1).unbind(0)
            for t in range(T - 1, 0, -1):
                cur = trans.best_predecessor(dl[t - 1], cur)
                if padded:  # frames past a sequence's end lead back to its best final state
                    cur = torch.where(bl[t], state, cur)
                steps.append(cur)
        path = torch.stack(steps[::-1])
        path = torch.where(beyond.squeeze(-1), -1, path)
        ok = torch.isfinite(score)
        path = torch.where(ok.unsqueeze(0), path, -1)
        # re-score the path with pairwise float64 sums: the recursion's running sum drifts in
        # float32 over 1e5 frames
        score = torch.where(ok, _path_score(lb_tm, lpi, trans.log_A, path, lengths), score)
    _warn_impossible(score, "viterbi")
    return ViterbiResult(path.t().contiguous(), score)


def _path_score(lb_tm, log_pi, log_A, path_tm, lengths):
    """Log joint probability of given state paths (T, B) (-1 on padding), summed in float64."""
    T, B, K = lb_tm.shape
    mask = path_tm >= 0
    z = path_tm.clamp(min=0)
    em = lb_tm.gather(2, z.unsqueeze(-1)).squeeze(-1)
    A = log_A.expand(B, K, K)
    b_idx = torch.arange(B, device=z.device).expand(T - 1, B)
    tr = A[b_idx, z[:-1], z[1:]]
    total = torch.where(mask, em, 0).double().sum(0)
    total = total + torch.where(mask[1:], tr, 0).double().sum(0)
    total = total + log_pi.gather(1, z[0].unsqueeze(1)).squeeze(1).double()
    return total.to(lb_tm.dtype)


@_eager
def sample_posterior(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    *,
    num_samples: int = 1,
    generator: Optional[torch.Generator] = None,
    topology: str = "auto",
    check_stochastic: bool = True,
) -> torch.Tensor:
    """Draw state paths from ``p(z | x)`` by forward filtering, backward sampling.

    Returns (num_samples, B, T) long, -1 on padded frames and for sequences with no valid path.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    lb, lpi, trans, lengths = _prepare(
        log_emissions, log_initial, log_transitions, lengths, topology, check_stochastic
    )
    B, T, K = lb.shape
    lb_tm = lb.transpose(0, 1).contiguous()
    with torch.no_grad():
        fwd = _semiring_forward(LogSemiring, lb_tm, lpi, trans)
        alpha = fwd.alpha  # per-frame offsets do not change the per-frame softmax
        logZ = _log_total(fwd, lengths)
        S = num_samples
        lA = trans.log_A.expand(B, K, K)
        t_last = lengths - 1
        out = torch.full((T, S, B), -1, dtype=torch.long, device=lb.device)
        cur = torch.zeros(S, B, dtype=torch.long, device=lb.device)
        for t in range(T - 1, -1, -1):
            logits = alpha[t].unsqueeze(0).expand(S, B, K)
            if t < T - 1:
                # column z_{t+1} of the transition matrix: log p(z_{t+1} | z_t = i)
                col = (
                    lA.unsqueeze(0)
                    .expand(S, B, K, K)
                    .gather(3, cur.clamp(min=0).view(S, B, 1, 1).expand(S, B, K, 1))
                    .squeeze(-1)
                )
                logits = torch.where((t_last > t).view(1, B, 1), logits + col, logits)
            u = torch.rand(
                logits.shape, generator=generator, dtype=logits.dtype, device=logits.device
            ).clamp_(min=1e-20)
            draw = (logits - torch.log(-torch.log(u))).argmax(-1)
            draw = torch.where((t_last >= t).view(1, B), draw, -1)
            out[t] = draw
            cur = draw
        out = torch.where(torch.isfinite(logZ).view(1, 1, B), out, -1)
    return out.permute(1, 2, 0).contiguous()


def _warn_impossible(score: torch.Tensor, what: str) -> None:
    bad = torch.nonzero(~torch.isfinite(score)).flatten().tolist()
    if bad:
        warnings.warn(
            f"{what}: no valid state path for sequence(s) {bad[:10]}"
            f"{' ...' if len(bad) > 10 else ''}: every path has probability zero under the model "
            "(log-likelihood -inf)",
            RuntimeWarning,
            stacklevel=3,
        )
