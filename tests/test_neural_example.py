"""examples/neural_hmm_tts.py in its reduced form (--quick: 4 utterances, tiny model, 20 steps):
the loss falls, the synthesised and aligned outputs are finite and of the right shape."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("librosa")
pytest.importorskip("soundfile")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "neural_hmm_tts.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("neural_hmm_tts_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_neural_hmm_tts_example_quick(tmp_path, capsys):
    ex = _load_example()
    out = tmp_path / "gen.npz"
    threads = torch.get_num_threads()
    try:  # one thread: the run is small and the CI cores are shared
        res = ex.main(["--quick", "--threads", "1", "--seed", "0", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "trained 20 steps" in printed and "alignment by-product" in printed

    losses = res["losses"]
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < losses[0] - 2.0, losses  # 117 -> about 107 nats/frame

    gen, nat = res["generated"], res["natural"]
    n = res["num_phones"]
    assert gen.dim() == 2 and gen.shape[1] == 80 and nat.shape[1] == 80
    assert bool(torch.isfinite(gen).all())
    dur = res["durations"]
    assert dur.shape == (n,) and int(dur.sum()) == gen.shape[0]
    assert int(dur.min()) >= 2  # 2 states a phone, at least a frame each
    for key in ("mcd", "logmel_rms", "baseline_mcd", "align_mae", "even_mae"):
        assert math.isfinite(res[key]) and res[key] > 0, key

    saved = np.load(out)
    assert saved["generated"].shape == tuple(gen.shape)
    assert saved["natural"].shape == tuple(nat.shape)
    assert saved["generated_durations"].sum() == gen.shape[0]
    assert len(saved["phones"]) == n and saved["losses"].shape == (20,)
