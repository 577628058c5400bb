"""Forced-alignment throughput: seconds of audio aligned per second of wall-clock time.

Run: python benchmarks/bench_forced_alignment.py [--model FILE] [--device cuda] [--threads N]

With no ``--model`` a model is first trained flat-start on festival-dev (Baum-Welch, a few
iterations; not timed as alignment). Then the whole festival-dev corpus (120 utterances, 434 s)
is aligned at several batch sizes and the throughput printed, for alignment from features (the
engine's batched Viterbi plus segment building) with the lexicon's alternative pronunciations
chosen per utterance (several passes) or with one pronunciation a word (one pass), and end to
end (audio file -> MFCC -> lexicon alignment). On a shared CPU, ``--threads 1`` is often faster
than several threads. One EM iteration's time is printed too. Nothing is asserted:
timings depend on the machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pytorch_hmm.alignment.corpus import load_corpus
from pytorch_hmm.alignment.forced import AlignerConfig, ForcedAligner
from pytorch_hmm.alignment.lexicon import read_lexicon

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "festival-dev"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a saved ForcedAligner (default: train one first)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--iterations", type=int, default=4, help="EM iterations if training")
    ap.add_argument("--batch-sizes", default="1,8,32,128")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    lex = read_lexicon(DATA / "lexicon.dict")
    if args.model:
        aligner = ForcedAligner.load(args.model)
    else:
        aligner = ForcedAligner(lex.phones(), AlignerConfig(), lex)
    t0 = time.perf_counter()
    utts = load_corpus(aligner, DATA / "wav")
    t_feat = time.perf_counter() - t0
    audio = sum(u.duration for u in utts)
    print(
        f"corpus: {len(utts)} utterances, {audio:.1f} s of audio; device {dev}, "
        f"{torch.get_num_threads()} CPU thread(s)"
    )
    print(f"reading + MFCC: {t_feat:.2f} s ({audio / t_feat:.0f} s of audio per second)")
    if not args.model:
        t0 = time.perf_counter()
        aligner.fit(utts, iterations=args.iterations, method="baum-welch")
        dt = time.perf_counter() - t0
        print(
            f"flat-start training ({args.iterations} Baum-Welch iterations, CPU): {dt:.1f} s, "
            f"{dt / args.iterations:.1f} s per iteration ({audio * args.iterations / dt:.0f} s "
            "of audio per second)"
        )
    aligner = aligner.to(dev)
    for u in utts:
        u.features = u.features.to(dev)
    print(f"{'transcripts':>24} {'batch':>6} {'align s':>8} {'audio s/s':>10}")
    for mode in ("lexicon", "one pronunciation"):
        for u in utts:
            u.pronunciations = None if mode == "lexicon" else [lex[w][0] for w in u.transcript]
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            aligner.config.batch_size = bs
            best = float("inf")
            for _ in range(max(args.repeat, 1)):
                _sync(dev)
                t0 = time.perf_counter()
                res = aligner.align(utts)
                _sync(dev)
                best = min(best, time.perf_counter() - t0)
            assert len(res) == len(utts)
            print(f"{mode:>24} {bs:>6} {best:>8.2f} {audio / best:>10.0f}")
    for u in utts:
        u.pronunciations = None
    # end to end: audio files -> features -> alignment at the default batch size
    aligner.config.batch_size = AlignerConfig().batch_size
    _sync(dev)
    t0 = time.perf_counter()
    utts2 = load_corpus(aligner, DATA / "wav")
    for u in utts2:
        u.features = u.features.to(dev)
    aligner.align(utts2)
    _sync(dev)
    dt = time.perf_counter() - t0
    print(
        f"end to end (read, MFCC, align; batch {aligner.config.batch_size}): {dt:.2f} s, "
        f"{audio / dt:.0f} s of audio per second"
    )


if __name__ == "__main__":
    main()
