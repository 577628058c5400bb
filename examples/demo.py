"""pytorch_hmm demo on the bundled real speech (data/).

Runs in a few minutes on a 2-core CPU (``--quick``: under a minute):

1. the self-check (``run_quick_test``);
2. real speech in: MFCC with deltas from CMU ARCTIC slt a0009;
3. alignment with a model trained on labelled data: a 200-state left-to-right Gaussian HMM
   built from the utterance's HTS state labels, Viterbi re-alignment through the engine, and
   the phone-boundary accuracy against the reference labels;
4. flat-start forced alignment of festival-dev with boundary accuracy against the exact
   Festival timings, MFA-style lexicon alignment and the real ARCTIC recording; TextGrid,
   .lab and JSON files written to ``out/forced_alignment``, and a picture of the bundled-speech
   alignment (spectrogram, word and phone boundaries: ``pytorch_hmm.plot``) beside them;
5. TTS parameter generation: state means and variances of the HTS acoustic features of
   arctic_a0001 expanded by the state durations, MLPG, and the mel-cepstral distortion of
   the generated trajectory against the natural one;
6. streaming: the ARCTIC recording decoded 10 ms at a time by StreamingHMMProcessor (audio
   in, streaming MFCC front end), checked against offline Viterbi.

    bash scripts/run_demo.sh            # or: python examples/demo.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import pytorch_hmm as ph
from pytorch_hmm.io import read_lab
from pytorch_hmm.metrics import boundary_accuracy, frame_accuracy, mel_cepstral_distortion
from pytorch_hmm.speech.features import MFCC, load_audio
from pytorch_hmm.speech.mlpg import DELTA_WINDOWS, generate_from_states

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def section(title: str) -> None:
    print(f"\n=== {title}")


def supervised_state_alignment() -> None:
    """A left-to-right HMM from the utterance's own state labels, then Viterbi re-alignment."""
    wav, sr = load_audio(DATA / "arctic" / "arctic_a0009.wav")
    hop = 0.005  # the labels' 5 ms grid
    feats = MFCC(sr, n_mfcc=13, hop_length=int(sr * hop), n_fft=512, delta_order=2, cmvn=True)(wav)
    x = feats.features.double()
    x = x[0] if x.dim() == 3 else x  # (T, 39)
    T = x.shape[0]
    states = read_lab(DATA / "arctic" / "arctic_a0009_state.lab", phone_only=False)
    phones = read_lab(DATA / "arctic" / "arctic_a0009_phone.lab")
    print(
        f"arctic_a0009: {wav.shape[-1] / sr:.2f} s, MFCC+deltas {tuple(x.shape)}, "
        f"{len(phones)} phones, {len(states)} HMM states"
    )
    # reference state index of every frame
    ref = torch.zeros(T, dtype=torch.long)
    for k, s in enumerate(states):
        a, b = int(round(s.start / hop)), min(T, int(round(s.end / hop)))
        ref[a:b] = k
    ref[int(round(states[-1].end / hop)) :] = len(states) - 1
    K = len(states)
    means = torch.stack([x[ref == k].mean(0) for k in range(K)])
    var = torch.stack(
        [
            x[ref == k].var(0, unbiased=False)
            if (ref == k).sum() > 1
            else torch.ones(x.shape[1], dtype=x.dtype)
            for k in range(K)
        ]
    )
    var = var.clamp(min=0.05)
    # left-to-right: stay with the probability that gives each state's mean duration
    dur = torch.bincount(ref, minlength=K).double().clamp(min=1)
    trans = torch.zeros(K, K, dtype=torch.float64)
    for k in range(K - 1):
        trans[k, k] = 1 - 1 / dur[k]
        trans[k, k + 1] = 1 / dur[k]
    trans[K - 1, K - 1] = 1.0
    start = torch.zeros(K, dtype=torch.float64)
    start[0] = 1.0
    hmm = ph.GaussianHMM(
        K,
        x.shape[1],
        "diag",
        startprob=start,
        transmat=trans,
        means=means,
        covars=var,
        dtype=torch.float64,
    )
    t0 = time.perf_counter()
    path = hmm.predict(x)[0]
    dt = time.perf_counter() - t0
    acc = frame_accuracy(ref.unsqueeze(0), path.unsqueeze(0))
    # phone boundaries from the state path (5 states a phone)
    hyp_phone = path // 5
    hyp = []
    for p in range(len(phones)):
        idx = torch.nonzero(hyp_phone == p).flatten()
        hyp.append((idx[0].item() * hop, (idx[-1].item() + 1) * hop, phones[p].label))
    ba = boundary_accuracy(phones, hyp)
    print("(the model is estimated from this utterance's own labels: an upper bound, not a test)")
    print(
        f"Viterbi through {K} states in {dt * 1e3:.0f} ms; state frame accuracy "
        f"{float(acc.accuracy):.1%}"
    )
    print(
        "phone boundaries within 10/20/25/50 ms: "
        + " / ".join(f"{v:.0%}" for v in ba.within.values())
        + f"; mean error {ba.mean_error_ms:.1f} ms, median {ba.median_error_ms:.1f} ms"
    )


def flat_start_forced_alignment(quick: bool) -> None:
    """examples/forced_alignment.py: flat start on festival-dev, boundary accuracy per voice,
    lexicon (MFA-style) alignment, the real ARCTIC recording; TextGrid/lab/JSON to out/."""
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["forced_alignment.py", "--out", str(ROOT / "out" / "forced_alignment")]
    if quick:
        sys.argv.append("--quick")
    try:
        runpy.run_path(str(ROOT / "examples" / "forced_alignment.py"), run_name="__main__")
    finally:
        sys.argv = argv


def alignment_picture(tg_dir: Path, quick: bool):
    """PNG of an alignment section 4 wrote (arctic_a0009, real speech; with --quick the first
    festival-dev file), beside its TextGrid; None when matplotlib is missing."""
    from pytorch_hmm.plot import plot_alignment

    name = "dev_slt_0001" if quick else "arctic_a0009"
    audio = DATA / ("festival-dev/wav" if quick else "arctic") / f"{name}.wav"
    png = Path(tg_dir) / f"{name}.png"
    try:
        plot_alignment(audio, Path(tg_dir) / f"{name}.TextGrid", png, title=f"{name} (flat start)")
    except ImportError as err:
        print(f"no picture: {err}")
        return None
    print(f"picture of the {name} alignment: {png}")
    return png


def tts_parameter_generation() -> None:
    """HMM-TTS style generation: state statistics -> durations -> MLPG -> MCD."""
    ac = np.load(DATA / "arctic/slt_arctic_demo_data/Y_acoustic/arctic_a0001.npz")["data"]
    du = np.load(DATA / "arctic/slt_arctic_demo_data/Y_duration/arctic_a0001.npz")["data"]
    y = torch.from_numpy(ac[:, :180]).double()  # mcep, delta, delta-delta (60 each)
    d = torch.from_numpy(du.reshape(-1)).long()  # frames per state
    bounds = torch.cumsum(d, 0)
    starts = bounds - d
    means = torch.stack([y[a:b].mean(0) for a, b in zip(starts, bounds)])
    var = torch.stack(
        [
            y[a:b].var(0, unbiased=False) if b - a > 1 else torch.ones(180, dtype=y.dtype)
            for a, b in zip(starts, bounds)
        ]
    ).clamp(min=1e-4)
    # reorder [static | delta | delta-delta] blocks as MLPG expects (static dims first)
    gen = generate_from_states(means, var, d, windows=DELTA_WINDOWS).features
    gen = gen[0] if gen.dim() == 3 else gen
    nat = y[:, :60]
    flat = torch.repeat_interleave(means[:, :60], d, 0)
    mcd_mlpg = mel_cepstral_distortion(nat.unsqueeze(0), gen.unsqueeze(0))
    mcd_flat = mel_cepstral_distortion(nat.unsqueeze(0), flat.unsqueeze(0))
    print(f"arctic_a0001: {len(d) // 5} phones, {len(d)} states, {int(d.sum())} frames (5 ms)")
    print(
        f"MCD of generated mel-cepstrum vs natural: MLPG {float(mcd_mlpg.mcd):.2f} dB, "
        f"state means without MLPG {float(mcd_flat.mcd):.2f} dB"
    )


def streaming_decoding() -> bool:
    """The ARCTIC recording streamed 10 ms at a time (examples/streaming_demo.py, unpaced)."""
    sys.path.insert(0, str(ROOT / "examples"))
    import streaming_demo

    try:
        streaming_demo.main(["--fast", "--quiet"])
    except SystemExit as e:
        return not e.code
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description="pytorch_hmm demo on bundled real speech")
    ap.add_argument("--quick", action="store_true", help="smaller forced-alignment run")
    a = ap.parse_args()
    torch.manual_seed(0)
    section("1. self-check")
    ok = ph.run_quick_test().passed
    section("2-3. real speech, alignment with a model from labelled states (CMU ARCTIC)")
    supervised_state_alignment()
    section("4. flat-start forced alignment (festival-dev)")
    flat_start_forced_alignment(a.quick)
    alignment_picture(ROOT / "out" / "forced_alignment", a.quick)
    section("5. TTS parameter generation with MLPG (CMU ARCTIC HTS features)")
    tts_parameter_generation()
    section("6. streaming: online Viterbi on the ARCTIC recording, 10 ms chunks")
    ok = streaming_decoding() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
