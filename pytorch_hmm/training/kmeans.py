"""k-means for initialising Gaussian HMMs: a small torch implementation (k-means++ seeding,
Lloyd iterations with matrix-product distances), or scikit-learn's ``KMeans`` when asked."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..errors import HMMTypeError, HMMValueError


class KMeansResult(NamedTuple):
    """``centers`` (k, D), ``labels`` (N,) long, ``inertia``: sum of squared distances."""

    centers: torch.Tensor
    labels: torch.Tensor
    inertia: float


def _sq_dist(x: torch.Tensor, x2: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (x2 - 2.0 * (x @ c.t()) + (c * c).sum(-1)).clamp(min=0)


def _kmeans_pp(x: torch.Tensor, x2: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    N = x.shape[0]
    idx = int(torch.randint(N, (1,), generator=g))
    centers = [x[idx]]
    d = _sq_dist(x, x2, x[idx : idx + 1]).squeeze(1)
    for _ in range(1, k):
        total = d.sum()
        if not total > 0:  # fewer distinct points than clusters: take any
            idx = int(torch.randint(N, (1,), generator=g))
        else:
            idx = int(torch.multinomial((d / total).double().cpu(), 1, generator=g))
        centers.append(x[idx])
        d = torch.minimum(d, _sq_dist(x, x2, x[idx : idx + 1]).squeeze(1))
    return torch.stack(centers)


def _lloyd(x, x2, centers, n_iter, tol):
    k = centers.shape[0]
    labels = None
    for _ in range(n_iter):
        dist = _sq_dist(x, x2, centers)
        labels = dist.argmin(1)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        new = sums / counts.clamp(min=1).unsqueeze(1)
        empty = counts == 0
        if empty.any():  # re-seed empty clusters on the points farthest from their centre
            far = dist.gather(1, labels.unsqueeze(1)).squeeze(1)
            pick = torch.topk(far, int(empty.sum())).indices
            new[empty] = x[pick]
        shift = ((new - centers) ** 2).sum()
        centers = new
        if shift <= tol * (x.var(0).sum() + 1e-30) and not empty.any():
            break
    dist = _sq_dist(x, x2, centers)
    inertia, labels = dist.amin(1), dist.argmin(1)
    return centers, labels, float(inertia.double().sum())


def kmeans(
    x: torch.Tensor,
    num_clusters: int,
    *,
    n_init: int = 3,
    n_iter: int = 100,
    tol: float = 1e-6,
    seed: Optional[int] = 0,
    backend: str = "torch",
) -> KMeansResult:
    """Cluster frames ``x`` (N, D) into ``num_clusters`` groups; the best of ``n_init`` runs.

    ``backend``: "torch" (default; k-means++ seeding then Lloyd iterations, every distance a
    matrix product), "sklearn" (scikit-learn's ``KMeans``, imported lazily) or "auto"
    (scikit-learn when installed, else torch). Deterministic for a given ``seed``.
    Raises ``ValueError`` when there are fewer frames than clusters or non-finite features."""
    if not isinstance(x, torch.Tensor):
        raise HMMTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise HMMValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
    k = int(num_clusters)
    if k < 1:
        raise HMMValueError(f"num_clusters must be >= 1, got {num_clusters}")
    N = x.shape[0]
    if N < k:
        raise HMMValueError(
            f"k-means needs at least num_clusters={k} frames (one per cluster), got {N} frames"
        )
    if not torch.isfinite(x).all():
        raise HMMValueError("x contains NaN or inf: k-means needs finite features")
    if backend not in ("torch", "sklearn", "auto"):
        raise HMMValueError(f"backend must be 'torch', 'sklearn' or 'auto', got {backend!r}")
    if backend in ("sklearn", "auto"):
        try:
            from sklearn.cluster import KMeans
        except ImportError:
            if backend == "sklearn":
                raise ImportError(
                    "backend='sklearn' needs scikit-learn: pip install scikit-learn"
                ) from None
        else:
            km = KMeans(n_clusters=k, n_init=n_init, random_state=seed, max_iter=n_iter, tol=tol)
            labels = km.fit_predict(x.detach().cpu().double().numpy())
            return KMeansResult(
                torch.as_tensor(km.cluster_centers_).to(x),
                torch.as_tensor(labels, dtype=torch.long, device=x.device),
                float(km.inertia_),
            )
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    with torch.no_grad():
        xd = x.detach()
        x2 = (xd * xd).sum(-1, keepdim=True)
        best = None
        for _ in range(max(1, int(n_init))):
            c0 = _kmeans_pp(xd, x2, k, g)
            res = _lloyd(xd, x2, c0, n_iter, tol)
            if best is None or res[2] < best[2]:
                best = res
    return KMeansResult(*best)
