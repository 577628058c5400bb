"""Neural HMM text-to-speech on CPU: train :class:`pytorch_hmm.NeuralHMM` for a few minutes on
the bundled festival-dev ``slt`` voice and synthesise a held-out sentence.

Run from the repository root::

    python examples/neural_hmm_tts.py                    # 3 minutes of training (default)
    python examples/neural_hmm_tts.py --minutes 10       # longer
    python examples/neural_hmm_tts.py --quick            # 4 shortest utterances, tiny model
    python examples/neural_hmm_tts.py --out /tmp/gen.npz # also save the synthesised frames

Data: the 40 ``slt`` utterances of data/festival-dev (Festival's HTS voice, 16 kHz), one held
out (``--held-out``, default dev_slt_0001), the others for training. The input symbols are the
phones of each reference ``.lab`` (Festival's radio phone set, pauses ``pau`` included);
``--arctic`` adds the real CMU ARCTIC slt recording a0009 to the training set (its phones
between ``-`` and ``+``, ``sil`` read as ``pau``).

Features: 80-band log-mel spectrogram in dB (:class:`pytorch_hmm.LogMelSpectrogram`, n_fft
1024, hop 256 samples = 16 ms, Slaney mel scale, top_db 80), normalised per band to zero mean
and unit variance over the training frames (the generated frames are de-normalised before
scoring).

Model: ``NeuralHMM`` with 2 states a phone, the bidirectional LSTM encoder and small hidden
sizes (``--hidden``, default 128), trained with Adam on the exact per-frame negative
log-likelihood of padded batches (nats per frame of the normalised 80-dim features). Two
choices are made for a few minutes of CPU:

* non-autoregressive (each state's Gaussian and stay/advance probability depend on the state
  and its context only): the emissions cost two matrix products. The autoregressive model
  (``--ar``, the paper's) evaluates its output network for every (frame, state) pair through
  the pre-net: about 9 s a step for a batch of 8 at hidden size 64 on 2 shared CPU cores, 10
  to 30 times the non-autoregressive model's, so a few minutes give it a few dozen steps;
* ``encoder="lstm"`` rather than the default ``"conv"``: in short runs on this corpus the conv
  encoder (1 or 2 layers; no residual path) blurs each symbol with its neighbours and the
  Viterbi alignment stays far from the labels (mean phone-boundary error 5.4 frames with 1
  layer, 8.1 with 2, after 150 steps, against 1.3 with the LSTM and 0.85 with no encoder at
  all), with a worse held-out MCD (5.8 to 6.1 dB against 4.8).

Measured (default run, 3 minutes on 2 shared CPU cores): 192 steps, epoch-mean loss 112.8 ->
42.4 nats/frame; held-out MCD 4.76 dB (log-mel RMS 6.80 dB) against 9.41 dB for the mean
frame, length ratio 0.72 at quantile 0.5 and 0.91 at 0.63; alignment MAE 1.59 frames a phone
(80 % within 2 frames) against 2.16 for an even split. The step rate follows the machine's
load (0.1 to 4 s a step on the same batch): other default runs made 217 steps (MCD 4.73 dB)
and, on a busy machine, 40 steps (MCD 6.9 dB, alignment MAE 2.4 frames). ``--threads 1``
can be faster where the cores are shared.

Evaluation (printed at the end):

* held-out sentence: ``model.generate(symbols, duration="quantile")``, the generated length
  against the natural one (``quantile=0.5`` takes the median of each state's geometric
  duration, about ln 2 = 0.69 of its mean, so the speech comes out faster than natural;
  ``1 - 1/e`` = 0.63 is close to the mean and is reported too), and two spectral distances
  after dynamic time warping between the generated and the natural frames:

  - MCD (:func:`pytorch_hmm.metrics.mel_cepstral_distortion` with ``dtw_align=True``, the
    library DTW): the metric expects mel-cepstra, which log-mel frames are not, so the
    cepstra are computed from the log-mel frames: ``c_d = DCT-II_ortho(ln mel)_d / sqrt(2 *
    80)`` for ``d = 1..24`` (the cosine-series cepstrum on the mel-band axis; c0 left out).
    The mel axis is Slaney's filterbank, not SPTK's all-pass warping, so the figure is only
    roughly comparable with published MCDs;
  - log-mel distance: RMS over the 80 bands in dB, averaged along the path of
    :func:`pytorch_hmm.dtw_align` (symmetric2 steps).

  Both are also given for the training-set mean frame repeated over the natural length (what
  a model that learnt nothing but the mean would give).
* alignment as a by-product: ``model.align`` (Viterbi frames per phone) on the training
  sentences against the reference label durations on the same frame grid (mean absolute error
  in frames per phone, :func:`pytorch_hmm.metrics.duration_metrics`), beside an even split of
  each sentence's frames over its phones.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

import pytorch_hmm as ph
from pytorch_hmm.io import read_lab, segments_to_durations
from pytorch_hmm.metrics import duration_metrics, mel_cepstral_distortion

ROOT = Path(__file__).resolve().parents[1]
FEST = ROOT / "data" / "festival-dev"
ARCTIC = ROOT / "data" / "arctic"
SAMPLE_RATE = 16000
HOP = 256  # samples: 16 ms frames
N_FFT = 1024
N_MELS = 80
N_CEPSTRA = 25  # c0..c24; MCD uses c1..c24


class Utterance(NamedTuple):
    name: str
    phones: List[str]
    features: torch.Tensor  # (T, 80) log-mel in dB
    durations: torch.Tensor  # (N,) reference frames per phone, summing to T


def frontend() -> ph.LogMelSpectrogram:
    return ph.LogMelSpectrogram(SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)


def read_phones(lab: Path):
    """Segments of a phone .lab (HTS full-context labels reduced to the phone; sil -> pau)."""
    return [s._replace(label="pau" if s.label == "sil" else s.label) for s in read_lab(lab)]


def load_utterance(name: str, wav: Path, lab: Path, fe: ph.LogMelSpectrogram) -> Utterance:
    x, _ = ph.load_audio(wav, sample_rate=SAMPLE_RATE)
    feats = fe(x).features  # (T, 80)
    segs = read_phones(lab)
    phones, dur = segments_to_durations(segs, HOP / SAMPLE_RATE)
    # label boundaries rounded to the 16 ms grid; the centred STFT has 1 + samples // hop
    # frames, so the last phone (a pause) takes the frame(s) left over
    dur = dur.clone()
    dur[-1] += feats.shape[0] - int(dur.sum())
    if int(dur[-1]) < 0:
        raise ValueError(f"{name}: labels run past the audio")
    return Utterance(name, phones, feats, dur)


def slt_names() -> List[str]:
    return sorted(p.stem for p in (FEST / "wav").glob("dev_slt_*.wav"))


def batches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def collate(utts: Sequence[Utterance], ids: Dict[str, int], mean, std):
    xs = [(u.features - mean) / std for u in utts]
    ss = [torch.tensor([ids[p] for p in u.phones]) for u in utts]
    return (
        pad_sequence(ss, batch_first=True),
        torch.tensor([len(s) for s in ss]),
        pad_sequence(xs, batch_first=True),
        torch.tensor([len(x) for x in xs]),
    )


def cepstra(logmel_db: torch.Tensor, mfcc: ph.MFCC) -> torch.Tensor:
    """Mel-cepstra c0..c24 from dB log-mel frames: the orthonormal DCT-II of the natural-log
    mel energies divided by sqrt(2 * n_mels), so that ``ln S(w) = c0 + 2 sum_d c_d cos(d w)``
    on the band axis (the cepstrum's cosine-series definition)."""
    ln_mel = logmel_db.double() * (math.log(10.0) / 10.0)
    return mfcc.cepstra(ln_mel) / math.sqrt(2.0 * N_MELS)


def spectral_distances(nat_db: torch.Tensor, hyp_db: torch.Tensor, mfcc: ph.MFCC):
    """(MCD dB, log-mel RMS dB) between natural and hypothesis frames after DTW."""
    mcd = mel_cepstral_distortion(cepstra(nat_db, mfcc), cepstra(hyp_db, mfcc), dtw_align=True).mean
    r = ph.dtw_align(hyp_db.double(), nat_db.double())
    i, j = r.path[:, 0], r.path[:, 1]
    rms = (hyp_db.double()[i] - nat_db.double()[j]).pow(2).mean(-1).sqrt().mean()
    return mcd, float(rms)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="training time budget")
    ap.add_argument("--steps", type=int, default=None, help="cap on optimiser steps")
    ap.add_argument("--quick", action="store_true", help="4 utterances, tiny model, 20 steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the synthesised (and natural) log-mel frames (.npz)")
    ap.add_argument("--held-out", default="dev_slt_0001", help="slt utterance kept for testing")
    ap.add_argument("--hidden", type=int, default=None, help="hidden and pre-net size")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--ar", action="store_true", help="autoregressive model (much slower)")
    ap.add_argument("--quantile", type=float, default=0.5, help="generate()'s duration quantile")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--arctic", action="store_true", help="add ARCTIC a0009 to training")
    ap.add_argument("--log-seconds", type=float, default=10.0, help="seconds between reports")
    args = ap.parse_args(argv)
    if args.quick:
        defaults = dict(hidden=16, batch_size=4, lr=3e-3, steps=20)
    else:
        defaults = dict(hidden=128, batch_size=8, lr=2e-3)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t_start = time.perf_counter()

    # -- data -------------------------------------------------------------------------------
    names = slt_names()
    if args.held_out not in names:
        raise SystemExit(f"--held-out {args.held_out!r} is not one of the slt utterances")
    train_names = [n for n in names if n != args.held_out]
    if args.quick:  # the 4 shortest
        size = {n: (FEST / "wav" / f"{n}.wav").stat().st_size for n in train_names}
        train_names = sorted(sorted(train_names, key=size.get)[:4])
    fe = frontend()
    train = [
        load_utterance(n, FEST / "wav" / f"{n}.wav", FEST / "lab" / f"{n}.lab", fe)
        for n in train_names
    ]
    if args.arctic:
        train.append(
            load_utterance(
                "arctic_a0009", ARCTIC / "arctic_a0009.wav", ARCTIC / "arctic_a0009_phone.lab", fe
            )
        )
    test = load_utterance(
        args.held_out, FEST / "wav" / f"{args.held_out}.wav", FEST / "lab" / f"{args.held_out}.lab",
        fe,
    )  # fmt: skip
    phone_set = sorted({p for u in train + [test] for p in u.phones})
    ids = {p: i for i, p in enumerate(phone_set)}
    unseen = sorted(set(test.phones) - {p for u in train for p in u.phones})
    frames = torch.cat([u.features for u in train])
    mean, std = frames.mean(0), frames.std(0).clamp(min=1e-3)
    shift_ms = 1000.0 * HOP / SAMPLE_RATE
    print(
        f"data: {len(train)} training utterances ({frames.shape[0] * shift_ms / 1000:.1f} s, "
        f"{frames.shape[0]} frames of {shift_ms:g} ms), held out {test.name} "
        f"({len(test.phones)} phones, {test.features.shape[0]} frames); {len(phone_set)} "
        f"symbols (phones + pau)" + (f"; unseen in training: {unseen}" if unseen else "")
    )
    print(
        f"features: {N_MELS}-band log-mel (dB) at {SAMPLE_RATE} Hz, hop {HOP}, normalised per "
        f"band by the training-set mean and std ({time.perf_counter() - t_start:.1f} s)"
    )

    # -- model and training -----------------------------------------------------------------
    model = ph.NeuralHMM(
        num_symbols=len(phone_set), feature_dim=N_MELS, states_per_phone=2,
        hidden_dim=args.hidden, prenet_dim=args.hidden, encoder="lstm", encoder_layers=1,
        autoregressive=args.ar,
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: NeuralHMM, {n_params} parameters (hidden {args.hidden}, 2 states a phone, LSTM "
        f"encoder, {'autoregressive' if args.ar else 'non-autoregressive'}); Adam lr {args.lr}, "
        f"threads {torch.get_num_threads()}, batch "
        f"{args.batch_size}; budget {args.minutes:g} min"
        + (f" or {args.steps} steps" if args.steps else "")
    )
    print(f"{'step':>6} {'epoch':>6} {'loss/frame':>11} {'epoch mean':>11} {'elapsed':>8}")
    losses: List[float] = []
    epoch_means: List[float] = []
    step, epoch = 0, 0
    t0 = time.perf_counter()
    last_print = -math.inf
    done = False
    while not done:
        epoch += 1
        ep_loss, ep_frames = 0.0, 0
        for idx in batches(len(train), args.batch_size, gen):
            sym, sl, x, xl = collate([train[i] for i in idx], ids, mean, std)
            loss = model.loss(sym, sl, x, xl)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            ep_loss += losses[-1] * int(xl.sum())
            ep_frames += int(xl.sum())
            elapsed = time.perf_counter() - t0
            if elapsed >= 60.0 * args.minutes or (args.steps and step >= args.steps):
                done = True
                break
        epoch_means.append(ep_loss / max(ep_frames, 1))
        if done or elapsed - last_print >= args.log_seconds or epoch == 1:
            print(
                f"{step:>6} {epoch:>6} {losses[-1]:>11.2f} {epoch_means[-1]:>11.2f} "
                f"{elapsed:>7.1f}s",
                flush=True,
            )
            last_print = elapsed
    t_train = time.perf_counter() - t0
    print(
        f"trained {step} steps ({epoch} epochs) in {t_train:.0f} s: loss {losses[0]:.2f} -> "
        f"{losses[-1]:.2f} nats/frame (first epoch mean {epoch_means[0]:.2f}, last "
        f"{epoch_means[-1]:.2f})"
    )

    # -- held-out synthesis -------------------------------------------------------------------
    model.eval()
    sym = torch.tensor([ids[p] for p in test.phones])
    nat_db = test.features
    T_nat = nat_db.shape[0]
    mfcc = ph.MFCC(SAMPLE_RATE, n_mfcc=N_CEPSTRA, n_mels=N_MELS, n_fft=N_FFT, hop_length=HOP)
    mcd0, rms0 = spectral_distances(nat_db, mean.expand(T_nat, -1), mfcc)
    print(
        f"\nheld-out {test.name} ({T_nat} frames, {T_nat * shift_ms / 1000:.2f} s): "
        "generate(duration='quantile'), distances after DTW (MCD: c1..c24 from log-mel)"
    )
    results = {}
    for q in dict.fromkeys((args.quantile, round(1 - math.exp(-1), 2))):
        g = model.generate(sym, duration="quantile", quantile=q)
        T_gen = int(g.lengths[0])
        hyp_db = g.features[0, :T_gen] * std + mean
        mcd, rms = spectral_distances(nat_db, hyp_db, mfcc)
        dur = duration_metrics(
            test.durations[None], g.durations[:, : len(test.phones)], frame_shift_ms=shift_ms
        )
        results[q] = (g, hyp_db, mcd, rms)
        print(
            f"  quantile {q:.2f}: {T_gen} frames ({T_gen * shift_ms / 1000:.2f} s), length ratio "
            f"{T_gen / T_nat:.2f}, phone duration MAE {dur.mean_mae_frames:.2f} frames; MCD "
            f"{mcd:.2f} dB, log-mel RMS {rms:.2f} dB"
        )
    print(f"  training mean frame, natural length: MCD {mcd0:.2f} dB, log-mel RMS {rms0:.2f} dB")
    g, hyp_db, mcd, rms = results[args.quantile]

    # -- alignment as a by-product ------------------------------------------------------------
    refs, hyps = [], []
    for i in range(0, len(train), 8):
        part = train[i : i + 8]
        sym_b, sl_b, x_b, xl_b = collate(part, ids, mean, std)
        d = model.align(sym_b, sl_b, x_b, xl_b)
        for k, u in enumerate(part):
            refs.append(u.durations)
            hyps.append(d[k, : len(u.phones)])
    plen = torch.tensor([len(r) for r in refs])
    ref_pad, hyp_pad = pad_sequence(refs, batch_first=True), pad_sequence(hyps, batch_first=True)
    even = pad_sequence(
        [
            torch.diff(torch.linspace(0, int(r.sum()), len(r) + 1).round().long())
            for r in refs
        ],
        batch_first=True,
    )  # fmt: skip
    m_al = duration_metrics(ref_pad, hyp_pad, plen, frame_shift_ms=shift_ms)
    m_even = duration_metrics(ref_pad, even, plen, frame_shift_ms=shift_ms)
    first = train[0]
    print(f"\nalignment by-product: model.align vs reference label durations ({shift_ms:g} ms)")
    print(
        f"  {first.name}: MAE {float(m_al.mae_frames[0]):.2f} frames/phone "
        f"(even split {float(m_even.mae_frames[0]):.2f}); first phones (ref/aligned): "
        + " ".join(
            f"{p}:{int(r)}/{int(h)}" for p, r, h in list(zip(first.phones, refs[0], hyps[0]))[:10]
        )
    )
    print(
        f"  all {len(train)} training utterances ({int(plen.sum())} phones): MAE "
        f"{m_al.mean_mae_frames:.2f} frames ({m_al.mean_mae_ms:.1f} ms), within 2 frames "
        f"{100 * m_al.mean_accuracy:.0f}%; even split MAE {m_even.mean_mae_frames:.2f} frames"
    )

    if args.out:
        np.savez(
            args.out,
            generated=hyp_db.numpy(),
            natural=nat_db.numpy(),
            generated_durations=g.durations[0].numpy(),
            reference_durations=test.durations.numpy(),
            phones=np.array(test.phones),
            losses=np.array(losses),
            sample_rate=SAMPLE_RATE,
            hop_length=HOP,
        )
        print(f"\nwrote {args.out} (log-mel dB frames: generated {tuple(hyp_db.shape)})")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return dict(
        losses=losses,
        epoch_means=epoch_means,
        generated=hyp_db,
        natural=nat_db,
        durations=g.durations[0],
        mcd=mcd,
        logmel_rms=rms,
        baseline_mcd=mcd0,
        align_mae=m_al.mean_mae_frames,
        even_mae=m_even.mean_mae_frames,
        num_phones=len(test.phones),
    )


if __name__ == "__main__":
    main()
