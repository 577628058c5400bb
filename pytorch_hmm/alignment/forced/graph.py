"""Transcript to utterance graph: the composite left-to-right HMM of one utterance, built
directly in the engine v2 form, and the padding of a list of graphs into a batch.

An utterance HMM is the concatenation of its phones' left-to-right HMMs (phone ``p`` has
``phone_states[p]`` states: a self-loop and an advance move each), with an optional silence at
the start, at the end and after every word whose ``silence_after`` flag is set. The last state
of the phone before an optional silence between words may enter the silence (probability
``p_between``) or skip it (``1 - p_between``) to the first state of the next word; the leading
silence is entered with probability ``p_edge`` (otherwise the utterance starts in its first
phone) and the trailing one likewise; the utterance ends in the last state of its last phone or
of the trailing silence.

The transitions are a source-indexed band with ``lo = 0``: ``values[i, d] = log p(i -> i + d)``
(:meth:`pytorch_hmm.core.Transitions.banded`): ``d = 0`` is the self-loop, ``d = 1`` the advance
(also into an optional silence), ``d = n + 1`` the skip over an optional silence of ``n``
states. The width ``W`` is 1 + the largest skip present (2 without optional silences between
words): it depends only on the graph's structure, never on values. ``log_final`` is 0 on the
allowed last states and -inf elsewhere; ``emission_index`` names the tied (global) state whose
emission each composite state reads.

Nothing here depends on :class:`~pytorch_hmm.alignment.forced.ForcedAligner`: any model with
left-to-right phone HMMs (a neural HMM, say) can build its graphs with :func:`build_graph` from
phone sequences, its state counts, self-loop and silence probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from ...errors import HMMValueError

__all__ = [
    "GraphBatch",
    "ResolvedTranscript",
    "Unit",
    "UtteranceGraph",
    "band_to_dense",
    "batch_graphs",
    "build_graph",
    "graph_for_choice",
]

NEG_INF = float("-inf")

# kinds of optional silence in UtteranceGraph.silences
SILENCE_BETWEEN, SILENCE_LEADING, SILENCE_TRAILING = 0, 1, 2


@dataclass
class Unit:
    """One phone of an utterance graph."""

    phone: int  # index in the phone set
    optional: bool  # an optional silence
    word: int  # word index, -1 for silence


@dataclass
class ResolvedTranscript:
    """A transcript resolved to phone ids: per word its label, its alternative pronunciations
    (phone id tuples) and whether an optional silence may follow it."""

    words: List[str]
    alternatives: List[List[Tuple[int, ...]]]
    silence_after: List[bool]


@dataclass
class UtteranceGraph:
    """The composite left-to-right HMM of one utterance (K states, band width W).

    ``values`` (K, W) source-indexed band (lo = 0) of log transition probabilities,
    ``log_initial`` (K,), ``log_final`` (K,) (0 on the allowed last states, -inf elsewhere),
    ``emission_index`` (K,) long: the tied state each composite state reads. ``units``: the
    phones (``state_unit`` / ``state_index``: the unit of each state and its index within the
    unit's phone); ``min_frames``: the frames the non-optional units need; ``silences``: the
    optional silences as ``(kind, from_state, sil_first_state, skip_to_state)`` with kind
    :data:`SILENCE_BETWEEN` (``from_state`` the last state of the phone before),
    :data:`SILENCE_LEADING` (``from_state`` -1, ``skip_to_state`` the first phone's first
    state) or :data:`SILENCE_TRAILING` (``skip_to_state`` -1); ``words``: the word labels.
    """

    units: List[Unit]
    emission_index: torch.Tensor
    state_unit: List[int]
    state_index: List[int]
    values: torch.Tensor
    log_initial: torch.Tensor
    log_final: torch.Tensor
    min_frames: int
    silences: List[Tuple[int, int, int, int]] = field(default_factory=list)
    words: List[str] = field(default_factory=list)

    @property
    def num_states(self) -> int:
        return int(self.emission_index.shape[0])

    @property
    def width(self) -> int:
        return int(self.values.shape[-1])

    @property
    def final(self) -> torch.Tensor:
        """(K,) bool: the allowed last states."""
        return self.log_final > NEG_INF

    def dense(self) -> torch.Tensor:
        """(K, K) log transition matrix of the band."""
        return band_to_dense(self.values)


def _log_probability(p: Union[float, torch.Tensor], name: str) -> float:
    lp = float(p)
    if not lp <= 0.0:
        raise HMMValueError(f"{name} must be a log probability (<= 0), got {lp}")
    return lp


def build_graph(
    word_phones: Sequence[Sequence[int]],
    silence_after: Optional[Sequence[bool]] = None,
    *,
    phone_states: Sequence[int],
    log_self_loop: torch.Tensor,
    log_silence: Tuple[Union[float, torch.Tensor], Union[float, torch.Tensor]],
    phone_offset: Optional[Sequence[int]] = None,
    silence_phone: int = 0,
    words: Optional[Sequence[str]] = None,
) -> UtteranceGraph:
    """The graph of one utterance from its words' phone sequences.

    Args:
        word_phones: per word its phone ids (indices into ``phone_states``).
        silence_after: per word whether an optional silence may follow it (default: none;
            the last word's flag is ignored: the trailing silence is always there).
        phone_states: number of states of each phone of the phone set.
        log_self_loop: (S,) log self-loop probability of each tied state, S =
            ``sum(phone_states)``; the advance move gets ``log(1 - p)``.
        log_silence: ``(log p_between, log p_edge)``: log probability of entering an optional
            silence between words, and of the leading / trailing silence.
        phone_offset: first tied state of each phone (default: phones' states in order).
        silence_phone: phone id of the silence.
        words: word labels kept with the graph (default: ``"0", "1", ...``).
    """
    n_words = len(word_phones)
    if n_words == 0:
        raise HMMValueError("the utterance has no words")
    if silence_after is None:
        silence_after = [False] * n_words
    if len(silence_after) != n_words:
        raise HMMValueError(f"{n_words} words but {len(silence_after)} silence_after flags")
    if phone_offset is None:
        phone_offset = [0]
        for n in phone_states[:-1]:
            phone_offset.append(phone_offset[-1] + int(n))
    units: List[Unit] = [Unit(silence_phone, True, -1)]
    for w, phones in enumerate(word_phones):
        if len(phones) == 0:
            raise HMMValueError(f"word {w} has no phones")
        for p in phones:
            units.append(Unit(int(p), False, w))
        if silence_after[w] and w < n_words - 1:
            units.append(Unit(silence_phone, True, -1))
    units.append(Unit(silence_phone, True, -1))

    state_ids: List[int] = []
    state_unit: List[int] = []
    state_index: List[int] = []
    first: List[int] = []
    for u, unit in enumerate(units):
        first.append(len(state_ids))
        n = int(phone_states[unit.phone])
        off = int(phone_offset[unit.phone])
        state_ids.extend(range(off, off + n))
        state_unit.extend([u] * n)
        state_index.extend(range(n))
    K = len(state_ids)
    U = len(units)
    last = [first[u] + int(phone_states[un.phone]) - 1 for u, un in enumerate(units)]
    # band width: 1 + the largest forward move (a skip over a silence between words)
    W = 2
    for u in range(1, U - 1):
        if units[u].optional:
            W = max(W, int(phone_states[units[u].phone]) + 2)

    sid = torch.tensor(state_ids, dtype=torch.long)
    stay = log_self_loop.detach().float().cpu()[sid]
    move = torch.log1p(-stay.exp().clamp(max=1 - 1e-6))
    ls_w = _log_probability(log_silence[0], "log_silence[0]")
    ls_e = _log_probability(log_silence[1], "log_silence[1]")
    l1_w, l1_e = math.log1p(-math.exp(ls_w)), math.log1p(-math.exp(ls_e))

    values = torch.full((K, W), NEG_INF)
    values[:, 0] = stay
    silences: List[Tuple[int, int, int, int]] = []
    for u in range(U):
        for k in range(first[u], last[u]):
            values[k, 1] = move[k]
        if u == U - 1:
            continue
        src = last[u]
        nxt = u + 1
        if units[nxt].optional and nxt < U - 1:  # between words: enter or skip
            values[src, first[nxt] - src] = move[src] + ls_w
            values[src, first[nxt + 1] - src] = move[src] + l1_w
            silences.append((SILENCE_BETWEEN, src, first[nxt], first[nxt + 1]))
        elif units[nxt].optional:  # trailing silence
            values[src, first[nxt] - src] = move[src] + ls_e
            silences.append((SILENCE_TRAILING, src, first[nxt], -1))
        else:
            values[src, first[nxt] - src] = move[src]
    log_initial = torch.full((K,), NEG_INF)
    log_initial[first[0]] = ls_e
    log_initial[first[1]] = l1_e
    silences.append((SILENCE_LEADING, -1, first[0], first[1]))
    log_final = torch.full((K,), NEG_INF)
    log_final[last[U - 1]] = 0.0
    log_final[last[U - 2]] = 0.0
    min_frames = sum(int(phone_states[un.phone]) for un in units if not un.optional)
    labels = [str(w) for w in range(n_words)] if words is None else list(words)
    return UtteranceGraph(
        units,
        sid,
        state_unit,
        state_index,
        values,
        log_initial,
        log_final,
        min_frames,
        silences,
        labels,
    )


def graph_for_choice(
    resolved: ResolvedTranscript,
    choice: Sequence[int],
    *,
    phone_states: Sequence[int],
    log_self_loop: torch.Tensor,
    log_silence: Tuple[Union[float, torch.Tensor], Union[float, torch.Tensor]],
    phone_offset: Optional[Sequence[int]] = None,
    silence_phone: int = 0,
) -> UtteranceGraph:
    """:func:`build_graph` of a resolved transcript with pronunciation ``choice[w]`` of each
    word ``w``."""
    return build_graph(
        [alts[c] for alts, c in zip(resolved.alternatives, choice)],
        resolved.silence_after,
        phone_states=phone_states,
        log_self_loop=log_self_loop,
        log_silence=log_silence,
        phone_offset=phone_offset,
        silence_phone=silence_phone,
        words=resolved.words,
    )


class GraphBatch(NamedTuple):
    """Graphs padded to K states and band width W: ``values`` (B, K, W), ``log_initial``,
    ``log_final`` (B, K), ``emission_index`` (B, K) long, ``num_states`` (B,) long. Padding
    states are unreachable: -inf everywhere, emission index 0."""

    values: torch.Tensor
    log_initial: torch.Tensor
    log_final: torch.Tensor
    emission_index: torch.Tensor
    num_states: torch.Tensor

    def to(self, device) -> GraphBatch:
        return GraphBatch(*(t.to(device) for t in self))


def batch_graphs(
    graphs: Sequence[UtteranceGraph], *, device: Optional[Union[str, torch.device]] = None
) -> GraphBatch:
    """Pad a list of graphs into a :class:`GraphBatch` (K, W: the largest of the batch)."""
    if len(graphs) == 0:
        raise HMMValueError("no graphs to batch")
    B = len(graphs)
    K = max(g.num_states for g in graphs)
    W = max(g.width for g in graphs)
    values = torch.full((B, K, W), NEG_INF)
    log_initial = torch.full((B, K), NEG_INF)
    log_final = torch.full((B, K), NEG_INF)
    emission_index = torch.zeros(B, K, dtype=torch.long)
    for b, g in enumerate(graphs):
        k, w = g.num_states, g.width
        values[b, :k, :w] = g.values
        log_initial[b, :k] = g.log_initial
        log_final[b, :k] = g.log_final
        emission_index[b, :k] = g.emission_index
    num_states = torch.tensor([g.num_states for g in graphs], dtype=torch.long)
    batch = GraphBatch(values, log_initial, log_final, emission_index, num_states)
    return batch if device is None else batch.to(device)


def band_to_dense(values: torch.Tensor, lo: int = 0) -> torch.Tensor:
    """Expand a source-indexed band (..., K, W) (``values[..., i, d] = log A[i, i + lo + d]``)
    to the dense (..., K, K) matrix (-inf off the band; band entries outside the matrix are
    dropped)."""
    K, W = values.shape[-2], values.shape[-1]
    dense = values.new_full((*values.shape[:-1], K), NEG_INF)
    i = torch.arange(K, device=values.device)
    for d in range(W):
        j = i + lo + d
        ok = (j >= 0) & (j < K)
        if bool(ok.any()):
            dense[..., i[ok], j[ok]] = values[..., i[ok], d]
    return dense


def dense_to_band(matrix: torch.Tensor, width: int, lo: int = 0, fill: float = NEG_INF):
    """The source-indexed band (..., K, width) of a dense (..., K, K) matrix (``fill`` outside
    the matrix): the inverse of :func:`band_to_dense` on banded matrices."""
    K = matrix.shape[-1]
    band = matrix.new_full((*matrix.shape[:-1], width), fill)
    i = torch.arange(K, device=matrix.device)
    for d in range(width):
        j = i + lo + d
        ok = (j >= 0) & (j < K)
        if bool(ok.any()):
            band[..., i[ok], d] = matrix[..., i[ok], j[ok]]
    return band
