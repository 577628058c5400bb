"""Gradient training: the negative log-likelihood as a loss for any ``torch.optim`` optimiser.

Every model keeps its parameters valid by construction (start and transition probabilities
as masked log-softmax of logits, variances as log-variances or a Cholesky factor with a
log-diagonal, mixture weights as log-softmax), so unconstrained optimisers apply directly.
Gradients come from the engine's explicit backward pass (posteriors), not an autograd tape
through the recursion. This is the path neural emission models use."""

from __future__ import annotations

from typing import Any, List, Optional

import torch

from ..errors import HMMValueError
from .em import batch_source

REDUCTIONS = ("frame", "sequence", "sum", "none")


def nll_loss(model, x: Any, lengths: Any = None, reduction: str = "frame") -> torch.Tensor:
    """Negative log-likelihood of ``x`` under ``model``, differentiable w.r.t. its parameters.

    ``reduction``: "frame" (total NLL / number of real frames, a scale-free default), "sequence"
    (mean over sequences), "sum", or "none" ((B,) per sequence)."""
    if reduction not in REDUCTIONS:
        raise HMMValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    xb, L = model._prepare_x(x, lengths)
    ll = model.log_likelihood(xb, L)
    if reduction == "none":
        return -ll
    if reduction == "sum":
        return -ll.sum()
    if reduction == "sequence":
        return -ll.mean()
    return -ll.sum() / L.sum().to(ll.dtype)


def fit_gradient(
    model,
    data: Any,
    lengths: Any = None,
    *,
    optimizer: Optional[torch.optim.Optimizer] = None,
    lr: float = 0.05,
    n_epochs: int = 100,
    reduction: str = "frame",
    verbose: bool = False,
) -> List[float]:
    """Train ``model`` by minimising :func:`nll_loss` with ``optimizer`` (default Adam with
    ``lr``), one step per batch, for ``n_epochs`` passes over ``data`` (same forms as
    ``fit``). Returns the loss history (the mean loss of each epoch).

    Arguments are checked first; if a step fails (bad data in a later batch), the model's
    parameters are put back as they were before the call (a given ``optimizer``'s own
    state, e.g. Adam's moments, is not)."""
    from ..models._common import check_count, check_real, restore_on_error

    n_epochs = check_count("n_epochs", n_epochs, minimum=0)
    if reduction not in REDUCTIONS:
        raise HMMValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if optimizer is None:
        check_real("lr", lr, low=0.0, low_open=True)
    source = batch_source(data, lengths)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: List[float] = []
    bar = None
    if verbose:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_epochs, desc="gradient", unit="epoch")
        except ImportError:  # pragma: no cover
            bar = None
    try:
        with restore_on_error(model):
            for _ in range(int(n_epochs)):
                total, n = 0.0, 0
                for xb, lb in source():
                    optimizer.zero_grad()
                    loss = nll_loss(model, xb, lb, reduction)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach())
                    n += 1
                history.append(total / max(n, 1))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history[-1]:.4f}")
    finally:
        if bar is not None:
            bar.close()
    return history
