"""The engine's public functions x a catalogue of bad and edge-case inputs (issue 16's sweep):
each case gives the reference answer or a library error naming the argument.

Entry points: forward, backward, log_likelihood, posteriors, viterbi, sample_posterior and
the semi-Markov hsmm_log_likelihood / hsmm_posteriors / hsmm_viterbi."""

import math
import re

import numpy as np
import pytest
import torch

import pytorch_hmm as ph

B, T, K, D = 2, 6, 3, 3
_g = torch.Generator().manual_seed(0)
EM = torch.randn(B, T, K, generator=_g)
_A = torch.rand(K, K, generator=_g) + 0.2
LA = (_A / _A.sum(1, keepdim=True)).log()
_H = torch.rand(K, K, generator=_g) * (1 - torch.eye(K)) + 0.1 * (1 - torch.eye(K))
LH = torch.where(torch.eye(K, dtype=torch.bool), -math.inf, (_H / _H.sum(1, keepdim=True)).log())
LD = torch.log_softmax(torch.randn(K, D, generator=_g), -1)
LPI = torch.full((K,), 1.0 / K).log()
LEN = torch.tensor([6, 4])


def _ll(em, lpi, la, lengths=None, **kw):
    return ph.log_likelihood(em, lpi, la, lengths, **kw)


HMM = {
    "log_likelihood": _ll,
    "forward": lambda em, lpi, la, lengths=None: ph.forward(em, lpi, la, lengths),
    "backward": lambda em, lpi, la, lengths=None: ph.backward(em, lpi, la, lengths),
    "posteriors": lambda em, lpi, la, lengths=None: ph.posteriors(em, lpi, la, lengths),
    "viterbi": lambda em, lpi, la, lengths=None: ph.viterbi(em, lpi, la, lengths),
    "sample_posterior": lambda em, lpi, la, lengths=None: ph.sample_posterior(
        em, lpi, la, lengths, num_samples=2, generator=torch.Generator().manual_seed(0)
    ),
}
HSMM = {
    "hsmm_log_likelihood": lambda em, lpi, la, lengths=None: ph.hsmm_log_likelihood(
        em, lpi, la, LD, lengths
    ),
    "hsmm_posteriors": lambda em, lpi, la, lengths=None: ph.hsmm_posteriors(
        em, lpi, la, LD, lengths
    ),
    "hsmm_viterbi": lambda em, lpi, la, lengths=None: ph.hsmm_viterbi(em, lpi, la, LD, lengths),
}
ENTRY = {**HMM, **HSMM}


def _nan_at(x, idx, v=math.nan):
    x = x.clone()
    x[idx] = v
    return x


# (name, args builder (entry -> (em, lpi, la, lengths)), expected error type, message part)
BAD = [
    ("log_emissions 2-D", lambda e: (EM[0], LPI, e, None), ph.HMMValueError, "log_emissions"),
    ("log_emissions 4-D", lambda e: (EM[None], LPI, e, None), ph.HMMValueError, "log_emissions"),
    ("log_emissions int", lambda e: (EM.long(), LPI, e, None), ph.HMMTypeError, "log_emissions"),
    ("log_emissions float16", lambda e: (EM.half(), LPI.half(), e.half(), None), ph.HMMTypeError,
     "log_emissions"),
    ("log_emissions bfloat16", lambda e: (EM.bfloat16(), LPI.bfloat16(), e.bfloat16(), None),
     ph.HMMTypeError, "log_emissions"),
    ("log_emissions None", lambda e: (None, LPI, e, None), ph.HMMTypeError, "log_emissions"),
    ("log_emissions numpy", lambda e: (EM.numpy(), LPI, e, None), ph.HMMTypeError,
     "log_emissions"),
    ("log_emissions list", lambda e: (EM.tolist(), LPI, e, None), ph.HMMTypeError,
     "log_emissions"),
    ("T=0", lambda e: (EM[:, :0], LPI, e, None), ph.HMMValueError, "T=0"),
    ("K mismatch", lambda e: (EM[..., :2], LPI, e, None), ph.HMMValueError, "K"),
    ("NaN in a real frame", lambda e: (_nan_at(EM, (0, 1, 0)), LPI, e, None), ph.HMMValueError,
     "NaN"),
    ("+inf in a real frame", lambda e: (_nan_at(EM, (1, 2, 1), math.inf), LPI, e, LEN),
     ph.HMMValueError, "+inf"),
    ("lengths 0", lambda e: (EM, LPI, e, torch.tensor([6, 0])), ph.HMMValueError, "lengths"),
    ("lengths > T", lambda e: (EM, LPI, e, torch.tensor([7, 3])), ph.HMMValueError, "lengths"),
    ("lengths negative", lambda e: (EM, LPI, e, torch.tensor([-1, 3])), ph.HMMValueError,
     "lengths"),
    ("lengths float", lambda e: (EM, LPI, e, torch.tensor([6.0, 3.0])), ph.HMMTypeError,
     "lengths"),
    ("lengths wrong shape", lambda e: (EM, LPI, e, torch.tensor([6])), ph.HMMValueError,
     "lengths"),
    ("lengths 2-D", lambda e: (EM, LPI, e, torch.tensor([[6, 4]])), ph.HMMValueError, "lengths"),
    ("lengths a string", lambda e: (EM, LPI, e, "ab"), ph.HMMTypeError, "lengths"),
    ("lengths ragged", lambda e: (EM, LPI, e, [[6], [4, 1]]), ph.HMMTypeError, "lengths"),
    ("log_transitions wrong shape", lambda e: (EM, LPI, e[:2], None), ph.HMMValueError,
     "log_transitions"),
    ("log_transitions None", lambda e: (EM, LPI, None, None), ph.HMMTypeError, "log_transitions"),
    ("log_transitions numpy", lambda e: (EM, LPI, e.numpy(), None), ph.HMMTypeError,
     "log_transitions"),
    ("log_transitions NaN", lambda e: (EM, LPI, _nan_at(e, (0, 1)), None), ph.HMMValueError,
     "NaN"),
    ("log_transitions float64 mix", lambda e: (EM, LPI, e.double(), None), ph.HMMTypeError,
     "dtype"),
    ("log_initial wrong shape", lambda e: (EM, LPI[:2], e, None), ph.HMMValueError,
     "log_initial"),
    ("log_initial None", lambda e: (EM, None, e, None), ph.HMMTypeError, "log_initial"),
    ("log_initial NaN", lambda e: (EM, LPI * math.nan, e, None), ph.HMMValueError, "log_initial"),
    ("log_initial float64 mix", lambda e: (EM, LPI.double(), e, None), ph.HMMTypeError,
     "log_initial"),
]
# the HMM functions also check that the rows of the transition matrix sum to one
BAD_HMM_ONLY = [
    ("log_transitions rows do not sum to one", lambda e: (EM, LPI, e + 0.3, None),
     ph.HMMValueError, "sum to one"),
    # (a semi-Markov model with no possible start gives -inf, its documented impossible value)
    ("log_initial all -inf", lambda e: (EM, torch.full((K,), -math.inf), e, None),
     ph.HMMValueError, "log_initial"),
]


def _call(entry, args):
    em, lpi, la, lengths = args
    fn = ENTRY[entry]
    return fn(em, lpi, la) if lengths is None else fn(em, lpi, la, lengths)


def _trans(entry):
    return LH if entry in HSMM else LA


CASES = [(e, c) for e in ENTRY for c in BAD] + [(e, c) for e in HMM for c in BAD_HMM_ONLY]


@pytest.mark.parametrize(
    "entry,case", CASES, ids=[f"{e}-{c[0].replace(' ', '_')}" for e, c in CASES]
)
def test_bad_input_gives_a_named_library_error(entry, case):
    _, build, err, part = case
    with pytest.raises(err, match=re.escape(part)):
        _call(entry, build(_trans(entry)))


def _flat(out):
    """Every tensor of a result, as float64, for comparisons."""
    if isinstance(out, torch.Tensor):
        return [out.double()]
    return [t.double() for t in out if isinstance(t, torch.Tensor)]


def _same(a, b):
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6, equal_nan=True)


# (name, builder of the variant, builder of the reference)
SAME = [
    ("non-contiguous log_emissions",
     lambda e: (EM.transpose(1, 2).contiguous().transpose(1, 2), LPI, e, LEN),
     lambda e: (EM, LPI, e, LEN)),
    ("strided log_emissions", lambda e: (EM.repeat_interleave(2, 1)[:, ::2], LPI, e, LEN),
     lambda e: (EM, LPI, e, LEN)),
    ("lengths as a list", lambda e: (EM, LPI, e, [6, 4]), lambda e: (EM, LPI, e, LEN)),
    ("lengths as numpy int32", lambda e: (EM, LPI, e, np.array([6, 4], dtype=np.int32)),
     lambda e: (EM, LPI, e, LEN)),
    ("lengths int32", lambda e: (EM, LPI, e, LEN.int()), lambda e: (EM, LPI, e, LEN)),
    ("lengths all T", lambda e: (EM, LPI, e, torch.tensor([T, T])), lambda e: (EM, LPI, e, None)),
    ("non-contiguous log_transitions", lambda e: (EM, LPI, e.t().contiguous().t(), LEN),
     lambda e: (EM, LPI, e, LEN)),
    ("padding holds NaN", lambda e: (_nan_at(EM, (1, slice(4, None))), LPI, e, LEN),
     lambda e: (EM, LPI, e, LEN)),
]


@pytest.mark.parametrize("entry", sorted(ENTRY))
@pytest.mark.parametrize("case", SAME, ids=[c[0].replace(" ", "_") for c in SAME])
def test_equivalent_input_gives_the_reference_answer(entry, case):
    _, variant, reference = case
    e = _trans(entry)
    _same(_call(entry, variant(e)), _call(entry, reference(e)))


@pytest.mark.parametrize("entry", sorted(ENTRY))
def test_batch_of_zero_sequences_gives_empty_results(entry):
    out = _call(entry, (EM[:0], LPI, _trans(entry), None))
    for t in _flat(out):
        assert 0 in t.shape


@pytest.mark.parametrize("entry", sorted(ENTRY))
def test_one_frame_matches_a_direct_computation(entry):
    e = _trans(entry)
    em1 = EM[:, :1]
    out = _call(entry, (em1, LPI, e, None))
    if entry == "log_likelihood":
        torch.testing.assert_close(out, torch.logsumexp(LPI + em1[:, 0], -1))
    elif entry == "hsmm_log_likelihood":  # one frame: a segment of duration 1
        torch.testing.assert_close(out, torch.logsumexp(LPI + em1[:, 0] + LD[:, 0], -1))
    else:
        for t in _flat(out):
            assert torch.isfinite(t[t > -math.inf]).all()


@pytest.mark.parametrize("entry", ["log_likelihood", "viterbi", "posteriors", "backward"])
def test_huge_emissions_give_finite_answers(entry):
    # 1e30 on every emission: representable in float32, no NaN anywhere
    out = _call(entry, (torch.full((B, T, K), 1e30), LPI, LA, LEN))
    for t in _flat(out):
        assert not torch.isnan(t).any()
