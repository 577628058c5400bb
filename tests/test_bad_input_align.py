"""Issue 16's sweep over the alignment, metrics and io entry points: a catalogue of bad inputs
(wrong rank or size, odd dtypes, empty batches and sequences, bad lengths, NaN/inf, huge
values, numpy arrays and lists, None, non-contiguous tensors, bad files). Each case either gives
the right answer (compared with a reference call) or raises HMMValueError / HMMTypeError (or
AlignmentError, an HMMValueError) naming the argument or file.

Cases are registered per entry point (``ENTRY/case`` test ids), so the count per entry point is
visible in ``pytest --collect-only -q tests/test_bad_input_align.py``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from pytorch_hmm.alignment.corpus import load_corpus, phone_boundary_accuracy
from pytorch_hmm.alignment.ctc import ctc_forced_align
from pytorch_hmm.alignment.dtw import DTWAligner, dtw_align
from pytorch_hmm.alignment.forced import (
    AlignerConfig,
    AlignmentError,
    ForcedAligner,
    Utterance,
)
from pytorch_hmm.alignment.lexicon import Lexicon, read_lexicon
from pytorch_hmm.alignment.mas import monotonic_alignment_search
from pytorch_hmm.alignment.soft_dtw import SoftDTW, soft_dtw_cost, soft_dtw_distance
from pytorch_hmm.errors import HMMTypeError, HMMValueError
from pytorch_hmm.io import read_lab, read_textgrid, write_lab, write_textgrid
from pytorch_hmm.metrics import (
    boundary_accuracy,
    duration_metrics,
    f0_metrics,
    frame_accuracy,
)
from pytorch_hmm.metrics import dtw as metrics_dtw

NAN, INF = math.nan, math.inf
ERR = (HMMValueError, HMMTypeError)

# (entry point, case) -> (function, expected error or None, regex the message must match)
CASES = {}


def case(entry, name, raises=None, match=None):
    def register(fn):
        key = f"{entry}/{name}"
        assert key not in CASES, key
        CASES[key] = (fn, raises, match)
        return fn

    return register


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(n=5, d=3, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=_gen(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------
# dtw (DTWAligner / dtw_align), on both backends


def _same_dtw(a, b, rtol=1e-6):
    assert torch.equal(a.path.cpu(), b.path.cpu())
    torch.testing.assert_close(a.cost.double(), b.cost.double(), rtol=rtol, atol=1e-6)


for _be in ("numba", "torch"):
    E = f"dtw[{_be}]"

    def _dtw_ref(be=_be, **kw):
        return dtw_align(_x(5), _x(6, seed=1), backend=be, **kw)

    @case(E, "numpy_arrays_work")
    def _(be=_be):
        _same_dtw(dtw_align(_x(5).numpy(), _x(6, seed=1).numpy(), backend=be), _dtw_ref(be))

    @case(E, "lists_work")
    def _(be=_be):
        _same_dtw(dtw_align(_x(5).tolist(), _x(6, seed=1).tolist(), backend=be), _dtw_ref(be))

    @case(E, "float32")
    def _(be=_be):
        _same_dtw(dtw_align(_x(5).float(), _x(6, seed=1).float(), backend=be), _dtw_ref(be), 1e-5)

    @case(E, "int")
    def _(be=_be):
        xi, yi = (_x(5) * 3).long(), (_x(6, seed=1) * 3).long()
        _same_dtw(
            dtw_align(xi, yi, backend=be), dtw_align(xi.double(), yi.double(), backend=be), 1e-5
        )

    @case(E, "float16_and_bfloat16")
    def _(be=_be):
        for dt in (torch.float16, torch.bfloat16):
            xh, yh = _x(5).to(dt), _x(6, seed=1).to(dt)
            r = dtw_align(xh, yh, backend=be)
            _same_dtw(r, dtw_align(xh.double(), yh.double(), backend=be), 1e-3)

    @case(E, "transposed_non_contiguous")
    def _(be=_be):
        xt = _x(5).T.contiguous().T  # same values, column-major
        assert not xt.is_contiguous()
        _same_dtw(dtw_align(xt, _x(6, seed=1), backend=be), _dtw_ref(be))

    @case(E, "batched_strided_slice")
    def _(be=_be):
        xb = torch.stack([_x(10), _x(10, seed=2)])[:, ::2]
        yb = torch.stack([_x(6, seed=1), _x(6, seed=3)])
        r = dtw_align(xb, yb, backend=be)
        _same_dtw(
            type(r)(r.path[0, : int(r.path_lengths[0])], r.cost[0], *[None] * 3),
            dtw_align(xb[0].contiguous(), yb[0], backend=be),
        )

    @case(E, "T1")
    def _(be=_be):
        x, y = _x(1), _x(6, seed=1)
        r = dtw_align(x, y, backend=be)
        C = torch.cdist(x, y)[0]
        assert r.path.tolist() == [[0, j] for j in range(6)]
        torch.testing.assert_close(r.cost.double(), C.sum() + 0.0)  # symmetric2: 1x each

    @case(E, "B0")
    def _(be=_be):
        r = dtw_align(torch.zeros(0, 5, 3), torch.zeros(0, 6, 3), backend=be)
        assert r.cost.shape == (0,) and r.path.shape[0] == 0

    @case(E, "1e30_values")
    def _(be=_be):
        r = dtw_align(_x(5).float() * 1e30, _x(6, seed=1).float() * 1e30, backend=be)
        assert torch.equal(r.path, _dtw_ref(be).path)
        torch.testing.assert_close(
            r.cost.double() / 1e30, _dtw_ref(be).cost.double(), rtol=1e-5, atol=0
        )

    @case(E, "nan_padding_beyond_lengths_ignored")
    def _(be=_be):
        xb = torch.stack([_x(5), _x(5)])
        xb[1, 3:] = NAN
        yb = torch.stack([_x(6, seed=1), _x(6, seed=1)])
        r = dtw_align(xb, yb, torch.tensor([5, 3]), backend=be)
        ref = dtw_align(_x(5)[:3], _x(6, seed=1), backend=be)
        torch.testing.assert_close(r.cost[1].double(), ref.cost.double())

    @case(E, "T0", ERR, "x has no frames")
    def _(be=_be):
        dtw_align(torch.zeros(0, 3), _x(6), backend=be)

    @case(E, "rank1", ERR, "x and y must both be")
    def _(be=_be):
        dtw_align(torch.zeros(5), torch.zeros(6), backend=be)

    @case(E, "rank4", ERR, "x and y must both be")
    def _(be=_be):
        dtw_align(torch.zeros(1, 1, 5, 3), torch.zeros(1, 1, 6, 3), backend=be)

    @case(E, "feature_size_mismatch", ERR, "same feature size")
    def _(be=_be):
        dtw_align(_x(5, 3), _x(6, 4), backend=be)

    @case(E, "nan_x", ERR, "x contains NaN")
    def _(be=_be):
        x = _x(5)
        x[2, 1] = NAN
        dtw_align(x, _x(6), backend=be)

    @case(E, "inf_y", ERR, "y contains NaN or inf")
    def _(be=_be):
        y = _x(6)
        y[0, 0] = INF
        dtw_align(_x(5), y, backend=be)

    @case(E, "None", ERR, "x must be a tensor")
    def _(be=_be):
        dtw_align(None, _x(6), backend=be)

    @case(E, "bool", ERR, "x must hold real numbers")
    def _(be=_be):
        dtw_align(torch.ones(5, 3, dtype=torch.bool), _x(6), backend=be)

    for _name, _len, _pat in [
        ("lengths_0", torch.tensor([0, 5]), "x_lengths"),
        ("lengths_gt_T", torch.tensor([6, 5]), "x_lengths"),
        ("lengths_negative", torch.tensor([-1, 5]), "x_lengths"),
        ("lengths_float", torch.tensor([2.0, 5.0]), "x_lengths"),
        ("lengths_wrong_shape", torch.tensor([5]), "x_lengths"),
    ]:

        @case(E, _name, ERR, _pat)
        def _(be=_be, lens=_len):
            dtw_align(torch.stack([_x(5)] * 2), torch.stack([_x(6)] * 2), lens, backend=be)

    @case(E, "lengths_on_unbatched", ERR, "x_lengths/y_lengths")
    def _(be=_be):
        dtw_align(_x(5), _x(6), torch.tensor([5]), backend=be)

    @case(E, "align_cost_neg_inf", ERR, "cost contains -inf")
    def _(be=_be):
        C = torch.rand(5, 6, dtype=torch.float64)
        C[2, 2] = -INF
        DTWAligner(backend=be).align_cost(C)

    @case(E, "align_cost_nan", ERR, "cost matrix contains NaN")
    def _(be=_be):
        C = torch.rand(5, 6, dtype=torch.float64)
        C[2, 2] = NAN
        DTWAligner(backend=be).align_cost(C)

    @case(E, "align_cost_numpy_float16")
    def _(be=_be):
        C = torch.rand(5, 6, generator=_gen(), dtype=torch.float64)
        ref = DTWAligner(backend=be).align_cost(C)
        _same_dtw(DTWAligner(backend=be).align_cost(C.numpy()), ref)
        h = DTWAligner(backend=be).align_cost(C.half())
        _same_dtw(h, DTWAligner(backend=be).align_cost(C.half().double()))


# ------------------------------------------------------------------------------------------
# soft-DTW (soft_dtw_cost, soft_dtw_distance, SoftDTW), on both backends


def _cost(n=5, m=6, seed=0):
    return torch.rand(n, m, generator=_gen(seed), dtype=torch.float64)


for _be in ("numba", "torch"):
    E = f"soft_dtw[{_be}]"

    @case(E, "numpy_and_list_work")
    def _(be=_be):
        ref = soft_dtw_cost(_cost(), backend=be)
        torch.testing.assert_close(soft_dtw_cost(_cost().numpy(), backend=be), ref)
        torch.testing.assert_close(soft_dtw_cost(_cost().tolist(), backend=be), ref)

    @case(E, "float16_bfloat16_computed_in_float32")
    def _(be=_be):
        for dt in (torch.float16, torch.bfloat16):
            c = _cost().to(dt)
            out = soft_dtw_cost(c, backend=be)
            assert out.dtype == dt
            ref = soft_dtw_cost(c.float(), backend=be)
            torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)

    @case(E, "transposed_non_contiguous")
    def _(be=_be):
        c = _cost().T.contiguous().T
        assert not c.is_contiguous()
        torch.testing.assert_close(soft_dtw_cost(c, backend=be), soft_dtw_cost(_cost(), backend=be))

    @case(E, "T1")
    def _(be=_be):
        c = _cost(1, 4)
        torch.testing.assert_close(soft_dtw_cost(c, backend=be), c.sum())  # one path

    @case(E, "B0")
    def _(be=_be):
        assert soft_dtw_cost(torch.zeros(0, 5, 6, dtype=torch.float64), backend=be).shape == (0,)

    @case(E, "1e30_scaled")
    def _(be=_be):
        # sdtw(s C, s gamma) = s sdtw(C, gamma)
        big = soft_dtw_cost(_cost() * 1e30, gamma=1e30, backend=be)
        torch.testing.assert_close(big / 1e30, soft_dtw_cost(_cost(), backend=be))

    @case(E, "plus_inf_cell_is_forbidden")
    def _(be=_be):
        c = _cost()
        c[0, 1] = INF
        assert math.isfinite(float(soft_dtw_cost(c, backend=be)))

    @case(E, "distance_agrees_with_cost")
    def _(be=_be):
        x, y = _x(5), _x(6, seed=1)
        torch.testing.assert_close(
            soft_dtw_distance(x.numpy(), y.tolist(), backend=be),
            soft_dtw_cost(torch.cdist(x, y) ** 2, backend=be),
            rtol=1e-6,
            atol=1e-6,
        )

    @case(E, "nan_cell", ERR, "cost contains NaN")
    def _(be=_be):
        c = _cost()
        c[2, 2] = NAN
        soft_dtw_cost(c, backend=be)

    @case(E, "neg_inf_cell", ERR, "cost contains NaN or -inf")
    def _(be=_be):
        c = _cost()
        c[2, 2] = -INF
        soft_dtw_cost(c, backend=be)

    @case(E, "int_cost", ERR, "cost must be a floating-point")
    def _(be=_be):
        soft_dtw_cost(torch.ones(5, 6, dtype=torch.long), backend=be)

    @case(E, "rank1", ERR, "cost must have shape")
    def _(be=_be):
        soft_dtw_cost(torch.ones(5, dtype=torch.float64), backend=be)

    @case(E, "rank4", ERR, "cost must have shape")
    def _(be=_be):
        soft_dtw_cost(torch.ones(1, 1, 5, 6, dtype=torch.float64), backend=be)

    @case(E, "T0", ERR, "N, M >= 1")
    def _(be=_be):
        soft_dtw_cost(torch.ones(0, 6, dtype=torch.float64), backend=be)

    @case(E, "None", ERR, "cost must be a tensor")
    def _(be=_be):
        soft_dtw_cost(None, backend=be)

    for _g in (0.0, -1.0, NAN, INF, "a", None):

        @case(E, f"gamma_{_g}", ERR, "gamma")
        def _(be=_be, g=_g):
            soft_dtw_cost(_cost(), gamma=g, backend=be)

    @case(E, "module_gamma_0", ERR, "gamma")
    def _(be=_be):
        SoftDTW(gamma=0.0, backend=be)

    for _name, _len, _pat in [
        ("lengths_0", torch.tensor([0, 5]), "x_lengths"),
        ("lengths_gt_T", torch.tensor([6, 5]), "x_lengths"),
        ("lengths_negative", torch.tensor([-1, 5]), "x_lengths"),
        ("lengths_float", torch.tensor([2.0, 5.0]), "x_lengths"),
        ("lengths_wrong_shape", torch.tensor([[5, 5]]), "x_lengths"),
    ]:

        @case(E, _name, ERR, _pat)
        def _(be=_be, lens=_len):
            soft_dtw_cost(torch.stack([_cost()] * 2), x_lengths=lens, backend=be)

    @case(E, "nan_features", ERR, "x contains NaN")
    def _(be=_be):
        x = _x(5)
        x[1, 1] = NAN
        soft_dtw_distance(x, _x(6), backend=be)

    @case(E, "feature_size_mismatch", ERR, "same feature size")
    def _(be=_be):
        soft_dtw_distance(_x(5, 3), _x(6, 2), backend=be)


# ------------------------------------------------------------------------------------------
# CTC forced alignment (called only: pytorch_hmm/alignment/ctc.py has its own checks)

E = "ctc"


def _ctc_inputs(B=2, T=8, C=4, S=3):
    lp = torch.log_softmax(torch.randn(B, T, C, generator=_gen()), -1)
    tg = torch.tensor([[1, 2, 3], [3, 1, 2]])[:B, :S]
    return lp, tg


@case(E, "reference_and_non_contiguous")
def _():
    lp, tg = _ctc_inputs()
    ref = ctc_forced_align(lp, tg)
    lpt = lp.transpose(0, 1).contiguous().transpose(0, 1)
    assert not lpt.is_contiguous()
    assert torch.equal(ctc_forced_align(lpt, tg).labels, ref.labels)


@case(E, "float64")
def _():
    lp, tg = _ctc_inputs()
    assert torch.equal(ctc_forced_align(lp.double(), tg).labels, ctc_forced_align(lp, tg).labels)


@case(E, "numpy_refused_by_name", ERR, "log_probs must be a floating-point tensor")
def _():
    lp, tg = _ctc_inputs()
    ctc_forced_align(lp.numpy(), tg)


@case(E, "nan", ERR, "log_probs contains NaN")
def _():
    lp, tg = _ctc_inputs()
    lp[1, 2, 0] = NAN
    ctc_forced_align(lp, tg)


@case(E, "plus_inf", ERR, r"log_probs contains \+inf")
def _():
    lp, tg = _ctc_inputs()
    lp[0, 2, 0] = INF
    ctc_forced_align(lp, tg)


@case(E, "rank2", ERR, "log_probs must have shape")
def _():
    ctc_forced_align(torch.zeros(8, 4), torch.tensor([[1]]))


@case(E, "int_log_probs", ERR, "log_probs must be a floating-point")
def _():
    ctc_forced_align(torch.zeros(1, 8, 4, dtype=torch.long), torch.tensor([[1]]))


@case(E, "float_targets", ERR, "targets must be an integer")
def _():
    lp, tg = _ctc_inputs()
    ctc_forced_align(lp, tg.float())


@case(E, "blank_in_targets", ERR, "blank")
def _():
    lp, tg = _ctc_inputs()
    tg[0, 0] = 0
    ctc_forced_align(lp, tg)


for _name, _kw, _pat in [
    ("input_lengths_gt_T", {"input_lengths": torch.tensor([9, 8])}, "input_lengths"),
    ("input_lengths_negative", {"input_lengths": torch.tensor([-1, 8])}, "input_lengths"),
    ("input_lengths_float", {"input_lengths": torch.tensor([8.0, 8.0])}, "input_lengths"),
    ("input_lengths_wrong_shape", {"input_lengths": torch.tensor([8])}, "input_lengths"),
    ("target_lengths_gt_S", {"target_lengths": torch.tensor([4, 3])}, "target_lengths"),
]:

    @case(E, _name, ERR, _pat)
    def _(kw=_kw):
        lp, tg = _ctc_inputs()
        ctc_forced_align(lp, tg, **kw)


# ------------------------------------------------------------------------------------------
# monotonic alignment search: the compiled kernel and the engine (numba and torch backends)

for _be, _method in (("numba", "kernel"), ("numba", "engine"), ("torch", "engine")):
    E = f"mas[{_method},{_be}]"

    def _mas(lp, be=_be, method=_method, **kw):
        return monotonic_alignment_search(lp, backend=be, method=method, **kw)

    def _lp(B=2, Tx=3, Ty=7):
        return torch.randn(B, Tx, Ty, generator=_gen())

    @case(E, "numpy_and_list_work")
    def _(m=_mas):
        ref = m(_lp()).durations
        assert torch.equal(m(_lp().numpy()).durations, ref)
        assert torch.equal(m(_lp().tolist()).durations, ref)

    @case(E, "float16_bfloat16_float64")
    def _(m=_mas):
        for dt in (torch.float16, torch.bfloat16, torch.float64):
            lp = _lp().to(dt)
            assert torch.equal(m(lp).durations, m(lp.float()).durations)

    @case(E, "transposed_non_contiguous")
    def _(m=_mas):
        lp = _lp().transpose(1, 2).contiguous().transpose(1, 2)
        assert not lp.is_contiguous()
        assert torch.equal(m(lp).durations, m(_lp()).durations)

    @case(E, "B0_T0_T1")
    def _(m=_mas):
        assert m(torch.zeros(0, 3, 5)).durations.shape == (0, 3)
        assert m(torch.zeros(1, 0, 0)).durations.shape == (1, 0)
        assert m(torch.zeros(1, 1, 1)).durations.tolist() == [[1]]

    @case(E, "1e30_scaled")
    def _(m=_mas):
        assert torch.equal(m(_lp() * 1e30).durations, m(_lp()).durations)

    @case(E, "nan_outside_lengths_ignored")
    def _(m=_mas):
        lp = _lp()
        lp[1, :, 5:] = NAN
        r = m(lp, mel_lengths=torch.tensor([7, 5]))
        assert r.durations[1].sum() == 5
        assert torch.equal(r.durations[1], m(_lp()[1:, :, :5]).durations[0])

    @case(E, "nan", ERR, "log_p contains NaN")
    def _(m=_mas):
        lp = _lp()
        lp[0, 1, 3] = NAN
        m(lp)

    @case(E, "plus_inf", ERR, r"log_p contains \+inf")
    def _(m=_mas):
        lp = _lp()
        lp[0, 1, 3] = INF
        m(lp)

    @case(E, "int", ERR, "log_p must be a floating-point")
    def _(m=_mas):
        m(torch.zeros(1, 3, 7, dtype=torch.long))

    @case(E, "None", ERR, "log_p must be a floating-point")
    def _(m=_mas):
        m(None)

    @case(E, "rank1", ERR, "log_p must have shape")
    def _(m=_mas):
        m(torch.zeros(7))

    @case(E, "rank4", ERR, "log_p must have shape")
    def _(m=_mas):
        m(torch.zeros(1, 1, 3, 7))

    @case(E, "text_longer_than_mel", ERR, "text_lengths must be <= mel_lengths")
    def _(m=_mas):
        m(torch.zeros(1, 5, 3))

    for _name, _kw, _pat in [
        ("text_lengths_negative", {"text_lengths": torch.tensor([-1, 3])}, "text_lengths"),
        ("text_lengths_gt_T", {"text_lengths": torch.tensor([4, 3])}, "text_lengths"),
        ("mel_lengths_float", {"mel_lengths": torch.tensor([7.0, 7.0])}, "mel_lengths"),
        ("mel_lengths_wrong_shape", {"mel_lengths": torch.tensor([7])}, "mel_lengths"),
        ("text_0_mel_not", {"text_lengths": torch.tensor([0, 3])}, "text_lengths is 0"),
    ]:

        @case(E, _name, ERR, _pat)
        def _(m=_mas, kw=_kw):
            m(_lp(), **kw)


# ------------------------------------------------------------------------------------------
# metrics

E = "boundary_accuracy"
_REF = [(0.0, 0.1, "a"), (0.1, 0.25, "b"), (0.25, 0.4, "c")]
_HYP = [(0.0, 0.11, "a"), (0.11, 0.24, "b"), (0.24, 0.4, "c")]


@case(E, "numpy_list_tensor_times_work")
def _():
    ref = boundary_accuracy(_REF, _HYP)
    assert ref.n_boundaries == 2 and ref.within[0.010] == 1.0
    for conv in (np.asarray, list, lambda v: torch.tensor(v, dtype=torch.float64)):
        r = boundary_accuracy(conv([0.1, 0.25]), conv([0.11, 0.24]))
        assert r.within == ref.within and r.n_boundaries == 2


@case(E, "scalar_tolerance")
def _():
    assert boundary_accuracy(_REF, _HYP, 0.02).within == {0.02: 1.0}


@case(E, "empty")
def _():
    assert boundary_accuracy([], []).n_boundaries == 0


for _name, _ref, _hyp, _tol, _pat in [
    ("nan_time", [0.1, NAN], [0.1, 0.2], (0.02,), "reference utterance 0: .*NaN"),
    ("inf_time", [0.1, 0.2], [0.1, INF], (0.02,), "hypothesis utterance 0: .*inf"),
    ("negative_time", [-0.1, 0.2], [0.1, 0.2], (0.02,), "reference utterance 0: .*>= 0"),
    ("segment_nan", [(0.0, NAN, "a")], [(0.0, 0.1, "a")], (0.02,), "reference utterance 0"),
    ("segment_end_before_start", _REF, [(0.3, 0.1, "a")] + _HYP[1:], (0.02,), "hypothesis"),
    ("negative_tolerance", _REF, _HYP, (-0.01,), "tolerances"),
    ("nan_tolerance", _REF, _HYP, (NAN,), "tolerances"),
    ("string_tolerance", _REF, _HYP, ("10ms",), "tolerances"),
    ("count_mismatch", [0.1, 0.2], [0.1], (0.02,), "boundaries"),
    ("label_mismatch", _REF, [(0.0, 0.4, "x")], (0.02,), "label sequences differ"),
    ("None", None, _HYP, (0.02,), "expected segments"),
]:

    @case(E, _name, ERR, _pat)
    def _(r=_ref, h=_hyp, t=_tol):
        boundary_accuracy(r, h, t)


E = "phone_boundary_accuracy"


@case(E, "reference")
def _():
    r = phone_boundary_accuracy([_REF], [_HYP])
    assert r.n_boundaries == 2 and r.within[0.010] == 1.0


for _name, _refs, _hyps, _pat in [
    ("nan_time", [[(0.0, 0.1, "a"), (0.1, NAN, "b")]], [_HYP[:2]], "reference utterance 0"),
    ("count_mismatch", [_REF, _REF], [_HYP], "2 references but 1 hypotheses"),
    ("phones_differ", [_REF], [[(0.0, 0.4, "x")]], "phones differ"),
]:

    @case(E, _name, ERR, _pat)
    def _(r=_refs, h=_hyps):
        phone_boundary_accuracy(r, h)


E = "duration_metrics"
_DR, _DH = torch.tensor([[3.0, 4.0, 5.0]]), torch.tensor([[3.0, 6.0, 5.0]])


@case(E, "numpy_list_int_work")
def _():
    ref = duration_metrics(_DR, _DH)
    for conv in (lambda t: t.numpy(), lambda t: t.tolist(), lambda t: t.long()):
        r = duration_metrics(conv(_DR), conv(_DH))
        assert r.mean_mae_frames == ref.mean_mae_frames == pytest.approx(2 / 3)


@case(E, "B0_and_K0")
def _():
    assert duration_metrics(torch.zeros(0, 3), torch.zeros(0, 3)).mean_mae_frames == 0.0
    assert duration_metrics(torch.zeros(1, 0), torch.zeros(1, 0)).mean_mae_frames == 0.0


@case(E, "nan_beyond_lengths_ignored")
def _():
    h = _DH.clone()
    h[0, 2] = NAN
    r = duration_metrics(_DR, h, torch.tensor([2]))
    assert r.mean_mae_frames == pytest.approx(1.0)


for _name, _kw, _pat in [
    ("nan_ref", {"ref": torch.tensor([[NAN, 4.0, 5.0]])}, "ref contains NaN"),
    ("inf_hyp", {"hyp": torch.tensor([[3.0, INF, 5.0]])}, "hyp contains NaN or inf"),
    ("negative_duration", {"hyp": torch.tensor([[3.0, -1.0, 5.0]])}, "hyp must be >= 0"),
    ("negative_tolerance", {"tolerance": -1.0}, "tolerance"),
    ("nan_tolerance", {"tolerance": NAN}, "tolerance"),
    ("zero_frame_shift", {"frame_shift_ms": 0.0}, "frame_shift_ms"),
    ("nan_frame_shift", {"frame_shift_ms": NAN}, "frame_shift_ms"),
    ("bad_unit", {"tolerance_unit": "s"}, "tolerance_unit"),
    ("lengths_gt_K", {"lengths": torch.tensor([4])}, "ref_lengths"),
    ("lengths_negative", {"lengths": torch.tensor([-1])}, "ref_lengths"),
    ("lengths_float", {"lengths": torch.tensor([2.0])}, "ref_lengths"),
    ("lengths_wrong_shape", {"lengths": torch.tensor([2, 2])}, "ref_lengths"),
    ("rank3", {"ref": torch.zeros(1, 1, 3), "hyp": torch.zeros(1, 1, 3)}, "ref must have shape"),
    ("bool", {"ref": torch.ones(1, 3, dtype=torch.bool)}, "ref must hold durations"),
    ("None", {"ref": None}, "ref"),
]:

    @case(E, _name, ERR, _pat)
    def _(kw=_kw):
        args = {"ref": _DR, "hyp": _DH, **kw}
        duration_metrics(args.pop("ref"), args.pop("hyp"), **args)


E = "frame_accuracy"
_FR, _FH = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 2])


@case(E, "numpy_list_whole_floats_work")
def _():
    ref = frame_accuracy(_FR, _FH).mean
    assert ref == pytest.approx(0.8)
    for conv in (lambda t: t.numpy(), lambda t: t.tolist(), lambda t: t.double()):
        assert frame_accuracy(conv(_FR), conv(_FH)).mean == ref


@case(E, "non_contiguous")
def _():
    r = torch.stack([_FR, _FR]).T.contiguous().T
    assert frame_accuracy(r, torch.stack([_FH, _FH])).mean == pytest.approx(0.8)


for _name, _ref, _kw, _pat in [
    ("fractional_labels", _FR + 0.5, {}, "ref must hold whole-number labels"),
    ("nan_labels", torch.tensor([0.0, NAN, 1, 1, 2]), {}, "ref contains NaN"),
    ("bool_labels", _FR.bool(), {}, "ref must hold integer labels"),
    ("length_mismatch", _FR[:4], {}, "frames"),
    ("lengths_gt_T", _FR, {"lengths": torch.tensor([6])}, "ref_lengths"),
    ("lengths_negative", _FR, {"lengths": torch.tensor([-1])}, "ref_lengths"),
    ("lengths_float", _FR, {"lengths": torch.tensor([2.0])}, "ref_lengths"),
    ("ignore_index_float", _FR, {"ignore_index": 0.5}, "ignore_index"),
]:

    @case(E, _name, ERR, _pat)
    def _(r=_ref, kw=_kw):
        frame_accuracy(r, _FH, **kw)


E = "f0_metrics"
_F0R = torch.tensor([100.0, 110.0, 0.0, 120.0])
_F0H = torch.tensor([101.0, 0.0, 0.0, 118.0])


@case(E, "numpy_list_and_nan_is_unvoiced")
def _():
    ref = f0_metrics(_F0R, _F0H)
    assert int(ref.n_voiced) == 2
    r = f0_metrics(_F0R.numpy(), _F0H.tolist())
    assert r.mean_rmse_hz == pytest.approx(ref.mean_rmse_hz)
    h = _F0H.clone()
    h[1] = NAN  # pyin's unvoiced
    assert f0_metrics(_F0R, h).mean_rmse_hz == pytest.approx(ref.mean_rmse_hz)


for _name, _kw, _pat in [
    ("length_mismatch", {"hyp_f0": _F0H[:3]}, "frames"),
    ("lengths_gt_T", {"lengths": torch.tensor([5])}, "ref_lengths"),
    ("voiced_shape", {"ref_voiced": torch.ones(3, dtype=torch.bool)}, "ref_voiced"),
    ("voiced_on_zero_f0", {"ref_voiced": torch.ones(4, dtype=torch.bool)}, "ref_voiced"),
    ("rank3", {"ref_f0": torch.zeros(1, 1, 4), "hyp_f0": torch.zeros(1, 1, 4)}, "ref must"),
]:

    @case(E, _name, ERR, _pat)
    def _(kw=_kw):
        args = {"ref_f0": _F0R, "hyp_f0": _F0H, **kw}
        f0_metrics(args.pop("ref_f0"), args.pop("hyp_f0"), **args)


E = "metrics.dtw"


@case(E, "numpy_list_agree")
def _():
    c = _cost().numpy()
    r = metrics_dtw(c)
    assert metrics_dtw(c.tolist()).distance == r.distance
    assert metrics_dtw(np.asfortranarray(c)).distance == r.distance


for _name, _c, _pat in [
    ("nan", np.array([[0.0, NAN], [1.0, 0.0]]), "NaN or inf"),
    ("inf", np.array([[0.0, INF], [1.0, 0.0]]), "NaN or inf"),
    ("T0", np.zeros((0, 3)), "N, M >= 1"),
    ("rank1", np.zeros(3), "shape"),
]:

    @case(E, _name, ERR, _pat)
    def _(c=_c):
        metrics_dtw(c)


# ------------------------------------------------------------------------------------------
# files: .lab, TextGrid, lexicon


def _write(tmp, name, data):
    p = tmp / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data, encoding="utf-8")
    return p


E = "read_lab"


@case(E, "empty_file_is_no_segments")
def _(tmp):
    assert read_lab(_write(tmp, "e.lab", "")) == []


@case(E, "float_times_and_extra_columns")
def _(tmp):
    segs = read_lab(_write(tmp, "f.lab", "0 1000000.0 a 0.5\n1000000 2000000 b\n"))
    assert segs == [(0.0, 0.1, "a"), (0.1, 0.2, "b")]


for _name, _text, _pat in [
    ("truncated_line", "0 1000000 a\n1000000 2000", r"bad.lab:2"),
    ("nan_time", "0 1000000 a\nnan 2000000 b\n", r"bad.lab:2: times must be finite"),
    ("inf_time", "0 inf a\n", r"bad.lab:1: times must be finite"),
    ("negative_time", "-100 1000000 a\n", r"bad.lab:1: start .* is negative"),
    ("end_before_start", "0 1000000 a\n2000000 1000000 b\n", r"bad.lab:2: end"),
    ("not_a_number", "0 x a\n", r"bad.lab:1: times must be numbers"),
    ("huge_integer", "0 " + "9" * 400 + " a\n", r"bad.lab:1: times must be finite"),
    ("wrong_encoding", b"0 1000000 a\n0 1 \xff\xfe\n", r"bad.lab:2: not UTF-8"),
]:

    @case(E, _name, ERR, _pat)
    def _(tmp, text=_text):
        read_lab(_write(tmp, "bad.lab", text))


E = "write_lab"


@case(E, "tuples_numpy_times_roundtrip")
def _(tmp):
    p = tmp / "w.lab"
    write_lab(p, [(np.float64(0.0), np.float32(0.5), "a"), (0.5, 1.0, "b")])
    assert read_lab(p) == [(0.0, 0.5, "a"), (0.5, 1.0, "b")]


for _name, _segs, _pat in [
    ("nan_time", [(0.0, NAN, "a")], r"segments\[0\]: times must be finite"),
    ("negative_time", [(-0.1, 0.2, "a")], r"segments\[0\]: start"),
    ("end_before_start", [(0.0, 0.1, "a"), (0.3, 0.2, "b")], r"segments\[1\]: end"),
    ("label_with_space", [(0.0, 0.1, "a b")], r"segments\[0\].label"),
    ("None_label", [(0.0, 0.1, None)], r"segments\[0\]: label is None"),
    ("two_fields", [(0.0, 0.1)], r"segments\[0\] must be"),
    ("string_time", [("zero", 0.1, "a")], r"segments\[0\]: times must be numbers"),
    ("None", None, "segments must be a list"),
]:

    @case(E, _name, ERR, _pat)
    def _(tmp, segs=_segs):
        p = _write(tmp, "keep.lab", "0 1000000 old\n")
        try:
            write_lab(p, segs)
        finally:  # the previous file is untouched
            assert p.read_text() == "0 1000000 old\n"


E = "textgrid"


@case(E, "roundtrip")
def _(tmp):
    p = tmp / "t.TextGrid"
    write_textgrid(p, {"phones": [(0.0, 0.5, "a"), (0.5, 1.0, "b")]})
    assert read_textgrid(p)["phones"] == [(0.0, 0.5, "a"), (0.5, 1.0, "b")]


for _name, _data, _pat in [
    ("empty", "", "bad.TextGrid"),
    ("header_only", 'File type = "ooTextFile"\nObject class = "TextGrid"\n', "bad.TextGrid"),
    ("wrong_encoding", b"\xff\x00\xfe garbage \x81\x82", "bad.TextGrid"),
]:

    @case(E, f"read_{_name}", ERR, _pat)
    def _(tmp, data=_data):
        read_textgrid(_write(tmp, "bad.TextGrid", data))


for _name, _old, _new in [
    ("start_after_end", "xmin = 0.5", "xmin = 1.5"),
    ("nan_time", "xmin = 0.5", "xmin = nan"),
    ("inf_time", "xmax = 0.5", "xmax = inf"),
]:

    @case(E, f"read_{_name}", ERR, "bad.TextGrid")
    def _(tmp, old=_old, new=_new):
        p = tmp / "bad.TextGrid"
        write_textgrid(p, {"p": [(0.0, 0.5, "a"), (0.5, 1.0, "b")]})
        text = p.read_text()
        assert old in text
        p.write_text(text.replace(old, new))
        read_textgrid(p)


for _name, _tiers, _kw, _pat in [
    ("nan_time", {"p": [(0.0, NAN, "a")]}, {}, r"tiers\['p'\]\[0\]: times must be finite"),
    ("negative_time", {"p": [(-1.0, 0.5, "a")]}, {}, r"tiers\['p'\]\[0\]: start"),
    ("no_tiers", {}, {}, "at least one tier"),
    ("nan_xmax", {"p": [(0.0, 0.5, "a")]}, {"xmax": NAN}, "xmax"),
    ("xmax_before_end", {"p": [(0.0, 0.5, "a")]}, {"xmax": 0.2}, "xmax"),
    ("overlap", {"p": [(0.0, 0.6, "a"), (0.5, 1.0, "b")]}, {}, "w.TextGrid: .*overlap"),
]:

    @case(E, f"write_{_name}", ERR, _pat)
    def _(tmp, tiers=_tiers, kw=_kw):
        write_textgrid(tmp / "w.TextGrid", tiers, **kw)
        raise AssertionError("not refused")


E = "read_lexicon"


@case(E, "comments_probabilities_and_alternatives")
def _(tmp):
    lex = read_lexicon(_write(tmp, "l.dict", "# c\nab 0.5 a b\nab a c\n\n;;; x\n"))
    assert lex["AB"] == [("a", "b"), ("a", "c")]


for _name, _data, _pat in [
    ("empty_file", "", r"l.dict: no pronunciations"),
    ("only_comments", "# nothing\n", r"l.dict: no pronunciations"),
    ("word_without_phones", "ab a b\ncd\n", r"l.dict:2: word 'cd' has no phones"),
    ("wrong_encoding", b"ab a b\n" + b"cd \xff\xfe\n", r"l.dict:2: not UTF-8"),
]:

    @case(E, _name, ERR, _pat)
    def _(tmp, data=_data):
        read_lexicon(_write(tmp, "l.dict", data))


E = "Lexicon"


@case(E, "mapping_and_pairs_agree")
def _():
    a = Lexicon({"ab": [["a", "b"], ("a", "c")]})
    assert a.to_dict() == Lexicon([("ab", ["a", "b"]), ("AB", ("a", "c"))]).to_dict()


for _name, _entries, _pat in [
    ("phone_with_space", {"ab": [["a b"]]}, "phones must be non-empty, without spaces"),
    ("mapping_to_strings", {"ab": ["a b"]}, "must be a list of phones"),
    ("pronunciation_string", [("ab", "a b")], "must be a list of phones"),
    ("word_with_space", [("a b", ["a"])], "without spaces"),
    ("word_None", [(None, ["a"])], "non-empty string"),
    ("empty_phone", [("ab", ["a", ""])], "phones must be non-empty"),
    ("no_phones", [("ab", [])], "has no phones"),
]:

    @case(E, _name, ERR, _pat)
    def _(entries=_entries):
        Lexicon(entries)


# ------------------------------------------------------------------------------------------
# ForcedAligner: constructor, align, fit, fit_labelled, save/load; load_corpus

CFG = dict(n_mfcc=2, delta_order=0)


def _toy(phones=("a", "b"), **cfg):
    al = ForcedAligner(list(phones), AlignerConfig(**{**CFG, **cfg}))
    with torch.no_grad():
        for i in range(len(al.phones)):
            off, n = al.phone_offset[i], al.phone_states[i]
            al.means[off : off + n] = 4.0 * i
    return al


def _feats(al, spans):
    return torch.cat([torch.full((n, 2), 4.0 * al.phone_index[p]) for p, n in spans])


SPANS = [("sil", 4), ("a", 6), ("b", 6), ("sil", 4)]


def _state(al):
    return {k: v.clone() for k, v in al.state_dict().items()}


def _assert_same_state(al, before):
    after = al.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


E = "ForcedAligner()"
for _name, _args, _kw, _pat in [
    ("phones_None", (None,), {}, "phones must be a sequence"),
    ("phones_string", ("ab",), {}, "phones must be a sequence"),
    ("phones_int", ([1, 2],), {}, "phones must be strings"),
    ("phones_duplicate", (["a", "a"],), {}, "phones must be distinct"),
    ("phone_with_space", (["a b"],), {}, "phone names"),
    ("config_dict", (["a"],), {"config": {"n_mfcc": 2}}, "config must be an AlignerConfig"),
    ("lexicon_dict", (["a"],), {"lexicon": {"a": [["a"]]}}, "lexicon must be a Lexicon"),
    ("n_mixtures_0", (["a"],), {"n_mixtures": 0}, "n_mixtures"),
    ("n_mixtures_float", (["a"],), {"n_mixtures": 1.5}, "n_mixtures"),
]:

    @case(E, _name, ERR, _pat)
    def _(args=_args, kw=_kw):
        ForcedAligner(*args, **kw)


for _field, _value in [
    ("silence_prob", 0.0),
    ("silence_prob", 1.0),
    ("edge_silence_prob", NAN),
    ("self_loop_prob", 1.0),
    ("frame_shift", 0.0),
    ("frame_shift", INF),
    ("sample_rate", 0),
    ("states_per_phone", 2.5),
    ("batch_size", 0),
    ("variance_floor", -1.0),
    ("dither", -0.1),
    ("n_mfcc", True),
]:

    @case(E, f"config_{_field}_{_value}", ERR, f"AlignerConfig.{_field}")
    def _(f=_field, v=_value):
        ForcedAligner(["a"], AlignerConfig(**{f: v}))


@case(E, "config_changed_after_construction", ERR, "AlignerConfig.silence_prob")
def _():
    cfg = AlignerConfig()
    cfg.silence_prob = 0.0
    ForcedAligner(["a"], cfg)


E = "ForcedAligner.align"


@case(E, "bad_utterances_reported_by_name_rest_aligned")
def _():
    al = _toy()
    good = Utterance("good", _feats(al, SPANS), "a b")
    ref = al.align(good)
    nanf = _feats(al, SPANS)
    nanf[3, 1] = NAN
    bad = [
        Utterance("nan", nanf, "a b"),
        Utterance("none", _feats(al, SPANS), None),
        Utterance("rank1", torch.zeros(20), "a b"),
        Utterance("dim", torch.zeros(20, 3), "a b"),
        Utterance("t0", torch.zeros(0, 2), "a b"),
        Utterance("number", _feats(al, SPANS), 5),
        Utterance("unknown", _feats(al, SPANS), "a zz"),
        Utterance("dur", _feats(al, SPANS), "a b", duration=NAN),
    ]
    errors = {}
    out = al.align([bad[0], good, *bad[1:]], errors=errors)
    assert [r.name for r in out] == ["good"] and out[0].phones == ref.phones
    assert sorted(errors) == sorted(u.name for u in bad)
    assert "NaN" in errors["nan"] and "frame 3" in errors["nan"]
    assert "transcript is None" in errors["none"]
    assert "features must be (T, 2)" in errors["rank1"] and "(T, 2)" in errors["dim"]
    assert "no frames" in errors["t0"] and "transcript must be" in errors["number"]
    assert "'zz'" in errors["unknown"] and "duration" in errors["dur"]
    # without errors=, the first failure raises, naming the utterance
    with pytest.raises(AlignmentError, match="nan: features contain NaN"):
        al.align([bad[0], good])


@case(E, "numpy_int_float16_non_contiguous_features")
def _():
    al = _toy()
    x = _feats(al, SPANS)
    ref = al.align(Utterance("u", x, "a b"))
    xt = x.T.contiguous().T
    for f in (x.numpy(), x.long(), x.half(), x.double(), xt, x.tolist()):
        assert al.align(Utterance("u", f, ["a", "b"])).phones == ref.phones


@case(E, "1e30_features_named")
def _():
    al = _toy()
    errors = {}
    al.align([Utterance("big", _feats(al, SPANS) * 1e30, "a b")], errors=errors)
    assert "big" in errors


@case(E, "empty_list")
def _():
    assert _toy().align([]) == []


@case(E, "None", ERR, "utterances must be an Utterance")
def _():
    _toy().align(None)


@case(E, "not_an_utterance", AlignmentError, r"utterances\[0\]: utterances\[0\] must be")
def _():
    _toy().align([("name", torch.zeros(5, 2), "a")])


@case(E, "name_not_a_string", AlignmentError, r"utterances\[0\]: .*name must be a non-empty")
def _():
    al = _toy()
    al.align([Utterance(None, _feats(al, SPANS), "a b")])


@case(E, "errors_not_a_dict", ERR, "errors must be a dict")
def _():
    _toy().align([], errors=[])


E = "ForcedAligner.fit"


def _train_utts(al, n=3):
    return [Utterance(f"u{i}", _feats(al, SPANS) + 0.1 * i, "a b") for i in range(n)]


@case(E, "bad_utterance_skipped_and_named")
def _():
    al = _toy()
    utts = _train_utts(al)
    nanf = _feats(al, SPANS)
    nanf[0, 0] = NAN
    errors = {}
    al.fit([*utts, Utterance("nan", nanf, "a b")], iterations=1, errors=errors)
    assert list(errors) == ["nan"] and "NaN" in errors["nan"]
    assert all(torch.isfinite(v).all() for v in (al.means, al.variances))


for _name, _utts, _kw, _pat in [
    ("all_unusable", lambda al: [Utterance("u", _feats(al, SPANS), "zz")], {}, "no usable"),
    ("all_nan", lambda al: [Utterance("u", torch.full((20, 2), NAN), "a")], {}, "no usable"),
    ("empty", lambda al: [], {}, "utterances is empty"),
    ("None", lambda al: None, {}, "utterances must be a list"),
    ("mixtures_3", _train_utts, {"mixtures": 3}, "mixtures must be a power of two"),
    ("iterations_negative", _train_utts, {"iterations": -1}, "iterations"),
    ("iterations_float", _train_utts, {"iterations": 1.5}, "iterations"),
    ("method", _train_utts, {"method": "em"}, "method"),
    ("huge_features", lambda al: [Utterance("u", _feats(al, SPANS) * 1e30, "a b")], {}, None),
]:

    @case(E, f"{_name}_state_unchanged", ERR, _pat)
    def _(make=_utts, kw=_kw):
        al = _toy()
        before = _state(al)
        try:
            al.fit(make(al), **{"iterations": 1, **kw})
        finally:
            _assert_same_state(al, before)


E = "ForcedAligner.fit_labelled"
_SEG = [(0.0, 0.04, "sil"), (0.04, 0.1, "a"), (0.1, 0.16, "b"), (0.16, 0.2, "sil")]


@case(E, "reference")
def _():
    al = _toy()
    al.fit_labelled([Utterance("u", _feats(al, SPANS), "a b")], [_SEG])
    assert torch.isfinite(al.means).all()


for _name, _seg, _pat in [
    ("unknown_phone", [(0.0, 0.1, "zz")], r"'zz' of segmentations\[0\] \(u\)"),
    ("nan_time", [(0.0, NAN, "a")], r"segmentations\[0\] \(u\)\[0\]: times must be finite"),
    ("negative_time", [(-0.5, 0.1, "a")], r"segmentations\[0\] \(u\)\[0\]"),
    ("end_before_start", [(0.1, 0.0, "a")], r"segmentations\[0\] \(u\)\[0\]"),
    ("two_fields", [(0.0, 0.1)], r"segmentations\[0\] \(u\)\[0\] must be"),
    ("outside_features", [(5.0, 6.0, "a")], "no labelled frames"),
]:

    @case(E, f"{_name}_state_unchanged", ERR, _pat)
    def _(seg=_seg):
        al = _toy()
        before = _state(al)
        try:
            al.fit_labelled([Utterance("u", _feats(al, SPANS), "a b")], [seg])
        finally:
            _assert_same_state(al, before)


@case(E, "count_mismatch", ERR, "one segmentation per utterance")
def _():
    al = _toy()
    al.fit_labelled([Utterance("u", _feats(al, SPANS), "a b")], [_SEG, _SEG])


@case(E, "nan_features", ERR, "features contain NaN")
def _():
    al = _toy()
    before = _state(al)
    x = _feats(al, SPANS)
    x[2, 0] = NAN
    try:
        al.fit_labelled([Utterance("u", x, "a b")], [_SEG])
    finally:
        _assert_same_state(al, before)


E = "ForcedAligner.save_load"


def _saved(tmp):
    al = _toy()
    p = tmp / "m.pt"
    al.save(p)
    return al, p


@case(E, "roundtrip_identical")
def _(tmp):
    al, p = _saved(tmp)
    _assert_same_state(ForcedAligner.load(p), _state(al))
    assert [f for f in os.listdir(tmp) if f != "m.pt"] == []  # no temporary left


@case(E, "first_format_still_loads_with_warning")
def _(tmp):
    al = _toy()
    p = tmp / "old.pt"
    d = {
        "format": "pytorch_hmm.ForcedAligner/1",
        "config": al.config.to_dict(),
        "phones": list(al.phones),
        "lexicon": None,
        "lexicon_case_sensitive": None,
        "state_dict": _state(al),
    }
    torch.save(d, p)
    with pytest.warns(UserWarning, match="re-save"):
        _assert_same_state(ForcedAligner.load(p), _state(al))


@case(E, "failed_save_keeps_old_file")
def _(tmp):
    al, p = _saved(tmp)
    old = p.read_bytes()
    al.means += 1.0
    real = os.replace

    def boom(*a):
        raise OSError("disk full")

    os.replace = boom
    try:
        with pytest.raises(OSError, match="disk full"):
            al.save(p)
    finally:
        os.replace = real
    assert p.read_bytes() == old and sorted(os.listdir(tmp)) == ["m.pt"]


@case(E, "save_into_missing_folder", FileNotFoundError, "folder .* does not exist")
def _(tmp):
    _toy().save(tmp / "no" / "m.pt")


@case(E, "load_lexicon_wrong_type", ERR, "lexicon must be a Lexicon")
def _(tmp):
    _, p = _saved(tmp)
    ForcedAligner.load(p, lexicon={"a": [["a"]]})


def _flip(data):
    b = bytearray(data)
    mid = len(b) // 2
    for i in range(mid, mid + 64):
        b[i] ^= 0xFF
    return bytes(b)


for _name, _mangle, _pat in [
    ("64_flipped_bytes", _flip, "m.pt: checksum mismatch"),
    ("truncated", lambda d: d[: len(d) // 2], "m.pt: checksum mismatch"),
    ("empty", lambda d: b"", "m.pt is not a saved ForcedAligner"),
    ("garbage", lambda d: b"hello world", "m.pt is not a saved ForcedAligner"),
    ("damaged_header", lambda d: d.replace(b"sha256 ", b"sha255 ", 1), "damaged header"),
]:

    @case(E, _name, ERR, _pat)
    def _(tmp, mangle=_mangle):
        _, p = _saved(tmp)
        p.write_bytes(mangle(p.read_bytes()))
        ForcedAligner.load(p)


E = "load_corpus"


@case(E, "bad_transcripts_named_others_read")
def _(tmp):
    import soundfile as sf

    al = ForcedAligner(["a", "b"], AlignerConfig(**CFG))
    wav = 0.1 * torch.randn(8000, generator=_gen()).numpy()
    for n in ("good", "latin1", "empty", "nantone"):
        sf.write(tmp / f"{n}.wav", wav, 16000, subtype="FLOAT")
    sf.write(tmp / "nantone.wav", np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    (tmp / "good.txt").write_text("a b")
    (tmp / "latin1.txt").write_bytes("a b \xe9".encode("latin-1"))
    (tmp / "empty.txt").write_text("")
    (tmp / "nantone.txt").write_text("a b")
    sf.write(tmp / "notext.wav", wav, 16000, subtype="FLOAT")
    errors = {}
    utts = load_corpus(al, tmp, errors=errors)
    assert [u.name for u in utts] == ["good"]
    assert "latin1.txt is not UTF-8" in errors["latin1"]
    assert "empty.txt is empty" in errors["empty"]
    assert "NaN" in errors["nantone"] and "no transcript" in errors["notext"]


@case(E, "aligner_None", ERR, "aligner must be a ForcedAligner")
def _(tmp):
    load_corpus(None, tmp)


@case(E, "missing_folder", FileNotFoundError, "does not exist")
def _(tmp):
    load_corpus(ForcedAligner(["a"]), tmp / "nope")


# ------------------------------------------------------------------------------------------
# the CLI (quick cases, rejected before any reading or training; the aligning ones are in
# tests/test_cli.py)

E = "cli"


def _cli(tmp, *extra):
    from pytorch_hmm.cli import main

    d = tmp / "corpus"
    d.mkdir(exist_ok=True)
    (d / "x.wav").write_bytes(b"RIFF")
    (d / "x.txt").write_text("a b")
    return main(["align", str(d), "-q", *extra])


for _name, _extra, _pat in [
    ("out_is_a_file", lambda t: ["--out", str(_write(t, "f", "x"))], "is not a folder"),
    ("out_under_a_file", lambda t: ["--out", str(_write(t, "f", "x") / "sub")], "--out"),
    ("out_cannot_be_created", lambda t: ["--out", "/proc/nonexistent/out"], "cannot create"),
    ("iterations_negative", lambda t: ["--out", str(t / "o"), "--iterations", "-1"], "iterations"),
    ("mixtures_3", lambda t: ["--out", str(t / "o"), "--mixtures", "3"], "mixtures"),
    ("batch_size_0", lambda t: ["--out", str(t / "o"), "--batch-size", "0"], "batch-size"),
    ("frame_shift_nan", lambda t: ["--out", str(t / "o"), "--frame-shift", "nan"], "frame-shift"),
    ("save_model_folder", lambda t: ["--out", str(t / "o"), "--save-model", str(t)], "folder"),
    (
        "save_model_missing_dir",
        lambda t: ["--out", str(t / "o"), "--save-model", str(t / "no" / "m.pt")],
        "does not exist",
    ),
    (
        "empty_lexicon",
        lambda t: ["--out", str(t / "o"), "--lexicon", str(_write(t, "l.dict", ""))],
        "no pronunciations",
    ),
]:

    @case(E, _name)
    def _(tmp, capsys, extra=_extra, pat=_pat):
        assert _cli(tmp, *extra(tmp)) == 2
        err = capsys.readouterr().err
        assert "error:" in err and pat in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CASES))
def test_bad_input(key, tmp_path, capsys):
    fn, raises, match = CASES[key]
    import inspect

    params = inspect.signature(fn).parameters
    kw = {}
    if "tmp" in params:
        kw["tmp"] = tmp_path
    if "capsys" in params:
        kw["capsys"] = capsys
    if raises is None:
        fn(**kw)
    else:
        with pytest.raises(raises, match=match):
            fn(**kw)


def test_case_counts_per_entry_point():
    counts = {}
    for key in CASES:
        entry = key.split("/")[0]
        counts[entry] = counts.get(entry, 0) + 1
    # every entry point has both answers checked and refusals
    assert len(counts) >= 20 and all(n >= 3 for n in counts.values()), counts
