"""The README's quick start runs as written (documentation that cannot drift)."""

import re
from pathlib import Path


def test_readme_quick_start_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    ns: dict = {}
    exec(
        compile(
            code.replace("ph.run_quick_test()", "ph.run_quick_test(verbose=False)"),
            "README.md",
            "exec",
        ),
        ns,
    )
    assert ns["ll"].shape == (8,) and ns["path"].shape == (8, 200)
    assert (ns["path"][7, 30:] == -1).all()
    assert ns["res"].path.shape == (8, 200)


def test_readme_streaming_example_runs():
    import torch

    import pytorch_hmm as ph

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "process_chunk" in c)
    g = torch.Generator().manual_seed(0)
    means = torch.randn(8, 80, generator=g) * 3
    seq = means.repeat_interleave(50, 0) + torch.randn(400, 80, generator=g)
    ns: dict = {
        "ph": ph,
        "train_features": seq[None].repeat(2, 1, 1),
        "train_lengths": torch.tensor([400, 380]),
        "audio_stream": [seq[i : i + 160] for i in (0, 120, 240)],  # 40 frames repeated
        "print": lambda *a: None,
    }
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["rest"].dim() == 1
    assert ns["r"]["frames"] == 400


def test_readme_hsmm_example_runs():
    import torch

    import pytorch_hmm as ph

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "ph.HSMM(" in c)
    true = ph.HSMM(5, 13, max_duration=40)
    true.set_means(torch.randn(5, 13, generator=torch.Generator().manual_seed(0)) * 3)
    x, _, lengths = true.sample(num_sequences=4, generator=torch.Generator().manual_seed(1))
    ns: dict = {"ph": ph, "features": x, "lengths": lengths, "print": lambda *a: None}
    exec(compile(code, "README.md", "exec"), ns)
    segs = ns["best"].segments[0]
    assert segs[:, 0].tolist() == list(range(5)) and int(segs[:, 2].sum()) == int(lengths[0])
    assert ns["mel"].shape[1] == 13


def test_readme_neural_hmm_example_runs():
    import torch

    import pytorch_hmm as ph

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "NeuralHMM(" in c)
    code = code.replace("hidden_dim=256", "hidden_dim=16, prenet_dim=16")
    ns: dict = {
        "ph": ph,
        "torch": torch,
        "phones": list("abcde"),
        "symbols": torch.tensor([[1, 2, 3], [4, 0, 0]]),
        "symbol_lengths": torch.tensor([3, 1]),
        "mels": torch.randn(2, 20, 80),
        "mel_lengths": torch.tensor([20, 11]),
    }
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["durations"].sum(1).tolist() == [20, 11]
    assert ns["out"].features.shape[2] == 80


def test_readme_benchmark_example_runs(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(
        c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "run_comprehensive" in c
    )
    small = (
        code.replace("batch_sizes=[1, 8]", "batch_sizes=[2]")
        .replace("sequence_lengths=[100, 500]", "sequence_lengths=[40]")
        .replace("feature_dims=[80])", "feature_dims=[4], model_types=['gaussian', 'hsmm'],"
                 " progress=False, verbose=False)")  # fmt: skip
    )
    assert small != code
    monkeypatch.chdir(tmp_path)
    ns: dict = {"print": lambda *a: None}
    exec(compile(small, "README.md", "exec"), ns)
    assert (tmp_path / "bench.csv").exists()
    assert ns["row"].real_time_factor > 0
