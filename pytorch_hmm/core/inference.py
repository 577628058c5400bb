"""Batched HMM inference in log space: forward, backward, posteriors, Viterbi and sampling.

Every function takes the same inputs, which is all a model has to produce:

- ``log_emissions`` (B, T, E): emission scores of B padded sequences; without
  ``emission_index``, E = K and column k is ``log p(x_t | z_t = k)``.
- ``log_initial`` (K,) or (B, K): ``log p(z_0 = k)``.
- ``log_transitions``: a :class:`~pytorch_hmm.core.transitions.Transitions` (dense or banded,
  fixed or time-varying, built by the caller from the graph's structure) or a plain matrix
  (K, K), (B, K, K) or time-varying (B, T-1, K, K) whose band is then found from its values
  (:func:`~pytorch_hmm.core.transitions.make_transitions`).
- ``lengths`` (B,) long, optional: the true length of each sequence; frames ``t >= lengths[b]``
  are padding and never read.
- ``log_final`` (K,) or (B, K), optional: a score added to the state at each sequence's last
  frame (-inf: may not end there). Default: any state may end.
- ``emission_index`` (K,) or (B, K) long, optional: state k reads column
  ``emission_index[..., k]`` of ``log_emissions`` (tied states, CTC's blank and labels), so
  the (B, T, K) emissions are never materialised by the compiled kernels.
- ``carry`` (:func:`forward`, :func:`viterbi`): continue from the previous chunk's
  ``result.carry``; a sequence split into any chunks gives the whole-sequence result.
  Time-varying transitions of a continued chunk have T moves along time (move 0 enters the
  chunk's first frame from the carry's last).
- ``on_impossible``: what a sequence that no state path can produce does: ``"warn"``,
  ``"raise"`` (:class:`NoValidPathError`) or ``"ignore"``; it always gets ``-inf``.
- ``backend``: ``"auto"``, ``"numba"`` or ``"torch"`` (:mod:`pytorch_hmm.core.backend`).

Where the forward algorithm is: one log-space recursion per backend, run in the log or max
semiring over a band (a dense matrix is the full band): :func:`_torch_forward` (torch, every
device) and ``band_forward`` (:mod:`pytorch_hmm.core._cpu_kernels`, CPU). Dense matrices with
no zero entry also have a rescaled probability-space recursion (matrix products) for
likelihoods and posteriors, :func:`_scaled_forward` (torch, normalising every
``NORMALISE_EVERY`` frames) and ``scaled_forward`` (CPU, every ``KERNEL_NORMALISE_EVERY``);
any sequence on which it would underflow is recomputed by the exact log-space recursion, so
no valid path is silently lost.

Cost: O(B*T*K*W) time for W moves per state (W = K dense) and O(B*T*K) memory; gradients of
:func:`log_likelihood` come from an explicit backward pass (the posteriors), not an autograd
tape.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch

from ..errors import HMMTypeError, HMMValueError
from .backend import cpu_kernels, kernel_call
from .semiring import LogSemiring, MaxSemiring
from .transitions import (
    NEG_INF,
    Transitions,
    band_counts_to_dense,
    band_to_dense,
    make_transitions,
)
from .validation import check_float, check_lengths, check_no_nan, check_real_frames, shape_str

KERNELS = "pytorch_hmm.core._cpu_kernels"
# float32 problems longer than this accumulate the exact recursions in float64
LONG_SEQUENCE = 4096
# frames between normalisations of the rescaled recursion (each frame's mass falls by at most
# its scale c_t; an underflow shows as a scale below sqrt(float tiny) and is recomputed): the
# torch loop normalises every 4th frame (a frame costs a matrix product and a multiply
# instead of also a sum and a divide); the compiled kernel every frame, which costs it
# nothing measurable (B=32 T=1000 K=64 float32: 12-14 ms either way) and keeps float32
# closer to float64
NORMALISE_EVERY = 4
KERNEL_NORMALISE_EVERY = 1
# the torch scaled backward re-normalises beta every this many frames on long float32 inputs
RENORMALISE_EVERY = 64
# log of the smallest emission likelihood, relative to the frame's best state, that the
# rescaled recursion keeps (about 1e-37; see _shifted_emissions)
EMISSION_FLOOR = math.log(torch.finfo(torch.float32).tiny) + 1.0


class NoValidPathError(HMMValueError):
    """Raised with ``on_impossible="raise"`` when no state path can produce a sequence."""


# ------------------------------------------------------------------------------------------
# results and carries


class ForwardCarry(NamedTuple):
    """State of a forward pass after a chunk: ``scores`` (B, K) log forward scores at each
    sequence's last frame relative to ``offset`` (B,) float64; ``frames`` (B,) frames seen."""

    scores: torch.Tensor
    offset: torch.Tensor
    frames: torch.Tensor


class ViterbiCarry(NamedTuple):
    """State of a Viterbi pass after a chunk: ``scores`` (B, K) best-path scores at each
    sequence's last frame relative to ``offset`` (B,) float64, ``frames`` (B,) frames seen,
    and per chunk so far its back-pointers ``back`` (B, T_c, K) int (the best predecessor
    state of each state at each frame; -1 on a sequence's first frame) and ``lengths`` (B,).
    """

    scores: torch.Tensor
    offset: torch.Tensor
    frames: torch.Tensor
    back: Tuple[torch.Tensor, ...]
    lengths: Tuple[torch.Tensor, ...]

    def best(self, log_final: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(state (B,), score (B,))``: the best state now and its path's log score."""
        s = self.scores if log_final is None else self.scores + log_final
        val, state = s.amax(-1), s.argmax(-1)
        return state, (val.double() + self.offset).to(s.dtype)

    def traceback(self, log_final: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The best path over every frame seen, (B, N) long (N = max frames, -1 beyond each
        sequence's frames and for sequences with no valid path)."""
        state, score = self.best(log_final)
        B = state.shape[0]
        N = int(self.frames.max()) if B else 0
        path = torch.full((B, N), -1, dtype=torch.long)
        cur = state.cpu().numpy().copy()
        pos = self.frames.cpu().numpy().copy()
        for back, lens in zip(reversed(self.back), reversed(self.lengths)):
            bk = back.cpu().numpy()
            ln = lens.cpu().numpy()
            ar = np.arange(B)
            pn = path.numpy()
            for t in range(bk.shape[1] - 1, -1, -1):
                on = t < ln
                pos = np.where(on, pos - 1, pos)
                idx = np.nonzero(on)[0]
                pn[idx, pos[idx]] = cur[idx]
                prev = bk[ar, t, np.maximum(cur, 0)]
                cur = np.where(on & (prev >= 0), prev, cur)
        ok = torch.isfinite(score).cpu()
        return torch.where(ok.unsqueeze(1), path, -1).to(self.scores.device)


class _ForwardFields(NamedTuple):
    log_alpha: torch.Tensor
    log_likelihood: torch.Tensor


class ForwardResult(_ForwardFields):
    """``log_alpha`` (B, T, K): ``log p(x_0..x_t, z_t = k)``; padded frames are -inf.
    ``log_likelihood`` (B,): ``log p(x_0..x_{L-1})`` with ``log_final`` (-inf when no state
    path is possible). ``carry`` (attribute, not a tuple field): a :class:`ForwardCarry` to
    continue from."""

    carry: Optional[ForwardCarry] = None


class _PosteriorFields(NamedTuple):
    log_likelihood: torch.Tensor
    state_posteriors: torch.Tensor
    transition_counts: torch.Tensor


class PosteriorResult(_PosteriorFields):
    """``log_likelihood`` (B,); ``state_posteriors`` (B, T, K): ``p(z_t = k | x)``, zero on
    padded frames; ``transition_counts``: ``sum_t p(z_t = i, z_{t+1} = j | x)`` (B, K, K), or
    with ``per_frame=True`` each move's counts (B, T-1, K, K). Counts come in the layout of the
    transitions given: for a banded :class:`Transitions` (B, K, W) and (B, T-1, K, W), slot d
    being the move ``i -> i + lo + d``; for a plain matrix, dense. Sequences with no valid
    path have ``log_likelihood = -inf`` and zero posteriors."""


class _ViterbiFields(NamedTuple):
    path: torch.Tensor
    score: torch.Tensor


class ViterbiResult(_ViterbiFields):
    """``path`` (B, T) long: the best state sequence, -1 on padded frames (and on every frame
    of a sequence with no valid path); ``score`` (B,): its log joint probability (-inf when
    there is no valid path). With a carry, ``path`` is the best path over this chunk's frames
    given the data so far, and ``carry`` (attribute) a :class:`ViterbiCarry` whose
    ``traceback()`` gives the whole path."""

    carry: Optional[ViterbiCarry] = None


def _with_carry(result, carry):
    result.carry = carry
    return result


# ------------------------------------------------------------------------------------------
# inputs


class _Problem:
    """Validated inputs of one engine call."""

    def __init__(
        self,
        log_emissions,
        log_initial,
        log_transitions,
        lengths,
        *,
        log_final=None,
        emission_index=None,
        topology="auto",
        check_stochastic=True,
        backend=None,
        carry=None,
        atol=1e-4,
    ):
        check_float("log_emissions", log_emissions)
        if log_emissions.dim() != 3:
            raise HMMValueError(
                f"log_emissions must have shape (B, T, K) (or (B, T, E) with emission_index), "
                f"got {shape_str(log_emissions)}"
            )
        B, T, E = log_emissions.shape
        if T == 0:
            raise HMMValueError(
                "log_emissions has T=0 frames: sequences must have at least one frame"
            )
        if E == 0:
            raise HMMValueError("log_emissions has no columns (K=0 states)")
        dev, dt = log_emissions.device, log_emissions.dtype
        if isinstance(log_transitions, Transitions):
            trans = log_transitions
        else:
            check_float("log_transitions", log_transitions)
            _same(log_transitions, "log_transitions", dt, dev)
            trans = make_transitions(log_transitions, topology)
        _same(trans.values, "log_transitions", dt, dev)
        K = trans.num_states
        # emission columns
        self.eidx = None
        if emission_index is not None:
            ei = torch.as_tensor(emission_index)
            if ei.dtype.is_floating_point or ei.dtype == torch.bool:
                raise HMMTypeError(f"emission_index must be an integer tensor, got {ei.dtype}")
            if ei.shape not in ((K,), (B, K)):
                raise HMMValueError(
                    f"emission_index must have shape (K,) or (B, K) = ({K},) or ({B}, {K}), "
                    f"got {shape_str(ei)}"
                )
            ei = ei.to(device=dev, dtype=torch.long)
            if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= E):
                raise HMMValueError(
                    f"emission_index values must lie in [0, {E}) (the columns of "
                    f"log_emissions), got values in [{int(ei.min())}, {int(ei.max())}]"
                )
            self.eidx = ei.view(-1, K)
        elif E != K:
            raise HMMValueError(
                f"log_emissions has {E} columns but the transitions have K={K} states; pass "
                "emission_index to map states to columns"
            )
        # transitions
        if trans.batch not in (1, B):
            raise HMMValueError(
                f"log_transitions has batch size {trans.batch}, expected 1 or B={B}: {trans!r}"
            )
        if trans.time_varying:
            want = T if carry is not None else T - 1
            if trans.steps != want:
                what = "T (a continued chunk)" if carry is not None else "T-1"
                raise HMMValueError(
                    f"time-varying log_transitions must have {what} = {want} moves along "
                    f"time (dim 1), got {trans.steps}: {trans!r}"
                )
        # padded frames are never read: checked and computed on with padding replaced by 0
        self.lengths = check_lengths(lengths, B, T, dev)
        log_emissions = check_real_frames("log_emissions", log_emissions, self.lengths)
        check_no_nan("log_transitions", trans.values)
        # initial scores
        if carry is None:
            self.lpi = _state_scores("log_initial", log_initial, B, K, dt, dev)
        else:
            self.lpi = None
            _check_carry(carry, B, K, dev)
        self.lf = None
        if log_final is not None:
            self.lf = _state_scores("log_final", log_final, B, K, dt, dev)
        if check_stochastic:
            _check_stochastic(trans, None if carry is not None else log_initial, atol)
        self.lb = log_emissions
        self.trans = trans
        self.B, self.T, self.K = B, T, K
        self.carry = carry
        self.kern = None
        if dt in (torch.float32, torch.float64):
            self.kern = cpu_kernels(KERNELS, dev, backend)
        self._em = None
        self._rel = None

    def emissions(self) -> torch.Tensor:
        """(B, T, K) emission scores of the states (a gathered copy with emission_index)."""
        if self._em is None:
            if self.eidx is None:
                self._em = self.lb
            else:
                B, T, _ = self.lb.shape
                idx = self.eidx.expand(B, self.K).unsqueeze(1).expand(B, T, self.K)
                self._em = self.lb.gather(2, idx)
        return self._em

    def frame_relative(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Time-major emission scores (T, B, K) for the torch recursions, and the per-frame
        shift (T, B) float64 taken out of them (None for float64 problems: no shift).

        Below float64 each frame's scores are taken relative to the frame's best state
        (exact by Sterbenz's lemma where it matters), so the recursion adds small numbers
        and the large part (|log b| ~ 1e4 for an unlikely frame) goes to the float64
        offsets: rounding ``alpha + log b`` to float32 at 1e4 would cost ~1e-3 a frame,
        which the posteriors accumulate."""
        if self._rel is None:
            em = self.emissions().transpose(0, 1)
            if em.dtype == torch.float64:
                self._rel = (em, None)
            else:
                m = em.detach().amax(-1, keepdim=True)
                m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
                self._rel = (em - m, m.squeeze(-1).double())
        return self._rel

    def eidx_np(self):
        if self.eidx is None:
            return np.arange(self.K, dtype=np.int64).reshape(1, self.K)
        return self.eidx.cpu().numpy()

    def promoted(self) -> _Problem:
        """This problem in float64 when it is a float32 one longer than LONG_SEQUENCE frames:
        the exact recursions' round-off in the scores' shape within a frame builds up over
        long sequences, so they accumulate in float64 there (results are cast back)."""
        if self.lb.dtype != torch.float32 or self.T <= LONG_SEQUENCE:
            return self
        q = object.__new__(_Problem)
        q.__dict__.update(self.__dict__)
        d = torch.float64
        q.lb = self.lb.detach().to(d)
        q.lpi = None if self.lpi is None else self.lpi.detach().to(d)
        q.lf = None if self.lf is None else self.lf.detach().to(d)
        q.trans = self.trans.to(d)
        q._em = None if self._em is None else self._em.detach().to(d)
        q._rel = None
        if self.carry is not None:
            q.carry = self.carry._replace(scores=self.carry.scores.to(d))
        return q

    def select(self, idx: torch.Tensor) -> _Problem:
        """The same problem for a sub-batch ``idx`` (the underflow fallback)."""
        sub = object.__new__(_Problem)
        sub.__dict__.update(self.__dict__)
        sub.lb = self.lb[idx]
        sub.eidx = None if self.eidx is None or self.eidx.shape[0] == 1 else self.eidx[idx]
        sub.lpi = None if self.lpi is None else self.lpi[idx]
        sub.lf = None if self.lf is None else self.lf[idx]
        sub.lengths = self.lengths[idx]
        sub.trans = self.trans.select(idx)
        sub.B = int(idx.numel())
        sub._em = None if self._em is None else self._em[idx]
        sub._rel = None
        return sub


_PROBLEM_ARGS = (
    "log_final",
    "emission_index",
    "topology",
    "check_stochastic",
    "backend",
    "carry",
)


def _problem(args: dict) -> _Problem:
    """The validated problem of a public engine function, from its arguments (``locals()``
    at its start: every public function takes the same inputs under the same names)."""
    _check_mode(args["on_impossible"])
    kw = {k: args[k] for k in _PROBLEM_ARGS if k in args}
    return _Problem(
        args["log_emissions"], args["log_initial"], args["log_transitions"], args["lengths"], **kw
    )


def _state_scores(name, x, B, K, dt, dev) -> torch.Tensor:
    """Validate per-state scores (K,) or (B, K) (``log_initial``, ``log_final``) and return
    them as a (B, K) view."""
    check_float(name, x)
    _same(x, name, dt, dev)
    if x.shape not in ((K,), (B, K)):
        raise HMMValueError(
            f"{name} must have shape (K,) or (B, K) = ({K},) or ({B}, {K}), got {shape_str(x)}"
        )
    check_no_nan(name, x)
    return x.expand(B, K)


def _same(x, name, dt, dev):
    if x.dtype != dt:
        raise HMMTypeError(f"{name} has dtype {x.dtype} but log_emissions has {dt}; use one dtype")
    if x.device != dev:
        raise HMMValueError(
            f"{name} is on {x.device} but log_emissions is on {dev}; move them to one device"
        )


def _check_carry(carry, B, K, dev):
    if not isinstance(carry, (ForwardCarry, ViterbiCarry)):
        raise HMMTypeError(
            f"carry must be the .carry of a previous forward or viterbi result, got "
            f"{type(carry).__name__}"
        )
    if carry.scores.shape != (B, K):
        raise HMMValueError(
            f"carry holds scores of shape {shape_str(carry.scores)}, but this chunk has "
            f"B={B} sequences of K={K} states"
        )
    if carry.scores.device != dev:
        raise HMMValueError(f"carry is on {carry.scores.device} but log_emissions is on {dev}")


def _check_stochastic(trans: Transitions, log_initial, atol):
    with torch.no_grad():
        s = torch.logsumexp(trans.values, dim=-1).exp()
        bad = (s - 1).abs() > atol
        if bad.any():
            i = torch.nonzero(bad)[0].tolist()
            where = f"row {i[2]}" + (f" of sequence {i[0]}" if trans.batch > 1 else "")
            if trans.time_varying:
                where += f" at move {i[1]}"
            raise HMMValueError(
                f"rows of exp(log_transitions) must sum to one: {where} sums to "
                f"{s[tuple(i)].item():.6g}. Normalise them (e.g. log_softmax) or pass "
                "check_stochastic=False for unnormalised scores"
            )
        if log_initial is not None:
            s0 = torch.logsumexp(log_initial, dim=-1).exp()
            if ((s0 - 1).abs() > atol).any():
                raise HMMValueError(
                    f"exp(log_initial) must sum to one, it sums to "
                    f"{s0.flatten()[0].item():.6g}; pass check_stochastic=False for "
                    "unnormalised scores"
                )


def _report_impossible(score: torch.Tensor, what: str, mode: str) -> None:
    if mode == "ignore":
        return
    bad = torch.nonzero(~torch.isfinite(score)).flatten().tolist()
    if not bad:
        return
    msg = (
        f"{what}: no valid state path for sequence(s) {bad[:10]}"
        f"{' ...' if len(bad) > 10 else ''}: every path has probability zero under the model "
        "(log-likelihood -inf)"
    )
    if mode == "raise":
        raise NoValidPathError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _check_mode(on_impossible: str) -> str:
    if on_impossible not in ("warn", "raise", "ignore"):
        raise HMMValueError(
            f"on_impossible must be 'warn', 'raise' or 'ignore', got {on_impossible!r}"
        )
    return on_impossible


def _np(x: torch.Tensor):
    """A numpy view of a CPU tensor for the kernels (made contiguous first)."""
    return x.detach().contiguous().numpy()


def _cut(dtype) -> float:
    # a term this far below the largest leaves a float log-sum unchanged
    return -20.0 if dtype == torch.float32 else -40.0


def _rowmax(x: torch.Tensor) -> torch.Tensor:
    """Max of each row (B, K) -> (B,), 0 where the row is all -inf."""
    m = x.amax(-1)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _time_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(T, B) bool, True on real frames."""
    return torch.arange(T, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)


# ------------------------------------------------------------------------------------------
# the exact log-space recursion (log or max semiring, any operator)


class _Pass(NamedTuple):
    """A forward pass: ``alpha`` (T, B, K) scores relative to ``offset`` (T, B) float64 (None
    without history), ``final`` (B, K) each sequence's last-frame scores relative to
    ``final_offset`` (B,) float64, ``back`` (B, T, K) predecessor states, long (max semiring
    with back-pointers; -1 on frame 0 of a sequence without carry), or None; when ``slot_hi``
    is not None, ``back`` holds the compiled kernel's int32 band slots instead (predecessor
    ``j - (slot_hi - slot)``; frame 0 unset) and :func:`_states` converts them."""

    alpha: Optional[torch.Tensor]
    offset: Optional[torch.Tensor]
    final: torch.Tensor
    final_offset: torch.Tensor
    back: Optional[torch.Tensor]
    slot_hi: Optional[int] = None


def _states(fwd: _Pass) -> Optional[torch.Tensor]:
    """Back-pointers of a pass as predecessor states (B, T, K) long."""
    if fwd.back is None or fwd.slot_hi is None:
        return fwd.back
    K = fwd.back.shape[-1]
    j = torch.arange(K, dtype=torch.int32) - fwd.slot_hi
    return torch.add(fwd.back, j).clamp_(0, K - 1)  # int32, like the slots


def _initial(p: _Problem, semiring) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
    """Scores entering frame 0 (before its emission), their offset (B,) float64, the
    back-pointers into frame 0 (B, K) long and the operator for the moves within the chunk."""
    if p.carry is None:
        z = torch.zeros(p.B, dtype=torch.float64, device=p.lb.device)
        back0 = torch.full((p.B, p.K), -1, dtype=torch.long, device=p.lb.device)
        return p.lpi, z, back0, p.trans
    _, rest = p.trans.split_first()
    s = p.trans.predecessors(p.carry.scores.to(p.lb.dtype), p.trans.forward_step(0))
    if semiring is MaxSemiring:
        arg = s.argmax(-1)
        init = s.gather(-1, arg.unsqueeze(-1)).squeeze(-1)
        back0 = p.trans.slot_to_state(arg)
    else:
        init = torch.logsumexp(s, -1)
        back0 = None
    return init, p.carry.offset.double(), back0, rest


def _run_forward(
    p: _Problem, semiring, history: bool, store_back: bool = False, want_states: bool = False
) -> _Pass:
    """The forward recursion on the chosen backend. With ``store_back`` the back-pointers
    are kept (as the compiled kernel's band slots unless ``want_states`` or a carry)."""
    init, base, back0, trans = _initial(p, semiring)
    if p.kern is not None:
        out = _kernel_forward(p, semiring, history, store_back, init, trans)
    else:
        out = _torch_forward(p, semiring, history, store_back, init, trans)
    alpha, offset, final, foff, back, slot_hi = out
    if offset is not None:
        offset = offset + base.unsqueeze(0)
    foff = foff + base
    fwd = _Pass(alpha, offset, final, foff, back, slot_hi)
    if back is not None and (slot_hi is None or p.carry is not None or want_states):
        back = _states(fwd)
        back[:, 0] = back0
        fwd = _Pass(alpha, offset, final, foff, back, None)
    return fwd


def _kernel_forward(p, semiring, history, store_back, init, trans):
    B, T, K = p.B, p.T, p.K
    lb = p.lb
    dst = trans.dest_band()  # (Bx, Tx, K, W)
    band = dst.transpose(-1, -2)  # (Bx, Tx, W, K)
    alpha = lb.new_empty(T if history else 2, B, K)
    offset = torch.empty(T, B, dtype=torch.float64)
    final = lb.new_empty(B, K)
    back = torch.empty(B, T if store_back else 1, K if store_back else 1, dtype=torch.int32)
    with kernel_call(B * T * K * band.shape[-2], B):
        p.kern.band_forward(
            _np(lb),
            p.eidx_np(),
            _np(init.expand(B, K)),
            _np(band),
            trans.hi,
            _np(p.lengths),
            semiring is MaxSemiring,
            _cut(lb.dtype),
            alpha.numpy(),
            offset.numpy(),
            final.numpy(),
            back.numpy(),
            store_back,
        )
    ar = torch.arange(B)
    foff = offset[p.lengths - 1, ar]
    bk = back if store_back else None
    hi = trans.hi if store_back else None
    return (alpha if history else None), (offset if history else None), final, foff, bk, hi


def _torch_forward(p, semiring, history, store_back, init, trans):
    em, shift = p.frame_relative()  # (T, B, K), scores relative to shift (T, B) float64
    T, B, K = em.shape
    dev = em.device
    L = p.lengths
    is_max = semiring is MaxSemiring
    W = trans.width
    # a reduction over a tiny last axis is slow: up to 4 slots reduce as binary pluses
    pairwise = trans.is_banded and W <= 4 and not is_max
    cur = init + em[0]
    m = cur.amax(-1, keepdim=True).clamp_(min=-1e30)  # all -inf: -1e30, no NaN
    cur = cur - m
    incs, alphas, backs = [m], [cur], []
    ends = {} if history else _end_frames(L)
    final = cur.clone() if not history else None

    def keep(t, x):
        idx = ends.get(t)
        if idx is not None:
            final.index_copy_(0, idx, x.index_select(0, idx))

    if not history:
        keep(0, cur)
    for t in range(1, T):
        s = trans.predecessors(cur, trans.forward_step(t - 1))
        if is_max:
            arg = s.argmax(-1, keepdim=True)
            v = s.gather(-1, arg).squeeze(-1)
            if store_back:
                backs.append(trans.slot_to_state(arg.squeeze(-1)))
        elif pairwise:
            v = s[..., 0]
            for d in range(1, W):
                v = torch.logaddexp(v, s[..., d])
        else:
            v = torch.logsumexp(s, -1)
        v = v + em[t]
        m = v.amax(-1, keepdim=True).clamp_(min=-1e30)
        cur = v - m
        incs.append(m)
        if history:
            alphas.append(cur)
        elif ends:
            keep(t, cur)
    offset = torch.cat(incs, -1).t().double()  # (T, B)
    if shift is not None:
        offset = offset + shift
    offset = offset.cumsum(0)
    back = None
    if store_back:
        b0 = torch.full((B, K), -1, dtype=torch.long, device=dev)
        back = torch.stack([b0] + backs, 1)
    ar = torch.arange(B, device=dev)
    foff = offset[L - 1, ar]
    if history:
        alpha = torch.stack(alphas)
        mask = _time_mask(L, T).unsqueeze(-1)
        alpha = torch.where(mask, alpha, NEG_INF)
        return alpha, offset, alpha[L - 1, ar], foff, back, None
    return None, None, final, foff, back, None


def _end_frames(lengths: torch.Tensor) -> dict:
    """``{t: indices of the sequences whose last frame is t}``."""
    ends: dict = {}
    for b, n in enumerate(lengths.tolist()):
        ends.setdefault(n - 1, []).append(b)
    return {t: torch.tensor(b, device=lengths.device) for t, b in ends.items()}


def _total(final: torch.Tensor, foff: torch.Tensor, lf) -> torch.Tensor:
    """log Z (B,) float64 from last-frame scores."""
    s = final if lf is None else final + lf
    return torch.logsumexp(s, -1).double() + foff


def _log_backward(p: _Problem, fwd: _Pass) -> torch.Tensor:
    """Exact log beta relative to the forward offsets and log Z (T, B, K): with it
    ``exp(alpha + beta)`` are the state posteriors directly (torch, every device)."""
    em, shift = p.frame_relative()
    T, B, K = em.shape
    trans = p.trans
    L = p.lengths
    ar = torch.arange(B, device=em.device)
    lf = p.lf if p.lf is not None else em.new_zeros(B, K)
    zrel = torch.logsumexp(fwd.alpha[L - 1, ar] + lf, -1)
    zrel = torch.where(torch.isfinite(zrel), zrel, torch.zeros_like(zrel))
    init = lf - zrel.unsqueeze(-1)
    inc = _relative_steps(fwd.offset, shift, em.dtype)  # (T-1, B)
    betas = [init]
    nxt = init
    for t in range(T - 2, -1, -1):
        s = trans.successors(em[t + 1] + nxt, trans.step(t))
        bt = torch.logsumexp(s, -1) - inc[t].unsqueeze(-1)
        nxt = torch.where((t < L - 1).unsqueeze(-1), bt, init)
        betas.append(nxt)
    return torch.stack(betas[::-1])


def _relative_steps(offset: torch.Tensor, shift: Optional[torch.Tensor], dtype) -> torch.Tensor:
    """The forward offsets' step from frame t to t+1 (T-1, B) in ``dtype``, less frame t+1's
    emission shift (:meth:`_Problem.frame_relative`): formed in float64, so that only a small
    number is rounded."""
    inc = offset[1:] - offset[:-1]
    if shift is not None:
        inc = inc - shift[1:]
    return inc.to(dtype)


def _exact_posteriors(p: _Problem, per_frame: bool):
    """Exact log-space forward-backward: (logZ (B,) float64, gamma (T, B, K), xi) with xi in
    the operator's layout, (B, K, K|W) summed or (B, T-1, K, K|W) per frame."""
    out_dtype = p.lb.dtype
    p = p.promoted()
    B, T, K = p.B, p.T, p.K
    fwd = _run_forward(p, LogSemiring, history=True)
    logZ = _total(fwd.final, fwd.final_offset, p.lf)
    if p.kern is not None:
        gamma, xi = _kernel_backward(p, fwd, per_frame)
        return logZ, gamma.to(out_dtype), xi.to(out_dtype)
    beta = _log_backward(p, fwd)
    ok = torch.isfinite(logZ)
    mask = _time_mask(p.lengths, T) & ok.unsqueeze(0)
    gamma = torch.where(mask.unsqueeze(-1), (fwd.alpha + beta).exp(), 0.0)
    em, shift = p.frame_relative()
    inc = _relative_steps(fwd.offset, shift, em.dtype)
    trans = p.trans
    W = trans.width
    frames = []
    xi = em.new_zeros(B, K, W, dtype=torch.float64)  # summed over time: float64 (see kernel)
    for t in range(T - 1):
        s = trans.successors(em[t + 1] + beta[t + 1], trans.step(t))
        s = s + fwd.alpha[t].unsqueeze(-1) - inc[t].view(B, 1, 1)
        x = torch.where(mask[t + 1].view(B, 1, 1), s.exp(), 0.0)
        if per_frame:
            frames.append(x)
        else:
            xi += x
    if per_frame:
        xi = torch.stack(frames, 1) if frames else em.new_zeros(B, 0, K, W)
    return logZ, gamma.to(out_dtype), xi.to(out_dtype)


def _kernel_backward(p: _Problem, fwd: _Pass, per_frame: bool):
    B, T, K = p.B, p.T, p.K
    src, lo = p.trans.source_band()
    W = src.shape[-1]
    gamma = p.lb.new_zeros(T, B, K)
    # counts summed over time accumulate in float64 (a float32 sum over 1e6 frames drifts by
    # ~1e-4 relative); per-frame counts are not summed and keep the input's dtype
    xi = p.lb.new_zeros((B, max(T - 1, 0), K, W)) if per_frame else p.lb.new_zeros(
        (B, K, W), dtype=torch.float64
    )
    lf = p.lf if p.lf is not None else p.lb.new_zeros(B, K)
    with kernel_call(B * T * K * W, B):
        p.kern.band_backward(
            _np(p.lb),
            p.eidx_np(),
            _np(src),
            lo,
            _np(p.lengths),
            _np(lf),
            fwd.alpha.numpy(),
            _np(fwd.offset),
            _cut(p.lb.dtype),
            gamma.numpy(),
            xi.numpy(),
            per_frame,
        )
    if not p.trans.is_banded:  # the full band back to K x K
        xi = band_counts_to_dense(xi, lo)
    return gamma, xi


# ------------------------------------------------------------------------------------------
# the rescaled recursion (log semiring, dense transitions with no zero entry)


def _use_scaled(p: _Problem) -> bool:
    """The rescaled recursion keeps one scale per frame, so a state whose mass drifts far
    below the others' (possible when moves are forbidden: chains, sparse graphs) could be lost
    without any sign. Every state feeds every other in a matrix with no zero entry, which
    bounds that drift; anything else takes the exact log-space recursion."""
    trans = p.trans
    if trans.is_banded or p.carry is not None:
        return False
    if trans.scaled_ok is None:
        trans.scaled_ok = bool(torch.isfinite(trans.values).all())
    return trans.scaled_ok


def _shifted_emissions(em_tm: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Emission likelihoods relative to each frame's best state: ``exp(lb - m)`` (T, B, K) and
    the shift ``m`` (T, B) (0 on frames where every state is impossible).

    Emissions below ``EMISSION_FLOOR`` of the frame's best state are set to exactly zero: in
    float32 they would be denormals (7-30x slower arithmetic on x86), and in float64 their
    products with small forward probabilities are. With transitions that have no zero entry
    (the only ones this recursion takes) every state receives at least ``min A / max A`` of
    the frame's mass, so a dropped term changes a frame's total by less than
    ``EMISSION_FLOOR * max A / min A`` relatively: far below float64 round-off."""
    m = em_tm.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    floor = max(EMISSION_FLOOR, math.log(torch.finfo(em_tm.dtype).tiny) + 1.0)
    bs = torch.sub(em_tm, m).clamp_(min=floor).exp_()
    torch.nn.functional.threshold_(bs, 1.5 * math.exp(floor), 0.0)
    return bs, m.squeeze(-1)


class _Scaled(NamedTuple):
    alpha: Optional[torch.Tensor]  # (T, B, K) or None
    c: torch.Tensor  # (T, B) scales (1 between normalisations and past each length)
    rest: torch.Tensor  # (B,) mass left at the last frame, final weights applied
    underflow: torch.Tensor  # (B,) bool
    bs: torch.Tensor
    A: torch.Tensor  # (Bx, Tx, K, K)
    fw: torch.Tensor  # (B, K) final weights


def _scaled_forward(p: _Problem, history: bool) -> _Scaled:
    """Rabiner-scaled forward in probability space, normalised every NORMALISE_EVERY frames
    (torch) or KERNEL_NORMALISE_EVERY frames (compiled kernel)."""
    em = p.emissions().transpose(0, 1)
    T, B, K = em.shape
    bs, m = _shifted_emissions(em)
    A = p.trans.values.exp()
    pi = p.lpi.exp()
    fw = p.lf.exp() if p.lf is not None else em.new_ones(B, K)
    tiny = torch.finfo(em.dtype).tiny ** 0.5
    L = p.lengths
    if p.kern is not None:
        alpha = em.new_empty(T if history else 2, B, K)
        c = em.new_empty(T, B)
        flags = torch.zeros(B, dtype=torch.uint8)
        rest = em.new_empty(B)
        with kernel_call(B * T * K * K, B):
            p.kern.scaled_forward(
                _np(bs),
                _np(pi),
                _np(A),
                _np(L),
                KERNEL_NORMALISE_EVERY,
                _np(fw),
                alpha.numpy(),
                c.numpy(),
                tiny,
                flags.numpy(),
                rest.numpy(),
            )
        under = flags.bool()
    else:
        if bool((L < T).any()):  # padding: neutral frames (no NaN from empty frames)
            bs = torch.where(_time_mask(L, T).unsqueeze(-1), bs, torch.ones_like(bs))
        alpha, c, rest = _scaled_forward_torch(bs, pi, A, L, fw, history, p.trans.time_varying)
        mask = _time_mask(L, T)
        good = (c > tiny) | ~mask  # NaN compares False
        under = ~good.all(0) | ~(rest > tiny)
    p._shift = m
    return _Scaled(alpha if history else None, c, rest, under, bs, A, fw)


def _scaled_forward_torch(bs, pi, A, L, fw, history, tv):
    T, B, K = bs.shape
    shared = A.shape[0] == 1
    c = bs.new_ones(T, B)
    a = pi * bs[0]
    c[0] = a.sum(-1)
    a = a / c[0].unsqueeze(-1)
    alphas = [a]
    fin = a
    ends = (L - 1).view(B, 1)
    for t in range(1, T):
        At = A[:, t - 1 if tv else 0]
        a = (a @ At[0]) if shared else torch.bmm(a.unsqueeze(1), At).squeeze(1)
        a = a * bs[t]
        if t % NORMALISE_EVERY == 0:
            c[t] = a.sum(-1)
            a = a / c[t].unsqueeze(-1)
        if history:
            alphas.append(a)
        else:
            fin = torch.where(ends == t, a, fin)
    mask = _time_mask(L, T)
    c = torch.where(mask, c, torch.ones_like(c))
    if history:
        alpha = torch.stack(alphas)
        fin = alpha[L - 1, torch.arange(B, device=bs.device)]
    else:
        alpha = None
    rest = (fin * fw).sum(-1)
    return alpha, c, rest


def _scaled_log_z(p: _Problem, sc: _Scaled) -> torch.Tensor:
    mask = _time_mask(p.lengths, p.T)
    log_c = torch.where(mask, sc.c.log() + p._shift, torch.zeros_like(sc.c))
    return log_c.double().sum(0) + sc.rest.double().log()


_SUM_BLOCK = 4096  # frames summed by one matmul before the float64 accumulation


def _summed_outer(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_t a[t, b, i] v[t, b, j]`` (B, K, K) for (T, B, K) inputs: one batched matmul per
    block of frames, the blocks summed in float64 below float64 (one float32 reduction over
    1e6 frames drifts by ~1e-4 relative)."""
    if a.dtype == torch.float64 or a.shape[0] <= _SUM_BLOCK:
        return torch.bmm(a.permute(1, 2, 0), v.transpose(0, 1))
    tot = None
    for s in range(0, a.shape[0], _SUM_BLOCK):
        x = torch.bmm(a[s : s + _SUM_BLOCK].permute(1, 2, 0), v[s : s + _SUM_BLOCK].transpose(0, 1))
        tot = x.double() if tot is None else tot + x
    return tot.to(a.dtype)


def _scaled_posteriors(p: _Problem, per_frame: bool):
    sc = _scaled_forward(p, history=True)
    logZ = _scaled_log_z(p, sc)
    T, B, K = p.T, p.B, p.K
    L = p.lengths
    tv = p.trans.time_varying
    alpha, c, bs, A = sc.alpha, sc.c, sc.bs, sc.A
    if p.kern is not None:
        gamma = torch.empty_like(alpha)
        # summed counts accumulate in float64 (see the band kernel), per-frame ones do not
        xi = alpha.new_zeros((B, max(T - 1, 0), K, K)) if per_frame else alpha.new_zeros(
            (B, K, K), dtype=torch.float64
        )
        with kernel_call(B * T * K * K, B):
            p.kern.scaled_backward(
                _np(bs),
                _np(A),
                _np(L),
                KERNEL_NORMALISE_EVERY,
                _np(sc.fw),
                _np(sc.rest),
                alpha.numpy(),
                _np(c),
                gamma.numpy(),
                xi.numpy(),
                per_frame,
            )
        return logZ, gamma, xi.to(alpha.dtype), sc.underflow
    shared = A.shape[0] == 1
    renorm = alpha.dtype != torch.float64 and T > LONG_SEQUENCE
    init = sc.fw / sc.rest.unsqueeze(-1)
    betas = [init]
    vs = []
    b = init
    for t in range(T - 2, -1, -1):
        v = bs[t + 1] * b / c[t + 1].unsqueeze(-1)
        At = A[:, t if tv else 0]
        bt = (v @ At[0].t()) if shared else torch.bmm(At, v.unsqueeze(-1)).squeeze(-1)
        if renorm and t % RENORMALISE_EVERY == 0:
            # sum_i alpha_t(i) beta_t(i) is 1 in exact arithmetic: the round-off that
            # compounds in beta over a long float32 sequence is taken out (cf. the kernel)
            sg = (alpha[t] * bt).sum(-1, keepdim=True)
            bt = torch.where(sg > 0, bt / sg, bt)
        b = torch.where((t < L - 1).unsqueeze(-1), bt, init)
        betas.append(b)
        vs.append(v)
    beta = torch.stack(betas[::-1])
    mask = _time_mask(L, T)
    gamma = torch.where(mask.unsqueeze(-1), alpha * beta, 0.0)
    if T > 1:
        V = torch.stack(vs[::-1])  # (T-1, B, K): V[t] enters frame t + 1
        V = torch.where(mask[1:].unsqueeze(-1), V, 0.0)
        if per_frame:
            At = A if tv else A.expand(A.shape[0], T - 1, K, K)
            xi = alpha[:-1].transpose(0, 1).unsqueeze(-1) * At * V.transpose(0, 1).unsqueeze(-2)
        else:
            xi = _summed_outer(alpha[:-1], V) * A[:, 0]
    else:
        xi = alpha.new_zeros((B, 0, K, K) if per_frame else (B, K, K))
    return logZ, gamma, xi, sc.underflow


# ------------------------------------------------------------------------------------------
# drivers


def _posteriors(p: _Problem, per_frame: bool = False):
    """(logZ (B,) dtype, gamma (T, B, K), xi in the operator's layout)."""
    if not _use_scaled(p):
        logZ, gamma, xi = _exact_posteriors(p, per_frame)
    else:
        logZ, gamma, xi, under = _scaled_posteriors(p, per_frame)
        if under.any():
            idx = torch.nonzero(under).squeeze(1)
            z2, g2, x2 = _exact_posteriors(p.select(idx), per_frame)
            logZ = logZ.index_copy(0, idx, z2)
            gamma = gamma.index_copy(1, idx, g2)
            xi = xi.index_copy(0, idx, x2)
    bad = ~torch.isfinite(logZ)
    if bad.any():
        gamma = torch.where(bad.view(1, -1, 1), 0.0, gamma)
        xi = torch.where(bad.view(-1, *([1] * (xi.dim() - 1))), 0.0, xi)
        logZ = torch.where(bad, torch.full_like(logZ, NEG_INF), logZ)
    return logZ.to(p.lb.dtype), gamma, xi


def _log_likelihood(p: _Problem) -> torch.Tensor:
    if _use_scaled(p):
        sc = _scaled_forward(p, history=False)
        logZ = _scaled_log_z(p, sc)
        if sc.underflow.any():
            idx = torch.nonzero(sc.underflow).squeeze(1)
            logZ = logZ.index_copy(0, idx, _log_likelihood_exact(p.select(idx)))
    else:
        logZ = _log_likelihood_exact(p)
    logZ = logZ.to(p.lb.dtype)
    return torch.where(torch.isfinite(logZ), logZ, torch.full_like(logZ, NEG_INF))


def _log_likelihood_exact(p: _Problem) -> torch.Tensor:
    p = p.promoted()
    fwd = _run_forward(p, LogSemiring, history=False)
    return _total(fwd.final, fwd.final_offset, p.lf)


class _HMMLogLikelihood(torch.autograd.Function):
    """log Z with an explicit backward: d log Z / d log_b = posteriors, d / d transitions =
    expected transition counts (per frame when they vary over time), d / d log_pi =
    first-frame posteriors, d / d log_final = last-frame posteriors. Memory O(B*T*K)."""

    @staticmethod
    def forward(ctx, lb, lpi, values, lf, p):
        ctx.p = p
        logZ, gamma, xi = _posteriors(p, per_frame=p.trans.time_varying)
        ctx.gamma, ctx.xi = gamma, xi
        return logZ

    @staticmethod
    def backward(ctx, grad):
        p, gamma, xi = ctx.p, ctx.gamma, ctx.xi
        g = torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
        gt = gamma.transpose(0, 1) * g.view(-1, 1, 1)  # (B, T, K)
        g_b = g_pi = g_A = g_f = None
        if ctx.needs_input_grad[0]:
            if p.eidx is None:
                g_b = gt
            else:
                B, T, K = gt.shape
                idx = p.eidx.expand(B, K).unsqueeze(1).expand(B, T, K)
                g_b = gt.new_zeros(p.lb.shape).scatter_add_(2, idx, gt)
        if ctx.needs_input_grad[1]:
            g_pi = gt[:, 0]
        if ctx.needs_input_grad[2]:
            x = xi * g.view(-1, *([1] * (xi.dim() - 1)))
            if not p.trans.time_varying:
                x = x.unsqueeze(1)
            g_A = x.sum(0, keepdim=True) if p.trans.batch == 1 else x
        if ctx.needs_input_grad[3]:
            ar = torch.arange(p.B, device=gt.device)
            g_f = gt[ar, p.lengths - 1]
        return g_b, g_pi, g_A, g_f, None


# ------------------------------------------------------------------------------------------
# public API


def _eager(fn):
    """Keep torch.compile (dynamo) out of the engine: its time loops would be unrolled frame by
    frame. A compiled model graph-breaks here and compiles everything around the engine.
    ``torch.compiler.disable`` is applied on the first call made under compilation, so
    importing the library does not import dynamo (seconds at start-up)."""
    disabled = []

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        compiler = getattr(torch, "compiler", None)
        if compiler is not None and compiler.is_compiling():
            if not disabled:
                disabled.append(compiler.disable(fn))
            return disabled[0](*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


_COMMON = """
    Common keyword arguments: ``log_final`` (K,)|(B, K), ``emission_index`` (K,)|(B, K),
    ``topology`` ("auto", "dense", "banded": how a plain matrix is read), ``check_stochastic``
    (rows of exp(log_transitions) and exp(log_initial) must sum to one; False for unnormalised
    scores), ``backend`` and ``on_impossible``; see :mod:`pytorch_hmm.core.inference`."""


@_eager
def log_likelihood(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions,
    lengths: Optional[torch.Tensor] = None,
    *,
    log_final: Optional[torch.Tensor] = None,
    emission_index: Optional[torch.Tensor] = None,
    topology: str = "auto",
    check_stochastic: bool = True,
    backend: Optional[str] = None,
    on_impossible: str = "ignore",
) -> torch.Tensor:
    """Log-likelihood ``log p(x_0..x_{L-1})`` of each sequence, (B,).

    Differentiable with respect to the emissions, the initial scores, the transitions (fixed
    or time-varying, dense or banded values) and ``log_final``, through an explicit backward
    pass (the posteriors), in O(B*T*K) memory. -inf for a sequence that no state path can
    produce.
    """
    p = _problem(locals())
    values = p.trans.values
    lf = p.lf
    wants = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (p.lb, p.lpi, values, lf)
    )
    if not wants:
        with torch.no_grad():
            out = _log_likelihood(p)
    else:
        out = _HMMLogLikelihood.apply(p.lb, p.lpi, values, lf, p)
    _report_impossible(out, "log_likelihood", on_impossible)
    return out


log_likelihood.__doc__ += _COMMON


@_eager
def forward(
    log_emissions: torch.Tensor,
    log_initial: Optional[torch.Tensor],
    log_transitions,
    lengths: Optional[torch.Tensor] = None,
    *,
    log_final: Optional[torch.Tensor] = None,
    emission_index: Optional[torch.Tensor] = None,
    carry: Optional[ForwardCarry] = None,
    topology: str = "auto",
    check_stochastic: bool = True,
    backend: Optional[str] = None,
    on_impossible: str = "ignore",
) -> ForwardResult:
    """The forward pass: ``log_alpha`` (B, T, K) and ``log_likelihood`` (B,) (of every frame
    so far, with a carry), exact log space; ``result.carry`` continues it on the next chunk
    (``log_initial`` is then ignored and may be None).

    Not differentiable through an explicit backward: use :func:`log_likelihood` for gradients.
    """
    p = _problem(locals())
    dt = p.lb.dtype
    with torch.no_grad():
        p = p.promoted()
        fwd = _run_forward(p, LogSemiring, history=True)
        logZ = _total(fwd.final, fwd.final_offset, p.lf).to(dt)
        alpha = (fwd.alpha.double() + fwd.offset.unsqueeze(-1)).to(dt)
        alpha = torch.where(_time_mask(p.lengths, p.T).unsqueeze(-1), alpha, NEG_INF)
        frames = p.lengths + (0 if carry is None else carry.frames.to(p.lengths.device))
        new = ForwardCarry(fwd.final.to(dt), fwd.final_offset, frames)
    _report_impossible(logZ, "forward", on_impossible)
    return _with_carry(ForwardResult(alpha.transpose(0, 1), logZ), new)


forward.__doc__ += _COMMON


@_eager
def backward(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions,
    lengths: Optional[torch.Tensor] = None,
    *,
    log_final: Optional[torch.Tensor] = None,
    emission_index: Optional[torch.Tensor] = None,
    topology: str = "auto",
    check_stochastic: bool = True,
    backend: Optional[str] = None,
    on_impossible: str = "ignore",
) -> torch.Tensor:
    """The backward pass: ``log_beta`` (B, T, K) = ``log p(x_{t+1}..x_{L-1}, end | z_t = k)``;
    ``log_final`` at the last real frame (0 without it), -inf on padded frames. The backward
    recursion itself runs as torch code on every backend."""
    p = _problem(locals())
    dt = p.lb.dtype
    with torch.no_grad():
        p = p.promoted()
        fwd = _run_forward(p, LogSemiring, history=True)
        beta_s = _log_backward(p, fwd)
        z = _total(fwd.final, fwd.final_offset, p.lf)
        _report_impossible(z, "backward", on_impossible)
        # log Z - offset_t as (log Z relative to the last offset) + (last offset - offset_t):
        # exact at the last frame whatever the offsets' magnitude (with +1e30 emissions the
        # offsets are ~1e30 and their float64 difference from log Z would be ~1e14 off)
        zs = fwd.final if p.lf is None else fwd.final + p.lf
        zrel = torch.logsumexp(zs, -1).double()
        zrel = torch.where(torch.isfinite(z), zrel, torch.zeros_like(zrel))
        rest = torch.where(torch.isfinite(z), fwd.final_offset, torch.zeros_like(z))
        shift = zrel.unsqueeze(0) + (rest.unsqueeze(0) - fwd.offset)
        beta = (beta_s.double() + shift.unsqueeze(-1)).to(dt)
        beta = torch.where(_time_mask(p.lengths, p.T).unsqueeze(-1), beta, NEG_INF)
    return beta.transpose(0, 1)


backward.__doc__ += _COMMON


@_eager
def posteriors(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions,
    lengths: Optional[torch.Tensor] = None,
    *,
    log_final: Optional[torch.Tensor] = None,
    emission_index: Optional[torch.Tensor] = None,
    per_frame: bool = False,
    topology: str = "auto",
    check_stochastic: bool = True,
    backend: Optional[str] = None,
    on_impossible: str = "warn",
) -> PosteriorResult:
    """State posteriors (B, T, K), expected transition counts and the log-likelihood (B,):
    the E-step of Baum-Welch. Counts are summed over time, (B, K, K), or with ``per_frame``
    given per move, (B, T-1, K, K) (banded: (B, T-1, K, W)). Sequences with no valid path get
    ``log_likelihood = -inf`` and all-zero posteriors."""
    p = _problem(locals())
    with torch.no_grad():
        logZ, gamma, xi = _posteriors(p, per_frame)
        if p.trans.is_banded and not isinstance(log_transitions, Transitions):
            xi = band_counts_to_dense(xi, p.trans.lo)  # a plain matrix in, a plain matrix out
    _report_impossible(logZ, "posteriors", on_impossible)
    return PosteriorResult(logZ, gamma.transpose(0, 1).to(p.lb.dtype), xi.to(p.lb.dtype))


posteriors.__doc__ += _COMMON


@_eager
def viterbi(
    log_emissions: torch.Tensor,
    log_initial: Optional[torch.Tensor],
    log_transitions,
    lengths: Optional[torch.Tensor] = None,
    *,
    log_final: Optional[torch.Tensor] = None,
    emission_index: Optional[torch.Tensor] = None,
    carry: Optional[ViterbiCarry] = None,
    return_carry: bool = False,
    topology: str = "auto",
    check_stochastic: bool = True,
    backend: Optional[str] = None,
    on_impossible: str = "warn",
) -> ViterbiResult:
    """Most likely state path of each sequence (the max semiring of the forward recursion).

    Returns ``path`` (B, T) long, -1 on padded frames, and ``score`` (B,), the path's log joint
    probability (``log_final`` included). A sequence that no path can produce gets score -inf
    and a path of -1. Ties go to the lowest predecessor state and the lowest final state.
    With ``carry`` (or ``return_carry=True``) ``result.carry`` holds the back-pointers so far
    (memory O(B*N*K) for N frames) and continues on the next chunk; its ``traceback()`` gives
    the whole-sequence path.
    """
    p = _problem(locals())
    keep = carry is not None or return_carry
    dt = p.lb.dtype
    with torch.no_grad():
        fwd = _run_forward(
            p.promoted(), MaxSemiring, history=False, store_back=True, want_states=keep
        )
        s = fwd.final if p.lf is None else fwd.final + p.lf.to(fwd.final.dtype)
        best, state = s.amax(-1), s.argmax(-1)
        ok = torch.isfinite(best)
        path = _traceback(fwd.back, state, p.lengths, fwd.slot_hi)
        path = torch.where(ok.unsqueeze(1), path, -1)
        if keep:
            score = (best.double() + fwd.final_offset).to(dt)
        else:
            score = _path_score(p, path)
        score = torch.where(ok, score, torch.full_like(score, NEG_INF))
        result = ViterbiResult(path, score)
        if keep:
            frames = p.lengths + (0 if carry is None else carry.frames.to(p.lengths.device))
            backs = (() if carry is None else carry.back) + (fwd.back,)
            lens = (() if carry is None else carry.lengths) + (p.lengths,)
            result = _with_carry(
                result, ViterbiCarry(fwd.final.to(dt), fwd.final_offset, frames, backs, lens)
            )
    _report_impossible(score, "viterbi", on_impossible)
    return result


viterbi.__doc__ += _COMMON


def _traceback(
    back: torch.Tensor, state: torch.Tensor, lengths: torch.Tensor, slot_hi: Optional[int] = None
) -> torch.Tensor:
    """Follow back-pointers ``back`` (B, T, K) from ``state`` (B,) at each sequence's last
    frame: (B, T) long, -1 past each length. ``back`` holds predecessor states, or band slots
    of the compiled kernel when ``slot_hi`` is given."""
    B, T, K = back.shape
    if slot_hi is not None:
        kern = cpu_kernels(KERNELS, back.device, "numba")
        path = torch.empty(B, T, dtype=torch.long)
        with kernel_call(B * T, B):
            kern.band_backtrack(back.numpy(), _np(state), _np(lengths), slot_hi, path.numpy())
        return path
    if back.device.type == "cpu":
        bk = back.numpy()
        L = lengths.numpy()
        path = np.full((B, T), -1, dtype=np.int64)
        cur = state.numpy().copy()
        ar = np.arange(B)
        tmax = int(L.max())
        for t in range(tmax - 1, -1, -1):
            on = t < L
            path[on, t] = cur[on]
            if t > 0:
                cur = np.where(on, bk[ar, t, cur], cur)
        return torch.from_numpy(path)
    path = torch.full((B, T), -1, dtype=torch.long, device=back.device)
    cur = state
    for t in range(T - 1, -1, -1):
        on = t < lengths
        path[:, t] = torch.where(on, cur, -1)
        if t > 0:
            prev = back[:, t].gather(1, cur.clamp(min=0).unsqueeze(1)).squeeze(1)
            cur = torch.where(on, prev, cur)
    return path


def _path_score(p: _Problem, path: torch.Tensor) -> torch.Tensor:
    """Log joint probability of given state paths (B, T) (-1 on padding), summed in float64
    (a running float32 sum drifts over 1e5 frames)."""
    B, T = p.B, p.T
    mask = path >= 0
    z = path.clamp(min=0)
    # the path's emission columns only (no (B, T, K) copy with emission_index)
    col = z if p.eidx is None else p.eidx.expand(B, p.K).gather(1, z)
    em = p.lb.gather(2, col.unsqueeze(-1)).squeeze(-1)
    total = torch.where(mask, em, 0).double().sum(1)
    total = total + p.lpi.gather(1, z[:, :1]).squeeze(1).double()
    if T > 1:
        v = p.trans.values  # (Bx, Tx, K, K|W)
        Bx, Tx = v.shape[0], v.shape[1]
        src, dst = z[:, :-1], z[:, 1:]
        slot = dst if not p.trans.is_banded else (dst - src - p.trans.lo).clamp(0, v.shape[-1] - 1)
        bi = torch.arange(B, device=z.device).view(B, 1).expand(B, T - 1) if Bx > 1 else 0
        ti = torch.arange(T - 1, device=z.device).view(1, T - 1).expand(B, T - 1)
        ti = ti if Tx > 1 else 0
        tr = v[bi, ti, src, slot]
        total = total + torch.where(mask[:, 1:], tr, 0).double().sum(1)
    if p.lf is not None:
        ar = torch.arange(B, device=z.device)
        last = z[ar, (p.lengths - 1)]
        total = total + p.lf.gather(1, last.unsqueeze(1)).squeeze(1).double()
    return total.to(p.lb.dtype)


@_eager
def sample_posterior(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions,
    lengths: Optional[torch.Tensor] = None,
    *,
    num_samples: int = 1,
    generator: Optional[torch.Generator] = None,
    log_final: Optional[torch.Tensor] = None,
    emission_index: Optional[torch.Tensor] = None,
    topology: str = "auto",
    check_stochastic: bool = True,
    backend: Optional[str] = None,
    on_impossible: str = "warn",
) -> torch.Tensor:
    """Draw state paths from ``p(z | x)`` by forward filtering, backward sampling.

    Returns (num_samples, B, T) long, -1 on padded frames and for sequences with no valid path.
    """
    if num_samples < 1:
        raise HMMValueError(f"num_samples must be >= 1, got {num_samples}")
    p = _problem(locals())
    B, T, K = p.B, p.T, p.K
    dev = p.lb.device
    with torch.no_grad():
        p = p.promoted()
        fwd = _run_forward(p, LogSemiring, history=True)
        logZ = _total(fwd.final, fwd.final_offset, p.lf)
        alpha = fwd.alpha  # per-frame offsets do not change the per-frame softmax
        S = num_samples
        t_last = p.lengths - 1
        lf = p.lf if p.lf is not None else alpha.new_zeros(B, K)
        out = torch.full((T, S, B), -1, dtype=torch.long, device=dev)
        cur = torch.zeros(S, B, dtype=torch.long, device=dev)
        trans = p.trans
        for t in range(T - 1, -1, -1):
            logits = alpha[t].unsqueeze(0).expand(S, B, K)
            logits = torch.where((t_last == t).view(1, B, 1), logits + lf, logits)
            if t < T - 1:
                step = trans.step(t)
                A = step if not trans.is_banded else band_to_dense(step, trans.lo)
                A = A.expand(B, K, K)  # log p(z_{t+1} = j | z_t = i)
                col = (
                    A.unsqueeze(0)
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
    _report_impossible(logZ, "sample_posterior", on_impossible)
    return out.permute(1, 2, 0).contiguous()


sample_posterior.__doc__ += _COMMON
