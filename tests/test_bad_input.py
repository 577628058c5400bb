"""Bad constructor arguments and files give a clear error naming what is wrong (issue 16's
sweep, first part: constructors, TextGrid and lexicon files)."""

import math

import numpy as np
import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm.alignment.lexicon import read_lexicon
from pytorch_hmm.io import read_textgrid

CONSTRUCTORS = {
    "GaussianHMM": lambda **kw: ph.GaussianHMM(kw.pop("K", 2), 3, **kw),
    "MixtureGaussianHMM": lambda **kw: ph.MixtureGaussianHMM(kw.pop("K", 2), 3, 2, **kw),
    "HSMM": lambda **kw: ph.HSMM(kw.pop("K", 2), 3, 4, **kw),
}


@pytest.mark.parametrize("model", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("K", [2.5, 0, -1, True, "3", math.nan, None])
def test_num_states_must_be_a_whole_number(model, K):
    with pytest.raises((ValueError, TypeError), match="num_states"):
        CONSTRUCTORS[model](K=K)


@pytest.mark.parametrize("model", sorted(CONSTRUCTORS))
def test_whole_numbers_of_other_types_are_accepted(model):
    assert CONSTRUCTORS[model](K=np.int64(3)).num_states == 3
    assert CONSTRUCTORS[model](K=3.0).num_states == 3


@pytest.mark.parametrize("model", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "small"])
def test_min_covar_must_be_a_finite_floor(model, value):
    with pytest.raises(ValueError, match="min_covar"):
        CONSTRUCTORS[model](min_covar=value)


def test_min_covar_zero_is_allowed():
    assert ph.GaussianHMM(2, 3, min_covar=0.0).min_covar == 0.0


@pytest.mark.parametrize("bad", [math.inf, math.nan, 0.0, -1.0])
def test_diag_covars_must_be_positive_and_finite(bad):
    m = ph.GaussianHMM(2, 3)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    c = torch.ones(2, 3)
    c[1, 2] = bad
    with pytest.raises(ValueError, match="covars"):
        m.set_covars(c)
    for k, v in m.state_dict().items():  # unchanged after the error
        assert torch.equal(v, before[k]), k


def test_full_covars_must_be_symmetric():
    m = ph.GaussianHMM(2, 3, "full")
    c = torch.eye(3).repeat(2, 1, 1)
    c[1, 0, 2] = 0.5  # upper triangle only: the lower one alone is positive definite
    with pytest.raises(ValueError, match=r"covars\[1\] is not symmetric"):
        m.set_covars(c)
    c[1, 2, 0] = 0.5
    m.set_covars(c)
    torch.testing.assert_close(m.covars[1].double(), c[1].double(), rtol=1e-5, atol=1e-6)
    c[0, 1, 1] = math.inf
    with pytest.raises(ValueError, match="finite"):
        m.set_covars(c)


@pytest.mark.parametrize(
    "text",
    ["", 'File type = "ooTextFile"\nObject class = "TextGrid"\n', "xmin = 0\nxmax = "],
)
def test_empty_or_truncated_textgrid_names_the_file(tmp_path, text):
    p = tmp_path / "bad.TextGrid"
    p.write_text(text)
    with pytest.raises(ValueError, match="bad.TextGrid"):
        read_textgrid(p)


def test_lexicon_numbers_are_probabilities_not_phones(tmp_path):
    p = tmp_path / "lex.dict"
    p.write_text("hello 0.5 0.1 1.0 1.0 hh ah l ow\nworld 1.0 w er l d\n")
    lex = read_lexicon(p)
    assert lex["hello"] == [("hh", "ah", "l", "ow")]
    assert lex["world"] == [("w", "er", "l", "d")]
    p.write_text("hello 0.5\n")
    with pytest.raises(ValueError, match=r"lex.dict:1: word 'hello' has no phones"):
        read_lexicon(p)
