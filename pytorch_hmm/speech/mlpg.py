"""Maximum-likelihood parameter generation (MLPG) with dynamic-feature windows.

Given per-frame Gaussian means ``mu`` and variances ``sigma^2`` of static, delta and delta-delta
features, MLPG finds the static trajectory ``c`` maximising ``N(W c; mu, Sigma)``::

    (W^T Sigma^-1 W) c = W^T Sigma^-1 mu

(Tokuda et al., 2000; the HTS algorithm). ``W^T Sigma^-1 W`` is banded with half-bandwidth
``2L`` for windows reaching ``L`` frames either side (2 for the usual 3-frame windows), so it is
built directly in band storage (never a dense ``T x T`` matrix) and solved by a banded Cholesky
factorisation written with torch ops (a Python loop over frames, vectorised over batch and
feature dimension). Everything is differentiable with autograd.

Feature layout: the last axis of ``means`` holds ``M`` blocks of ``D`` columns, block ``m``
being window ``m`` (``[static | delta | delta-delta]``), as in HTS, Merlin and nnmnkwii.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from ..core.validation import check_lengths, check_real_frames, to_tensor
from ..errors import HMMTypeError, HMMValueError

__all__ = [
    "DELTA_WINDOWS",
    "WindowSpec",
    "GeneratedSequence",
    "ExpandedSequence",
    "mlpg",
    "expand_by_durations",
    "generate_from_states",
]

WindowSpec = Union[Sequence[float], Tuple[int, int, Sequence[float]]]

DELTA_WINDOWS: Tuple[Tuple[int, int, Tuple[float, ...]], ...] = (
    (0, 0, (1.0,)),
    (1, 1, (-0.5, 0.0, 0.5)),
    (1, 1, (1.0, -2.0, 1.0)),
)
"""The HTS/Merlin static, delta and delta-delta windows as ``(left, right, coefficients)``."""

_BOUNDARIES = ("hts", "zero", "edge")


def _parse_windows(
    windows: Sequence[WindowSpec], dtype: torch.dtype, device: torch.device
) -> Tuple[torch.Tensor, List[Tuple[int, int]], int]:
    """Windows -> coefficient table ``(M, 2L+1)`` over offsets ``-L..L``, extents, ``L``."""
    if isinstance(windows, (str, bytes)) or (
        windows is not None and not hasattr(windows, "__len__")
    ):
        raise HMMTypeError(
            "windows must be a list of windows ((left, right, coefficients) or centred "
            f"coefficient lists), got {type(windows).__name__}"
        )
    if windows is None or len(windows) == 0:
        raise HMMValueError("windows must hold at least one window (the static window)")
    specs: List[Tuple[int, int, List[float]]] = []
    for i, w in enumerate(windows):
        if w is None or isinstance(w, (str, bytes)):
            raise HMMTypeError(
                f"windows[{i}] must be (left, right, coefficients) or a list of coefficients, "
                f"got {w!r}"
            )
        if (
            isinstance(w, (tuple, list))
            and len(w) == 3
            and isinstance(w[0], int)
            and isinstance(w[1], int)
            and not isinstance(w[2], (int, float))
        ):
            left, right = int(w[0]), int(w[1])
            coeffs = _window_coefficients(w[2], i)
            if left < 0 or right < 0 or len(coeffs) != left + right + 1:
                raise HMMValueError(
                    f"windows[{i}] = (left={left}, right={right}, coefficients of length "
                    f"{len(coeffs)}): expected left, right >= 0 and left + right + 1 coefficients"
                )
        else:
            coeffs = _window_coefficients(w, i)
            if len(coeffs) % 2 != 1:
                raise HMMValueError(
                    f"windows[{i}] has {len(coeffs)} coefficients; a centred window needs an odd "
                    "number (or give (left, right, coefficients))"
                )
            left = right = len(coeffs) // 2
        specs.append((left, right, coeffs))
    half = max(max(left, right) for left, right, _ in specs)
    table = torch.zeros(len(specs), 2 * half + 1, dtype=dtype, device=device)
    for m, (left, _right, coeffs) in enumerate(specs):
        for j, c in enumerate(coeffs):
            table[m, half - left + j] = c
    return table, [(left, right) for left, right, _ in specs], half


def _as_float_tensor(x, name: str, *, allow_int: bool = False) -> torch.Tensor:
    """``x`` (tensor, numpy array, list or number) as a float tensor, naming ``name``.

    float16 / bfloat16 become float32 (the banded Cholesky solve is computed in float32 and
    the result returned in float32); integers are refused unless ``allow_int`` (variances
    given as whole numbers), then float32."""
    x = to_tensor(x, name)
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.to(torch.float32)
    if x.dtype == torch.bool or x.is_complex() or (not x.is_floating_point() and not allow_int):
        raise HMMTypeError(
            f"{name} must be a floating-point tensor (float32 / float64), got {x.dtype}"
        )
    return x if x.is_floating_point() else x.to(torch.float32)


def _window_coefficients(c, i: int) -> List[float]:
    """The finite coefficients of window ``i`` (a flat list of numbers)."""
    try:
        t = torch.as_tensor(c, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise HMMTypeError(
            f"windows[{i}] coefficients must be numbers, got {c!r} ({err})"
        ) from None
    if t.dim() > 1:
        raise HMMValueError(
            f"windows[{i}] coefficients must be a flat list, got shape {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()):
        raise HMMValueError(f"windows[{i}] coefficients must be finite, got {t.tolist()}")
    return [float(v) for v in t.reshape(-1)]


def _check_lengths(lengths: Optional[torch.Tensor], batch: int, total: int, name: str, device):
    return check_lengths(lengths, batch, total, device, name=name, min_value=0)


def _check_variances(var4: torch.Tensor, mask4: torch.Tensor, valid: torch.Tensor, D: int):
    """Variances ``(B, T, M, D)`` of the real frames: no NaN, > 0 where the window is used,
    finite for the static window (``inf`` drops a dynamic window at that frame)."""
    real = valid[:, :, None, None].expand_as(var4)
    static = torch.zeros_like(mask4)
    static[:, :, 0] = True
    for bad, why in (
        (torch.isnan(var4) & real, "NaN (variances must be > 0)"),
        (~(var4 > 0) & mask4 & ~torch.isnan(var4), "<= 0 (variances must be > 0)"),
        (torch.isinf(var4) & mask4 & static, "inf (static variances, the first D columns, "
         "must be finite; inf is allowed for dynamic windows only)"),
    ):
        if bool(bad.any()):
            b, t, m, d = torch.nonzero(bad)[0].tolist()
            raise HMMValueError(
                f"variances[{b}, {t}, {m * D + d}] (sequence {b}, frame {t}, window {m}, "
                f"dimension {d}) = {float(var4[b, t, m, d])} is {why}; static variances "
                "(the first D columns) must be finite and > 0"
            )


def _banded_cholesky_solve(band: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``A x = rhs`` for symmetric positive-definite banded ``A``.

    Args:
        band: ``(..., T, w+1)`` with ``band[..., i, k] = A[i, i-k]`` (lower band; entries with
            ``i - k < 0`` are ignored).
        rhs: ``(..., T)``.

    Returns:
        ``x`` of shape ``(..., T)``. Differentiable (out-of-place torch ops only).
    """
    T, w1 = band.shape[-2], band.shape[-1]
    w = w1 - 1
    rows: List[List[torch.Tensor]] = []  # rows[i][k] = L[i, i-k]
    pivots: List[torch.Tensor] = []
    zero = band.new_zeros(band.shape[:-2])
    for i in range(T):
        row = [zero] * w1
        for k in range(w, 0, -1):
            j = i - k
            if j < 0:
                continue
            s = band[..., i, k]
            for m in range(k + 1, w + 1):
                if i - m < 0:
                    break
                s = s - row[m] * rows[j][m - k]
            row[k] = s / rows[j][0]
        d = band[..., i, 0]
        for k in range(1, min(w, i) + 1):
            d = d - row[k] * row[k]
        pivots.append(d)
        row[0] = torch.sqrt(d)
        rows.append(row)
    # one check (one device sync) for the whole factorisation
    if T and bool((torch.stack(pivots).detach() <= 0).any()):
        raise HMMValueError(
            "the precision matrix is not positive definite; check for zero, negative or "
            "non-finite static variances"
        )
    # forward: L z = rhs
    z: List[torch.Tensor] = []
    for i in range(T):
        s = rhs[..., i]
        for k in range(1, min(w, i) + 1):
            s = s - rows[i][k] * z[i - k]
        z.append(s / rows[i][0])
    # backward: L^T x = z
    x: List[Optional[torch.Tensor]] = [None] * T
    for i in range(T - 1, -1, -1):
        s = z[i]
        for k in range(1, min(w, T - 1 - i) + 1):
            s = s - rows[i + k][k] * x[i + k]
        x[i] = s / rows[i][0]
    if T == 0:
        return rhs.new_zeros(rhs.shape)
    return torch.stack(x, dim=-1)  # type: ignore[arg-type]


def mlpg(
    means: torch.Tensor,
    variances: torch.Tensor,
    windows: Sequence[WindowSpec] = DELTA_WINDOWS,
    lengths: Optional[torch.Tensor] = None,
    *,
    boundary: str = "hts",
) -> torch.Tensor:
    """Maximum-likelihood parameter generation (banded solve, batched, differentiable).

    Solves ``(W^T P W) c = W^T P mu`` per feature dimension, ``P = diag(1 / variances)``.

    Args:
        means: ``(B, T, M*D)`` or ``(T, M*D)``; block ``m`` of ``D`` columns belongs to window
            ``m`` (``[static | delta | delta-delta]``).
        variances: broadcastable to ``means`` (e.g. ``(B, T, M*D)``, ``(T, M*D)`` or a global
            ``(M*D,)``). ``inf`` gives zero precision (that window is ignored at that frame);
            static variances must be finite and positive.
        windows: ``M`` windows, each either ``(left, right, coefficients)`` (nnmnkwii's format;
            ``coefficients[j]`` weighs frame ``t - left + j``) or a centred odd-length coefficient
            list. Default :data:`DELTA_WINDOWS` (static, ``[-0.5, 0, 0.5]``, ``[1, -2, 1]``).
        lengths: ``(B,)`` valid frames per sequence of a padded batch (default: all ``T``).
            Frames ``>= lengths[b]`` are ignored and returned as 0.
        boundary: treatment of dynamic windows that reach outside ``[0, length)``:
            ``"hts"`` (default; HTS engine and nnmnkwii) drops such a window at that frame
            (zero precision); ``"zero"`` keeps it with the out-of-range coefficients dropped
            (zero padding); ``"edge"`` repeats the first/last frame (edge padding, as used to
            compute the deltas of the bundled CMU ARCTIC features).

    Returns:
        static trajectory ``(B, T, D)`` (or ``(T, D)`` for unbatched input), dtype of ``means``.

    Raises:
        ValueError: shapes that do not fit (the message gives the shape got and expected),
            an unknown ``boundary``, or a precision matrix that is not positive definite.
    """
    means = _as_float_tensor(means, "means")
    if not isinstance(boundary, str) or boundary not in _BOUNDARIES:
        raise HMMValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")
    unbatched = means.dim() == 2
    if unbatched:
        means = means.unsqueeze(0)
    if means.dim() != 3:
        raise HMMValueError(
            f"means must have shape (B, T, M*D) or (T, M*D), got {tuple(means.shape)}"
        )
    variances = _as_float_tensor(variances, "variances", allow_int=True).to(
        dtype=means.dtype, device=means.device
    )
    if unbatched and variances.dim() == 2:
        variances = variances.unsqueeze(0)
    try:
        variances = torch.broadcast_to(variances, means.shape)
    except RuntimeError as err:
        raise HMMValueError(
            f"variances of shape {tuple(variances.shape)} do not broadcast to means' shape "
            f"{tuple(means.shape)}"
        ) from err
    B, T, F = means.shape
    coef, extents, half = _parse_windows(windows, means.dtype, means.device)
    M = coef.shape[0]
    if F % M != 0:
        raise HMMValueError(
            f"means' last dimension {F} is not a multiple of the number of windows {M} "
            "(expected M*D columns)"
        )
    D = F // M
    dev = means.device
    lengths = _check_lengths(lengths, B, T, "lengths", dev)
    if B == 0:
        out = means.new_zeros(0, T, D)
        return out[0] if unbatched else out
    # padded frames are never read (replaced before any arithmetic); NaN / inf in a real
    # frame of the means is refused with the sequence, frame and column named
    means = check_real_frames("means", means, lengths, allow_neg_inf=False)
    n_taps = 2 * half + 1
    w = 2 * half  # half-bandwidth of W^T P W

    t = torch.arange(T, device=dev)
    offsets = torch.arange(-half, half + 1, device=dev)
    idx = t[:, None] + offsets[None, :]  # (T, P)
    in_range = (idx[None] >= 0) & (idx[None] < lengths[:, None, None])  # (B, T, P)
    valid = t[None, :] < lengths[:, None]  # (B, T)

    # window weights A[b, t, m, p] and target frames target[b, t, p]
    A = coef[None, None].expand(B, T, M, n_taps)
    if boundary == "hts":
        ok = torch.ones(B, T, M, dtype=torch.bool, device=dev)
        for m, (left, right) in enumerate(extents):
            if left or right:
                lo = t - left
                hi = t + right
                ok[:, :, m] = (lo[None] >= 0) & (hi[None] < lengths[:, None])
        win_mask = ok & valid[:, :, None]
        target = idx.clamp(0, max(T - 1, 0))[None].expand(B, T, n_taps)
    elif boundary == "zero":
        A = A * in_range[:, :, None, :].to(A.dtype)
        win_mask = valid[:, :, None].expand(B, T, M)
        target = idx.clamp(0, max(T - 1, 0))[None].expand(B, T, n_taps)
    else:  # edge
        win_mask = valid[:, :, None].expand(B, T, M)
        upper = (lengths - 1).clamp(min=0)[:, None, None]
        target = torch.minimum(idx.clamp(min=0)[None].expand(B, T, n_taps), upper)
    A = A * win_mask[..., None].to(A.dtype)

    # precisions, zero where the window is masked (safe for zero/inf variances there)
    var4 = variances.reshape(B, T, M, D)
    mu4 = means.reshape(B, T, M, D)
    mask4 = win_mask[..., None].expand(B, T, M, D)
    _check_variances(var4, mask4, valid, D)
    safe_var = torch.where(mask4, var4, torch.ones_like(var4))
    prec = torch.where(mask4, 1.0 / safe_var, torch.zeros_like(var4))
    if not bool(torch.isfinite(prec).all()):
        b, t_, m, d = torch.nonzero(~torch.isfinite(prec))[0].tolist()
        raise HMMValueError(
            f"variances[{b}, {t_}, {m * D + d}] = {float(var4[b, t_, m, d]):.3g} is too small for "
            f"{means.dtype} (its inverse overflows); use float64 or larger variances"
        )
    mu4 = torch.where(mask4, mu4, torch.zeros_like(mu4))

    # band of W^T P W: ordered tap pairs (p, q) contribute to (i, j) = (target_p, target_q)
    pair = A[..., :, None] * A[..., None, :]  # (B, T, M, P, P)
    contrib = torch.einsum("btmd,btmpq->bdtpq", prec, pair)  # (B, D, T, P, P)
    ti = target[..., :, None].expand(B, T, n_taps, n_taps)
    tj = target[..., None, :].expand(B, T, n_taps, n_taps)
    k = ti - tj
    dump = T * (w + 1)
    flat = torch.where(k >= 0, ti * (w + 1) + k.clamp(min=0), torch.full_like(k, dump))
    flat = flat.reshape(B, 1, -1).expand(B, D, -1)
    band = means.new_zeros(B, D, dump + 1).scatter_add(2, flat, contrib.reshape(B, D, -1))
    band = band[..., :dump].reshape(B, D, T, w + 1)
    pad_diag = torch.zeros(B, 1, T, w + 1, dtype=means.dtype, device=dev)
    pad_diag[..., 0] = (~valid)[:, None, :].to(means.dtype)
    band = band + pad_diag

    rhs_c = torch.einsum("btmd,btmp->bdtp", prec * mu4, A)  # (B, D, T, P)
    rhs = means.new_zeros(B, D, T).scatter_add(
        2, target.reshape(B, 1, -1).expand(B, D, -1), rhs_c.reshape(B, D, -1)
    )
    out = _banded_cholesky_solve(band, rhs).transpose(1, 2)  # (B, T, D)
    out = out * valid[..., None].to(out.dtype)
    return out[0] if unbatched else out


class ExpandedSequence(NamedTuple):
    """Values repeated by durations: ``values`` ``(B, T, F)`` zero-padded, ``lengths`` ``(B,)``."""

    values: torch.Tensor
    lengths: torch.Tensor


class GeneratedSequence(NamedTuple):
    """Output of :func:`generate_from_states`.

    Attributes:
        features: ``(B, T, D)`` generated static features (zero past ``lengths``).
        lengths: ``(B,)`` frames per sequence (sum of its durations).
        means: ``(B, T, F)`` frame-level means (state means expanded by durations).
        variances: ``(B, T, F)`` frame-level variances.
    """

    features: torch.Tensor
    lengths: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor


def _as_durations(durations, name: str = "durations") -> torch.Tensor:
    if durations is None or isinstance(durations, (str, bytes)):
        raise HMMTypeError(
            f"{name} must be a tensor or sequence of whole frame counts, got "
            f"{type(durations).__name__}"
        )
    try:
        return torch.as_tensor(durations)
    except (TypeError, ValueError, RuntimeError) as err:
        raise HMMTypeError(
            f"{name} must be a tensor or sequence of whole frame counts, got "
            f"{type(durations).__name__} ({err})"
        ) from None


def _check_durations(durations: torch.Tensor, shape: Tuple[int, ...], name: str) -> torch.Tensor:
    durations = _as_durations(durations, name)
    if tuple(durations.shape) != tuple(shape):
        raise HMMValueError(f"{name} must have shape {tuple(shape)}, got {tuple(durations.shape)}")
    if durations.is_floating_point():
        if not bool(torch.isfinite(durations).all()):
            raise HMMValueError(
                f"{name} must be finite whole numbers of frames, got NaN or inf"
            )
        if bool((durations != torch.round(durations)).any()):
            raise HMMValueError(f"{name} must be whole numbers of frames")
    elif durations.dtype == torch.bool or durations.is_complex():
        raise HMMTypeError(f"{name} must be an integer tensor, got {durations.dtype}")
    durations = durations.long()
    if durations.numel() and int(durations.min()) < 0:
        raise HMMValueError(f"{name} must be >= 0, got min {int(durations.min())}")
    return durations


def expand_by_durations(
    values: torch.Tensor,
    durations: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
) -> ExpandedSequence:
    """Repeat each state's row ``durations[k]`` times (differentiable with respect to ``values``).

    Args:
        values: ``(B, K, F)`` or ``(K, F)`` per-state values.
        durations: ``(B, K)`` or ``(K,)`` non-negative whole frame counts.
        lengths: ``(B,)`` number of valid states per sequence (states past it are ignored).

    Returns:
        :class:`ExpandedSequence` with ``values`` ``(B, T, F)`` where ``T`` is the largest total
        duration (padded with zeros) and ``lengths`` ``(B,)`` the total durations; unbatched
        input gives ``(T, F)`` and a 0-dim ``lengths``.
    """
    values = _as_float_tensor(values, "values", allow_int=True)
    unbatched = values.dim() == 2
    if unbatched:
        values = values.unsqueeze(0)
        durations = _as_durations(durations).unsqueeze(0)
    if values.dim() != 3:
        raise HMMValueError(
            f"values must have shape (B, K, F) or (K, F), got {tuple(values.shape)}"
        )
    B, K, F = values.shape
    durations = _check_durations(durations, (B, K), "durations").to(values.device)
    n_states = _check_lengths(lengths, B, K, "lengths", values.device)
    state_ok = torch.arange(K, device=values.device)[None] < n_states[:, None]
    durations = durations * state_ok
    cum = durations.cumsum(-1)
    totals = cum[:, -1] if K else torch.zeros(B, dtype=torch.long, device=values.device)
    T = int(totals.max()) if B else 0
    frames = torch.arange(T, device=values.device)[None].expand(B, T).contiguous()
    state = torch.searchsorted(cum.contiguous(), frames, right=True).clamp(max=max(K - 1, 0))
    out = torch.gather(values, 1, state[..., None].expand(B, T, F))
    out = out * (frames < totals[:, None])[..., None].to(out.dtype)
    if unbatched:
        return ExpandedSequence(out[0], totals[0])
    return ExpandedSequence(out, totals)


def generate_from_states(
    state_means: torch.Tensor,
    state_variances: torch.Tensor,
    durations: torch.Tensor,
    windows: Optional[Sequence[WindowSpec]] = None,
    lengths: Optional[torch.Tensor] = None,
    *,
    boundary: str = "hts",
) -> GeneratedSequence:
    """Frame trajectory of a state-level model: expand by durations, then MLPG.

    Args:
        state_means: ``(B, K, F)`` or ``(K, F)``; ``F = M*D`` with windows, else ``F = D``.
        state_variances: same shape as ``state_means``, or a global ``(F,)``.
        durations: ``(B, K)`` or ``(K,)`` whole frames per state.
        windows: dynamic-feature windows (e.g. :data:`DELTA_WINDOWS`). ``None``: the model has
            no delta features and the expanded means are returned as they are (a step
            trajectory).
        lengths: ``(B,)`` valid states per sequence.
        boundary: see :func:`mlpg`.

    Returns:
        :class:`GeneratedSequence` (``features`` ``(B, T, D)``, ``lengths`` ``(B,)``, and the
        frame-level ``means``/``variances``); unbatched input gives unbatched output.
    """
    state_means = _as_float_tensor(state_means, "state_means")
    state_variances = _as_float_tensor(state_variances, "state_variances", allow_int=True).to(
        dtype=state_means.dtype, device=state_means.device
    )
    if state_variances.dim() == 1:
        state_variances = state_variances.expand(state_means.shape)
    if state_variances.shape != state_means.shape:
        raise HMMValueError(
            f"state_variances must have shape {tuple(state_means.shape)} (as state_means) or "
            f"({state_means.shape[-1]},), got {tuple(state_variances.shape)}"
        )
    exp_m = expand_by_durations(state_means, durations, lengths)
    exp_v = expand_by_durations(state_variances, durations, lengths)
    if windows is None:
        return GeneratedSequence(exp_m.values, exp_m.lengths, exp_m.values, exp_v.values)
    unbatched = state_means.dim() == 2
    m = exp_m.values.unsqueeze(0) if unbatched else exp_m.values
    v = exp_v.values.unsqueeze(0) if unbatched else exp_v.values
    ln = exp_m.lengths.reshape(-1)
    # padded frames carry zero variances; mlpg masks them by ``lengths``
    feats = mlpg(m, v, windows, ln, boundary=boundary)
    if unbatched:
        feats = feats[0]
    return GeneratedSequence(feats, exp_m.lengths, exp_m.values, exp_v.values)
