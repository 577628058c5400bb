"""run_comprehensive_benchmark in a tiny configuration: structure, arithmetic, budget, errors
(no timing thresholds)."""

import json
import math

import pytest
import torch

from pytorch_hmm import run_comprehensive_benchmark
from pytorch_hmm.benchmark import MODEL_TYPES, BenchmarkResult, main

TINY = dict(
    batch_sizes=[2],
    sequence_lengths=[30],
    feature_dims=[3],
    num_states=4,
    repeats=2,
    warmup=1,
    progress=False,
    verbose=False,
    max_seconds=None,
    model_kwargs={"neural": {"hidden_dim": 8, "prenet_dim": 8, "encoder_layers": 1}},
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    res = run_comprehensive_benchmark(
        "cpu", frame_rate=50.0, save_csv=str(d / "r.csv"), save_json=str(d / "r.json"), **TINY
    )
    return res, d


def test_every_model_and_task_is_timed(tiny):
    res, _ = tiny
    assert isinstance(res, BenchmarkResult)
    got = {(r.model_type, r.task) for r in res}
    want = {(m, t) for m in MODEL_TYPES for t in ("log_likelihood", "viterbi", "train_step")}
    want.discard(("streaming", "log_likelihood"))  # the online pass is the streaming row
    assert got == want
    for r in res:
        assert r.status == "ok", (r.model_type, r.task, r.status)
        assert r.repeats == 2
        assert 0 < r.min_s <= r.median_s <= r.max_s
        assert (r.batch_size, r.sequence_length, r.feature_dim, r.num_states) == (2, 30, 3, 4)
        assert r.device == "cpu" and r.device_name and r.torch_version == torch.__version__
        assert r.dtype == "float32" and r.threads == torch.get_num_threads()
    assert res.select(model_type="neural", task="train_step")[0].note.startswith("loss")
    assert "per chunk" in res.select(model_type="streaming", task="viterbi")[0].note


def test_real_time_factor_follows_the_frame_rate(tiny):
    res, _ = tiny
    for r in res:
        assert r.frame_rate == 50.0
        # 2 sequences x 30 frames at 50 frames/s = 1.2 s of audio
        assert r.audio_seconds == pytest.approx(1.2)
        assert r.real_time_factor == pytest.approx(1.2 / r.median_s)
        assert r.frames_per_second == pytest.approx(60 / r.median_s)
    # the seed's mistake: 3.2 ms per 100 ms of audio is 31x real time, not 312x
    assert 0.1 / 0.0032 == pytest.approx(31.25)


def test_saved_files_round_trip(tiny):
    res, d = tiny
    back = BenchmarkResult.from_json(str(d / "r.json"))
    assert back.records == res.records
    assert back.info["device"] == "cpu" and back.info["frame_rate"] == 50.0
    lines = (d / "r.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + len(res)
    assert lines[0].startswith("model_type,task,batch_size")
    table = res.table()
    assert all(m in table for m in MODEL_TYPES) and "real time" in table


def test_memory_is_measured_on_cpu(tiny):
    res, _ = tiny
    import os

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("no /proc/self/clear_refs")
    for r in res:
        assert r.peak_memory_mb is not None and r.peak_memory_mb >= 0
        assert r.memory_method == "peak RSS growth"


def test_budget_skips_what_does_not_fit():
    opts = dict(TINY, max_seconds=1e-6, model_types=["gaussian", "hsmm"])
    res = run_comprehensive_benchmark("cpu", **opts)
    assert len(res) == 6 and res.info["skipped"] == 6
    assert all(r.status.startswith("skipped: time budget") for r in res)
    assert "skipped" in res.table()


@pytest.mark.parametrize(
    "bad, word",
    [
        (dict(batch_sizes=[0]), "batch_sizes"),
        (dict(sequence_lengths=[]), "sequence_lengths"),
        (dict(feature_dims=[2.5]), "feature_dims"),
        (dict(model_types=["gmm"]), "model_types"),
        (dict(tasks=["fit"]), "tasks"),
        (dict(frame_rate=0), "frame_rate"),
        (dict(frame_rate=math.nan), "frame_rate"),
        (dict(max_seconds=-1), "max_seconds"),
        (dict(num_states=1), "num_states"),
        (dict(repeats=0), "repeats"),
    ],
)
def test_bad_arguments_are_named(bad, word):
    with pytest.raises(ValueError, match=word):
        run_comprehensive_benchmark("cpu", **dict(TINY, **bad))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_comprehensive_benchmark("cuda", **TINY)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(
        ["--batch-sizes", "1", "--sequence-lengths", "20", "--feature-dims", "2",
         "--num-states", "3", "--model-types", "gaussian,hsmm", "--repeats", "1",
         "--no-progress", "--json", str(out)]
    )  # fmt: skip
    assert rc == 0
    d = json.loads(out.read_text())
    assert {r["model_type"] for r in d["records"]} == {"gaussian", "hsmm"}
    assert "gaussian" in capsys.readouterr().out
    assert main(["--batch-sizes", "1", "--model-types", "nope", "--no-progress"]) == 2
    assert "model_types" in capsys.readouterr().out


def test_gpu_script_runs_on_cpu(tmp_path):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    rc = gpu.main(["--device", "cpu", "--quick", "--no-tests", "--max-seconds", "2",
                   "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "gpu-cpu.json").read_text())
    assert {r["workload"] for r in res["engine"]} == {"dense", "left-to-right"}
    for r in res["engine"]:  # throughput figures follow from the sizes and the time
        assert r["state_frames_per_s"] == pytest.approx(r["B"] * r["T"] * r["K"] / r["seconds"])
        assert r["emissions_GBps"] == pytest.approx(r["state_frames_per_s"] * 4 / 1e9)
    assert res["limits"]["copy_GBps"] > 0 and res["limits"]["launch_us"] > 0
    assert "launch floor" in (tmp_path / "gpu-cpu.md").read_text()
