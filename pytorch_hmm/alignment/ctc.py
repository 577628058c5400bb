"""Viterbi CTC forced alignment, batched over utterances.

The same alignment as ``torchaudio.functional.forced_align`` (which handles one utterance at
a time): the best path through the CTC topology ``blank, y1, blank, y2, ..., yS, blank``
where a path may skip a blank between two *different* tokens; equal consecutive tokens need
a blank between them. Ties follow torchaudio's CPU kernel: a state keeps its own predecessor
unless an advance is strictly better, a two-state skip is taken only when strictly better
than both others, and the path ends on the trailing blank only when strictly better than on
the last token. (One deliberate difference: when the one- and two-state predecessors tie above
"stay", torchaudio falls through to the worse "stay"; this takes the one-state advance.)

Back ends: a numba kernel on CPU (parallel over utterances) and a torch loop over frames
(vectorised over utterances and states) on GPU or when numba is missing.
"""

from __future__ import annotations

import warnings
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..core.validation import check_lengths
from .dtw import _use_numba

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
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    if not isinstance(log_probs, Tensor) or not log_probs.is_floating_point():
        raise TypeError("log_probs must be a floating-point tensor of shape (B, T, C)")
    if log_probs.dim() != 3:
        raise ValueError(
            f"log_probs must have shape (B, T, C) (batch, frames, classes), "
            f"got {tuple(log_probs.shape)}"
        )
    B, T, C = log_probs.shape
    targets = torch.as_tensor(targets)
    if targets.dim() != 2 or targets.shape[0] != B:
        raise ValueError(f"targets must have shape (B, S) = ({B}, S), got {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
    S = targets.shape[1]
    if not (0 <= blank_id < C):
        raise ValueError(f"blank_id={blank_id} is out of range for C={C} classes")

    def lens(x, name, maxv, what):
        return check_lengths(x, B, maxv, torch.device("cpu"), name=name, min_value=0, what=what)

    il = lens(input_lengths, "input_lengths", T, "the number of frames T of log_probs")
    tl = lens(target_lengths, "target_lengths", S, "the padded target length S")
    tcpu = targets.to("cpu", torch.long)
    valid_tok = torch.arange(S).unsqueeze(0) < tl.unsqueeze(1)
    used = tcpu[valid_tok]
    if used.numel():
        if used.min() < 0 or used.max() >= C:
            raise ValueError(f"targets must lie in [0, {C}) (C classes), got values outside")
        if (used == blank_id).any():
            bad = sorted({int(b) for b in (valid_tok & (tcpu == blank_id)).nonzero()[:, 0]})
            raise ValueError(
                f"targets contain the blank id {blank_id} (utterances {bad}); "
                "the blank must not appear in the targets"
            )
    if torch.isnan(log_probs).any():
        bad = sorted({int(b) for b in torch.isnan(log_probs).flatten(1).any(1).nonzero()[:, 0]})
        raise ValueError(f"log_probs contains NaN (utterances {bad})")
    return targets, tcpu, il, tl


class CTCAligner:
    """CTC forced aligner (Viterbi), batched.

    Args:
        blank_id: index of the CTC blank.
        backend: ``"auto"`` (numba on CPU if installed, else torch), ``"numba"``, ``"torch"``.
        strict: raise ``ValueError`` for impossible utterances instead of warning.

    Example:
        >>> lp = torch.randn(2, 10, 5).log_softmax(-1)
        >>> r = CTCAligner(blank_id=0).align(lp, torch.tensor([[1, 2], [3, 3]]))
        >>> r.labels.shape, r.spans.shape
        (torch.Size([2, 10]), torch.Size([2, 2, 2]))
    """

    def __init__(self, blank_id: int = 0, backend: str = "auto", strict: bool = False) -> None:
        if backend not in ("auto", "numba", "torch"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
        self.blank_id = int(blank_id)
        self.backend = backend
        self.strict = strict

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
        targets, tcpu, il, tl = _validate(
            log_probs, targets, input_lengths, target_lengths, self.blank_id
        )
        B, T, C = log_probs.shape
        S = targets.shape[1]
        device = log_probs.device
        kernels = _use_numba(device, self.backend)
        lp = log_probs.detach()
        if kernels is not None:
            lpn = lp.contiguous().numpy()
            labels = np.full((B, T), -1, dtype=np.int64)
            scores = np.zeros((B, T), dtype=lpn.dtype)
            total = np.empty(B, dtype=np.float64)
            kernels.ctc_viterbi(
                lpn,
                tcpu.contiguous().numpy(),
                il.numpy(),
                tl.numpy(),
                self.blank_id,
                labels,
                scores,
                total,
            )
            labels_t = torch.from_numpy(labels)
            scores_t = torch.from_numpy(scores)
            total_t = torch.from_numpy(total).to(lp.dtype)
        else:
            labels_t, scores_t, total_t = _viterbi_torch(
                lp, targets.to(device, torch.long), il.to(device), tl.to(device), self.blank_id
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
                raise ValueError(msg)
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


def _viterbi_torch(
    lp: Tensor, targets: Tensor, il: Tensor, tl: Tensor, blank: int
) -> Tuple[Tensor, Tensor, Tensor]:
    B, T, C = lp.shape
    S = targets.shape[1]
    Sx = 2 * S + 1
    device = lp.device
    neg = float("-inf")
    ext = torch.full((B, Sx), blank, dtype=torch.long, device=device)
    if S:
        ext[:, 1::2] = targets.clamp(0, C - 1)
    n_states = 2 * tl + 1  # (B,)
    sidx = torch.arange(Sx, device=device)
    in_state = sidx.unsqueeze(0) < n_states.unsqueeze(1)
    skip = torch.zeros((B, Sx), dtype=torch.bool, device=device)
    if S > 1:
        skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    emit = lp.gather(2, ext.unsqueeze(1).expand(B, T, Sx)) if T else lp.new_zeros((B, 0, Sx))
    emit = emit.masked_fill(~in_state.unsqueeze(1), neg)
    alpha = torch.full((B, Sx), neg, dtype=lp.dtype, device=device)
    bp = torch.zeros((T, B, Sx), dtype=torch.int8, device=device)
    if T:
        alpha[:, 0] = emit[:, 0, 0]
        if Sx > 1:
            alpha[:, 1] = emit[:, 0, 1]
        alpha = alpha.masked_fill(~in_state, neg)
    pad1 = torch.full((B, 1), neg, dtype=lp.dtype, device=device)
    pad2 = torch.full((B, 2), neg, dtype=lp.dtype, device=device)
    for t in range(1, T):
        a1 = torch.cat([pad1, alpha[:, :-1]], dim=1)
        a2 = torch.cat([pad2, alpha[:, :-2]], dim=1).masked_fill(~skip, neg)
        cand = torch.stack([alpha, a1, a2], dim=1)  # (B, 3, Sx); ties -> first (stay)
        best, arg = cand.max(dim=1)
        active = (t < il).unsqueeze(1)
        alpha = torch.where(active, best + emit[:, t], alpha)
        bp[t] = torch.where(active, arg, torch.zeros_like(arg)).to(torch.int8)
    bidx = torch.arange(B, device=device)
    last = (n_states - 1).clamp_min(0)
    prev_last = (n_states - 2).clamp_min(0)
    a_last = alpha[bidx, last]
    a_prev = torch.where(n_states > 1, alpha[bidx, prev_last], torch.full_like(a_last, neg))
    s = torch.where(a_prev >= a_last, prev_last, last)
    s = torch.where(n_states > 1, s, last)
    total = alpha[bidx, s]
    total = torch.where(il > 0, total, torch.where(tl == 0, 0.0, neg).to(lp.dtype))
    labels = torch.full((B, T), -1, dtype=torch.long, device=device)
    scores = torch.zeros((B, T), dtype=lp.dtype, device=device)
    for t in range(T - 1, -1, -1):
        active = t < il
        lab = ext[bidx, s]
        labels[:, t] = torch.where(active, lab, labels[:, t])
        scores[:, t] = torch.where(active, emit[bidx, t, s], scores[:, t])
        step = bp[t, bidx, s].long()
        s = torch.where(active, s - step, s)
    total = torch.where(torch.isnan(total), torch.full_like(total, neg), total)
    return labels, scores, total
