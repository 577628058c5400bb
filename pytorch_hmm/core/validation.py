"""Input checks shared by every inference kernel.

Each check raises ``ValueError`` (bad values or shapes) or ``TypeError`` (bad dtypes) with a
message that names the argument, the shape or value it got and what was expected.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


shape_str = _shape


def check_float(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")


def check_no_nan(name: str, x: torch.Tensor) -> None:
    """NaN or +inf anywhere in ``x`` raises ValueError with the first offending index."""
    total = x.sum()  # one pass: NaN and +inf both leave the sum NaN or +inf
    if not (torch.isnan(total) or torch.isposinf(total)):
        return
    if torch.isnan(x).any():
        idx = torch.nonzero(torch.isnan(x))[0].tolist()
        raise ValueError(f"{name} contains NaN (first at index {tuple(idx)})")
    if torch.isposinf(x).any():
        idx = torch.nonzero(torch.isposinf(x))[0].tolist()
        raise ValueError(
            f"{name} contains +inf (first at index {tuple(idx)}); log-probabilities "
            "must be finite or -inf"
        )


def check_inputs(
    log_emissions: torch.Tensor,
    log_initial: torch.Tensor,
    log_transitions: torch.Tensor,
    lengths: Optional[torch.Tensor],
    check_stochastic: bool = True,
    atol: float = 1e-4,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and normalise the engine's inputs.

    Returns ``(log_emissions (B, T, K), log_initial (B, K), log_transitions (1|B, K, K),
    lengths (B,) long)``; ``log_initial`` and ``log_transitions`` are broadcast views, not copies.
    """
    check_float("log_emissions", log_emissions)
    if log_emissions.dim() != 3:
        raise ValueError(f"log_emissions must have shape (B, T, K), got {_shape(log_emissions)}")
    B, T, K = log_emissions.shape
    if T == 0:
        raise ValueError("log_emissions has T=0 frames: sequences must have at least one frame")
    if K == 0:
        raise ValueError("log_emissions has K=0 states")
    dev, dt = log_emissions.device, log_emissions.dtype
    for name, x in (("log_initial", log_initial), ("log_transitions", log_transitions)):
        check_float(name, x)
        if x.dtype != dt:
            raise TypeError(f"{name} has dtype {x.dtype} but log_emissions has {dt}; use one dtype")
        if x.device != dev:
            raise ValueError(
                f"{name} is on {x.device} but log_emissions is on {dev}; move them to one device"
            )
    if log_initial.shape not in ((K,), (B, K)):
        raise ValueError(
            f"log_initial must have shape (K,) or (B, K) = ({K},) or ({B}, {K}), "
            f"got {_shape(log_initial)}"
        )
    if log_transitions.shape not in ((K, K), (B, K, K)):
        raise ValueError(
            f"log_transitions must have shape (K, K) or (B, K, K) with K={K}, B={B}, "
            f"got {_shape(log_transitions)}"
        )
    check_no_nan("log_emissions", log_emissions)
    check_no_nan("log_initial", log_initial)
    check_no_nan("log_transitions", log_transitions)
    if check_stochastic:
        with torch.no_grad():
            s = torch.logsumexp(log_transitions, dim=-1).exp()
            bad = (s - 1).abs() > atol
            if bad.any():
                i = torch.nonzero(bad)[0].tolist()
                raise ValueError(
                    f"rows of exp(log_transitions) must sum to one: row {tuple(i)} sums to "
                    f"{s[tuple(i)].item():.6g}. Normalise them (e.g. log_softmax) or pass "
                    "check_stochastic=False for unnormalised scores"
                )
            s0 = torch.logsumexp(log_initial, dim=-1).exp()
            bad0 = (s0 - 1).abs() > atol
            if bad0.any():
                raise ValueError(
                    f"exp(log_initial) must sum to one, it sums to {s0.flatten()[0].item():.6g}; "
                    "pass check_stochastic=False for unnormalised scores"
                )
    if log_initial.dim() == 1:
        log_initial = log_initial.unsqueeze(0).expand(B, K)
    if log_transitions.dim() == 2:
        log_transitions = log_transitions.unsqueeze(0)
    lengths = check_lengths(lengths, B, T, dev)
    return log_emissions, log_initial, log_transitions, lengths


def check_lengths(
    lengths,
    B: int,
    max_len: int,
    device: Optional[torch.device] = None,
    *,
    name: str = "lengths",
    min_value: int = 1,
    what: str = "",
) -> torch.Tensor:
    """The one length validator of the library (engine, aligners, metrics, MLPG).

    ``None`` -> every sequence has ``max_len``; else a (B,) integer tensor (or sequence) with
    values in ``[min_value, max_len]``, returned as a long tensor on ``device`` (its own
    device when None). One exception type per condition: ``TypeError`` for a non-integer
    dtype, ``ValueError`` for a wrong shape and for values out of range; each message names
    ``name``, what it got and what was expected (``what`` explains the range).
    """
    if lengths is None:
        return torch.full((B,), max_len, dtype=torch.long, device=device)
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {lengths.dtype}")
    if lengths.shape != (B,):
        raise ValueError(f"{name} must have shape ({B},) (one per sequence), got {_shape(lengths)}")
    lengths = lengths.to(device=device if device is not None else lengths.device, dtype=torch.long)
    if B > 0:
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < min_value or hi > max_len:
            why = f" ({what})" if what else ""
            got = lengths.tolist() if B <= 16 else f"values in [{lo}, {hi}]"
            extra = ""
            if lo < 1 <= min_value:
                extra = " (empty sequences have no likelihood)"
            elif hi > max_len:
                extra = f" (the padded length is {max_len})"
            raise ValueError(
                f"{name} must lie in [{min_value}, {max_len}]{why}, got {got}{extra}"
            )
    return lengths
