"""CTC forced alignment against brute-force enumeration (and torchaudio when installed)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from pytorch_hmm.alignment import CTCAligner, ctc_forced_align
from pytorch_hmm.core._numba import load_kernels

NUMBA = load_kernels("pytorch_hmm.alignment._numba_kernels") is not None
BACKENDS = ["torch"] + (["numba"] if NUMBA else [])
# (backend, method): the engine on torch, the compiled kernel, the engine on compiled kernels
CONFIGS = [("torch", "auto")] + ([("numba", "auto"), ("numba", "engine")] if NUMBA else [])


def _collapse(seq, blank):
    out, prev = [], None
    for s in seq:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def _brute(lp, target, blank):
    """Best frame labelling whose CTC collapse is ``target``: (score, labels) or (-inf, None)."""
    T, C = lp.shape
    best, arg = float("-inf"), None
    for seq in itertools.product(range(C), repeat=T):
        if _collapse(seq, blank) == target:
            v = sum(float(lp[t, seq[t]]) for t in range(T))
            if v > best:
                best, arg = v, seq
    return best, arg


def _spans_from_labels(labels, blank):
    """[start, end) per token from a frame labelling, by a plain loop."""
    spans, prev = [], None
    for t, lab in enumerate(labels):
        if lab != blank and lab != prev:
            spans.append([t, t + 1])
        elif lab != blank and lab == prev:
            spans[-1][1] = t + 1
        prev = lab
    return spans


@pytest.mark.parametrize("backend,method", CONFIGS)
@pytest.mark.parametrize("blank", [0, 3])
def test_matches_brute_force(backend, method, blank):
    torch.manual_seed(10 + blank)
    B, T, C = 6, 6, 4
    lp = torch.randn(B, T, C, dtype=torch.float64).mul(2).log_softmax(-1)
    toks = [t for t in range(C) if t != blank]
    a, b, c = toks
    targets = torch.tensor(
        [[a, b, a], [c, c, blank], [b, b, b], [a, c, blank], [b, blank, blank], [c, a, b]]
    )
    tl = torch.tensor([3, 2, 3, 2, 1, 3])
    il = torch.tensor([6, 5, 6, 3, 4, 6])
    r = CTCAligner(blank_id=blank, backend=backend, method=method).align(lp, targets, il, tl)
    assert r.labels.shape == (B, T) and r.scores.shape == (B, T) and r.spans.shape == (B, 3, 2)
    for u in range(B):
        tgt = targets[u, : tl[u]].tolist()
        best, arg = _brute(lp[u, : il[u]], tgt, blank)
        torch.testing.assert_close(r.score[u].item(), best, rtol=1e-12, atol=1e-12)
        assert r.labels[u, : il[u]].tolist() == list(arg)
        assert (r.labels[u, il[u] :] == -1).all()
        torch.testing.assert_close(
            r.scores[u, : il[u]], lp[u, torch.arange(int(il[u])), list(arg)], rtol=0, atol=0
        )
        assert r.spans[u, : tl[u]].tolist() == _spans_from_labels(arg, blank)
        assert (r.spans[u, tl[u] :] == -1).all()
        assert [s[0] for s in r.token_spans(u, targets)] == tgt
    assert bool(r.valid.all())


@pytest.mark.parametrize("backend,method", CONFIGS)
def test_impossible_utterance_does_not_break_batch(backend, method):
    torch.manual_seed(11)
    lp = torch.randn(3, 5, 4).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3], [1, 1, 1], [2, 2, 0]])
    tl = torch.tensor([3, 3, 2])
    il = torch.tensor([5, 5, 2])  # utt 1 needs 5 frames (ok); utt 2 needs 3 frames, has 2
    with pytest.warns(RuntimeWarning, match=r"impossible for utterances 2 \(T=2, needs 3\)"):
        r = CTCAligner(backend=backend, method=method).align(lp, targets, il, tl)
    assert r.valid.tolist() == [True, True, False]
    assert r.score[2] == float("-inf") and (r.labels[2] == -1).all()
    assert (r.spans[2] == -1).all() and torch.isinf(r.scores[2, :2]).all()
    for u in (0, 1):
        solo = CTCAligner(backend=backend, method=method).align(
            lp[u : u + 1], targets[u : u + 1, : tl[u]]
        )
        torch.testing.assert_close(r.labels[u], solo.labels[0], rtol=0, atol=0)
        torch.testing.assert_close(r.score[u], solo.score[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="impossible for utterances 2"):
        CTCAligner(backend=backend, strict=True, method=method).align(lp, targets, il, tl)


@pytest.mark.parametrize("backend,method", CONFIGS)
def test_empty_target_and_repeats_need_blank(backend, method):
    lp = torch.randn(2, 4, 3, dtype=torch.float64).log_softmax(-1)
    r = CTCAligner(backend=backend, method=method).align(
        lp, torch.tensor([[1, 1], [1, 1]]), None, torch.tensor([2, 0])
    )
    assert r.labels[1].tolist() == [0, 0, 0, 0]
    torch.testing.assert_close(r.score[1], lp[1, :, 0].sum(), rtol=1e-12, atol=1e-12)
    lab = r.labels[0].tolist()
    first_end = lab.index(1) + 1
    while lab[first_end] == 1:
        first_end += 1
    assert 0 in lab[first_end:]  # a blank separates the two 1s
    spans = r.spans[0].tolist()
    assert spans[0][1] <= spans[1][0] - 1


def test_backends_agree_on_larger_batch():
    if not NUMBA:
        pytest.skip("numba not installed")
    torch.manual_seed(12)
    B, T, C, S = 5, 60, 12, 15
    lp = torch.randn(B, T, C).log_softmax(-1)
    targets = torch.randint(1, C, (B, S))
    targets[1, 3:6] = 4  # repeats
    il = torch.tensor([60, 45, 33, 60, 20])
    tl = torch.tensor([15, 12, 15, 1, 14])
    rs = [CTCAligner(backend=be, method=m).align(lp, targets, il, tl) for be, m in CONFIGS]
    for r in rs[1:]:
        for f in ("labels", "spans", "valid", "scores", "score"):
            torch.testing.assert_close(getattr(rs[0], f), getattr(r, f), rtol=0, atol=0)


def test_matches_torchaudio_forced_align():
    F = pytest.importorskip("torchaudio.functional")
    torch.manual_seed(13)
    B, T, C, S = 4, 40, 8, 10
    lp = torch.randn(B, T, C).log_softmax(-1)
    targets = torch.randint(1, C, (B, S), dtype=torch.int32)
    il = torch.tensor([40, 30, 25, 40])
    tl = torch.tensor([10, 8, 10, 3])
    r = ctc_forced_align(lp, targets, il, tl)
    for u in range(B):
        ali, sc = F.forced_align(lp[u : u + 1, : il[u]], targets[u : u + 1, : tl[u]], blank=0)
        assert r.labels[u, : il[u]].tolist() == ali[0].tolist()
        torch.testing.assert_close(r.scores[u, : il[u]], sc[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"log_probs": torch.zeros(5, 3)}, r"log_probs must have shape \(B, T, C\)"),
        ({"targets": torch.ones(3, dtype=torch.long)}, r"targets must have shape \(B, S\)"),
        ({"targets": torch.ones(2, 2)}, "targets must be an integer tensor"),
        ({"blank_id": 4}, "blank_id=4 is out of range for C=4"),
        ({"targets": torch.tensor([[1, 0], [2, 3]])}, "targets contain the blank id 0"),
        ({"targets": torch.tensor([[1, 7], [2, 3]])}, r"targets must lie in \[0, 4\)"),
        ({"input_lengths": torch.tensor([5, 6])}, r"input_lengths must lie in \[0, 5\]"),
        ({"input_lengths": torch.tensor([5])}, r"input_lengths must have shape \(2,\)"),
        ({"target_lengths": torch.tensor([2, 3])}, r"target_lengths must lie in \[0, 2\]"),
        ({"target_lengths": torch.tensor([2.0, 1.0])}, "target_lengths must be an integer"),
        ({"nan": True}, r"log_probs contains NaN \(utterances \[1\]\)"),
    ],
)
def test_validation_messages(kwargs, match):
    lp = torch.randn(2, 5, 4).log_softmax(-1)
    if kwargs.pop("nan", False):
        lp[1, 2, 3] = float("nan")
    args = {
        "log_probs": lp,
        "targets": torch.tensor([[1, 2], [3, 3]]),
        "input_lengths": None,
        "target_lengths": None,
    }
    blank = kwargs.pop("blank_id", 0)
    args.update(kwargs)
    # one exception type per condition: a wrong dtype is a TypeError, anything else ValueError
    exc = TypeError if "integer" in match else ValueError
    with pytest.raises(exc, match=match):
        CTCAligner(blank_id=blank).align(**args)


def test_warning_free_on_valid_input():
    lp = torch.randn(2, 8, 4).log_softmax(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = CTCAligner().align(lp, torch.tensor([[1, 2], [3, 3]]))
    assert r.valid.all()


def test_ties_backends_agree_and_scores_optimal():
    # log-probs on a coarse grid: many exactly tied paths
    torch.manual_seed(14)
    B, T, C = 6, 6, 4
    lp = -torch.randint(0, 3, (B, T, C)).double()
    targets = torch.tensor([[1, 2, 1], [3, 3, 1], [2, 2, 2], [1, 3, 2], [2, 1, 1], [3, 1, 3]])
    rs = [CTCAligner(backend=be, method=m).align(lp, targets) for be, m in CONFIGS]
    for u in range(B):
        best, _ = _brute(lp[u], targets[u].tolist(), 0)
        for r in rs:
            assert r.score[u].item() == best
            assert r.scores[u].sum().item() == best
            assert _collapse(r.labels[u].tolist(), 0) == targets[u].tolist()
    for r in rs[1:]:
        torch.testing.assert_close(rs[0].labels, r.labels, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(15)
    lp = torch.randn(4, 50, 10).log_softmax(-1)
    targets = torch.randint(1, 10, (4, 12))
    il, tl = torch.tensor([50, 40, 13, 50]), torch.tensor([12, 10, 12, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = CTCAligner().align(lp, targets, il, tl)
        b = CTCAligner().align(lp.cuda(), targets.cuda(), il.cuda(), tl.cuda())
    assert b.labels.is_cuda
    torch.testing.assert_close(a.labels, b.labels.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(a.score, b.score.cpu(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------
# the engine graph (method="engine") against the dedicated recursions (method="kernel") and a
# plain-Python copy of the previous kernel's recursion (float64, its tie rules)


def _reference(lp, tgt, il, tl, blank):
    """The previous ``ctc_viterbi`` kernel, frame by frame: (labels, scores, total) lists."""
    lp = lp.double()
    B, T, _ = lp.shape
    labels = [[-1] * T for _ in range(B)]
    scores = [[0.0] * T for _ in range(B)]
    total = []
    for b in range(B):
        Tb, Lb = int(il[b]), int(tl[b])
        S = 2 * Lb + 1
        if Tb == 0:
            total.append(0.0 if Lb == 0 else float("-inf"))
            continue
        ext = [blank if s % 2 == 0 else int(tgt[b, s // 2]) for s in range(S)]
        skip = [s >= 3 and s % 2 == 1 and ext[s] != ext[s - 2] for s in range(S)]
        neg = float("-inf")
        prev = [neg] * S
        prev[0] = float(lp[b, 0, blank])
        if S > 1:
            prev[1] = float(lp[b, 0, ext[1]])
        bp = [[0] * S for _ in range(Tb)]
        for t in range(1, Tb):
            cur = [neg] * S
            for s in range(S):
                best, k = prev[s], 0
                if s >= 1 and prev[s - 1] > best:
                    best, k = prev[s - 1], 1
                if skip[s] and prev[s - 2] > best:
                    best, k = prev[s - 2], 2
                bp[t][s] = k
                cur[s] = best + float(lp[b, t, ext[s]])
            prev = cur
        s = S - 1
        if S > 1 and prev[S - 2] >= prev[S - 1]:
            s = S - 2
        if prev[s] == neg:
            total.append(neg)
            continue
        total.append(prev[s])
        for t in range(Tb - 1, -1, -1):
            labels[b][t] = ext[s]
            scores[b][t] = float(lp[b, t, ext[s]])
            s -= bp[t][s]
    return labels, scores, total


def _random_case(g, dtype, blank, ties):
    B = int(torch.randint(1, 6, (1,), generator=g))
    T = int(torch.randint(1, 25, (1,), generator=g))
    C = int(torch.randint(5, 8, (1,), generator=g))
    S = int(torch.randint(0, 9, (1,), generator=g))
    if ties:  # a coarse grid: many exactly tied paths
        lp = -torch.randint(0, 3, (B, T, C), generator=g).to(dtype)
    else:
        lp = torch.randn(B, T, C, generator=g).to(dtype).mul(2).log_softmax(-1)
        lp = lp.masked_fill(torch.rand(B, T, C, generator=g) < 0.05, float("-inf"))
    vocab = [c for c in range(C) if c != blank][:3]  # few tokens: many repeats
    tg = torch.tensor(vocab)[torch.randint(0, len(vocab), (B, S), generator=g)]
    il = torch.randint(0, T + 1, (B,), generator=g)  # some impossible, some empty
    il[0] = T
    tl = torch.randint(0, S + 1, (B,), generator=g)
    return lp, tg, il, tl


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_engine_equals_previous_recursion(backend, dtype):
    """The engine (on ``backend``) against the compiled kernel and a plain copy of it."""
    g = torch.Generator().manual_seed(30 if dtype == torch.float32 else 31)
    for i in range(24):
        blank = 0 if i % 3 else 2
        lp, tg, il, tl = _random_case(g, dtype, blank, ties=i % 2 == 1)
        with warnings.catch_warnings(record=True) as w_eng:
            warnings.simplefilter("always")
            eng = CTCAligner(blank, backend=backend, method="engine").align(lp, tg, il, tl)
        if NUMBA:
            with warnings.catch_warnings(record=True) as w_ker:
                warnings.simplefilter("always")
                ker = CTCAligner(blank, method="kernel").align(lp, tg, il, tl)
            assert [str(w.message) for w in w_eng] == [str(w.message) for w in w_ker]
            for f in ("labels", "scores", "spans", "valid", "score"):
                assert torch.equal(getattr(eng, f), getattr(ker, f)), (i, f)
        labels, scores, total = _reference(lp, tg, il, tl, blank)
        assert eng.labels.tolist() == labels, i
        ok = eng.valid
        assert torch.equal(eng.scores[ok], torch.tensor(scores, dtype=dtype)[ok]), i
        assert eng.score.dtype == dtype
        # the total is summed frame by frame in float64, as by the compiled kernel
        assert torch.equal(eng.score, torch.tensor(total, dtype=torch.float64).to(dtype)), i


@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_final_tie_goes_to_last_token(backend):
    # uniform log-probs: ending on the last token and on the trailing blank tie exactly
    lp = torch.zeros(2, 5, 3)
    r = CTCAligner(backend=backend, method="engine").align(lp, torch.tensor([[1, 2], [1, 1]]))
    ref, _, _ = _reference(lp, torch.tensor([[1, 2], [1, 1]]), [5, 5], [2, 2], 0)
    assert r.labels.tolist() == ref
    assert r.labels[:, -1].tolist() == [2, 1]


def test_engine_padded_batch_equals_single_utterances():
    g = torch.Generator().manual_seed(32)
    lp = torch.randn(4, 50, 9, generator=g).log_softmax(-1)
    tg = torch.randint(1, 9, (4, 12), generator=g)
    tg[2, 2:6] = 5  # repeats
    il, tl = torch.tensor([50, 31, 20, 5]), torch.tensor([12, 9, 12, 6])
    with pytest.warns(RuntimeWarning, match=r"impossible for utterances 3 \(T=5, needs"):
        r = CTCAligner(method="engine").align(lp, tg, il, tl)
    assert r.valid.tolist() == [True, True, True, False]
    for u in range(3):
        solo = CTCAligner(method="engine").align(lp[u : u + 1, : il[u]], tg[u : u + 1, : tl[u]])
        assert torch.equal(r.labels[u, : il[u]], solo.labels[0])
        assert torch.equal(r.score[u], solo.score[0])


def test_method_and_backend_arguments():
    with pytest.raises(ValueError, match="method must be 'auto', 'engine' or 'kernel'"):
        CTCAligner(method="fast")
    lp0 = torch.randn(1, 4, 3).log_softmax(-1)
    with pytest.raises(ValueError, match="method='kernel' runs the compiled CPU kernel"):
        CTCAligner(method="kernel", backend="torch").align(lp0, torch.tensor([[1]]))
    with pytest.raises(ValueError, match="backend must be 'auto', 'numba' or 'torch'"):
        CTCAligner(backend="cuda")
    lp = torch.randn(1, 4, 3).log_softmax(-1)
    lp[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"log_probs contains \+inf \(utterances \[0\]\)"):
        CTCAligner().align(lp, torch.tensor([[1]]))


def test_engine_other_float_dtypes_run_in_float32():
    lp = torch.randn(2, 12, 5).log_softmax(-1).to(torch.bfloat16)
    tg = torch.tensor([[1, 2, 2], [3, 4, 1]])
    a = CTCAligner(method="engine").align(lp, tg)
    b = CTCAligner(method="engine").align(lp.float(), tg)
    assert a.scores.dtype == torch.bfloat16 and a.score.dtype == torch.bfloat16
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.scores, b.scores.to(torch.bfloat16))
