"""Live streaming demo: decode speech 10 ms at a time with StreamingHMMProcessor.

Trains an 8-state Gaussian HMM (EM) on the MFCCs of the bundled ARCTIC recording, then
streams the wav through the processor in 10 ms chunks, paced in real time, printing the
current state, its confidence and what became final; at the end it checks that the
committed states equal offline Viterbi on the whole file and prints the per-chunk latency.

    python examples/streaming_demo.py            # paced in real time (about 3 s)
    python examples/streaming_demo.py --fast     # as fast as it goes
    python examples/streaming_demo.py --mic 10   # 10 s from the microphone

``--mic`` needs the optional ``sounddevice`` package (``pip install sounddevice``, which
needs PortAudio: ``apt install libportaudio2`` on Debian/Ubuntu).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import pytorch_hmm as ph
from pytorch_hmm.speech.features import load_audio

ROOT = Path(__file__).resolve().parents[1]
WAV = ROOT / "data" / "arctic" / "arctic_a0009.wav"
SR, HOP = 16000, 160  # 10 ms chunks: one feature frame each


def front_end() -> ph.MFCC:
    # top_db=None: the per-utterance dB floor cannot stream; deltas wait 4 frames (40 ms)
    return ph.MFCC(SR, n_mfcc=13, delta_order=2, n_fft=400, hop_length=HOP, top_db=None)


def train(wav: torch.Tensor) -> ph.GaussianHMM:
    feats = front_end()(wav).features
    hmm = ph.GaussianHMM(8, feats.shape[-1], "diag")
    hmm.fit(feats, n_iter=20)
    return hmm


def chunks_from_file(wav: torch.Tensor, pace: bool):
    t0 = time.perf_counter()
    for i in range(0, wav.shape[0], HOP):
        if pace:  # wait until this chunk "has been recorded"
            delay = t0 + (i + HOP) / SR - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        yield wav[i : i + HOP]


def require_sounddevice():
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise SystemExit(
            f"--mic needs the sounddevice package ({e}); install it with "
            "`pip install sounddevice` (and PortAudio: `apt install libportaudio2`)"
        ) from None
    return sd


def chunks_from_mic(seconds: float):
    sd = require_sounddevice()
    with sd.InputStream(samplerate=SR, channels=1, blocksize=HOP, dtype="float32") as s:
        for _ in range(int(seconds * SR / HOP)):
            block, _ = s.read(HOP)
            yield torch.from_numpy(block[:, 0].copy())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="do not pace the file in real time")
    ap.add_argument("--mic", type=float, default=None, help="seconds from the microphone")
    ap.add_argument("--quiet", action="store_true", help="print every second, not every 100 ms")
    args = ap.parse_args(argv)
    if args.mic:
        require_sounddevice()  # before training: say what is missing at once
    wav, _ = load_audio(WAV, sample_rate=SR)
    hmm = train(wav)
    proc = ph.StreamingHMMProcessor(model=hmm, feature_extractor=front_end(), chunk_size=HOP)
    source = chunks_from_mic(args.mic) if args.mic else chunks_from_file(wav, not args.fast)
    committed, lat = [], []
    for n, chunk in enumerate(source):
        t0 = time.perf_counter()
        r = proc.process_chunk(chunk)
        lat.append(time.perf_counter() - t0)
        committed.append(r["committed_states"])
        if n % (100 if args.quiet else 10) == 0:  # every second / every 100 ms
            print(
                f"{n * 10:6d} ms  state {int(r['current_state']):2d}  "
                f"confidence {float(r['confidence']):.2f}  committed {r['committed_start']:4d}"
                f"+{len(r['committed_states']):<3d} waiting {r['latency_frames']:3d} frames"
            )
    r = proc.flush()
    committed.append(r["committed_states"])
    path = torch.cat(committed)
    ms = np.array(lat) * 1e3
    print(
        f"\n{len(ms)} chunks: latency median {np.median(ms):.3f} ms, 99th percentile "
        f"{np.percentile(ms, 99):.3f} ms per 10 ms chunk (real-time factor "
        f"{10 / np.median(ms):.0f}x)"
    )
    if args.mic is None:
        offline = hmm.viterbi(front_end()(wav).features).path[0]
        same = torch.equal(path, offline)
        print(f"committed + flushed states equal offline Viterbi on the whole file: {same}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
