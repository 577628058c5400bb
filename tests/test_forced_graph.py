"""Forced-aligner utterance graphs in the engine v2 form (band values, log_initial, log_final,
emission_index) against the dense matrices the aligner built before (reimplemented here from
the old ``ForcedAligner._build_graph``)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pytorch_hmm.alignment.forced import AlignerConfig, ForcedAligner, Utterance
from pytorch_hmm.alignment.forced.graph import (
    SILENCE_BETWEEN,
    SILENCE_LEADING,
    SILENCE_TRAILING,
    band_to_dense,
    batch_graphs,
    build_graph,
    dense_to_band,
)
from pytorch_hmm.alignment.lexicon import Lexicon

NEG_INF = float("-inf")


def _old_dense_graph(
    word_phones, silence_after, phone_states, phone_offset, log_self_loop, log_sil
):
    """The old ``_build_graph``: dense (K, K) log_A, log_pi, final mask, state ids, silences,
    min_frames (the last word's silence flag is off, as the old resolver set it)."""
    silence_after = list(silence_after[:-1]) + [False]
    units = [(0, True, -1)]
    for w, phones in enumerate(word_phones):
        for p in phones:
            units.append((p, False, w))
        if silence_after[w]:
            units.append((0, True, -1))
    units.append((0, True, -1))
    state_ids, state_unit, state_index, first = [], [], [], []
    for u, (ph, _, _) in enumerate(units):
        first.append(len(state_ids))
        n, off = phone_states[ph], phone_offset[ph]
        state_ids.extend(range(off, off + n))
        state_unit.extend([u] * n)
        state_index.extend(range(n))
    K = len(state_ids)
    last = [first[u] + phone_states[un[0]] - 1 for u, un in enumerate(units)]
    sid = torch.tensor(state_ids, dtype=torch.long)
    stay = log_self_loop.float().cpu()[sid]
    move = torch.log1p(-stay.exp().clamp(max=1 - 1e-6))
    log_A = torch.full((K, K), NEG_INF)
    idx = torch.arange(K)
    log_A[idx, idx] = stay
    ls_w, ls_e = float(log_sil[0]), float(log_sil[1])
    l1_w, l1_e = math.log1p(-math.exp(ls_w)), math.log1p(-math.exp(ls_e))
    silences = []
    U = len(units)
    for u in range(U):
        for k in range(first[u], last[u]):
            log_A[k, k + 1] = move[k]
        if u == U - 1:
            continue
        src, nxt = last[u], u + 1
        if units[nxt][1] and nxt < U - 1:
            log_A[src, first[nxt]] = move[src] + ls_w
            log_A[src, first[nxt + 1]] = move[src] + l1_w
            silences.append((0, src, first[nxt], first[nxt + 1]))
        elif units[nxt][1]:
            log_A[src, first[nxt]] = move[src] + ls_e
            silences.append((2, src, first[nxt], -1))
        else:
            log_A[src, first[nxt]] = move[src]
    log_pi = torch.full((K,), NEG_INF)
    log_pi[first[0]] = ls_e
    log_pi[first[1]] = l1_e
    silences.append((1, -1, first[0], first[1]))
    final = torch.zeros(K, dtype=torch.bool)
    final[last[U - 1]] = True
    final[last[U - 2]] = True
    min_frames = sum(phone_states[un[0]] for un in units if not un[1])
    return dict(
        log_A=log_A,
        log_pi=log_pi,
        final=final,
        state_ids=sid,
        state_unit=state_unit,
        state_index=state_index,
        silences=silences,
        min_frames=min_frames,
    )


# phone set: 0 = silence (n_sil states), 1..5 phones with 3 states, 6 with 2 and 7 with 4
def _phone_set(n_sil):
    phone_states = [n_sil, 3, 3, 3, 3, 3, 2, 4]
    offset = [0]
    for n in phone_states[:-1]:
        offset.append(offset[-1] + n)
    return phone_states, offset


CASES = [
    # (word phones, silence after each word)
    ([[1]], [False]),
    ([[1, 2, 3]], [True]),
    ([[1, 2], [3]], [False, False]),
    ([[1, 2], [3], [4, 5]], [True, True, True]),
    ([[6], [7, 1], [6, 6]], [True, False, True]),
    ([[7], [7]], [True, False]),
]


def _check(g, old):
    K = g.num_states
    assert g.values.shape == (K, g.width)
    assert torch.equal(band_to_dense(g.values), old["log_A"])
    assert torch.equal(g.dense(), old["log_A"])
    assert torch.equal(g.log_initial, old["log_pi"])
    assert torch.equal(g.final, old["final"])
    # log_final: 0 exactly on the allowed last states, -inf elsewhere
    assert torch.equal(g.log_final[old["final"]], torch.zeros(int(old["final"].sum())))
    assert torch.all(g.log_final[~old["final"]] == NEG_INF)
    assert torch.equal(g.emission_index, old["state_ids"])
    assert g.emission_index.dtype == torch.long
    assert g.state_unit == old["state_unit"] and g.state_index == old["state_index"]
    assert g.silences == old["silences"] and g.min_frames == old["min_frames"]
    # band entries past the last state are -inf; the band round-trips through dense
    i = torch.arange(K).unsqueeze(1)
    d = torch.arange(g.width).unsqueeze(0)
    assert torch.all(g.values[(i + d) >= K] == NEG_INF)
    assert torch.equal(dense_to_band(old["log_A"], g.width), g.values)
    # nothing of the dense matrix lies outside the band
    ii, jj = torch.nonzero(old["log_A"] > NEG_INF, as_tuple=True)
    assert bool(((jj - ii) >= 0).all()) and bool(((jj - ii) < g.width).all())


@pytest.mark.parametrize("n_sil", [1, 3, 5])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_band_equals_old_dense_graph(n_sil, case):
    word_phones, sil_after = CASES[case]
    phone_states, offset = _phone_set(n_sil)
    S = sum(phone_states)
    g0 = torch.Generator().manual_seed(case * 10 + n_sil)
    log_self_loop = torch.rand(S, generator=g0).clamp(0.05, 0.95).log()
    log_sil = (math.log(0.3), math.log(0.8))
    g = build_graph(
        word_phones,
        sil_after,
        phone_states=phone_states,
        phone_offset=offset,
        log_self_loop=log_self_loop,
        log_silence=log_sil,
    )
    old = _old_dense_graph(word_phones, sil_after, phone_states, offset, log_self_loop, log_sil)
    _check(g, old)
    # W = 1 + the largest skip: over a silence between words (n_sil states) it is n_sil + 1
    between = any(sil_after[:-1])
    assert g.width == (n_sil + 2 if between else 2)
    assert sum(k == SILENCE_BETWEEN for k, *_ in g.silences) == sum(sil_after[:-1])
    assert [k for k, *_ in g.silences].count(SILENCE_LEADING) == 1
    assert [k for k, *_ in g.silences].count(SILENCE_TRAILING) == 1
    # shapes depend on the structure only, not on the probabilities
    g2 = build_graph(
        word_phones,
        sil_after,
        phone_states=phone_states,
        phone_offset=offset,
        log_self_loop=torch.full((S,), math.log(0.5)),
        log_silence=(math.log(0.98), math.log(0.02)),
    )
    assert g2.values.shape == g.values.shape
    assert torch.equal(g2.values > NEG_INF, g.values > NEG_INF)
    assert torch.equal(g2.final, g.final) and torch.equal(g2.emission_index, g.emission_index)


def test_aligner_graphs_with_alternative_pronunciations_and_pauses():
    lex = Lexicon(
        {
            "ab": [["a", "b"]],
            "word": [["a", "c"], ["b", "c", "a"]],
            "c": [["c"], ["c", "c"], ["a", "b", "c"]],
        }
    )
    al = ForcedAligner(["a", "b", "c"], AlignerConfig(n_mfcc=2, delta_order=0), lex)
    with torch.no_grad():
        al.log_self_loop.copy_(torch.linspace(0.2, 0.9, al.num_states).log())
        al.log_silence.copy_(torch.tensor([math.log(0.25), math.log(0.7)]))
    x = torch.zeros(200, al.config.feature_dim)
    res = al._resolve(Utterance("u", x, "ab word c word"))
    assert [len(a) for a in res.alternatives] == [1, 2, 3, 2]
    for choice in itertools.product(*[range(len(a)) for a in res.alternatives]):
        g = al._build_graph(res, choice)
        wp = [alts[c] for alts, c in zip(res.alternatives, choice)]
        old = _old_dense_graph(
            wp, res.silence_after, al.phone_states, al.phone_offset, al.log_self_loop,
            al.log_silence,
        )  # fmt: skip
        _check(g, old)
        assert g.width == al.config.silence_states + 2
        assert g.words == ["ab", "word", "c", "word"]
    # phone mode: pause tokens mark where an optional silence may be
    al2 = ForcedAligner(["a", "b", "c"], AlignerConfig(n_mfcc=2, delta_order=0, silence_states=2))
    res = al2._resolve(Utterance("p", x, "pau a b pau c pau"))
    assert res.silence_after == [False, True, False]
    g = al2._build_graph(res, [0, 0, 0])
    old = _old_dense_graph(
        [a[0] for a in res.alternatives], res.silence_after, al2.phone_states,
        al2.phone_offset, al2.log_self_loop, al2.log_silence,
    )  # fmt: skip
    _check(g, old)
    assert g.width == 4
    # no optional silence between words: a plain left-to-right chain of width 2
    al3 = ForcedAligner(["a", "b"], AlignerConfig(n_mfcc=2, delta_order=0, optional_silence=False))
    g = al3._build_graph(al3._resolve(Utterance("q", x, "a b a")), [0, 0, 0])
    assert g.width == 2


def test_batch_graphs_padding():
    phone_states, offset = _phone_set(3)
    S = sum(phone_states)
    kw = dict(
        phone_states=phone_states,
        phone_offset=offset,
        log_self_loop=torch.full((S,), math.log(0.6)),
        log_silence=(math.log(0.3), math.log(0.8)),
    )
    graphs = [
        build_graph([[1]], **kw),
        build_graph([[1, 2], [3], [4]], [True, False, False], **kw),
        build_graph([[6, 7]], **kw),
    ]
    b = batch_graphs(graphs)
    B, K, W = len(graphs), max(g.num_states for g in graphs), max(g.width for g in graphs)
    assert b.values.shape == (B, K, W)
    assert b.log_initial.shape == b.log_final.shape == b.emission_index.shape == (B, K)
    assert b.emission_index.dtype == torch.long
    assert b.num_states.tolist() == [g.num_states for g in graphs]
    for i, g in enumerate(graphs):
        k, w = g.num_states, g.width
        assert torch.equal(b.values[i, :k, :w], g.values)
        assert torch.all(b.values[i, :k, w:] == NEG_INF)
        assert torch.all(b.values[i, k:] == NEG_INF)
        assert torch.equal(b.log_initial[i, :k], g.log_initial)
        assert torch.equal(b.log_final[i, :k], g.log_final)
        assert torch.all(b.log_initial[i, k:] == NEG_INF)
        assert torch.all(b.log_final[i, k:] == NEG_INF)
        assert torch.equal(b.emission_index[i, :k], g.emission_index)
        assert torch.all(b.emission_index[i, k:] == 0)
        # the padded dense matrix holds the graph's matrix and nothing else
        dense = band_to_dense(b.values[i])
        assert torch.equal(dense[:k, :k], g.dense())
        assert torch.all(dense[k:] == NEG_INF) and torch.all(dense[:, k:] == NEG_INF)


def test_build_graph_validation():
    phone_states, offset = _phone_set(3)
    kw = dict(
        phone_states=phone_states,
        log_self_loop=torch.full((sum(phone_states),), math.log(0.6)),
        log_silence=(math.log(0.3), math.log(0.8)),
    )
    with pytest.raises(ValueError, match="no words"):
        build_graph([], **kw)
    with pytest.raises(ValueError, match="silence_after"):
        build_graph([[1], [2]], [True], **kw)
    with pytest.raises(ValueError, match="no phones"):
        build_graph([[1], []], **kw)
    # phone_offset defaults to the phones' states in order
    g = build_graph([[2, 7]], **kw)
    assert g.emission_index.tolist() == [0, 1, 2, 6, 7, 8, 20, 21, 22, 23, 0, 1, 2]
