"""NeuralHMM: exact likelihood (brute force over every monotone path), gradients, training on
synthetic data, alignment, generation and bad input."""

import itertools
import warnings

import pytest
import torch

import pytorch_hmm as ph


def _tiny(ar: bool, encoder: str = "conv", seed: int = 0) -> ph.NeuralHMM:
    torch.manual_seed(seed)
    return ph.NeuralHMM(
        5, 3, hidden_dim=8, prenet_dim=8, encoder=encoder, encoder_layers=1, autoregressive=ar,
        chunk_frames=3, dtype=torch.float64,
    ).eval()  # fmt: skip


SYM = torch.tensor([[1, 2, 0], [3, 4, 4]])
SL = torch.tensor([2, 3])


def _brute_force(out, b: int) -> torch.Tensor:
    S, T = int(out.num_states[b]), int(out.lengths[b])
    lb, v = out.log_emissions[b], out.transitions.values[b]  # (T, S), (T-1, S, 2)
    scores = []
    for adv in itertools.product([0, 1], repeat=T - 1):
        if sum(adv) != S - 1:  # start in state 0, end in the last state
            continue
        s, sc = 0, lb[0, 0]
        for t in range(1, T):
            sc = sc + v[t - 1, s, adv[t - 1]]
            s += adv[t - 1]
            sc = sc + lb[t, s]
        scores.append(sc)
    return torch.logsumexp(torch.stack(scores), 0)


@pytest.mark.parametrize("ar", [False, True])
def test_log_likelihood_equals_brute_force_and_reaches_every_parameter(ar):
    m = _tiny(ar)
    x = torch.randn(2, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    L = torch.tensor([7, 8])
    ll = m.log_likelihood(SYM, SL, x, L)
    out = m.network_outputs(SYM, SL, x, L)
    for b in range(2):
        torch.testing.assert_close(ll[b], _brute_force(out, b), rtol=0, atol=1e-10)
    # the engine on the networks' outputs (what the model is built from)
    eng = ph.log_likelihood(
        out.log_emissions, out.log_initial, out.transitions, L, log_final=out.log_final,
        check_stochastic=False,
    )  # fmt: skip
    torch.testing.assert_close(ll, eng)
    ll.sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_other_encoders_train_and_ignore_padding(encoder):
    m = _tiny(True, encoder)
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    L = torch.tensor([8, 9])
    ll = m.log_likelihood(SYM, SL, x, L)
    ll.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    # utterance 0 alone (its symbol padding dropped) scores the same
    alone = m.log_likelihood(SYM[:1, :2], SL[:1], x[:1, :8], L[:1])
    torch.testing.assert_close(alone, ll[:1].detach())


def test_gradcheck_float64():
    m = _tiny(True)
    x = torch.randn(1, 5, 3, dtype=torch.float64)
    names = ["out.bias", "state_position"]
    params = dict(m.named_parameters())

    def f(w_out, w_emb):
        p = dict(params)
        p["out.bias"], p["state_position"] = w_out, w_emb
        return torch.func.functional_call(m, p, (SYM[:1, :2], SL[:1], x))

    ins = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-6)


def test_padded_batch_equals_each_alone_and_short_utterances_are_excluded():
    m = _tiny(False)
    x = torch.randn(2, 8, 3, dtype=torch.float64)
    L = torch.tensor([8, 5])  # utterance 1 has 6 states but only 5 frames
    with pytest.warns(RuntimeWarning, match="fewer frames than states"):
        ll = m.log_likelihood(SYM, SL, x, L)
    assert torch.isfinite(ll[0]) and ll[1] == float("-inf")
    torch.testing.assert_close(ll[0], m.log_likelihood(SYM[:1, :2], SL[:1], x[:1]).squeeze(0))
    m.zero_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = m.loss(SYM, SL, x, L)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    torch.testing.assert_close(loss, -ll[0].detach() / 8)


def _synthetic(n: int, seed: int):
    """Utterances of 3-5 symbols out of 4 (no symbol twice in a row, so every boundary is
    identifiable), each symbol a fixed mean in 2-D for 4-8 frames."""
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    syms, durs, xs = [], [], []
    for _ in range(n):
        N = int(torch.randint(3, 6, (1,), generator=g))
        s = torch.randint(0, 4, (N,), generator=g)
        for j in range(1, N):
            if s[j] == s[j - 1]:
                s[j] = (s[j] + 1) % 4
        d = torch.randint(4, 9, (N,), generator=g)
        xs.append(
            means[s].repeat_interleave(d, 0) + 0.3 * torch.randn(int(d.sum()), 2, generator=g)
        )
        syms.append(s)
        durs.append(d)
    N, T = max(len(s) for s in syms), max(len(x) for x in xs)
    S = torch.zeros(n, N, dtype=torch.long)
    Dur = torch.zeros(n, N, dtype=torch.long)
    X = torch.zeros(n, T, 2)
    for i in range(n):
        S[i, : len(syms[i])], Dur[i, : len(durs[i])], X[i, : len(xs[i])] = syms[i], durs[i], xs[i]
    sl = torch.tensor([len(s) for s in syms])
    return S, sl, X, torch.tensor([len(x) for x in xs]), Dur


def test_training_lowers_nll_and_recovers_durations():
    torch.manual_seed(0)
    S, sl, X, L, true = _synthetic(24, 0)
    m = ph.NeuralHMM(4, 2, hidden_dim=32, encoder_layers=1, autoregressive=False, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(120):
        opt.zero_grad()
        loss = m.loss(S, sl, X, L)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 1.0
    d = m.align(S, sl, X, L)
    assert torch.equal(d.sum(1), L)
    real = torch.arange(S.shape[1]).unsqueeze(0) < sl.unsqueeze(1)
    mae = (d - true).abs()[real].float().mean()
    assert mae < 0.25, f"durations off by {mae:.2f} frames per symbol"


@pytest.mark.parametrize("ar", [False, True])
def test_generation_respects_order_and_lengths_batched_as_alone(ar):
    m = _tiny(ar)
    g = m.generate(SYM, SL)
    for b in range(2):
        n = int(SL[b])
        path = g.states[b, : int(g.lengths[b])]
        assert path[0] == 0 and path[-1] == 2 * n - 1
        assert (path.diff() >= 0).all() and (path.diff() <= 1).all()  # every state, in order
        assert (g.durations[b, :n] >= 2).all() and (g.durations[b, n:] == 0).all()
        assert int(g.durations[b].sum()) == int(g.lengths[b])
        assert (g.states[b, int(g.lengths[b]) :] == -1).all()
        alone = m.generate(SYM[b : b + 1, :n])
        torch.testing.assert_close(alone.features[0], g.features[b, : int(g.lengths[b])])
    slow = m.generate(SYM, SL, quantile=0.9)
    assert (slow.lengths >= g.lengths).all() and (slow.lengths > g.lengths).any()
    s = m.generate(
        SYM, SL, duration="sample", temperature=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(s.features).all()


def test_bad_input_is_refused_and_leaves_the_model_unchanged():
    m = _tiny(True)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(2, 8, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"symbols\[1, 0\] = 9"):
        m.log_likelihood(torch.tensor([[1, 2], [9, 1]]), None, x)
    with pytest.raises(ValueError, match="empty"):
        m.log_likelihood(torch.zeros(2, 0, dtype=torch.long), None, x)
    with pytest.raises(ValueError, match="symbol_lengths"):
        m.log_likelihood(SYM, torch.tensor([0, 3]), x)
    bad = x.clone()
    bad[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="utterance 1, frame 3"):
        m.log_likelihood(SYM, SL, bad)
    with pytest.raises(ValueError, match=r"\(B, T, D\) = \(2, T, 3\)"):
        m.log_likelihood(SYM, SL, torch.randn(2, 8, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="integer"):
        m.log_likelihood(SYM.float(), SL, x)
    with pytest.raises(ValueError, match="encoder"):
        ph.NeuralHMM(5, 3, encoder="gru")
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
