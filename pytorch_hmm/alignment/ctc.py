"""Viterbi CTC forced alignment, batched over utterances.

The same alignment as ``torchaudio.functional.forced_align`` (which handles one utterance at
a time): the best path through the CTC topology ``blank, y1, blank, y2, ..., yS, blank``
where a path may skip a blank between two *different* tokens; equal consecutive tokens need
a blank between them. Ties follow torchaudio's CPU kernel: a state keeps its own predecessor
unless an advance is strictly better, a two-state skip is taken only when strictly better
than both others, and the path ends on the trailing blank only when strictly better than on
the last token. (One deliberate difference: when the one- and two-state predecessors tie above
"stay", torchaudio falls through to the worse "stay"; this takes the one-state advance.)

How it runs (``method``):

- ``"engine"``: the topology is a graph given to the inference engine
  (:func:`pytorch_hmm.core.viterbi`), on whichever backend ``backend`` selects. One state per
  position of the extended label sequence, numbered backwards (position ``s`` of an
  utterance with ``n = 2 S + 1`` positions is state ``n - 1 - s``) so that the engine's
  "lowest predecessor state wins a tie" means stay, then advance, then skip; a banded
  operator (``lo=-2``, W=3, log value 0 on the allowed moves); ``emission_index`` mapping
  blank states to ``blank_id`` and label states to their token (``log_probs`` is read as it
  is, never copied to ``(B, T, K)``); ``log_initial``/``log_final`` on the first/last two
  positions. The one rule the engine's "lowest final state" cannot express (a tie between
  the last token, state 1, and the trailing blank, state 0, goes to the last token) is
  applied afterwards from the last-frame scores of the engine's ``ViterbiCarry`` and its
  ``traceback``.
- ``"kernel"``: the dedicated compiled kernel (numba, CPU, parallel over utterances).
- ``"auto"`` (default): the dedicated kernel where the compiled backend applies (CPU tensors,
  numba installed, ``backend`` not ``"torch"``), the engine everywhere else (torch, any
  device).

Why the dedicated kernel stays the compiled default: on ``benchmarks/bench_alignment.py``'s
CTC row (B=16, T=500, S=100, C=40, float32, medians of 5 runs; 2 shared cores, 3 runs with
engine and kernel timed round-robin in one process) the engine on compiled kernels took
110-167 ms against 21-30 ms for the kernel (5.2-5.6x; 169-265 against 47-62 ms in a more
loaded sitting). Its recursion (``band_forward``, about 15 ms a call) is not the cost; the
rest is: ``return_carry=True``, needed for the final-tie rule, converts the (B, T, K)
back-pointers to long states (about 60 ms) and traces back in Python (about 25 ms), then
input checks and graph set-up. Where no compiled kernel runs, the engine replaced the former
torch loop over frames: 225-321 ms against 4.1-6.2 s for that loop (same runs). All methods
give the same alignments (tests/test_ctc.py compares them, and a plain copy of the kernel's
recursion, exactly).
"""

from __future__ import annotations

import warnings
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..core import backend as _backend
from ..core.inference import viterbi as _engine_viterbi
from ..core.transitions import Transitions
from ..core.validation import check_lengths, mask_padding
from ..errors import HMMTypeError, HMMValueError

KERNELS = "pytorch_hmm.alignment._numba_kernels"
METHODS = ("auto", "engine", "kernel")

__all__ = ["CTCAlignment", "CTCAligner", "ctc_forced_align"]


class CTCAlignment(NamedTuple):
    """Result of :meth:`CTCAligner.align`.

    Attributes:
        labels: ``(B, T)`` long, per-frame label (a token id, or ``blank_id``); -1 on frames
            ``>= input_lengths[b]`` and on every frame of an impossible utterance.
        scores: ``(B, T)`` per-frame log-probability of the chosen label (0 on padding,
            ``-inf`` on the frames of an impossible utterance).
        spans: ``(B, S, 2)`` long, per target token its ``[start, end)`` frames (end
            exclusive, as torchaudio's ``merge_tokens``); -1 for padding / impossible ones.
        score: ``(B,)`` total log-probability of the best path (``-inf`` if impossible).
        valid: ``(B,)`` bool, whether an alignment exists.
    """

    labels: Tensor
    scores: Tensor
    spans: Tensor
    score: Tensor
    valid: Tensor

    def token_spans(self, b: int, targets: Optional[Tensor] = None) -> List[Tuple[int, int, int]]:
        """Spans of utterance ``b`` as ``(token, start, end)`` tuples (``end`` exclusive).

        ``targets`` (``(B, S)``) gives the token ids; without it they are read from ``labels``.
        """
        out = []
        for s, (st, en) in enumerate(self.spans[b].tolist()):
            if st < 0:
                break
            tok = int(targets[b, s]) if targets is not None else int(self.labels[b, st])
            out.append((tok, st, en))
        return out


def _validate(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Optional[Tensor],
    target_lengths: Optional[Tensor],
    blank_id: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Checked inputs: ``(log_probs with its padding replaced by 0 (detached), targets,
    targets on CPU, input_lengths, target_lengths)``."""
    if not isinstance(log_probs, Tensor) or not log_probs.is_floating_point():
        raise HMMTypeError("log_probs must be a floating-point tensor of shape (B, T, C)")
    if log_probs.dim() != 3:
        raise HMMValueError(
            f"log_probs must have shape (B, T, C) (batch, frames, classes), "
            f"got {tuple(log_probs.shape)}"
        )
    B, T, C = log_probs.shape
    targets = torch.as_tensor(targets)
    if targets.dim() != 2 or targets.shape[0] != B:
        raise HMMValueError(
            f"targets must have shape (B, S) = ({B}, S), got {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise HMMTypeError(f"targets must be an integer tensor, got {targets.dtype}")
    S = targets.shape[1]
    if not (0 <= blank_id < C):
        raise HMMValueError(f"blank_id={blank_id} is out of range for C={C} classes")

    def lens(x, name, maxv, what):
        return check_lengths(x, B, maxv, torch.device("cpu"), name=name, min_value=0, what=what)

    il = lens(input_lengths, "input_lengths", T, "the number of frames T of log_probs")
    tl = lens(target_lengths, "target_lengths", S, "the padded target length S")
    tcpu = targets.to("cpu", torch.long)
    valid_tok = torch.arange(S).unsqueeze(0) < tl.unsqueeze(1)
    used = tcpu[valid_tok]
    if used.numel():
        if used.min() < 0 or used.max() >= C:
            raise HMMValueError(f"targets must lie in [0, {C}) (C classes), got values outside")
        if (used == blank_id).any():
            bad = sorted({int(b) for b in (valid_tok & (tcpu == blank_id)).nonzero()[:, 0]})
            raise HMMValueError(
                f"targets contain the blank id {blank_id} (utterances {bad}); "
                "the blank must not appear in the targets"
            )
    # frames t >= input_lengths[b] are padding, never read: replaced by 0 before any check
    lp = mask_padding(log_probs.detach(), il.to(log_probs.device))
    total = lp.sum()  # one pass: NaN or +inf in a real frame leave it NaN or +inf
    if torch.isnan(total) or torch.isposinf(total):
        for bad_val, what in ((torch.isnan, "NaN"), (torch.isposinf, "+inf")):
            hits = bad_val(lp)
            hit = hits.flatten(1).any(1)
            if bool(hit.any()):
                bad = hit.nonzero()[:, 0].tolist()
                b, t, c = torch.nonzero(hits)[0].tolist()
                raise HMMValueError(
                    f"log_probs contains {what} (utterances {bad}): first at utterance {b}, "
                    f"frame {t}, class {c}, a real frame as input_lengths[{b}] = "
                    f"{int(il[b])}; log-probabilities must be finite or -inf (padded frames "
                    "t >= input_lengths[b] are never read)"
                )
    return lp, targets, tcpu, il, tl


class CTCAligner:
    """CTC forced aligner (Viterbi), batched.

    Args:
        blank_id: index of the CTC blank.
        backend: ``"auto"`` (compiled kernels on CPU when numba is installed, else torch),
            ``"numba"`` or ``"torch"``; ``None`` (default): the library's current default
            (:func:`pytorch_hmm.core.use_backend`, the environment, else ``"auto"``).
        strict: raise ``ValueError`` for impossible utterances instead of warning.
        method: ``"auto"`` (the compiled kernel where the compiled backend applies, else the
            engine), ``"engine"`` (the CTC graph run by :func:`pytorch_hmm.core.viterbi`) or
            ``"kernel"`` (the compiled kernel; CPU and numba only). All give the same
            alignments (see the module documentation).

    Example:
        >>> lp = torch.randn(2, 10, 5).log_softmax(-1)
        >>> r = CTCAligner(blank_id=0).align(lp, torch.tensor([[1, 2], [3, 3]]))
        >>> r.labels.shape, r.spans.shape
        (torch.Size([2, 10]), torch.Size([2, 2, 2]))
    """

    def __init__(
        self,
        blank_id: int = 0,
        backend: Optional[str] = None,
        strict: bool = False,
        method: str = "auto",
    ) -> None:
        if backend is not None and backend not in _backend.BACKENDS:
            raise HMMValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
        if method not in METHODS:
            raise HMMValueError(f"method must be 'auto', 'engine' or 'kernel', got {method!r}")
        self.blank_id = int(blank_id)
        self.backend = backend
        self.strict = strict
        self.method = method

    def align(
        self,
        log_probs: Tensor,
        targets: Tensor,
        input_lengths: Optional[Tensor] = None,
        target_lengths: Optional[Tensor] = None,
    ) -> CTCAlignment:
        """Align.

        Args:
            log_probs: ``(B, T, C)`` log-probabilities (log-softmax outputs; batch first).
            targets: ``(B, S)`` token ids, padded (padding beyond ``target_lengths`` ignored).
            input_lengths: ``(B,)`` valid frames (default ``T``).
            target_lengths: ``(B,)`` valid tokens (default ``S``).

        Returns:
            :class:`CTCAlignment`. An utterance that cannot be aligned (it needs
            ``T_b >= S_b + repeats_b`` frames) gets ``score=-inf``, ``valid=False`` and a
            ``RuntimeWarning`` (``ValueError`` with ``strict=True``); the others are unaffected.
        """
        lp, targets, tcpu, il, tl = _validate(
            log_probs, targets, input_lengths, target_lengths, self.blank_id
        )
        B, T, C = log_probs.shape
        S = targets.shape[1]
        device = log_probs.device
        kernels = None
        if self.method != "engine" and lp.dtype in (torch.float32, torch.float64):
            kernels = _backend.cpu_kernels(KERNELS, device, self.backend)
        if kernels is None and self.method == "kernel":
            raise HMMValueError(
                "method='kernel' runs the compiled CPU kernel: it needs float32/float64 CPU "
                "tensors, numba, and backend 'auto' or 'numba'; use method='auto' or 'engine'"
            )
        if kernels is not None:
            labels_t, scores_t, total_t = _viterbi_kernel(kernels, lp, tcpu, il, tl, self.blank_id)
        else:
            labels_t, scores_t, total_t = _viterbi_engine(
                lp, tcpu, il, tl, self.blank_id, self.backend
            )
        valid = torch.isfinite(total_t).cpu()
        if not bool(valid.all()):
            bad = (~valid).nonzero()[:, 0].tolist()
            reps = _repeats(tcpu, tl)
            need = (tl + reps).tolist()
            details = ", ".join(f"{b} (T={int(il[b])}, needs {need[b]})" for b in bad)
            msg = (
                f"CTC alignment impossible for utterances {details}: each needs at least "
                "target_length + number of repeated consecutive tokens frames (or all paths "
                "have -inf log-probability); their score is -inf"
            )
            if self.strict:
                raise HMMValueError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            labels_t[~valid.to(labels_t.device)] = -1
            frame_ok = torch.arange(T, device=scores_t.device).unsqueeze(0) < il.to(
                scores_t.device
            ).unsqueeze(1)
            mask = (~valid.to(scores_t.device)).unsqueeze(1) & frame_ok
            scores_t = scores_t.masked_fill(mask, float("-inf"))
        spans = _spans(labels_t.cpu(), il, tl, S, self.blank_id, valid)
        return CTCAlignment(
            labels=labels_t.to(device),
            scores=scores_t.to(device),
            spans=spans.to(device),
            score=total_t.to(device),
            valid=valid.to(device),
        )


def ctc_forced_align(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Optional[Tensor] = None,
    target_lengths: Optional[Tensor] = None,
    blank_id: int = 0,
) -> CTCAlignment:
    """Functional form of ``CTCAligner(blank_id).align(...)``."""
    return CTCAligner(blank_id).align(log_probs, targets, input_lengths, target_lengths)


def _repeats(tcpu: Tensor, tl: Tensor) -> Tensor:
    if tcpu.shape[1] < 2:
        return torch.zeros_like(tl)
    same = tcpu[:, 1:] == tcpu[:, :-1]
    ok = torch.arange(1, tcpu.shape[1]).unsqueeze(0) < tl.unsqueeze(1)
    return (same & ok).sum(1)


def _spans(labels: Tensor, il: Tensor, tl: Tensor, S: int, blank: int, valid: Tensor) -> Tensor:
    """``(B, S, 2)`` ``[start, end)`` per token from the per-frame labels (vectorised)."""
    B, T = labels.shape
    spans = torch.full((B, S, 2), -1, dtype=torch.long)
    if T == 0 or S == 0:
        return spans
    is_tok = (labels >= 0) & (labels != blank)
    prev = torch.cat([torch.full((B, 1), -1, dtype=labels.dtype), labels[:, :-1]], dim=1)
    starts = is_tok & (labels != prev)  # a new token starts (repeats are split by a blank)
    nxt = torch.cat([labels[:, 1:], torch.full((B, 1), -1, dtype=labels.dtype)], dim=1)
    ends = is_tok & (labels != nxt)
    tok_idx = torch.cumsum(starts.long(), dim=1) - 1  # token number at each frame
    b_s, t_s = starts.nonzero(as_tuple=True)
    spans[b_s, tok_idx[b_s, t_s], 0] = t_s
    b_e, t_e = ends.nonzero(as_tuple=True)
    spans[b_e, tok_idx[b_e, t_e], 1] = t_e + 1
    spans[~valid] = -1
    return spans


# ------------------------------------------------------------------------------------------
# method="engine": the CTC graph given to pytorch_hmm.core.viterbi


def _graph(tcpu: Tensor, tl: Tensor, S: int, blank: int, dtype: torch.dtype):
    """The CTC graph of each utterance, states numbered backwards (state ``r`` is position
    ``s = n - 1 - r`` of the ``n = 2 * tl + 1`` extended labels; states ``r >= n`` unused).

    Returns ``(band (B, K, 3), log_initial (B, K), log_final (B, K), emission_index (B, K))``
    on the CPU; band slot 0 is the skip ``r -> r - 2``, 1 the advance ``r -> r - 1``, 2 the
    stay (so the engine's lowest-predecessor tie rule prefers stay, then advance, then skip).
    """
    B = tcpu.shape[0]
    K = 2 * S + 1
    n = (2 * tl + 1).unsqueeze(1)  # (B, 1)
    r = torch.arange(K).unsqueeze(0)  # (1, K)
    s = n - 1 - r  # extended-label position of each state (< 0: unused)
    used = s >= 0
    is_tok = used & (s % 2 == 1)
    k = (s.clamp(min=0) // 2).clamp(max=max(S - 1, 0))  # token index of a label state
    if S:
        tok = tcpu.gather(1, k)
        nxt = tcpu.gather(1, (k + 1).clamp(max=S - 1))
    else:
        tok = nxt = torch.zeros((B, K), dtype=torch.long)
    eidx = torch.where(is_tok, tok, torch.full_like(tok, blank))
    # skip from label position s to s + 2 (state r - 2): the next label exists and differs
    skip = is_tok & (r >= 2) & (tok != nxt)
    zero = torch.zeros((), dtype=dtype)
    neg = torch.full((), float("-inf"), dtype=dtype)
    band = torch.stack(
        [torch.where(skip, zero, neg), torch.where(used, zero, neg), torch.where(used, zero, neg)],
        dim=-1,
    )
    log_initial = torch.where((r == n - 1) | ((r == n - 2) & (n > 1)), zero, neg)
    log_final = torch.where(used & (r <= 1), zero, neg)
    return band, log_initial, log_final, eidx


def _viterbi_engine(
    lp: Tensor, tcpu: Tensor, il: Tensor, tl: Tensor, blank: int, backend: Optional[str]
) -> Tuple[Tensor, Tensor, Tensor]:
    """Labels (B, T), per-frame scores (B, T) and total (B,) through the engine."""
    B, T, C = lp.shape
    S = tcpu.shape[1]
    device = lp.device
    labels = torch.full((B, T), -1, dtype=torch.long, device=device)
    scores = torch.zeros((B, T), dtype=lp.dtype, device=device)
    empty = torch.where(tl == 0, 0.0, float("-inf")).to(torch.float64)  # utterances of 0 frames
    if T == 0 or B == 0:
        return labels, scores, empty.to(lp.dtype)
    em = lp if lp.dtype in (torch.float32, torch.float64) else lp.float()
    band, lpi, lf, eidx = _graph(tcpu, tl, S, blank, em.dtype)
    band, lpi, lf, eidx = (x.to(device) for x in (band, lpi, lf, eidx))
    res = _engine_viterbi(
        em,
        lpi,
        Transitions.banded(band, lo=-2),
        il.clamp(min=1).to(device),
        log_final=lf,
        emission_index=eidx,
        return_carry=True,
        check_stochastic=False,
        on_impossible="ignore",
        backend=backend,
    )
    path = res.path
    if S:
        # a tie between the last token (state 1) and the trailing blank (state 0) at the last
        # frame goes to the last token: the engine's "lowest final state" picked state 0
        fin = res.carry.scores
        tie = torch.isfinite(fin[:, 0]) & (fin[:, 1] == fin[:, 0]) & (tl.to(device) > 0)
        if bool(tie.any()):
            lf2 = lf.masked_fill(
                tie.unsqueeze(1) & (torch.arange(lf.shape[1], device=device) == 0), float("-inf")
            )
            path = res.carry.traceback(lf2)
    if path.shape[1] < T:
        path = torch.nn.functional.pad(path, (0, T - path.shape[1]), value=-1)
    ok = torch.isfinite(res.score) & (il.to(device) > 0)
    path = torch.where(ok.unsqueeze(1), path, -1)
    on = path >= 0
    labels = torch.where(on, eidx.gather(1, path.clamp(min=0)), labels)
    scores = torch.where(on, lp.gather(2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1), scores)
    # the total as the dedicated kernel sums it: frame by frame in float64
    total = scores.double().cumsum(1)[:, -1]
    total = torch.where(ok, total, float("-inf"))
    total = torch.where(il.to(device) > 0, total, empty.to(device))
    return labels, scores, total.to(lp.dtype)


# ------------------------------------------------------------------------------------------
# method="kernel": the dedicated compiled kernel


def _viterbi_kernel(
    kernels, lp: Tensor, tcpu: Tensor, il: Tensor, tl: Tensor, blank: int
) -> Tuple[Tensor, Tensor, Tensor]:
    B, T, C = lp.shape
    lpn = lp.contiguous().numpy()
    labels = np.full((B, T), -1, dtype=np.int64)
    scores = np.zeros((B, T), dtype=lpn.dtype)
    total = np.empty(B, dtype=np.float64)
    with _backend.kernel_call():
        kernels.ctc_viterbi(
            lpn, tcpu.contiguous().numpy(), il.numpy(), tl.numpy(), blank, labels, scores, total
        )
    return torch.from_numpy(labels), torch.from_numpy(scores), torch.from_numpy(total).to(lp.dtype)
