"""benchmarks/compare_peers.py: a quick run on cheap workloads writes peers.json with the
documented structure (missing peers become "not installed" rows), ratios follow from the
medians, the markdown has every row, and --update-readme replaces only the marked span."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_peers.py"
ROW_KEYS = {
    "group", "workload", "system", "version", "status", "median_s", "min_s", "max_s",
    "repeats", "ratio", "check", "check_ok",
}  # fmt: skip
MACHINE_KEYS = {
    "cpu", "cores", "usable_cores", "python", "torch", "numpy", "pytorch_hmm", "peers",
    "torch_threads", "numba_threads",
}  # fmt: skip


def _load():
    spec = importlib.util.spec_from_file_location("compare_peers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("compare_peers", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cp():
    return _load()


@pytest.fixture(scope="module")
def run(cp, tmp_path_factory):
    out = tmp_path_factory.mktemp("peers")
    # --threads 0: leave this process's thread counts alone (other tests run after this one)
    argv = ["--quick", "--only", "dtw,mas,hsmm", "--repeats", "2", "--budget-s", "1"]
    assert cp.main(argv + ["--threads", "0", "--out", str(out)]) == 0
    data = json.loads((out / "peers.json").read_text())
    return out, data


def test_json_structure(run):
    _, data = run
    assert data["schema"] == 1 and data["date"].endswith("UTC")
    assert MACHINE_KEYS <= set(data["machine"])
    assert data["machine"]["cpu"] and data["machine"]["cores"] >= 1
    assert set(data["machine"]["peers"]) >= {"hmmlearn", "pomegranate", "ChadHMM"}
    assert len(data["loadavg_start"]) == 3 and len(data["loadavg_end"]) == 3
    assert data["config"]["groups"] == ["dtw", "mas", "hsmm"] and data["config"]["quick"]
    assert {r["group"] for r in data["rows"]} == {"dtw", "mas", "hsmm"}
    for r in data["rows"]:
        assert ROW_KEYS <= set(r), r
        if r["status"] == "ok":
            assert r["repeats"] >= 1
            assert r["min_s"] <= r["median_s"] <= r["max_s"]
            assert r["check"] and isinstance(r["check_ok"], bool), r
        else:
            assert r["median_s"] is None and r["repeats"] == 0 and r["ratio"] is None
            assert r["status"] == "not installed" or r["status"].startswith("failed: "), r


def test_ours_agree_and_missing_peers_are_rows(run, cp):
    _, data = run
    rows = data["rows"]
    ours = [r for r in rows if r["system"].startswith("pytorch_hmm")]
    assert ours and all(r["status"] == "ok" and r["check_ok"] for r in ours)
    for group, name, dist in (("mas", "monotonic-align", "monotonic-align"),
                              ("hsmm", "ChadHMM", "chadhmm")):  # fmt: skip
        peer_rows = [r for r in rows if r["group"] == group and r["system"] == name]
        assert peer_rows, (group, name)
        if cp.dist_version(dist) is None:
            assert all(r["status"] == "not installed" for r in peer_rows)
    if cp.dist_version("dtw-python") is not None:  # installed in the dev environment
        dtw = [r for r in rows if r["system"] == "dtw-python"]
        assert dtw and all(r["status"] == "ok" and r["check_ok"] for r in dtw)
        assert all("paths identical" in r["check"] for r in dtw)


def test_ratio_follows_from_medians(run):
    _, data = run
    by_workload = {}
    for r in data["rows"]:
        by_workload.setdefault((r["group"], r["workload"]), []).append(r)
    for rows in by_workload.values():
        ref = rows[0]
        assert ref["system"].startswith("pytorch_hmm") and ref["ratio"] == pytest.approx(1.0)
        for r in rows:
            if r["median_s"] is not None:
                assert math.isclose(r["ratio"], r["median_s"] / ref["median_s"], rel_tol=1e-12)


def test_markdown_has_every_row(run, cp):
    out, data = run
    md = (out / "peers.md").read_text()
    assert md == cp.render_markdown(data)
    assert data["machine"]["cpu"] in md and data["date"] in md
    lines = md.splitlines()
    for r in data["rows"]:
        hits = [
            ln for ln in lines
            if ln.startswith(f"| {r['workload']} | {r['system']} | ") and cp._cell(r["check"]) in ln
        ]  # fmt: skip
        assert len(hits) == 1, r
    for title in data["titles"].values():
        assert title in md


def test_update_readme_replaces_only_the_span(run, cp, tmp_path):
    out, data = run
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nintro\n\n", "\n\nafter the table\n"
    readme.write_text(before + f"{cp.BEGIN}\nold table\n{cp.END}" + after)
    argv = ["--update-readme", "--from-json", str(out / "peers.json"), "--readme", str(readme)]
    assert cp.main(argv + ["--out", str(tmp_path / "o")]) == 0
    text = readme.read_text()
    assert text.startswith(before + cp.BEGIN + "\n") and text.endswith(cp.END + after)
    inner = text[len(before) + len(cp.BEGIN) : -len(cp.END + after)]
    assert "old table" not in inner
    assert inner.strip() == cp.render_markdown(data, level=3).strip()
    assert not (tmp_path / "o").exists()  # --from-json with --update-readme writes no peers.md
    assert cp.main(argv + ["--out", str(tmp_path / "o")]) == 0  # idempotent
    assert readme.read_text() == text
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit):
        cp.main(argv)
