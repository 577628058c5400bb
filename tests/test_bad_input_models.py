"""Issue 16, second part: bad input to the models, their training and the model-level entry
points, swept table-driven (constructors and files are in ``tests/test_bad_input.py``).

Every case either gives the right answer (the same as a reference call on clean input) or
raises ``HMMValueError`` / ``HMMTypeError`` whose message names the argument; and a failing
call leaves the model as it was (its ``state_dict`` compared before and after).

The dtype rule checked here: models compute in float32 or float64 (their ``dtype``); a model
in half precision is refused at construction; half-precision (and float64) inputs are
converted to the model's dtype, so they give the answer of the converted input.
"""

from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm.errors import HMMTypeError, HMMValueError
from pytorch_hmm.speech import DurationModel
from pytorch_hmm.streaming import StreamingHMMProcessor

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

HMM_ERRORS = (HMMValueError, HMMTypeError)


# -- helpers ---------------------------------------------------------------------------------
def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def assert_unchanged(module, before):
    after = snapshot(module)
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed by a failing call"


def flatten(out):
    """Tensors and numbers of an entry point's result, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (int, float, bool, str)) or out is None:
        return [out]
    if isinstance(out, dict):
        return [v for k in sorted(out) for v in flatten(out[k])]
    if isinstance(out, (list, tuple)):
        return [v for item in out for v in flatten(item)]
    if isinstance(out, torch.nn.Module):  # e.g. what fit returns: compare its parameters
        return flatten(snapshot(out))
    raise AssertionError(f"cannot compare a {type(out).__name__}")


def assert_same(got, want):
    g, w = flatten(got), flatten(want)
    assert len(g) == len(w)
    for a, b in zip(g, w):
        if isinstance(b, torch.Tensor):
            assert isinstance(a, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, equal_nan=False)
        elif isinstance(b, float):
            assert a == pytest.approx(b, rel=1e-6, abs=1e-6)
        else:
            assert a == b


def assert_raises_naming(fn, exc, name):
    with pytest.raises(exc) as info:
        fn()
    assert isinstance(info.value, HMM_ERRORS), f"{type(info.value).__name__}: {info.value}"
    assert name in str(info.value), f"message does not name {name!r}: {info.value}"


class Raises:
    def __init__(self, exc, name):
        self.exc, self.name = exc, name


class Same:
    """The right answer: the same as a reference call with ``ref`` inputs."""

    def __init__(self, ref):
        self.ref = ref


# -- the models --------------------------------------------------------------------------------
K, D = 3, 2
START = [0.5, 0.3, 0.2]
TRANS = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]]
MEANS = [[0.0, 0.0], [2.0, -1.0], [-2.0, 1.0]]


def _gaussian(ctype):
    covars = [[1.0, 0.5], [0.7, 1.2], [1.5, 0.8]]
    if ctype == "full":
        covars = [np.diag(c) + 0.1 * (1 - np.eye(2)) for c in covars]
    return ph.GaussianHMM(K, D, ctype, START, TRANS, MEANS, np.array(covars))


def _mixture():
    m = ph.MixtureGaussianHMM(K, D, 2, "diag", START, TRANS)
    m.set_weights([[0.4, 0.6], [0.5, 0.5], [0.7, 0.3]])
    m.set_means(torch.tensor(MEANS).unsqueeze(1) + torch.tensor([[0.3, 0.0], [-0.3, 0.1]]))
    m.set_covars(torch.full((K, 2, D), 0.8))
    return m


def _hsmm():
    h = ph.HSMM(K, D, 4)
    h.set_means(MEANS)
    h.set_covars(torch.full((K, D), 0.9))
    h.set_durations([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    return h


def _plain():
    return ph.HMMPyTorch(torch.tensor(TRANS), torch.tensor(START))


MODELS = {
    "gaussian_diag": lambda: _gaussian("diag"),
    "gaussian_full": lambda: _gaussian("full"),
    "mixture": _mixture,
    "hsmm": _hsmm,
    "hmmpytorch": _plain,
}
#: what each model names its input in messages, and its input's last dimension
X_NAME = {m: "x" for m in MODELS} | {"hmmpytorch": "log_emissions"}
X_DIM = {m: D for m in MODELS} | {"hmmpytorch": K}


def clean(model_name, B=2, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, X_DIM[model_name], generator=g)
    return -x.abs() if model_name == "hmmpytorch" else x


def _fit(m, x, L):
    m.fit(x, L, n_iter=2, init_params="")
    return m  # compared by its state dict


ENTRY_POINTS = {
    "log_likelihood": lambda m, x, L: m.log_likelihood(x, L),
    "forward": lambda m, x, L: m(x, L),
    "viterbi": lambda m, x, L: m.viterbi(x, L),
    "posteriors": lambda m, x, L: m.posteriors(x, L),
    "score": lambda m, x, L: m.score(x, L),
    "predict": lambda m, x, L: m.predict(x, L),
    "fit": _fit,
}
HAS = {
    (m, e): not (m == "hmmpytorch" and e == "fit") for m in MODELS for e in ENTRY_POINTS
}  # HMMPyTorch has no emission model to train by EM
#: -inf log-emissions are legitimate for HMMPyTorch (an impossible state), see below
SKIP = {("hmmpytorch", "-inf_real_frame")}


def _nan(x):
    x = x.clone()
    x[0, 1, 0] = math.nan
    return x


def _inf(sign):
    def f(x):
        x = x.clone()
        x[1, 2, -1] = sign * math.inf
        return x

    return f


def _transposed(x):  # the same values in a non-contiguous (transposed) layout
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def _strided(x):  # every other frame of a twice-as-long batch: a non-contiguous view
    big = torch.zeros(x.shape[0], 2 * x.shape[1], x.shape[2])
    big[:, ::2] = x
    return big[:, ::2]


# name -> (make (x, lengths) from clean x, expected); "N" in Raises stands for the input name
X_CASES = {
    "none": (lambda x: (None, None), Raises(HMMTypeError, "N")),
    "string": (lambda x: ("features", None), Raises(HMMTypeError, "N")),
    "object": (lambda x: (object(), None), Raises(HMMTypeError, "N")),
    "dict": (lambda x: ({"x": x}, None), Raises(HMMTypeError, "N")),
    "ragged_list": (lambda x: ([[0.1, 0.2], [0.3]], None), Raises(HMMTypeError, "N")),
    "int_tensor": (lambda x: (x.round().long(), None), Raises(HMMTypeError, "N")),
    "bool_tensor": (lambda x: (x > 0, None), Raises(HMMTypeError, "N")),
    "complex_tensor": (lambda x: (x.to(torch.complex64), None), Raises(HMMTypeError, "N")),
    "int_numpy": (lambda x: (x.round().long().numpy(), None), Raises(HMMTypeError, "N")),
    "B0": (lambda x: (x[:0], None), Raises(HMMValueError, "N")),
    "T0": (lambda x: (x[:, :0], None), Raises(HMMValueError, "N")),
    "wrong_feature_dim": (
        lambda x: (torch.cat([x, x[..., :1]], -1), None),
        Raises(HMMValueError, "N"),
    ),
    "rank1": (lambda x: (x[0, :, 0], None), Raises(HMMValueError, "N")),
    "rank4": (lambda x: (x.unsqueeze(0), None), Raises(HMMValueError, "N")),
    "nan_real_frame": (lambda x: (_nan(x), None), Raises(HMMValueError, "NaN")),
    "+inf_real_frame": (lambda x: (_inf(1)(x), None), Raises(HMMValueError, "inf")),
    "-inf_real_frame": (lambda x: (_inf(-1)(x), None), Raises(HMMValueError, "inf")),
    "lengths_zero": (lambda x: (x, torch.tensor([0, 5])), Raises(HMMValueError, "lengths")),
    "lengths_above_T": (lambda x: (x, torch.tensor([6, 5])), Raises(HMMValueError, "lengths")),
    "lengths_negative": (lambda x: (x, torch.tensor([-1, 5])), Raises(HMMValueError, "lengths")),
    "lengths_float": (lambda x: (x, torch.tensor([4.0, 5.0])), Raises(HMMTypeError, "lengths")),
    "lengths_shape": (lambda x: (x, torch.tensor([4, 5, 5])), Raises(HMMValueError, "lengths")),
    "lengths_2d": (lambda x: (x, torch.tensor([[4, 5]])), Raises(HMMValueError, "lengths")),
    # right answers: the same as the clean call (on the values the model computes with)
    "numpy_float64": (lambda x: (x.double().numpy(), None), Same(lambda x: (x, None))),
    "list_of_floats": (lambda x: (x.tolist(), None), Same(lambda x: (x, None))),
    "float64_tensor": (lambda x: (x.double(), None), Same(lambda x: (x, None))),
    "float16_tensor": (lambda x: (x.half(), None), Same(lambda x: (x.half().float(), None))),
    "bfloat16_tensor": (
        lambda x: (x.bfloat16(), None),
        Same(lambda x: (x.bfloat16().float(), None)),
    ),
    "transposed_layout": (lambda x: (_transposed(x), None), Same(lambda x: (x, None))),
    "strided_view": (lambda x: (_strided(x), None), Same(lambda x: (x, None))),
    "single_sequence_2d": (lambda x: (x[0], None), Same(lambda x: (x[:1], None))),
    "lengths_list": (lambda x: (x, [3, 5]), Same(lambda x: (x, torch.tensor([3, 5])))),
    "lengths_numpy": (lambda x: (x, np.array([3, 5])), Same(lambda x: (x, torch.tensor([3, 5])))),
    "lengths_int32": (
        lambda x: (x, torch.tensor([3, 5], dtype=torch.int32)),
        Same(lambda x: (x, torch.tensor([3, 5]))),
    ),
}

SWEEP = [
    pytest.param(m, e, c, id=f"{m}-{e}-{c}")
    for m in MODELS
    for e in ENTRY_POINTS
    if HAS[(m, e)]
    for c in X_CASES
    if (m, c) not in SKIP
]


def test_hmmpytorch_minus_inf_log_emissions_are_impossible_states():
    model = MODELS["hmmpytorch"]()
    x = clean("hmmpytorch")
    x[:, :, 1] = -math.inf  # state 1 can never emit: the same as a model without it
    ll = model.log_likelihood(x)
    assert bool(torch.isfinite(ll).all())
    assert bool((model.predict(x) != 1).all())


@pytest.mark.parametrize("model_name, entry, case", SWEEP)
def test_entry_point_sweep(model_name, entry, case):
    model = MODELS[model_name]()
    fn = ENTRY_POINTS[entry]
    make, expected = X_CASES[case]
    x0 = clean(model_name)
    before = snapshot(model)
    x, L = make(x0)
    if isinstance(expected, Raises):
        name = X_NAME[model_name] if expected.name == "N" else expected.name
        if entry == "fit" and expected.name == "N" and case in ("none", "string", "object"):
            name = "x"
        assert_raises_naming(lambda: fn(model, x, L), expected.exc, name)
        assert_unchanged(model, before)
        return
    ref_model = copy.deepcopy(model)
    got = fn(model, x, L)
    xr, Lr = expected.ref(x0)
    want = fn(ref_model, xr, Lr)
    assert_same(got, want)


def test_huge_values_round_to_minus_inf_not_nan():
    """1e30 features: a float32 model's log-likelihood is the float64 answer (about -1e60)
    rounded to float32, i.e. -inf, never NaN; a float64 model gives it finitely."""
    for name in ("gaussian_diag", "gaussian_full", "mixture", "hsmm"):
        model = MODELS[name]()
        x = torch.full((1, 4, D), 1e30)
        before = snapshot(model)
        ll32 = model.log_likelihood(x)
        ll64 = copy.deepcopy(model).double().log_likelihood(x.double())
        assert bool(torch.isfinite(ll64).all()) and float(ll64) < -1e59, name
        assert ll32.dtype == torch.float32 and float(ll32) == float(ll64.float()), name
        assert not bool(torch.isnan(model.posteriors(x).state_posteriors).any()), name
        assert_unchanged(model, before)


# -- sample ------------------------------------------------------------------------------------
SAMPLE_CASES = {
    "n_frames_zero": (dict(n_frames=0), "n_frames"),
    "n_frames_negative": (dict(n_frames=-2), "n_frames"),
    "n_frames_fraction": (dict(n_frames=2.5), "n_frames"),
    "n_frames_string": (dict(n_frames="4"), "n_frames"),
    "n_frames_bool": (dict(n_frames=True), "n_frames"),
    "num_sequences_zero": (dict(n_frames=4, num_sequences=0), "num_sequences"),
    "num_sequences_negative": (dict(n_frames=4, num_sequences=-1), "num_sequences"),
    "num_sequences_fraction": (dict(n_frames=4, num_sequences=1.5), "num_sequences"),
    "num_sequences_string": (dict(n_frames=4, num_sequences="2"), "num_sequences"),
}
SAMPLERS = ("gaussian_diag", "gaussian_full", "mixture", "hsmm")


@pytest.mark.parametrize("model_name", SAMPLERS)
@pytest.mark.parametrize("case", sorted(SAMPLE_CASES))
def test_sample_sweep(model_name, case):
    model = MODELS[model_name]()
    kw, name = SAMPLE_CASES[case]
    before = snapshot(model)
    assert_raises_naming(lambda: model.sample(**kw), HMMValueError, name)
    assert_unchanged(model, before)


@pytest.mark.parametrize("model_name", SAMPLERS)
def test_sample_whole_numbers_of_other_types(model_name):
    model = MODELS[model_name]()
    a = model.sample(4.0, np.int64(2), generator=torch.Generator().manual_seed(1))
    b = model.sample(4, 2, generator=torch.Generator().manual_seed(1))
    assert_same(a, b)


# -- m_step ------------------------------------------------------------------------------------
def _set(field, index, value, emission=False):
    def f(stats):
        s = copy.deepcopy(stats)
        t = getattr(s.emission if emission else s, field)
        t[index] = value
        return s

    return f


def _reshape_start(stats):
    s = copy.deepcopy(stats)
    s.start = torch.cat([s.start, s.start[:1]])
    return s


def _other_covariance_type(stats):
    s = copy.deepcopy(stats)
    s.emission.covariance_type = "full" if s.emission.covariance_type == "diag" else "diag"
    return s


def _other_feature_dim(stats):
    s = copy.deepcopy(stats)
    s.emission.sum_x = torch.cat([s.emission.sum_x, s.emission.sum_x[..., :1]], -1)
    return s


# name -> (make bad stats / args from good ones, exception, word the message must hold)
M_STEP_CASES = {
    "stats_none": (lambda s: (None, None), HMMTypeError, "stats"),
    "stats_dict": (lambda s: ({"start": s.start}, None), HMMTypeError, "stats"),
    "nan_start": (lambda s: (_set("start", 0, math.nan)(s), None), HMMValueError, "stats.start"),
    "inf_trans": (
        lambda s: (_set("trans", (0, 1), math.inf)(s), None),
        HMMValueError,
        "stats.trans",
    ),
    "nan_trans": (
        lambda s: (_set("trans", (1, 1), math.nan)(s), None),
        HMMValueError,
        "stats.trans",
    ),
    "negative_trans": (
        lambda s: (_set("trans", (0, 0), -5.0)(s), None),
        HMMValueError,
        "stats.trans",
    ),
    "negative_start": (
        lambda s: (_set("start", 1, -0.5)(s), None),
        HMMValueError,
        "stats.start",
    ),
    "start_wrong_shape": (lambda s: (_reshape_start(s), None), HMMValueError, "stats.start"),
    "nan_sum_x": (
        lambda s: (_set("sum_x", 0, math.nan, emission=True)(s), None),
        HMMValueError,
        "stats.emission.sum_x",
    ),
    "inf_sum_xx": (
        lambda s: (_set("sum_xx", 0, math.inf, emission=True)(s), None),
        HMMValueError,
        "stats.emission.sum_xx",
    ),
    "negative_occupancy": (
        lambda s: (_set("occupancy", 0, -1.0, emission=True)(s), None),
        HMMValueError,
        "stats.emission.occupancy",
    ),
    "nan_occupancy": (
        lambda s: (_set("occupancy", 0, math.nan, emission=True)(s), None),
        HMMValueError,
        "stats.emission.occupancy",
    ),
    "other_covariance_type": (
        lambda s: (_other_covariance_type(s), None),
        HMMValueError,
        "stats.emission",
    ),
    "other_feature_dim": (lambda s: (_other_feature_dim(s), None), HMMValueError, "sum_x"),
    "params_unknown_letter": (lambda s: (s, "stz"), HMMValueError, "params"),
    "params_not_a_string": (lambda s: (s, 5), HMMTypeError, "params"),
}
HSMM_M_STEP_CASES = {
    "nan_durations": (
        lambda s: (_set("durations", (0, 1), math.nan)(s), None),
        HMMValueError,
        "stats.durations",
    ),
    "negative_durations": (
        lambda s: (_set("durations", (2, 0), -1.0)(s), None),
        HMMValueError,
        "stats.durations",
    ),
}
M_STEP_MODELS = ("gaussian_diag", "gaussian_full", "mixture", "hsmm")
M_STEP_SWEEP = [
    pytest.param(m, c, id=f"{m}-{c}")
    for m in M_STEP_MODELS
    for c in list(M_STEP_CASES) + (list(HSMM_M_STEP_CASES) if m == "hsmm" else [])
]


@pytest.mark.parametrize("model_name, case", M_STEP_SWEEP)
def test_m_step_sweep(model_name, case):
    model = MODELS[model_name]()
    stats = model.accumulate(clean(model_name, T=6))
    make, exc, name = (M_STEP_CASES | HSMM_M_STEP_CASES)[case]
    bad, params = make(stats)
    before = snapshot(model)
    assert_raises_naming(lambda: model.m_step(bad, params), exc, name)
    assert_unchanged(model, before)
    # and good statistics still give the reference update
    ref = copy.deepcopy(model)
    assert_same(model.m_step(stats), ref.m_step(copy.deepcopy(stats)))


def test_m_step_stats_of_another_model():
    g = MODELS["gaussian_diag"]()
    h = MODELS["hsmm"]()
    small = ph.GaussianHMM(2, D)
    for model, stats, exc, name in (
        (g, h.accumulate(clean("hsmm")), HMMTypeError, "stats"),
        (h, g.accumulate(clean("gaussian_diag")), HMMTypeError, "stats"),
        (g, small.accumulate(clean("gaussian_diag")), HMMValueError, "stats.start"),
    ):
        before = snapshot(model)
        assert_raises_naming(lambda m=model, s=stats: m.m_step(s), exc, name)
        assert_unchanged(model, before)


# -- fit: state unchanged on a failing call ------------------------------------------------------
@pytest.mark.parametrize("model_name", ["gaussian_diag", "gaussian_full", "mixture"])
def test_fit_kmeans_init_with_too_few_frames_changes_nothing(model_name):
    model = MODELS[model_name]()
    before = snapshot(model)
    assert_raises_naming(
        lambda: model.fit(torch.randn(2, D), init_params="stmc"), HMMValueError, "num_states"
    )
    assert_unchanged(model, before)  # start / transition logits were zeroed before the fix


FIT_ARG_CASES = {
    "n_iter_negative": (dict(n_iter=-1), HMMValueError, "n_iter"),
    "n_iter_fraction": (dict(n_iter=1.5), HMMValueError, "n_iter"),
    "n_iter_string": (dict(n_iter="3"), HMMValueError, "n_iter"),
    "tol_nan": (dict(tol=math.nan), HMMValueError, "tol"),
    "tol_string": (dict(tol="0.1"), HMMTypeError, "tol"),
    "params_unknown": (dict(params="stq"), HMMValueError, "params"),
    "params_int": (dict(params=3), HMMTypeError, "params"),
    "init_params_unknown": (dict(init_params="q"), HMMValueError, "init_params"),
    "init_params_int": (dict(init_params=1), HMMTypeError, "init_params"),
}
FIT_MODELS = ("gaussian_diag", "gaussian_full", "mixture", "hsmm")


@pytest.mark.parametrize("model_name", FIT_MODELS)
@pytest.mark.parametrize("case", sorted(FIT_ARG_CASES))
def test_fit_argument_sweep(model_name, case):
    model = MODELS[model_name]()
    kw, exc, name = FIT_ARG_CASES[case]
    before = snapshot(model)
    assert_raises_naming(lambda: model.fit(clean(model_name), **kw), exc, name)
    assert_unchanged(model, before)


@pytest.mark.parametrize("model_name", FIT_MODELS)
def test_fit_failing_in_a_streamed_batch_restores_everything(model_name):
    """The second batch of a streamed corpus holds NaN: the iteration fails after the start
    and transitions were re-initialised; everything is put back."""
    model = MODELS[model_name]()
    model.log_likelihood_history = [1.0]
    model.converged, model.n_iter_ = True, 7
    good = clean(model_name)
    batches = [(good, None), (_nan(good), None)]
    before = snapshot(model)
    assert_raises_naming(
        lambda: model.fit(batches, init_params="st", n_iter=2), HMMValueError, "NaN"
    )
    assert_unchanged(model, before)
    assert model.log_likelihood_history == [1.0] and model.converged and model.n_iter_ == 7


def test_hsmm_flat_start_is_undone_when_fit_fails(monkeypatch):
    h = ph.HSMM(K, D, 4)  # untrained: fit flat-starts it, then the first M-step fails
    before = snapshot(h)

    def boom(*args, **kwargs):
        raise HMMValueError("stats: boom")

    monkeypatch.setattr(h, "m_step", boom)
    with pytest.raises(HMMValueError, match="boom"):
        h.fit(clean("hsmm"), n_iter=2)
    assert_unchanged(h, before)
    assert not hasattr(h, "log_likelihood_history")


def test_fit_accepts_a_list_of_floats_as_one_array():
    x = clean("gaussian_diag")[0]
    a, b = MODELS["gaussian_diag"](), MODELS["gaussian_diag"]()
    a.fit(x.tolist(), n_iter=2, init_params="")
    b.fit(x, n_iter=2, init_params="")
    assert_same(a, b)


# -- setters -----------------------------------------------------------------------------------
def _full(c):
    return torch.diag_embed(torch.as_tensor(c, dtype=torch.float64))


GOOD_COVARS = {
    "gaussian_diag": torch.full((K, D), 0.5),
    "gaussian_full": _full(torch.full((K, D), 0.5)),
    "mixture": torch.full((K, 2, D), 0.5),
    "hsmm": torch.full((K, D), 0.5),
}


def _with(t, index, value):
    t = torch.as_tensor(t, dtype=torch.float64).clone()
    t[index] = value
    return t


def _prob_cases(setter, good):
    g = torch.as_tensor(good, dtype=torch.float64)
    negative = g.clone()  # rows still sum to one, with a negative entry
    negative[..., 0] -= 1.0
    negative[..., 1] += 1.0
    return {
        f"{setter}-none": (setter, None, HMMTypeError),
        f"{setter}-string": (setter, "uniform", HMMTypeError),
        f"{setter}-nan": (setter, _with(g, 0, math.nan), HMMValueError),
        f"{setter}-negative": (setter, negative, HMMValueError),
        f"{setter}-above_one": (setter, g * 1.5, HMMValueError),
        f"{setter}-wrong_shape": (setter, g[..., :-1], HMMValueError),
    }


def setter_cases(model_name):
    cases = {}
    if model_name != "hsmm":  # the HSMM's start / transitions are its topology's
        cases |= _prob_cases("set_startprob", START)
        cases |= _prob_cases("set_transmat", TRANS)
    else:
        cases |= _prob_cases("set_durations", torch.full((K, 4), 0.25))
        cases["set_startprob-forbidden_start"] = ("set_startprob", [0.0, 1.0, 0.0], HMMValueError)
    if model_name == "hmmpytorch":
        return cases
    shape = (K, 2, D) if model_name == "mixture" else (K, D)
    cases |= {
        "set_means-none": ("set_means", None, HMMTypeError),
        "set_means-string": ("set_means", "zeros", HMMTypeError),
        "set_means-nan": ("set_means", _with(torch.zeros(shape), 0, math.nan), HMMValueError),
        "set_means-inf": ("set_means", _with(torch.zeros(shape), 0, math.inf), HMMValueError),
        "set_means-wrong_shape": ("set_means", torch.zeros(shape)[..., :-1], HMMValueError),
    }
    c = GOOD_COVARS[model_name]
    cases |= {
        "set_covars-none": ("set_covars", None, HMMTypeError),
        "set_covars-string": ("set_covars", "eye", HMMTypeError),
        "set_covars-nan": ("set_covars", _with(c, 0, math.nan), HMMValueError),
        "set_covars-inf": ("set_covars", _with(c, 0, math.inf), HMMValueError),
        "set_covars-zero": ("set_covars", c * 0, HMMValueError),
        "set_covars-negative": ("set_covars", -c, HMMValueError),
        "set_covars-wrong_shape": ("set_covars", c[..., :-1], HMMValueError),
    }
    if model_name == "gaussian_full":
        asym = c.clone()
        asym[1, 0, 1] = 0.3
        cases["set_covars-asymmetric"] = ("set_covars", asym, HMMValueError)
        indef = c.clone()
        indef[2] = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
        cases["set_covars-indefinite"] = ("set_covars", indef, HMMValueError)
    if model_name == "mixture":
        w = torch.full((K, 2), 0.5)
        cases |= {
            "set_weights-none": ("set_weights", None, HMMTypeError),
            "set_weights-nan": ("set_weights", _with(w, 0, math.nan), HMMValueError),
            "set_weights-negative": ("set_weights", torch.tensor([[1.5, -0.5]] * K), HMMValueError),
            "set_weights-not_summing": ("set_weights", w * 0.5, HMMValueError),
            "set_weights-wrong_shape": ("set_weights", w[:, :1], HMMValueError),
        }
    return cases


SETTER_SWEEP = [pytest.param(m, c, id=f"{m}-{c}") for m in MODELS for c in sorted(setter_cases(m))]


@pytest.mark.parametrize("model_name, case", SETTER_SWEEP)
def test_setter_sweep(model_name, case):
    model = MODELS[model_name]()
    setter, value, exc = setter_cases(model_name)[case]
    name = setter[len("set_") :]
    before = snapshot(model)
    assert_raises_naming(lambda: getattr(model, setter)(value), exc, name)
    assert_unchanged(model, before)


# -- load_state_dict -------------------------------------------------------------------------------
def _sd_set(key, fn):
    def f(sd):
        sd = {k: v.clone() for k, v in sd.items()}
        sd[key] = fn(sd[key])
        return sd

    return f


def _poke(value):
    def f(t):
        t = t.clone()
        t.view(-1)[0] = value
        return t

    return f


def _drop(key):
    def f(sd):
        return {k: v for k, v in sd.items() if k != key}

    return f


def load_cases(model_name):
    cov = {"gaussian_full": "tril_raw", "hsmm": "emission.log_covars"}.get(model_name, "log_covars")
    means = "emission.means" if model_name == "hsmm" else "means"
    cases = {
        "nan_start_logits": _sd_set("start_logits", _poke(math.nan)),
        "inf_trans_logits": _sd_set("trans_logits", _poke(math.inf)),
        "start_logits_wrong_shape": _sd_set("start_logits", lambda t: t[:-1]),
        "missing_key": _drop("trans_logits"),
        "no_start_state": _sd_set("start_mask", lambda t: torch.zeros_like(t)),
    }
    if model_name == "hsmm":
        cases["nan_duration_logits"] = _sd_set("duration_logits", _poke(math.nan))
    if model_name != "hmmpytorch":
        cases |= {
            "nan_means": _sd_set(means, _poke(math.nan)),
            "inf_covars": _sd_set(cov, _poke(-math.inf)),
            "covars_overflow": _sd_set(cov, lambda t: torch.full_like(t, 1e30)),
        }
    if model_name == "mixture":
        cases["nan_weight_logits"] = _sd_set("weight_logits", _poke(math.nan))
    return cases


LOAD_SWEEP = [pytest.param(m, c, id=f"{m}-{c}") for m in MODELS for c in sorted(load_cases(m))]


@pytest.mark.parametrize("model_name, case", LOAD_SWEEP)
def test_load_state_dict_sweep(model_name, case):
    model = MODELS[model_name]()
    bad = load_cases(model_name)[case](model.state_dict())
    before = snapshot(model)
    assert_raises_naming(lambda: model.load_state_dict(bad), HMMValueError, "state_dict")
    assert_unchanged(model, before)
    # a good state dict still loads
    other = MODELS[model_name]()
    other.load_state_dict(model.state_dict())
    assert_unchanged(other, before)


def test_load_state_dict_size_errors_are_still_runtime_errors():
    model = MODELS["gaussian_diag"]()
    bad = load_cases("gaussian_diag")["start_logits_wrong_shape"](model.state_dict())
    with pytest.raises(RuntimeError, match="start_logits"):
        model.load_state_dict(bad)


# -- from_hmmlearn (duck-typed stand-ins: hmmlearn is optional) -----------------------------
def _hmmlearn_like(fitted=True, **over):
    m = types.SimpleNamespace(covariance_type="diag", n_components=K, min_covar=1e-3)
    if fitted:
        m.startprob_ = np.array(START)
        m.transmat_ = np.array(TRANS)
        m.means_ = np.array(MEANS)
        m.covars_ = np.stack([np.eye(D)] * K)
        m._covars_ = m.covars_
        m.weights_ = None
    for k, v in over.items():
        setattr(m, k, v)
    return m


FROM_HMMLEARN_CASES = {
    "none": (lambda: None, HMMTypeError, "model"),
    "not_a_model": (lambda: object(), HMMTypeError, "model"),
    "unfitted": (lambda: _hmmlearn_like(False), HMMValueError, "not fitted"),
    "spherical": (
        lambda: _hmmlearn_like(covariance_type="spherical"),
        HMMValueError,
        "covariance_type",
    ),
    "nan_means": (lambda: _hmmlearn_like(means_=np.full((K, D), np.nan)), HMMValueError, "means"),
    "bad_startprob": (
        lambda: _hmmlearn_like(startprob_=np.array([0.5, 0.6, 0.1])),
        HMMValueError,
        "startprob",
    ),
}


@pytest.mark.parametrize("case", sorted(FROM_HMMLEARN_CASES))
def test_from_hmmlearn_sweep(case):
    make, exc, name = FROM_HMMLEARN_CASES[case]
    assert_raises_naming(lambda: ph.GaussianHMM.from_hmmlearn(make()), exc, name)


@pytest.mark.parametrize("case", ["none", "not_a_model", "unfitted"])
def test_mixture_from_hmmlearn_sweep(case):
    make, exc, name = FROM_HMMLEARN_CASES[case]
    assert_raises_naming(lambda: ph.MixtureGaussianHMM.from_hmmlearn(make()), exc, name)


def test_from_hmmlearn_good_stand_in():
    m = ph.GaussianHMM.from_hmmlearn(_hmmlearn_like())
    torch.testing.assert_close(m.means, torch.tensor(MEANS, dtype=torch.float64))


# -- constructors (what tests/test_bad_input.py does not cover) ----------------------------------
CONSTRUCTOR_CASES = {
    "gaussian-feature_dim_zero": (lambda: ph.GaussianHMM(2, 0), HMMValueError, "feature_dim"),
    "gaussian-feature_dim_fraction": (lambda: ph.GaussianHMM(2, 2.5), HMMValueError, "feature_dim"),
    "gaussian-feature_dim_string": (lambda: ph.GaussianHMM(2, "2"), HMMValueError, "feature_dim"),
    "gaussian-float16": (lambda: ph.GaussianHMM(2, 2, dtype=torch.float16), HMMTypeError, "dtype"),
    "gaussian-bfloat16_full": (
        lambda: ph.GaussianHMM(2, 2, "full", dtype=torch.bfloat16),
        HMMTypeError,
        "dtype",
    ),
    "gaussian-int_dtype": (lambda: ph.GaussianHMM(2, 2, dtype=torch.int64), HMMTypeError, "dtype"),
    "gaussian-startprob_string": (
        lambda: ph.GaussianHMM(2, 2, startprob="ab"),
        HMMTypeError,
        "startprob",
    ),
    "gaussian-startprob_above_one": (
        lambda: ph.GaussianHMM(2, 2, startprob=[1.5, -0.5]),
        HMMValueError,
        "startprob",
    ),
    "gaussian-transmat_nan": (
        lambda: ph.GaussianHMM(2, 2, transmat=[[math.nan, 1], [0, 1]]),
        HMMValueError,
        "transmat",
    ),
    "gaussian-covariance_type": (
        lambda: ph.GaussianHMM(2, 2, "tied"),
        HMMValueError,
        "covariance_type",
    ),
    "mixture-num_mixtures_zero": (
        lambda: ph.MixtureGaussianHMM(2, 2, 0),
        HMMValueError,
        "num_mixtures",
    ),
    "mixture-num_mixtures_fraction": (
        lambda: ph.MixtureGaussianHMM(2, 2, 1.5),
        HMMValueError,
        "num_mixtures",
    ),
    "mixture-feature_dim_fraction": (
        lambda: ph.MixtureGaussianHMM(2, 1.5),
        HMMValueError,
        "feature_dim",
    ),
    "mixture-float16": (
        lambda: ph.MixtureGaussianHMM(2, 2, dtype=torch.float16),
        HMMTypeError,
        "dtype",
    ),
    "mixture-covars_inf": (
        lambda: ph.MixtureGaussianHMM(2, 2, 2, covars=torch.full((2, 2, 2), math.inf)),
        HMMValueError,
        "covars",
    ),
    "mixture-full_covars_nan": (
        lambda: ph.MixtureGaussianHMM(2, 2, 2, "full", covars=torch.full((2, 2, 2, 2), math.nan)),
        HMMValueError,
        "covars",
    ),
    "hsmm-num_mixtures_zero": (
        lambda: ph.HSMM(2, 2, 4, emission="mixture", num_mixtures=0),
        HMMValueError,
        "num_mixtures",
    ),
    "hsmm-float16": (lambda: ph.HSMM(2, 2, 4, dtype=torch.float16), HMMTypeError, "dtype"),
    "hsmm-duration_floor_nan": (
        lambda: ph.HSMM(2, 2, 4, duration_floor=math.nan),
        HMMValueError,
        "duration_floor",
    ),
    "hsmm-duration_floor_negative": (
        lambda: ph.HSMM(2, 2, 4, duration_floor=-1e-3),
        HMMValueError,
        "duration_floor",
    ),
    "hsmm-max_duration_zero": (lambda: ph.HSMM(2, 2, 0), HMMValueError, "max_duration"),
    "hmmpytorch-none": (lambda: ph.HMMPyTorch(None), HMMTypeError, "transition_matrix"),
    "hmmpytorch-string": (lambda: ph.HMMPyTorch("ab"), HMMTypeError, "transition_matrix"),
    "hmmpytorch-self_loop_1.5": (
        lambda: ph.HMMPyTorch([[1.5, -0.5], [0.0, 1.0]]),
        HMMValueError,
        "transmat",
    ),
    "hmmpytorch-not_square": (
        lambda: ph.HMMPyTorch(torch.ones(2, 3) / 3),
        HMMValueError,
        "transition_matrix",
    ),
    "hmmpytorch-float16": (
        lambda: ph.HMMPyTorch(torch.eye(2), dtype=torch.float16),
        HMMTypeError,
        "dtype",
    ),
    "hmmpytorch-initial_probs_nan": (
        lambda: ph.HMMPyTorch(torch.eye(2), [math.nan, 1.0]),
        HMMValueError,
        "startprob",
    ),
}


@pytest.mark.parametrize("case", sorted(CONSTRUCTOR_CASES))
def test_constructor_sweep(case):
    make, exc, name = CONSTRUCTOR_CASES[case]
    assert_raises_naming(make, exc, name)


# -- create_speech_hmm ------------------------------------------------------------------------
FACTORY_TYPES = ("gaussian", "mixture_gaussian", "hsmm", "streaming", "neural")


def factory_cases(mt):
    small = dict(hidden_dim=8, prenet_dim=8, encoder_layers=1) if mt == "neural" else {}
    f = ph.create_speech_hmm
    cases = {
        "num_states_zero": (lambda: f(0, 2, mt, **small), HMMValueError, "num"),
        "num_states_fraction": (lambda: f(2.5, 2, mt, **small), HMMValueError, "num"),
        "feature_dim_zero": (lambda: f(2, 0, mt, **small), HMMValueError, "feature_dim"),
        "feature_dim_fraction": (lambda: f(2, 2.5, mt, **small), HMMValueError, "feature_dim"),
        "float16": (lambda: f(2, 2, mt, dtype=torch.float16, **small), HMMTypeError, "dtype"),
        "unknown_option": (lambda: f(2, 2, mt, bogus=1, **small), TypeError, "bogus"),
        "topology": (lambda: f(2, 2, mt, topology="circular", **small), HMMValueError, "topology"),
    }
    if mt in ("gaussian", "mixture_gaussian", "streaming"):
        for v, exc in (
            (1.5, HMMValueError),
            (0.0, HMMValueError),
            (1.0, HMMValueError),
            (math.nan, HMMValueError),
            ("0.5", HMMTypeError),
        ):
            cases[f"self_loop_{v}"] = (lambda v=v: f(2, 2, mt, self_loop=v), exc, "self_loop")
    if mt in ("mixture_gaussian", "hsmm"):
        kw = dict(emission="mixture") if mt == "hsmm" else {}
        cases["num_mixtures_zero"] = (
            lambda: f(2, 2, mt, num_mixtures=0, **kw),
            HMMValueError,
            "num_mixtures",
        )
    if mt == "neural":
        cases["states_per_phone_zero"] = (
            lambda: f(2, 2, mt, states_per_phone=0, **small),
            HMMValueError,
            "states_per_phone",
        )
    if mt == "streaming":
        cases["chunk_size_zero"] = (lambda: f(2, 2, mt, chunk_size=0), HMMValueError, "chunk_size")
    return cases


FACTORY_SWEEP = [
    pytest.param(mt, c, id=f"{mt}-{c}") for mt in FACTORY_TYPES for c in sorted(factory_cases(mt))
]


@pytest.mark.parametrize("model_type, case", FACTORY_SWEEP)
def test_create_speech_hmm_sweep(model_type, case):
    make, exc, name = factory_cases(model_type)[case]
    with pytest.raises(exc) as info:
        make()
    assert isinstance(info.value, HMM_ERRORS), f"{type(info.value).__name__}: {info.value}"
    assert name in str(info.value), str(info.value)


@pytest.mark.parametrize("model_type", [None, "bogus", 3])
def test_create_speech_hmm_model_type(model_type):
    assert_raises_naming(
        lambda: ph.create_speech_hmm(2, 2, model_type), HMMValueError, "model_type"
    )


# -- NeuralHMM ---------------------------------------------------------------------------------
NS, ND = 4, 3  # symbols, feature dim


def _neural():
    torch.manual_seed(0)
    return ph.NeuralHMM(NS, ND, hidden_dim=8, prenet_dim=8, encoder_layers=1).eval()


def _neural_inputs():
    g = torch.Generator().manual_seed(3)
    symbols = torch.tensor([[0, 1, 2], [3, 1, 0]])
    sl = torch.tensor([3, 2])
    x = torch.randn(2, 9, ND, generator=g)
    L = torch.tensor([9, 7])
    return symbols, sl, x, L


NEURAL_ENTRY = {
    "log_likelihood": lambda m, s, sl, x, L: m.log_likelihood(s, sl, x, L),
    "forward": lambda m, s, sl, x, L: m(s, sl, x, L),
    "loss": lambda m, s, sl, x, L: m.loss(s, sl, x, L),
    "viterbi": lambda m, s, sl, x, L: m.viterbi(s, sl, x, L),
    "align": lambda m, s, sl, x, L: m.align(s, sl, x, L),
}


def _neural_x(fn):
    return lambda s, sl, x, L: (s, sl, fn(x), L)


def _neural_x_nan(s, sl, x, L):
    x = x.clone()
    x[1, 3, 0] = math.nan
    return s, sl, x, L


def _neural_x_inf(s, sl, x, L):
    x = x.clone()
    x[0, 8, 2] = math.inf
    return s, sl, x, L


NEURAL_CASES = {
    "x_none": (_neural_x(lambda x: None), Raises(HMMTypeError, "x")),
    "x_string": (_neural_x(lambda x: "frames"), Raises(HMMTypeError, "x")),
    "x_int": (_neural_x(lambda x: x.round().long()), Raises(HMMTypeError, "x")),
    "x_ragged": (_neural_x(lambda x: [[0.1], [0.2, 0.3]]), Raises(HMMTypeError, "x")),
    "x_wrong_batch": (_neural_x(lambda x: x[:1]), Raises(HMMValueError, "x")),
    "x_wrong_feature_dim": (_neural_x(lambda x: x[..., :2]), Raises(HMMValueError, "x")),
    "x_rank4": (_neural_x(lambda x: x.unsqueeze(0)), Raises(HMMValueError, "x")),
    "x_T0": (_neural_x(lambda x: x[:, :0]), Raises(HMMValueError, "x")),
    "x_nan": (_neural_x_nan, Raises(HMMValueError, "NaN")),
    "x_inf": (_neural_x_inf, Raises(HMMValueError, "inf")),
    "symbols_none": (lambda s, sl, x, L: (None, sl, x, L), Raises(HMMTypeError, "symbols")),
    "symbols_string": (lambda s, sl, x, L: ("abc", sl, x, L), Raises(HMMTypeError, "symbols")),
    "symbols_float": (lambda s, sl, x, L: (s.float(), sl, x, L), Raises(HMMTypeError, "symbols")),
    "symbols_too_large": (
        lambda s, sl, x, L: (s.clamp(max=2) + s.eq(3) * NS, sl, x, L),
        Raises(HMMValueError, "symbols"),
    ),
    "symbols_negative": (lambda s, sl, x, L: (s - 1, sl, x, L), Raises(HMMValueError, "symbols")),
    "symbols_B0": (
        lambda s, sl, x, L: (s[:0], None, x[:0], None),
        Raises(HMMValueError, "symbols"),
    ),
    "symbols_rank3": (lambda s, sl, x, L: (s[None], sl, x, L), Raises(HMMValueError, "symbols")),
    "symbol_lengths_zero": (
        lambda s, sl, x, L: (s, torch.tensor([0, 2]), x, L),
        Raises(HMMValueError, "symbol_lengths"),
    ),
    "symbol_lengths_above_N": (
        lambda s, sl, x, L: (s, torch.tensor([4, 2]), x, L),
        Raises(HMMValueError, "symbol_lengths"),
    ),
    "symbol_lengths_float": (
        lambda s, sl, x, L: (s, sl.float(), x, L),
        Raises(HMMTypeError, "symbol_lengths"),
    ),
    "lengths_zero": (
        lambda s, sl, x, L: (s, sl, x, torch.tensor([0, 7])),
        Raises(HMMValueError, "lengths"),
    ),
    "lengths_above_T": (
        lambda s, sl, x, L: (s, sl, x, torch.tensor([10, 7])),
        Raises(HMMValueError, "lengths"),
    ),
    "lengths_float": (lambda s, sl, x, L: (s, sl, x, L.float()), Raises(HMMTypeError, "lengths")),
    "lengths_shape": (lambda s, sl, x, L: (s, sl, x, L[:1]), Raises(HMMValueError, "lengths")),
    # right answers
    "x_numpy": (_neural_x(lambda x: x.numpy()), Same(lambda s, sl, x, L: (s, sl, x, L))),
    "x_float16": (
        _neural_x(lambda x: x.half()),
        Same(lambda s, sl, x, L: (s, sl, x.half().float(), L)),
    ),
    "x_float64": (_neural_x(lambda x: x.double()), Same(lambda s, sl, x, L: (s, sl, x, L))),
    "x_transposed": (_neural_x(_transposed), Same(lambda s, sl, x, L: (s, sl, x, L))),
    "symbols_list": (
        lambda s, sl, x, L: (s.tolist(), sl.tolist(), x, L.tolist()),
        Same(lambda s, sl, x, L: (s, sl, x, L)),
    ),
    "symbols_int32": (
        lambda s, sl, x, L: (s.int(), sl, x, L),
        Same(lambda s, sl, x, L: (s, sl, x, L)),
    ),
}
NEURAL_SWEEP = [
    pytest.param(e, c, id=f"neural-{e}-{c}") for e in NEURAL_ENTRY for c in NEURAL_CASES
]


@pytest.mark.parametrize("entry, case", NEURAL_SWEEP)
def test_neural_hmm_sweep(entry, case):
    model = _neural()
    fn = NEURAL_ENTRY[entry]
    make, expected = NEURAL_CASES[case]
    args = _neural_inputs()
    before = snapshot(model)
    bad = make(*args)
    if isinstance(expected, Raises):
        assert_raises_naming(lambda: fn(model, *bad), expected.exc, expected.name)
        assert_unchanged(model, before)
        return
    got = fn(model, *bad)
    want = fn(_neural(), *expected.ref(*args))
    assert_same(got, want)


@pytest.mark.parametrize("case", ["x_nan", "symbols_too_large", "lengths_above_T", "x_int"])
def test_neural_hmm_training_step_changes_nothing_on_bad_input(case):
    model = _neural().train()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    s, sl, x, L = _neural_inputs()
    model.loss(s, sl, x, L).backward()  # a good step first: the optimiser has state
    opt.step()
    opt.zero_grad()
    before = snapshot(model)
    opt_before = copy.deepcopy(opt.state_dict())
    bad = NEURAL_CASES[case][0](s, sl, x, L)
    with pytest.raises(HMM_ERRORS):
        model.loss(*bad).backward()
        opt.step()
    assert_unchanged(model, before)
    assert all(p.grad is None or not bool(p.grad.any()) for p in model.parameters())
    assert str(opt.state_dict()) == str(opt_before)


NEURAL_CONSTRUCTOR_CASES = {
    "states_per_phone_zero": (dict(states_per_phone=0), HMMValueError, "states_per_phone"),
    "hidden_dim_fraction": (dict(hidden_dim=7.5), HMMValueError, "hidden_dim"),
    "encoder_layers_negative": (dict(encoder_layers=-1), HMMValueError, "encoder_layers"),
    "prenet_dim_zero": (dict(prenet_dim=0), HMMValueError, "prenet_dim"),
    "dropout_above_one": (dict(dropout=1.5), HMMValueError, "dropout"),
    "prenet_dropout_nan": (dict(prenet_dropout=math.nan), HMMValueError, "prenet_dropout"),
    "variance_floor_nan": (dict(variance_floor=math.nan), HMMValueError, "variance_floor"),
    "variance_floor_string": (dict(variance_floor="0.1"), HMMTypeError, "variance_floor"),
    "encoder_unknown": (dict(encoder="gru"), HMMValueError, "encoder"),
    "float16": (dict(dtype=torch.float16), HMMTypeError, "dtype"),
    "chunk_frames_zero": (dict(chunk_frames=0), HMMValueError, "chunk_frames"),
}


@pytest.mark.parametrize("case", sorted(NEURAL_CONSTRUCTOR_CASES))
def test_neural_hmm_constructor_sweep(case):
    kw, exc, name = NEURAL_CONSTRUCTOR_CASES[case]
    small = dict(hidden_dim=8, prenet_dim=8, encoder_layers=1) | kw
    assert_raises_naming(lambda: ph.NeuralHMM(NS, ND, **small), exc, name)


# -- DurationModel -------------------------------------------------------------------------------
def _duration_model():
    return DurationModel(min_count=1).fit(
        [["a", "b", "a"], ["b", "c"]], [torch.tensor([3, 5, 4]), torch.tensor([6, 2])]
    )


DURATION_CONSTRUCTOR_CASES = {
    "n_states_zero": (dict(n_states=0), HMMValueError, "n_states"),
    "n_states_fraction": (dict(n_states=2.5), HMMValueError, "n_states"),
    "n_states_string": (dict(n_states="1"), HMMValueError, "n_states"),
    "distribution": (dict(distribution="gamma"), HMMValueError, "distribution"),
    "context": (dict(context="quinphone"), HMMValueError, "context"),
    "min_count_zero": (dict(min_count=0), HMMValueError, "min_count"),
    "variance_floor_zero": (dict(variance_floor=0.0), HMMValueError, "variance_floor"),
    "variance_floor_nan": (dict(variance_floor=math.nan), HMMValueError, "variance_floor"),
    "variance_floor_string": (dict(variance_floor="a"), HMMTypeError, "variance_floor"),
    "min_duration_negative": (dict(min_duration=-1), HMMValueError, "min_duration"),
    "min_duration_fraction": (dict(min_duration=1.5), HMMValueError, "min_duration"),
}


@pytest.mark.parametrize("case", sorted(DURATION_CONSTRUCTOR_CASES))
def test_duration_model_constructor_sweep(case):
    kw, exc, name = DURATION_CONSTRUCTOR_CASES[case]
    assert_raises_naming(lambda: DurationModel(**kw), exc, name)


DURATION_FIT_CASES = {
    "phone_sequences_none": ((None, [torch.tensor([1])]), HMMTypeError, "phone_sequences"),
    "durations_none": (([["a"]], None), HMMTypeError, "durations"),
    "phone_sequences_string": (("ab", [torch.tensor([1])]), HMMTypeError, "phone_sequences"),
    "utterance_is_a_string": ((["ab"], [torch.tensor([1, 2])]), HMMTypeError, "phone_sequences[0]"),
    "label_not_a_string": (
        ([["a", 3]], [torch.tensor([1, 2])]),
        HMMTypeError,
        "phone_sequences[0]",
    ),
    "count_mismatch": (([["a"], ["b"]], [torch.tensor([1])]), HMMValueError, "duration"),
    "duration_none": (([["a"], ["b"]], [torch.tensor([1]), None]), HMMTypeError, "durations[1]"),
    "duration_string": (([["a"]], ["3"]), HMMTypeError, "durations[0]"),
    "duration_ragged": (([["a", "b"]], [[1, [2]]]), HMMTypeError, "durations[0]"),
    "duration_nan": (
        ([["a", "b"]], [torch.tensor([1.0, math.nan])]),
        HMMValueError,
        "durations[0]",
    ),
    "duration_negative": (([["a", "b"]], [torch.tensor([1, -2])]), HMMValueError, "durations[0]"),
    "duration_wrong_shape": (
        ([["a", "b"]], [torch.tensor([1, 2, 3])]),
        HMMValueError,
        "durations[0]",
    ),
    "no_phones": (([[]], [torch.zeros(0)]), HMMValueError, "phones"),
}


@pytest.mark.parametrize("case", sorted(DURATION_FIT_CASES))
def test_duration_model_fit_sweep(case):
    model = _duration_model()
    before = model.to_dict()
    (phones, durations), exc, name = DURATION_FIT_CASES[case]
    assert_raises_naming(lambda: model.fit(phones, durations), exc, name)
    assert model.to_dict() == before  # a failing fit keeps the fitted model


DURATION_PREDICT_CASES = {
    "phones_none": (dict(phones=None), HMMTypeError, "phones"),
    "phones_string": (dict(phones="abc"), HMMTypeError, "phones"),
    "rho_string": (dict(phones=["a"], rho="0.5"), HMMTypeError, "rho"),
    "rho_nan": (dict(phones=["a"], rho=math.nan), HMMValueError, "rho"),
    "total_frames_zero": (dict(phones=["a"], total_frames=0), HMMValueError, "total_frames"),
    "total_frames_nan": (dict(phones=["a"], total_frames=math.nan), HMMValueError, "total_frames"),
}


@pytest.mark.parametrize("case", sorted(DURATION_PREDICT_CASES))
def test_duration_model_predict_sweep(case):
    model = _duration_model()
    before = model.to_dict()
    kw, exc, name = DURATION_PREDICT_CASES[case]
    assert_raises_naming(lambda: model.predict(**kw), exc, name)
    assert model.to_dict() == before


def test_duration_model_accepts_lists_and_numpy():
    a = DurationModel(min_count=1).fit([("a", "b")], [[3, 5]])
    b = DurationModel(min_count=1).fit([["a", "b"]], [np.array([3.0, 5.0])])
    assert a.to_dict() == b.to_dict()
    assert_same(a.predict(["a", "b"], rho=np.float64(0.0)), b.predict(["a", "b"], rho=0.0))


# -- StreamingHMMProcessor -----------------------------------------------------------------------
def _processor():
    return StreamingHMMProcessor(model=MODELS["gaussian_diag"](), chunk_size=4)


STREAM_CONSTRUCTOR_CASES = {
    "chunk_size_zero": (dict(chunk_size=0), HMMValueError, "chunk_size"),
    "chunk_size_fraction": (dict(chunk_size=2.5), HMMValueError, "chunk_size"),
    "chunk_size_string": (dict(chunk_size="4"), HMMValueError, "chunk_size"),
    "overlap_negative": (dict(overlap=-1), HMMValueError, "overlap"),
    "overlap_whole_chunk": (dict(chunk_size=4, overlap=4), HMMValueError, "overlap"),
    "smoothing_lag_negative": (dict(smoothing_lag=-1), HMMValueError, "smoothing_lag"),
    "max_delay_zero": (dict(max_delay=0), HMMValueError, "max_delay"),
    "beam_zero": (dict(beam=0.0), HMMValueError, "beam"),
    "beam_nan": (dict(beam=math.nan), HMMValueError, "beam"),
    "beam_string": (dict(beam="20"), HMMTypeError, "beam"),
    "num_states_zero": (dict(num_states=0, feature_dim=2), HMMValueError, "num_states"),
    "num_states_mismatch": (dict(num_states=5, model="gauss"), HMMValueError, "num_states"),
    "feature_dim_mismatch": (dict(feature_dim=7, model="gauss"), HMMValueError, "feature_dim"),
    "model_not_a_model": (dict(model="abc"), HMMTypeError, "model"),
    "no_model_no_sizes": (dict(), HMMValueError, "num_states"),
    "float16": (dict(num_states=2, feature_dim=2, dtype=torch.float16), HMMTypeError, "dtype"),
}


@pytest.mark.parametrize("case", sorted(STREAM_CONSTRUCTOR_CASES))
def test_streaming_constructor_sweep(case):
    kw, exc, name = dict(STREAM_CONSTRUCTOR_CASES[case][0]), *STREAM_CONSTRUCTOR_CASES[case][1:]
    if kw.get("model") == "gauss":
        kw["model"] = MODELS["gaussian_diag"]()
    if "model" not in kw and "num_states" not in kw and case != "no_model_no_sizes":
        kw |= dict(num_states=2, feature_dim=2)
    assert_raises_naming(lambda: StreamingHMMProcessor(**kw), exc, name)


def _chunk(T=4, B=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, D, generator=g) if B is None else torch.randn(B, T, D, generator=g)


def _poke_chunk(value):
    def f(c):
        c = c.clone()
        c[2, 1] = value
        return c

    return f


STREAM_CHUNK_CASES = {
    "none": (lambda c: (None, None), Raises(HMMTypeError, "chunk")),
    "string": (lambda c: ("frames", None), Raises(HMMTypeError, "chunk")),
    "object": (lambda c: (object(), None), Raises(HMMTypeError, "chunk")),
    "ragged_list": (lambda c: ([[0.1, 0.2], [0.3]], None), Raises(HMMTypeError, "chunk")),
    "int_tensor": (lambda c: (c.round().long(), None), Raises(HMMTypeError, "chunk")),
    "nan": (lambda c: (_poke_chunk(math.nan)(c), None), Raises(HMMValueError, "NaN")),
    "inf": (lambda c: (_poke_chunk(math.inf)(c), None), Raises(HMMValueError, "inf")),
    "wrong_feature_dim": (lambda c: (c[:, :1], None), Raises(HMMValueError, "chunk")),
    "rank1": (lambda c: (c[:, 0], None), Raises(HMMValueError, "chunk")),
    "rank4": (lambda c: (c[None, None], None), Raises(HMMValueError, "chunk")),
    "empty": (lambda c: (c[:0], None), Raises(HMMValueError, "chunk")),
    "lengths_unbatched": (lambda c: (c, torch.tensor([4])), Raises(HMMValueError, "lengths")),
    # right answers
    "numpy": (lambda c: (c.numpy(), None), Same(lambda c: (c, None))),
    "list_of_floats": (lambda c: (c.tolist(), None), Same(lambda c: (c, None))),
    "float16": (lambda c: (c.half(), None), Same(lambda c: (c.half().float(), None))),
    "float64": (lambda c: (c.double(), None), Same(lambda c: (c, None))),
    "transposed": (lambda c: (c.t().contiguous().t(), None), Same(lambda c: (c, None))),
}
STREAM_BATCHED_CASES = {
    "lengths_above_n": (lambda c: (c, torch.tensor([5, 4])), Raises(HMMValueError, "lengths")),
    "lengths_negative": (lambda c: (c, torch.tensor([-1, 4])), Raises(HMMValueError, "lengths")),
    "lengths_float": (lambda c: (c, torch.tensor([1.0, 4.0])), Raises(HMMTypeError, "lengths")),
    "lengths_shape": (lambda c: (c, torch.tensor([4])), Raises(HMMValueError, "lengths")),
    "other_batch_size": (lambda c: (c[:1], None), Raises(HMMValueError, "chunk")),
    "lengths_list": (lambda c: (c, [3, 4]), Same(lambda c: (c, torch.tensor([3, 4])))),
}


@pytest.mark.parametrize("case", list(STREAM_CHUNK_CASES))
def test_streaming_process_chunk_sweep(case):
    proc = _processor()
    first = _chunk(seed=0)
    proc.process_chunk(first)  # the stream has started: a bad chunk must not disturb it
    make, expected = STREAM_CHUNK_CASES[case]
    c = _chunk()
    before_model = snapshot(proc.model)
    before_stream = str(proc.get_extra_state())
    x, L = make(c)
    if isinstance(expected, Raises):
        assert_raises_naming(lambda: proc.process_chunk(x, L), expected.exc, expected.name)
        assert_unchanged(proc.model, before_model)
        assert str(proc.get_extra_state()) == before_stream
        # and the stream continues as if the bad chunk had never come
        ref = _processor()
        ref.process_chunk(first)
        assert_same(proc.process_chunk(c), ref.process_chunk(c))
        return
    ref = _processor()
    ref.process_chunk(first)
    xr, Lr = expected.ref(c)
    assert_same(proc.process_chunk(x, L), ref.process_chunk(xr, Lr))


@pytest.mark.parametrize("case", list(STREAM_BATCHED_CASES))
def test_streaming_batched_chunk_sweep(case):
    proc = _processor()
    first = _chunk(B=2, seed=0)
    proc.process_chunk(first)
    make, expected = STREAM_BATCHED_CASES[case]
    c = _chunk(B=2)
    before_stream = str(proc.get_extra_state())
    x, L = make(c)
    if isinstance(expected, Raises):
        assert_raises_naming(lambda: proc.process_chunk(x, L), expected.exc, expected.name)
        assert str(proc.get_extra_state()) == before_stream
        return
    ref = _processor()
    ref.process_chunk(first)
    xr, Lr = expected.ref(c)
    assert_same(proc.process_chunk(x, L), ref.process_chunk(xr, Lr))


@pytest.mark.parametrize("case", ["none", "nan", "int", "n_iter_negative"])
def test_streaming_fit_changes_nothing_on_bad_input(case):
    proc = _processor()
    proc.process_chunk(_chunk(seed=0))
    x = clean("gaussian_diag")
    kw = {}
    if case == "none":
        x = None
    elif case == "nan":
        x = _nan(x)
    elif case == "int":
        x = x.long()
    else:
        kw["n_iter"] = -1
    before_model = snapshot(proc.model)
    before_stream = str(proc.get_extra_state())
    with pytest.raises(HMM_ERRORS):
        proc.fit(x, **kw)
    assert_unchanged(proc.model, before_model)
    assert str(proc.get_extra_state()) == before_stream


NEURAL_GENERATE_CASES = {
    "duration_unknown": (dict(duration="mean"), HMMValueError, "duration"),
    "quantile_zero": (dict(quantile=0.0), HMMValueError, "quantile"),
    "quantile_one": (dict(quantile=1.0), HMMValueError, "quantile"),
    "quantile_string": (dict(quantile="0.5"), HMMTypeError, "quantile"),
    "temperature_negative": (dict(temperature=-1.0), HMMValueError, "temperature"),
    "temperature_nan": (dict(temperature=math.nan), HMMValueError, "temperature"),
    "max_frames_zero": (dict(max_frames=0), HMMValueError, "max_frames"),
    "max_frames_fraction": (dict(max_frames=2.5), HMMValueError, "max_frames"),
    "symbols_none": (dict(symbols=None), HMMTypeError, "symbols"),
    "symbols_out_of_range": (dict(symbols=torch.tensor([[0, NS]])), HMMValueError, "symbols"),
}


@pytest.mark.parametrize("case", sorted(NEURAL_GENERATE_CASES))
def test_neural_hmm_generate_sweep(case):
    model = _neural().train()
    kw, exc, name = NEURAL_GENERATE_CASES[case]
    kw = dict(symbols=torch.tensor([[0, 1]])) | kw
    before = snapshot(model)
    assert_raises_naming(lambda: model.generate(**kw), exc, name)
    assert_unchanged(model, before)
    assert model.training  # the mode is put back too


# -- gradient training ------------------------------------------------------------------------
GRADIENT_CASES = {
    "n_epochs_negative": (dict(n_epochs=-1), HMMValueError, "n_epochs"),
    "n_epochs_string": (dict(n_epochs="2"), HMMValueError, "n_epochs"),
    "lr_zero": (dict(lr=0.0), HMMValueError, "lr"),
    "lr_nan": (dict(lr=math.nan), HMMValueError, "lr"),
    "reduction_unknown": (dict(reduction="mean"), HMMValueError, "reduction"),
    "data_none": (dict(data=None), HMMTypeError, "data"),
    "data_nan": (dict(data=_nan(clean("gaussian_diag"))), HMMValueError, "NaN"),
    "data_int": (dict(data=clean("gaussian_diag").long()), HMMTypeError, "x"),
}


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_fit_gradient_sweep(case):
    from pytorch_hmm.training import fit_gradient

    model = MODELS["gaussian_diag"]()
    kw, exc, name = GRADIENT_CASES[case]
    kw = dict(data=clean("gaussian_diag"), n_epochs=1) | kw
    before = snapshot(model)
    assert_raises_naming(lambda: fit_gradient(model, **kw), exc, name)
    assert_unchanged(model, before)


def test_fit_gradient_failing_in_a_later_batch_restores_the_parameters():
    from pytorch_hmm.training import fit_gradient

    model = MODELS["gaussian_diag"]()
    good = clean("gaussian_diag")
    before = snapshot(model)
    with pytest.raises(HMMValueError, match="NaN"):
        fit_gradient(model, [(good, None), (_nan(good), None)], n_epochs=2)
    assert_unchanged(model, before)  # the first batch's step is undone
