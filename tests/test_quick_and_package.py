"""The self-check users run after installing, the package surface, and torch.compile."""

from __future__ import annotations

import math

import pytest
import torch

import pytorch_hmm
from pytorch_hmm import core


def test_run_quick_test_passes_and_reports(capsys):
    result = pytorch_hmm.run_quick_test()
    out = capsys.readouterr().out
    assert result.passed and bool(result)
    assert "checks passed" in out and "[FAIL]" not in out
    assert len(result.checks) >= 6


def test_quick_test_reports_failures_instead_of_raising(monkeypatch, capsys):
    from pytorch_hmm import quick_test

    def broken():
        raise AssertionError("deliberately broken")

    monkeypatch.setattr(quick_test, "_check_gradient", broken)
    result = quick_test.run_quick_test()
    assert not result.passed
    assert "[FAIL] gradients: AssertionError: deliberately broken" in capsys.readouterr().out


def test_version_and_lazy_exports():
    assert pytorch_hmm.__version__.count(".") == 2
    assert pytorch_hmm.GaussianHMM is pytorch_hmm.models.GaussianHMM
    assert pytorch_hmm.viterbi is core.viterbi
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pytorch_hmm.nope  # noqa: B018


def test_model_runs_under_torch_compile():
    # the engine's time loops run eagerly (graph break); the model around them compiles
    m = pytorch_hmm.GaussianHMM(3, 2, means=[[0, 0], [1, 1], [2, 2]])
    x = torch.randn(2, 20, 2, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(m, backend="aot_eager")
    torch.testing.assert_close(compiled(x), m(x))
    lb = torch.randn(2, 10, 3)
    lA = torch.log_softmax(torch.randn(3, 3), -1)
    lpi = torch.full((3,), -math.log(3))
    f = torch.compile(lambda a: core.log_likelihood(a, lpi, lA), backend="aot_eager")
    torch.testing.assert_close(f(lb), core.log_likelihood(lb, lpi, lA))


def test_cli_quicktest_and_benchmark(capsys):
    from pytorch_hmm.cli import main

    assert main(["quicktest"]) == 0
    assert "checks passed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_every_top_level_export_resolves():
    missing = []
    for name in pytorch_hmm.__all__:
        try:
            getattr(pytorch_hmm, name)
        except (AttributeError, ImportError) as e:
            missing.append(f"{name}: {e}")
    assert not missing, missing
