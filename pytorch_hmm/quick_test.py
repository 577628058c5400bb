"""``run_quick_test()``: a self-check to run after installing.

It checks the engine against brute-force enumeration, gradients against posteriors, the banded
fast path against the dense one, a padded batch against single sequences, a Gaussian HMM round
trip, and (where installed) hmmlearn on identical parameters. It prints one line per check and
returns a :class:`QuickTestResult`.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

from . import core


@dataclass
class QuickTestResult:
    """``passed``: every check passed; ``checks``: (name, ok, detail) per check."""

    passed: bool
    checks: List[Tuple[str, bool, str]] = field(default_factory=list)
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.passed


def _brute(lb, lpi, lA):
    T, K = lb.shape
    scores = []
    for path in itertools.product(range(K), repeat=T):
        s = lpi[path[0]] + lb[0, path[0]]
        for t in range(1, T):
            s = s + lA[path[t - 1], path[t]] + lb[t, path[t]]
        scores.append(s)
    s = torch.stack(scores)
    return torch.logsumexp(s, 0), s.max()


def _random(B, T, K, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    lb = torch.randn(B, T, K, generator=g, dtype=dtype)
    lpi = torch.log_softmax(torch.randn(K, generator=g, dtype=dtype), -1)
    lA = torch.log_softmax(torch.randn(K, K, generator=g, dtype=dtype), -1)
    return lb, lpi, lA


def _check_brute_force() -> str:
    lb, lpi, lA = _random(2, 5, 3)
    ll = core.log_likelihood(lb, lpi, lA)
    vit = core.viterbi(lb, lpi, lA)
    for b in range(2):
        z, best = _brute(lb[b], lpi, lA)
        assert abs(float(ll[b] - z)) < 1e-9, f"log-likelihood {float(ll[b])} != {float(z)}"
        assert abs(float(vit.score[b] - best)) < 1e-9, "Viterbi score differs"
    return "forward and Viterbi equal enumeration of all 3^5 paths"


def _check_gradient() -> str:
    lb, lpi, lA = _random(2, 20, 4)
    lb.requires_grad_()
    (g,) = torch.autograd.grad(core.log_likelihood(lb, lpi, lA).sum(), lb)
    post = core.posteriors(lb.detach(), lpi, lA).state_posteriors
    err = float((g - post).abs().max())
    assert err < 1e-9, f"gradient differs from posteriors by {err:.2e}"
    return f"d logZ / d log_b == posteriors (max diff {err:.1e})"


def _check_banded() -> str:
    K = 10
    lA = torch.full((K, K), -math.inf, dtype=torch.float64)
    for i in range(K):
        lA[i, i] = math.log(0.6) if i < K - 1 else 0.0
        if i < K - 1:
            lA[i, i + 1] = math.log(0.4)
    lb, lpi, _ = _random(3, 30, K, seed=1)
    lpi = torch.full((K,), -math.inf, dtype=torch.float64)
    lpi[0] = 0.0
    a = core.log_likelihood(lb, lpi, lA)
    b = core.log_likelihood(lb, lpi, lA, topology="dense")
    err = float((a - b).abs().max())
    assert err < 1e-9, f"banded and dense differ by {err:.2e}"
    assert core.make_transitions(lA.unsqueeze(0)).is_banded
    return f"left-to-right matrix detected as banded; equals dense (diff {err:.1e})"


def _check_padding() -> str:
    lb, lpi, lA = _random(3, 25, 4, seed=2)
    lengths = torch.tensor([25, 10, 3])
    ll = core.log_likelihood(lb, lpi, lA, lengths)
    for b, L in enumerate(lengths.tolist()):
        one = core.log_likelihood(lb[b : b + 1, :L], lpi, lA)[0]
        assert abs(float(ll[b] - one)) < 1e-10, "padded batch differs from single sequence"
    return "padded batch with lengths equals each sequence alone"


def _check_gaussian() -> str:
    from .models import GaussianHMM

    m = GaussianHMM(
        3,
        2,
        startprob=[1, 0, 0],
        transmat=[[0.8, 0.2, 0], [0, 0.8, 0.2], [0, 0, 1]],
        means=[[0, 0], [4, 4], [-4, 4]],
        covars=[[0.3, 0.3]] * 3,
    )
    x, z = m.sample(40, generator=torch.Generator().manual_seed(0))
    path = m.predict(x)[0]
    acc = float((path == z).float().mean())
    assert acc > 0.95, f"Viterbi recovered only {acc:.0%} of sampled states"
    return f"GaussianHMM sample -> Viterbi recovers {acc:.0%} of the states"


def _check_hmmlearn() -> Optional[str]:
    try:
        from hmmlearn import hmm  # noqa: F401
    except ImportError:
        return None
    import numpy as np

    from .models import GaussianHMM

    rng = np.random.default_rng(0)
    ref = hmm.GaussianHMM(3, "diag", init_params="", params="")
    ref.n_features = 2
    ref.startprob_ = rng.dirichlet(np.ones(3))
    ref.transmat_ = rng.dirichlet(np.ones(3), size=3)
    ref.means_ = rng.normal(size=(3, 2))
    ref.covars_ = rng.uniform(0.5, 1.5, size=(3, 2))
    X, _ = ref.sample(50, random_state=0)
    ours = GaussianHMM.from_hmmlearn(ref)
    rel = abs(ours.score(X) - ref.score(X)) / abs(ref.score(X))
    assert rel < 1e-6, f"score differs from hmmlearn by {rel:.1e} (relative)"
    return f"score equals hmmlearn's on identical parameters (rel diff {rel:.1e})"


def _check_device() -> str:
    if not torch.cuda.is_available():
        return "CUDA not available: CPU only"
    lb, lpi, lA = _random(2, 50, 4, seed=3)
    a = core.log_likelihood(lb, lpi, lA)
    b = core.log_likelihood(lb.cuda(), lpi.cuda(), lA.cuda()).cpu()
    err = float((a - b).abs().max())
    assert err < 1e-8, f"CUDA differs from CPU by {err:.2e}"
    return f"CUDA equals CPU (diff {err:.1e}) on {torch.cuda.get_device_name()}"


def run_quick_test(verbose: bool = True) -> QuickTestResult:
    """Run the self-checks; print a line per check when ``verbose``; return the result."""
    checks: List[Tuple[str, Callable[[], Optional[str]]]] = [
        ("brute force", _check_brute_force),
        ("gradients", _check_gradient),
        ("banded fast path", _check_banded),
        ("variable lengths", _check_padding),
        ("Gaussian HMM", _check_gaussian),
        ("hmmlearn parity", _check_hmmlearn),
        ("device", _check_device),
    ]
    t0 = time.perf_counter()
    result = QuickTestResult(passed=True)
    if verbose:
        from . import __version__

        print(f"pytorch_hmm {__version__} quick test (torch {torch.__version__})")
    for name, fn in checks:
        try:
            detail = fn()
            ok = True
            if detail is None:
                detail = "skipped (optional dependency not installed)"
        except Exception as e:  # report every failure, keep going
            ok, detail = False, f"{type(e).__name__}: {e}"
        result.checks.append((name, ok, detail))
        result.passed &= ok
        if verbose:
            print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
    result.seconds = time.perf_counter() - t0
    if verbose:
        n_ok = sum(ok for _, ok, _ in result.checks)
        print(f"{n_ok}/{len(result.checks)} checks passed in {result.seconds:.1f} s")
    return result
