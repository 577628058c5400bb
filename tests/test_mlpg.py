"""MLPG against nnmnkwii (where it installs) and a dense reference solve written here."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pytorch_hmm.speech import (
    DELTA_WINDOWS,
    expand_by_durations,
    generate_from_states,
    mlpg,
)

ARCTIC = Path(__file__).resolve().parents[1] / "data" / "arctic" / "slt_arctic_demo_data"
WINDOWS_NNMNKWII = [
    (0, 0, np.array([1.0])),
    (1, 1, np.array([-0.5, 0.0, 0.5])),
    (1, 1, np.array([1.0, -2.0, 1.0])),
]


def _import_nnmnkwii_mlpg():
    """nnmnkwii 0.1.3 imports pkg_resources (gone from setuptools >= 81) only for its example
    data paths; a stub lets its paramgen import. Skips when nnmnkwii is not installed."""
    pytest.importorskip("nnmnkwii")
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        stub = types.ModuleType("pkg_resources")
        stub.resource_filename = lambda *args: ""
        sys.modules["pkg_resources"] = stub
    from nnmnkwii.paramgen import mlpg as nnmnkwii_mlpg

    return nnmnkwii_mlpg


def dense_mlpg(mean, var, windows=WINDOWS_NNMNKWII, boundary="hts"):
    """Reference: build the dense (M*T, T) window matrix W and solve W'PW c = W'P mu."""
    T, F = mean.shape
    M = len(windows)
    D = F // M
    W = np.zeros((M, T, T))
    keep = np.ones((M, T), dtype=bool)
    for m, (left, right, coef) in enumerate(windows):
        for t in range(T):
            if boundary == "hts" and (t - left < 0 or t + right >= T):
                keep[m, t] = False
                continue
            for j, c in enumerate(coef):
                s = t - left + j
                if boundary == "edge":
                    s = min(max(s, 0), T - 1)
                elif not 0 <= s < T:
                    continue
                W[m, t, s] += c
    out = np.zeros((T, D))
    for d in range(D):
        A = np.zeros((T, T))
        b = np.zeros(T)
        for m in range(M):
            p = np.where(keep[m], 1.0 / var[:, m * D + d], 0.0)
            A += W[m].T @ (p[:, None] * W[m])
            b += W[m].T @ (p * mean[:, m * D + d])
        out[:, d] = np.linalg.solve(A, b)
    return out


def _random(T=40, D=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, 3 * D)), rng.uniform(0.1, 2.0, size=(T, 3 * D))


def test_matches_nnmnkwii_float64():
    nnmnkwii_mlpg = _import_nnmnkwii_mlpg()
    mean, var = _random(T=60, D=4)
    ref = nnmnkwii_mlpg(mean, var, WINDOWS_NNMNKWII)
    out = mlpg(torch.tensor(mean), torch.tensor(var), DELTA_WINDOWS)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-6)
    # a global (1-D) variance, as nnmnkwii also accepts
    gv = var[0]
    np.testing.assert_allclose(
        mlpg(torch.tensor(mean), torch.tensor(gv)).numpy(),
        nnmnkwii_mlpg(mean, gv, WINDOWS_NNMNKWII),
        rtol=0,
        atol=1e-6,
    )


@pytest.mark.parametrize("boundary", ["hts", "zero", "edge"])
def test_matches_dense_solve(boundary):
    mean, var = _random(T=25, D=2, seed=1)
    ref = dense_mlpg(mean, var, boundary=boundary)
    out = mlpg(torch.tensor(mean), torch.tensor(var), boundary=boundary)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-9)


def test_centred_window_lists_and_wider_windows():
    mean, var = _random(T=20, D=2, seed=2)
    wins = [[1.0], [-0.5, 0.0, 0.5], [1.0, -2.0, 1.0]]
    a = mlpg(torch.tensor(mean), torch.tensor(var), wins)
    b = mlpg(torch.tensor(mean), torch.tensor(var), DELTA_WINDOWS)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # a 5-tap HTK regression delta (half-bandwidth 4 in W'PW)
    wide = [(0, 0, np.array([1.0])), (2, 2, np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) / 10.0)]
    m2, v2 = mean[:, :4], var[:, :4]
    out = mlpg(torch.tensor(m2), torch.tensor(v2), wide, boundary="zero")
    np.testing.assert_allclose(out.numpy(), dense_mlpg(m2, v2, wide, "zero"), rtol=0, atol=1e-9)


def test_infinite_variance_ignores_window():
    mean, var = _random(T=15, D=1, seed=3)
    var[5:9, 1] = np.inf  # delta ignored on frames 5..8
    out = mlpg(torch.tensor(mean), torch.tensor(var))
    np.testing.assert_allclose(out.numpy(), dense_mlpg(mean, var), rtol=0, atol=1e-9)


def test_recovers_arctic_statics():
    """The bundled features hold statics and their deltas / delta-deltas (interior frames
    exactly, the first/last frame from a longer recording): with the HTS boundary, which drops
    the dynamic windows at the two edge frames, MLPG returns the statics."""
    data = np.load(ARCTIC / "Y_acoustic" / "arctic_a0001.npz")["data"].astype(np.float64)
    x = torch.tensor(data[:, :180])
    var = torch.rand(180, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1
    out = mlpg(x, var)
    torch.testing.assert_close(out, x[:, :60], rtol=0, atol=1e-5)
    # log-F0 with its two deltas (columns 180-182)
    lf0 = mlpg(torch.tensor(data[:, 180:183]), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(lf0[:, 0], torch.tensor(data[:, 180]), rtol=0, atol=1e-5)


def test_batched_variable_lengths_match_unbatched():
    (m1, v1), (m2, v2) = _random(T=30, D=2, seed=4), _random(T=18, D=2, seed=5)
    means = torch.zeros(2, 30, 6, dtype=torch.float64)
    vars_ = torch.zeros(2, 30, 6, dtype=torch.float64)  # zero variance in the padding is fine
    means[0], vars_[0] = torch.tensor(m1), torch.tensor(v1)
    means[1, :18], vars_[1, :18] = torch.tensor(m2), torch.tensor(v2)
    means[1, 18:] = float("nan")  # garbage in the padding must not leak
    out = mlpg(means, vars_, lengths=torch.tensor([30, 18]))
    np.testing.assert_allclose(out[0].numpy(), dense_mlpg(m1, v1), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[1, :18].numpy(), dense_mlpg(m2, v2), rtol=0, atol=1e-9)
    assert torch.equal(out[1, 18:], torch.zeros(12, 2, dtype=torch.float64))


def test_float32_close_to_float64():
    mean, var = _random(T=200, D=3, seed=6)
    a = mlpg(torch.tensor(mean, dtype=torch.float32), torch.tensor(var, dtype=torch.float32))
    assert a.dtype == torch.float32
    np.testing.assert_allclose(a.numpy(), dense_mlpg(mean, var), rtol=0, atol=1e-4)


def test_gradcheck():
    mean, var = _random(T=8, D=2, seed=7)
    m = torch.tensor(mean, requires_grad=True)
    v = torch.tensor(var, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mlpg(a, b), (m, v), eps=1e-6, atol=1e-6)
    # the gradient wrt the means is W'P (W'PW)^-1 applied to the upstream gradient; compare
    # with autograd through a dense torch solve
    g = torch.randn(8, 2, dtype=torch.float64)
    (gm,) = torch.autograd.grad((mlpg(m, v) * g).sum(), m)
    m_d = m.detach().clone().requires_grad_(True)

    def dense_torch(mu):
        cols = []
        for d in range(2):
            W = torch.tensor(
                np.concatenate([_dense_window(w, 8) for w in WINDOWS_NNMNKWII], axis=0)
            )
            p = 1.0 / v.detach()[:, [d, 2 + d, 4 + d]].T.reshape(-1)
            p = p * torch.tensor(_hts_keep(8)).reshape(-1)
            A = W.T @ (p[:, None] * W)
            b = W.T @ (p * mu[:, [d, 2 + d, 4 + d]].T.reshape(-1))
            cols.append(torch.linalg.solve(A, b))
        return torch.stack(cols, 1)

    (gd,) = torch.autograd.grad((dense_torch(m_d) * g).sum(), m_d)
    torch.testing.assert_close(gm, gd, rtol=0, atol=1e-9)


def _dense_window(win, T):
    left, _right, coef = win
    W = np.zeros((T, T))
    for t in range(T):
        for j, c in enumerate(coef):
            s = t - left + j
            if 0 <= s < T:
                W[t, s] = c
    return W


def _hts_keep(T):
    keep = np.ones((3, T))
    keep[1:, 0] = keep[1:, -1] = 0
    return keep


def test_bad_input():
    mean, var = _random(T=10, D=2)
    m, v = torch.tensor(mean), torch.tensor(var)
    with pytest.raises(ValueError, match="multiple of the number of windows"):
        mlpg(m[:, :5], v[:, :5])
    with pytest.raises(ValueError, match=r"variances of shape \(7,\)"):
        mlpg(m, torch.ones(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="static variances"):
        mlpg(m, torch.zeros_like(v))
    with pytest.raises(ValueError, match="boundary"):
        mlpg(m, v, boundary="reflect")
    with pytest.raises(ValueError, match=r"lengths must have shape \(1,\)"):
        mlpg(m[None], v[None], lengths=torch.tensor([10, 10]))
    with pytest.raises(ValueError, match="lengths must lie"):
        mlpg(m[None], v[None], lengths=torch.tensor([11]))
    with pytest.raises(TypeError, match="floating-point"):
        mlpg(torch.ones(4, 3, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match="odd number"):
        mlpg(m[:, :4], v[:, :4], [[1.0], [-1.0, 1.0]])


def test_expand_by_durations_against_repeat_interleave():
    vals = torch.arange(12.0).reshape(4, 3)
    dur = torch.tensor([2, 0, 3, 1])
    out = expand_by_durations(vals, dur)
    torch.testing.assert_close(out.values, vals.repeat_interleave(dur, dim=0), rtol=0, atol=0)
    assert int(out.lengths) == 6
    # batched, with a state count per item: item 1 uses only its first 2 states
    vals_b = torch.stack([vals, vals + 100])
    dur_b = torch.tensor([[2, 0, 3, 1], [1, 2, 5, 5]])
    out = expand_by_durations(vals_b, dur_b, lengths=torch.tensor([4, 2]))
    assert out.lengths.tolist() == [6, 3]
    assert out.values.shape == (2, 6, 3)
    torch.testing.assert_close(
        out.values[1, :3], (vals + 100)[:2].repeat_interleave(torch.tensor([1, 2]), dim=0)
    )
    assert torch.equal(out.values[1, 3:], torch.zeros(3, 3))
    # differentiable wrt the values
    v = vals.clone().requires_grad_(True)
    expand_by_durations(v, dur).values.sum().backward()
    assert v.grad[:, 0].tolist() == [2.0, 0.0, 3.0, 1.0]
    with pytest.raises(ValueError, match="whole numbers"):
        expand_by_durations(vals, torch.tensor([1.5, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        expand_by_durations(vals, torch.tensor([1, -1, 1, 1]))
    with pytest.raises(ValueError, match=r"durations must have shape \(1, 4\)"):
        expand_by_durations(vals, torch.tensor([1, 1, 1]))


def test_generate_from_states_arctic_durations():
    """State means taken from the arctic features, expanded by the arctic state durations:
    the frame count is the feature file's, and the trajectory is MLPG of the expansion."""
    feats = np.load(ARCTIC / "Y_acoustic" / "arctic_a0002.npz")["data"].astype(np.float64)
    dur = torch.tensor(np.load(ARCTIC / "Y_duration" / "arctic_a0002.npz")["data"]).long()
    dur = dur.reshape(-1)  # (phones * 5,) state durations
    assert int(dur.sum()) == feats.shape[0]
    x = torch.tensor(feats[:, :180])
    bounds = torch.cat([torch.zeros(1, dtype=torch.long), dur.cumsum(0)])
    keep = dur > 0
    means = torch.stack(
        [
            x[a:b].mean(0) if b > a else torch.zeros(180, dtype=x.dtype)
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())
        ]
    )[keep]
    var = torch.ones(180, dtype=torch.float64)
    gen = generate_from_states(means, var, dur[keep], DELTA_WINDOWS)
    assert gen.features.shape == (feats.shape[0], 60)
    assert int(gen.lengths) == feats.shape[0]
    ref = mlpg(gen.means, gen.variances)
    torch.testing.assert_close(gen.features, ref, rtol=0, atol=1e-10)
    # without windows: the step trajectory of the state means
    step = generate_from_states(means[:, :60], var[:60], dur[keep])
    torch.testing.assert_close(step.features, means[:, :60].repeat_interleave(dur[keep], 0))
    # the smoothed trajectory is closer to the natural statics than the steps
    nat = x[:, :60]
    assert (gen.features - nat).pow(2).mean() < (step.features - nat).pow(2).mean()


def test_generate_from_states_batched():
    rng = np.random.default_rng(8)
    means = torch.tensor(rng.normal(size=(2, 4, 6)))
    var = torch.tensor(rng.uniform(0.5, 1.5, size=(2, 4, 6)))
    dur = torch.tensor([[3, 2, 4, 1], [2, 2, 0, 0]])
    gen = generate_from_states(means, var, dur, DELTA_WINDOWS, lengths=torch.tensor([4, 2]))
    assert gen.lengths.tolist() == [10, 4]
    one = generate_from_states(means[1, :2], var[1, :2], dur[1, :2], DELTA_WINDOWS)
    torch.testing.assert_close(gen.features[1, :4], one.features, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="state_variances must have shape"):
        generate_from_states(means, var[..., :3], dur, DELTA_WINDOWS)
