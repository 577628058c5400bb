"""Sufficient statistics of Baum-Welch EM and the closed-form M-steps, as plain functions.

Everything here works on tensors, so any model (or a forced aligner with states tied across
utterances) can reuse it: compute posteriors with :func:`pytorch_hmm.core.posteriors`, turn them
into statistics with :func:`gaussian_stats` / :func:`mixture_stats`, add statistics of several
batches or processes (``a + b``, :meth:`HMMStats.all_reduce`), then update parameters with
:func:`markov_m_step`, :func:`gaussian_m_step` and :func:`mixture_m_step`.

The M-step formulas are hmmlearn's (0.3), priors included, so that EM from the same starting
point gives the same parameters:

- Gaussian, diagonal: ``means = (w0 * mu0 + S1) / (w0 + N)``,
  ``covars = (covars_prior + w0 (means - mu0)^2 + S2 - 2 means S1 + means^2 N)
  / max(max(covars_weight - 1, 0) + N, 1e-5)`` with ``N`` the occupancy, ``S1 = sum g x``,
  ``S2 = sum g x^2``.
- Gaussian, full: the same with outer products, ``covars_prior`` (a scalar) added to every
  entry, and denominator ``max(covars_weight - D, 0) + N``.

Then a variance floor: diagonal variances below ``min_covar`` are raised to it; full
covariances get their eigenvalues raised to ``min_covar``. hmmlearn applies no floor in its
M-step, so the two agree whenever no variance falls below the floor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..errors import HMMTypeError, HMMValueError
from ..models._common import COVARIANCE_TYPES, check_covariance_type  # noqa: F401 (re-exported)

# A state or mixture component with less expected occupancy than this (in frames) is treated
# as unused: it keeps its previous parameters (states) or is re-seeded (mixture components).
MIN_OCCUPANCY = 1e-8


def _frames(x: torch.Tensor, gamma: torch.Tensor, lengths: Optional[torch.Tensor]):
    """Flatten (B, T, D) features and (B, T, S) weights to (N, D), (N, S); padding zeroed."""
    if x.dim() == 2:
        x, gamma = x.unsqueeze(0), gamma.unsqueeze(0)
    if x.dim() != 3:
        raise HMMValueError(f"x must have shape (B, T, D) or (N, D), got {tuple(x.shape)}")
    if gamma.shape[:2] != x.shape[:2]:
        raise HMMValueError(
            f"gamma must have shape (B, T, K) matching x {tuple(x.shape)}, got {tuple(gamma.shape)}"
        )
    B, T, D = x.shape
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=x.device)
        mask = torch.arange(T, device=x.device).unsqueeze(0) < lengths.view(-1, 1)
        m = mask.unsqueeze(-1)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x = torch.where(m, x, zero)
        gamma = torch.where(m, gamma, torch.zeros((), dtype=gamma.dtype, device=gamma.device))
    return x.reshape(B * T, D), gamma.reshape(B * T, -1)


def _weighted_outer(g: torch.Tensor, x: torch.Tensor, chunk: int = 1 << 22) -> torch.Tensor:
    """``sum_n g[n, s] x[n] x[n]^T`` -> (S, D, D), in chunks of frames to bound memory."""
    N, S = g.shape
    D = x.shape[1]
    out = x.new_zeros(S, D, D)
    step = max(1, chunk // max(1, S * D))
    for n0 in range(0, N, step):
        gs, xs = g[n0 : n0 + step], x[n0 : n0 + step]
        # (S, D, n) @ (n, D): one batched product per chunk
        out += torch.matmul((gs.t().unsqueeze(-1) * xs.unsqueeze(0)).transpose(1, 2), xs)
    return out


# ------------------------------------------------------------------------------------------
# statistics


class _Stats:
    """Element-wise ``+`` over tensor fields; other fields must be equal."""

    def tensors(self) -> List[torch.Tensor]:
        out = []
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                out.append(v)
            elif isinstance(v, _Stats):
                out.extend(v.tensors())
        return out

    def __add__(self, other):
        if other is None or (isinstance(other, int) and other == 0):
            return self
        if type(other) is not type(self):
            return NotImplemented
        kw: Dict[str, Any] = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a is None or b is None:  # e.g. no emission statistics on one side
                kw[f.name] = a if b is None else b
            elif isinstance(a, (torch.Tensor, _Stats)):
                kw[f.name] = a + b
            else:
                if a != b:
                    raise HMMValueError(
                        f"cannot add statistics with different {f.name}: {a} != {b}"
                    )
                kw[f.name] = a
        return type(self)(**kw)

    def __radd__(self, other):  # so that sum(list_of_stats) works
        return self.__add__(other)

    def all_reduce(self, group=None):
        """Sum every tensor over the processes of ``group`` in place
        (``torch.distributed.all_reduce``, one collective per dtype); returns ``self``.

        Without an initialised process group (one process, no ``torchrun``) the sum over the
        processes is the statistics themselves: nothing to do, so the same training code runs
        with and without ``torchrun``."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self

        by_dtype: Dict[torch.dtype, List[torch.Tensor]] = {}
        for t in self.tensors():
            by_dtype.setdefault(t.dtype, []).append(t)
        for ts in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in ts])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
            offset = 0
            for t in ts:
                n = t.numel()
                t.copy_(flat[offset : offset + n].view_as(t))
                offset += n
        return self


@dataclass(eq=False)
class GaussianStats(_Stats):
    """Sufficient statistics of Gaussians with leading shape ``S`` ((K,) for states, (K, M)
    for mixture components):

    - ``occupancy`` (*S): ``sum_n g[n, s]`` (expected number of frames),
    - ``sum_x`` (*S, D): ``sum_n g[n, s] x[n]``,
    - ``sum_xx``: (*S, D) ``sum_n g[n, s] x[n]^2`` for "diag", (*S, D, D)
      ``sum_n g[n, s] x[n] x[n]^T`` for "full".

    Statistics of disjoint sets of frames add up: ``a + b``."""

    occupancy: torch.Tensor
    sum_x: torch.Tensor
    sum_xx: torch.Tensor
    covariance_type: str = "diag"


@dataclass(eq=False)
class HMMStats(_Stats):
    """Everything one EM iteration needs, summed over sequences:

    - ``start`` (K,): expected initial-state counts ``sum_b p(z_0 = k | x_b)``,
    - ``trans`` (K, K): expected transition counts ``sum_b sum_t p(z_t = i, z_{t+1} = j | x_b)``,
    - ``emission``: emission statistics (:class:`GaussianStats`, leading shape (K,) or (K, M)),
      or ``None`` when no emission parameter is trained,
    - ``log_likelihood`` () float64: total log-likelihood of the sequences under the parameters
      the posteriors came from,
    - ``num_frames`` () and ``num_sequences`` () int64.

    ``a + b`` adds everything; :meth:`all_reduce` sums in place over processes."""

    start: torch.Tensor
    trans: torch.Tensor
    emission: Optional[GaussianStats]
    log_likelihood: torch.Tensor
    num_frames: torch.Tensor
    num_sequences: torch.Tensor


#: fields of the statistics that are (expected) counts: finite and >= 0
COUNT_FIELDS = ("start", "trans", "durations", "occupancy", "num_frames", "num_sequences")


def _check_values(stats, prefix: str) -> None:
    for f in fields(stats):
        v = getattr(stats, f.name)
        name = f"{prefix}.{f.name}"
        if isinstance(v, _Stats):
            _check_values(v, name)
            continue
        if not isinstance(v, torch.Tensor) or f.name == "log_likelihood":
            continue  # the log-likelihood is a report (-inf for an impossible sequence)
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            what = "NaN" if bool(torch.isnan(v).any()) else "inf"
            idx = torch.nonzero(~torch.isfinite(v))[0].tolist() if v.dim() else []
            raise HMMValueError(
                f"{name} contains {what}"
                + (f" (at {tuple(idx)})" if idx else "")
                + ": statistics must be finite (the model is unchanged)"
            )
        if f.name in COUNT_FIELDS and bool((v < 0).any()):
            idx = torch.nonzero(v < 0)[0].tolist() if v.dim() else []
            raise HMMValueError(
                f"{name} holds a negative count ({float(v.min()):.3g}"
                + (f" at {tuple(idx)}" if idx else "")
                + "): expected counts are >= 0 (the model is unchanged)"
            )


def _check_shape(name: str, t: torch.Tensor, shape) -> None:
    if tuple(t.shape) != tuple(shape):
        raise HMMValueError(
            f"{name} must have shape {tuple(shape)} for this model, got {tuple(t.shape)}"
        )


def check_stats(stats, stats_type, num_states: int, max_duration: Optional[int] = None) -> None:
    """Refuse statistics an M-step cannot use, before any parameter changes: not a
    ``stats_type`` (``HMMTypeError``), start (K,) / trans (K, K) / durations (K, max_duration)
    of another shape, NaN or inf anywhere, or a negative count (``HMMValueError``, naming the
    field)."""
    if not isinstance(stats, stats_type):
        raise HMMTypeError(
            f"stats must be {stats_type.__name__} (from accumulate()), got {type(stats).__name__}"
        )
    K = int(num_states)
    _check_shape("stats.start", stats.start, (K,))
    _check_shape("stats.trans", stats.trans, (K, K))
    if max_duration is not None:
        _check_shape("stats.durations", stats.durations, (K, int(max_duration)))
    _check_values(stats, "stats")


def check_gaussian_stats(
    stats, leading, feature_dim: int, covariance_type: str, name: str = "stats"
) -> None:
    """Refuse Gaussian statistics of another model: not :class:`GaussianStats`, another
    covariance type, or occupancy / sum_x / sum_xx not of shape ``leading``,
    ``leading + (D,)``, ``leading + (D,)`` ("diag") or ``leading + (D, D)`` ("full")."""
    if not isinstance(stats, GaussianStats):
        raise HMMTypeError(f"{name} must be GaussianStats, got {type(stats).__name__}")
    if stats.covariance_type != covariance_type:
        raise HMMValueError(
            f"{name} are {stats.covariance_type!r} statistics, the model is {covariance_type!r}"
        )
    lead, D = tuple(leading), int(feature_dim)
    _check_shape(f"{name}.occupancy", stats.occupancy, lead)
    _check_shape(f"{name}.sum_x", stats.sum_x, lead + (D,))
    _check_shape(
        f"{name}.sum_xx", stats.sum_xx, lead + ((D,) if covariance_type == "diag" else (D, D))
    )
    _check_values(stats, name)


def _check_index(state_index: torch.Tensor, shape, num_states: Optional[int]) -> int:
    if state_index.shape != shape:
        raise HMMValueError(
            f"state_index must have shape {tuple(shape)}, got {tuple(state_index.shape)}"
        )
    if num_states is None:
        raise HMMValueError("num_states is required with state_index")
    if (state_index >= num_states).any() or (state_index < -1).any():
        raise HMMValueError(f"state_index must hold ids in [-1, num_states={num_states})")
    return int(num_states)


def tie_posteriors(gamma: torch.Tensor, state_index: torch.Tensor, num_states: int) -> torch.Tensor:
    """Sum per-sequence state posteriors into shared (tied) states: ``gamma`` (B, T, K) over each
    sequence's own K states, ``state_index`` (B, K) long, the shared id of each (-1: unused
    slot, e.g. padding of a shorter state sequence) -> (B, T, num_states)."""
    B, T, K = gamma.shape
    idx = state_index.to(device=gamma.device, dtype=torch.long)
    _check_index(idx, (B, K), num_states)
    g = torch.where((idx >= 0).unsqueeze(1), gamma, torch.zeros((), dtype=gamma.dtype))
    out = gamma.new_zeros(B, T, int(num_states))
    return out.scatter_add_(2, idx.clamp(min=0).unsqueeze(1).expand(B, T, K), g)


def tie_transition_counts(
    start: torch.Tensor, trans: torch.Tensor, state_index: torch.Tensor, num_states: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sum per-sequence start counts (B, K) (e.g. ``gamma[:, 0]``) and transition counts
    (B, K, K) (the engine's ``transition_counts``) into shared states: ``(start (S,),
    trans (S, S))`` with ``S = num_states``; ``state_index`` (B, K) as in
    :func:`tie_posteriors`."""
    B, K = start.shape
    idx = state_index.to(device=start.device, dtype=torch.long)
    S = _check_index(idx, (B, K), num_states)
    ok = idx >= 0
    i = idx.clamp(min=0)
    st = start.new_zeros(S).index_add_(0, i.reshape(-1), torch.where(ok, start, 0.0).reshape(-1))
    pair = (i.unsqueeze(2) * S + i.unsqueeze(1)).reshape(-1)
    w = torch.where(ok.unsqueeze(2) & ok.unsqueeze(1), trans, 0.0).reshape(-1)
    tr = trans.new_zeros(S * S).index_add_(0, pair, w).view(S, S)
    return st, tr


def gaussian_stats(
    x: torch.Tensor,
    gamma: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    covariance_type: str = "diag",
    state_index: Optional[torch.Tensor] = None,
    num_states: Optional[int] = None,
) -> GaussianStats:
    """Gaussian sufficient statistics from features and posteriors.

    ``x`` (B, T, D) or (N, D); ``gamma`` (B, T, K) or (N, K) occupation probabilities (zero on
    padded frames, or pass ``lengths`` (B,) to mask padding; padded features may hold anything).
    Returns :class:`GaussianStats` with occupancy (K,), sum_x (K, D), sum_xx (K, D) ("diag") or
    (K, D, D) ("full"). Matrix products over the (N, K) posteriors; no (N, K, D) temporary
    for "diag".

    Tied states (e.g. phone HMMs shared across utterances in forced alignment): with
    ``state_index`` (B, K) long, the shared id of each sequence's k-th state (-1 for unused
    slots), statistics are summed per shared state: leading shape (num_states,)."""
    check_covariance_type(covariance_type)
    if state_index is not None:
        if gamma.dim() != 3:
            raise HMMValueError("state_index needs gamma of shape (B, T, K)")
        gamma = tie_posteriors(gamma, state_index, num_states)
    xf, g = _frames(x, gamma.to(x.dtype), lengths)
    if covariance_type == "diag":
        return diag_stats_from_augmented(torch.cat([xf * xf, xf], 1), g)
    s1 = g.t() @ xf
    s2 = _weighted_outer(g, xf)
    return GaussianStats(g.sum(0), s1, s2, covariance_type)


def diag_stats_from_augmented(augmented: torch.Tensor, g: torch.Tensor) -> GaussianStats:
    """Diagonal Gaussian statistics from ``augmented`` (N, 2D) = ``[x^2, x]`` per frame and
    weights ``g`` (N, S) in the same frame order: both moments in one matrix product."""
    if augmented.dim() != 2 or augmented.shape[1] % 2 or g.dim() != 2:
        raise HMMValueError(
            f"augmented must have shape (N, 2D) and g (N, S), got {tuple(augmented.shape)} "
            f"and {tuple(g.shape)}"
        )
    if g.shape[0] != augmented.shape[0]:
        raise HMMValueError(
            f"augmented and g must have the same number of frames, got {augmented.shape[0]} "
            f"and {g.shape[0]}"
        )
    D = augmented.shape[1] // 2
    s = g.t() @ augmented
    return GaussianStats(g.sum(0), s[:, D:].contiguous(), s[:, :D].contiguous(), "diag")


def mixture_responsibilities(component_log_prob: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Per-component posteriors ``gamma[..., k] * softmax_m(component_log_prob[..., k, :])``:
    (B, T, K, M) from component log-densities ``log w_km + log N(x | mu_km, Sigma_km)``
    (B, T, K, M) and state posteriors (B, T, K)."""
    post = torch.softmax(component_log_prob, -1)
    post = torch.nan_to_num(post, nan=0.0)  # a frame no component can explain (all -inf)
    return gamma.unsqueeze(-1) * post


def mixture_stats(
    x: torch.Tensor,
    gamma: Optional[torch.Tensor],
    component_log_prob: Optional[torch.Tensor],
    lengths: Optional[torch.Tensor] = None,
    covariance_type: str = "diag",
    responsibilities: Optional[torch.Tensor] = None,
) -> GaussianStats:
    """Statistics of a Gaussian mixture per state (GMM-HMM).

    ``x`` (B, T, D), ``gamma`` (B, T, K) state posteriors, ``component_log_prob`` (B, T, K, M)
    weighted component log-densities; or, instead of the last two, the per-component
    posteriors ``responsibilities`` (B, T, K, M) (:func:`mixture_responsibilities`). Returns
    :class:`GaussianStats` with leading shape (K, M): occupancy (K, M) (the state occupancy is
    ``occupancy.sum(-1)``), sum_x (K, M, D), sum_xx (K, M, D) or (K, M, D, D)."""
    if responsibilities is None:
        resp = mixture_responsibilities(component_log_prob, gamma)
    else:
        resp = responsibilities
    K, M = resp.shape[-2:]
    st = gaussian_stats(x, resp.reshape(*resp.shape[:-2], K * M), lengths, covariance_type)
    D = st.sum_x.shape[-1]
    return GaussianStats(
        st.occupancy.view(K, M),
        st.sum_x.view(K, M, D),
        st.sum_xx.view(K, M, *st.sum_xx.shape[1:]),
        covariance_type,
    )


# ------------------------------------------------------------------------------------------
# M-steps


def _normalise_rows(p: torch.Tensor, previous: Optional[torch.Tensor]) -> torch.Tensor:
    s = p.sum(-1, keepdim=True)
    out = p / torch.where(s > 0, s, torch.ones_like(s))
    if previous is not None:
        out = torch.where(s > 0, out, previous.to(out))
    return out


def markov_m_step(
    start_counts: torch.Tensor,
    trans_counts: torch.Tensor,
    start_mask: Optional[torch.Tensor] = None,
    trans_mask: Optional[torch.Tensor] = None,
    startprob_prior: float = 1.0,
    transmat_prior: float = 1.0,
    previous: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """New ``(startprob (K,), transmat (K, K))`` from expected counts (hmmlearn's rule):
    ``max(prior - 1 + counts, 0)``, zero where the mask is False (structural zeros stay zero),
    rows normalised. A row with no count (a state never left) keeps its ``previous`` value
    (``previous = (startprob, transmat)``), or is all zero when none is given."""
    sp = (start_counts + (startprob_prior - 1)).clamp(min=0)
    tm = (trans_counts + (transmat_prior - 1)).clamp(min=0)
    if start_mask is not None:
        sp = torch.where(start_mask, sp, torch.zeros_like(sp))
    if trans_mask is not None:
        tm = torch.where(trans_mask, tm, torch.zeros_like(tm))
    prev_s, prev_t = previous if previous is not None else (None, None)
    return _normalise_rows(sp, prev_s), _normalise_rows(tm, prev_t)


def floor_covariances(covars: torch.Tensor, covariance_type: str, min_covar: float) -> torch.Tensor:
    """Variance floor: diagonal variances raised to ``min_covar``; full covariances
    symmetrised and their eigenvalues raised to ``min_covar`` (only matrices that need it)."""
    check_covariance_type(covariance_type)
    if covariance_type == "diag":
        return covars.clamp(min=min_covar)
    c = 0.5 * (covars + covars.transpose(-1, -2))
    flat = c.reshape(-1, *c.shape[-2:])
    evals = torch.linalg.eigvalsh(flat)
    bad = ~(evals.amin(-1) >= min_covar)  # NaN counts as bad
    if bad.any():
        sub = torch.nan_to_num(flat[bad])
        w, v = torch.linalg.eigh(sub)
        fixed = (v * w.clamp(min=min_covar).unsqueeze(-2)) @ v.transpose(-1, -2)
        flat = flat.clone()
        flat[bad] = 0.5 * (fixed + fixed.transpose(-1, -2))
    return flat.reshape(c.shape)


def gaussian_m_step(
    stats: GaussianStats,
    *,
    min_covar: float = 1e-3,
    covars_prior: float = 1e-2,
    covars_weight: float = 1.0,
    means_prior: Any = 0.0,
    means_weight: Any = 0.0,
    means: Optional[torch.Tensor] = None,
    center: Optional[torch.Tensor] = None,
    previous: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    min_occupancy: float = MIN_OCCUPANCY,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """New ``(means (*S, D), covars (*S, D) or (*S, D, D))`` from :class:`GaussianStats`.

    hmmlearn's ``GaussianHMM`` update (defaults ``covars_prior=1e-2, covars_weight=1``; use
    ``covars_prior=0`` for plain maximum likelihood), then the variance floor ``min_covar``
    (see :func:`floor_covariances`).

    ``means``: use these means instead of re-estimating them (hmmlearn's ``params`` without
    "m"). ``center``: compute the covariances around these points instead of the new means
    (``sum g (x - c)(x - c)^T / N``; hmmlearn's ``GMMHMM`` centres them on the previous means).
    ``previous = (means, covars)``: kept for any Gaussian whose occupancy is below
    ``min_occupancy`` (without it, such a Gaussian gets its mean from the prior and the
    floor as variance, never NaN)."""
    ctype = stats.covariance_type
    occ, s1, s2 = stats.occupancy, stats.sum_x, stats.sum_xx
    D = s1.shape[-1]
    n = occ.unsqueeze(-1)
    mw = torch.as_tensor(means_weight, dtype=s1.dtype, device=s1.device)
    mw = mw.unsqueeze(-1) if mw.dim() > 0 else mw
    mp = torch.as_tensor(means_prior, dtype=s1.dtype, device=s1.device)
    used = occ >= min_occupancy
    if means is None:
        den = mw + n
        mu = (mw * mp + s1) / torch.where(den > 0, den, torch.ones_like(den))
    else:
        mu = means.to(s1)
    c = mu if center is None else center.to(s1)
    md = mu - mp
    if ctype == "diag":
        cn = mw * md * md + s2 - 2 * c * s1 + c * c * n
        cd = (max(covars_weight - 1, 0) + n).clamp(min=1e-5)
        cov = (covars_prior + cn) / cd
    else:
        outer = md.unsqueeze(-1) * md.unsqueeze(-2)
        cs = c.unsqueeze(-1) * s1.unsqueeze(-2)  # c s1^T
        cn = (
            mw.unsqueeze(-1) * outer
            + s2
            - cs
            - cs.transpose(-1, -2)
            + c.unsqueeze(-1) * c.unsqueeze(-2) * n.unsqueeze(-1)
        )
        cd = (max(covars_weight - D, 0) + n.unsqueeze(-1)).clamp(min=1e-5)
        cov = (covars_prior + cn) / cd
    if previous is not None:
        pm, pc = previous
        u = used.unsqueeze(-1)
        mu = torch.where(u, mu, pm.to(mu))
        cov = torch.where(u.unsqueeze(-1) if ctype == "full" else u, cov, pc.to(cov))
    else:
        mu = torch.where(used.unsqueeze(-1), mu, torch.broadcast_to(mp, mu.shape))
        floor = min_covar * (
            torch.eye(D, dtype=cov.dtype, device=cov.device) if ctype == "full" else 1.0
        )
        cov = torch.where(
            used.view(*used.shape, *([1] * (cov.dim() - used.dim()))), cov, floor + 0 * cov
        )
    return mu, floor_covariances(cov, ctype, min_covar)


def mixture_m_step(
    stats: GaussianStats,
    *,
    min_covar: float = 1e-3,
    weights_prior: float = 1.0,
    covars_prior: float = 0.0,
    covars_weight: float = 1.0,
    means_prior: Any = 0.0,
    means_weight: Any = 0.0,
    means: Optional[torch.Tensor] = None,
    center: Optional[torch.Tensor] = None,
    previous: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
    min_occupancy: float = MIN_OCCUPANCY,
    reseed: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """New ``(weights (K, M), means (K, M, D), covars, reseeded (K, M) bool)`` of per-state
    Gaussian mixtures from :func:`mixture_stats`.

    Weights: ``(N_km + weights_prior - 1) / (N_k + M (weights_prior - 1))`` (hmmlearn's
    ``GMMHMM``). Means and covariances: :func:`gaussian_m_step` per component (the defaults
    ``covars_prior=0, covars_weight=1`` are maximum likelihood, as hmmlearn's ``GMMHMM``
    defaults; ``center=previous means`` reproduces hmmlearn's ``GMMHMM`` covariances exactly;
    ``means``: keep these means instead of re-estimating them).

    Degenerate components (occupancy below ``min_occupancy`` in a state that is used) are
    re-seeded when ``reseed``: the state's heaviest component is split in two, each half taking
    half its weight, its covariance, and its mean moved by +-0.5 standard deviation along each
    axis. The rule depends on the statistics only, so every process of a distributed fit
    re-seeds identically. A state with no occupancy keeps its ``previous = (weights, means,
    covars)`` parameters."""
    occ = stats.occupancy  # (K, M)
    K, M = occ.shape
    state_occ = occ.sum(-1, keepdim=True)
    a = weights_prior - 1
    w_n = (occ + a).clamp(min=0)
    w_d = state_occ + M * a
    weights = w_n / torch.where(w_d > 0, w_d, torch.ones_like(w_d))
    prev_means_covars = None if previous is None else (previous[1], previous[2])
    means, covars = gaussian_m_step(
        stats,
        min_covar=min_covar,
        covars_prior=covars_prior,
        covars_weight=covars_weight,
        means_prior=means_prior,
        means_weight=means_weight,
        means=means,
        center=center,
        previous=prev_means_covars,
        min_occupancy=min_occupancy,
    )
    state_used = state_occ.squeeze(-1) >= min_occupancy
    if previous is not None:
        weights = torch.where(state_used.unsqueeze(-1), weights, previous[0].to(weights))
    degenerate = (occ < min_occupancy) & state_used.unsqueeze(-1)
    if reseed and M > 1 and degenerate.any():
        weights, means, covars = weights.clone(), means.clone(), covars.clone()
        for k in torch.nonzero(degenerate.any(-1)).flatten().tolist():
            for m in torch.nonzero(degenerate[k]).flatten().tolist():
                h = int(torch.argmax(torch.where(degenerate[k], -1.0, occ[k].double())))
                var = covars[k, h] if covars.dim() == 3 else torch.diagonal(covars[k, h])
                shift = 0.5 * var.sqrt()
                means[k, m] = means[k, h] + shift
                means[k, h] = means[k, h] - shift
                covars[k, m] = covars[k, h]
                weights[k, m] = weights[k, h] = 0.5 * weights[k, h]
    else:
        degenerate = torch.zeros_like(degenerate)
    return weights, means, covars, degenerate
