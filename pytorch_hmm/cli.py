"""Command line: ``pytorch-hmm SUBCOMMAND ...``.

``pytorch-hmm align CORPUS_DIR --out OUT_DIR [--lexicon DICT] [--model FILE]`` aligns a corpus
folder in any layout of :mod:`pytorch_hmm.alignment.corpus` (flat ``NAME.wav`` + ``NAME.txt``, MFA
speaker folders, LibriSpeech, LJSpeech, KSS; ``--layout``, default detected; audio of any rate
resampled with soxr, stereo downmixed) and writes ``OUT_DIR/REL/NAME.TextGrid`` mirroring each
audio file's path in the corpus (tiers ``words`` and ``phones``), the way Montreal Forced Aligner
users work. Transcripts are normalised as MFA does (see that module); a word the lexicon lacks
is aligned with the unknown-word phone ``spn`` and reported (``--strict`` skips its file);
``--jobs N`` threads extract the features; the summary gives files aligned and failed (each with
its reason), hours of audio, wall time and real-time factor. With ``--lexicon``
(MFA dictionary format) transcripts hold words; without it each holds the phone sequence. With
no ``--model`` a model is trained flat-start on the corpus itself first (``--save-model`` keeps
it). Files that cannot be aligned are reported by name with the reason; the others are still
aligned. The output folder is checked (and created) before any training, outputs are written
atomically, and the outputs a failed file left in OUT_DIR from an earlier run are removed (the
summary says so), so OUT_DIR holds exactly this run's results.

Exit status of ``align`` (:data:`EXIT_STATUS`): 0 every file was aligned and written; 1 some
(or all) files failed, each named with its reason in the summary, or the model could not be
saved; 2 bad arguments (a missing corpus folder or one without audio, an unreadable lexicon or
model, an ``--out`` or ``--save-model`` that cannot be written, an option out of range).

Subcommands register themselves in :data:`SUBCOMMANDS` (name -> (add_arguments, run)), so others
(``quicktest``, ``benchmark``) can be added beside ``align``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["EXIT_STATUS", "SUBCOMMANDS", "build_parser", "main", "register_subcommand"]

EXIT_STATUS = {
    0: "every file was aligned and written",
    1: "some or all files failed (each is named with its reason), or --save-model failed",
    2: "bad arguments: corpus folder, lexicon, model, --out, --save-model or an option value",
}
"""Exit status of ``pytorch-hmm align``."""

SUBCOMMANDS: Dict[str, Tuple[Callable[[argparse.ArgumentParser], None], Callable, str]] = {}


def register_subcommand(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add ``pytorch-hmm NAME``: ``add_arguments(parser)`` declares its options and
    ``run(args)`` returns the exit status."""
    SUBCOMMANDS[name] = (add_arguments, run, help)


# ------------------------------------------------------------------------------------------
# align


def _align_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "corpus_dir",
        help="corpus folder: flat NAME.wav + NAME.txt, MFA speaker folders (.txt/.lab beside "
        "the audio), LibriSpeech (*.trans.txt), LJSpeech (metadata.csv) or KSS (a transcript "
        "list); see --layout",
    )
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="output folder; it mirrors the corpus (OUT/SPEAKER/NAME.TextGrid)",
    )
    p.add_argument("--lexicon", "-l", help="pronunciation dictionary (MFA format)")
    p.add_argument(
        "--model",
        "-m",
        help="a trained aligner (ForcedAligner.save); default: "
        "train flat-start on the corpus first",
    )
    p.add_argument("--save-model", help="save the model trained on the corpus to this file")
    p.add_argument(
        "--layout",
        choices=("auto", "flat", "mfa", "librispeech", "ljspeech", "kss"),
        default="auto",
        help="corpus layout (default auto: detected)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="skip (and report) files with words the lexicon lacks, instead of aligning those "
        "words with the unknown-word phone spn",
    )
    p.add_argument(
        "--jobs", "-j", type=int, default=1, help="worker threads for feature extraction"
    )
    p.add_argument("--iterations", type=int, default=10, help="EM iterations (default 10)")
    p.add_argument(
        "--mixtures", type=int, default=4, help="Gaussians per state (power of 2, default 4)"
    )
    p.add_argument("--method", choices=("viterbi", "baum-welch"), default="baum-welch")
    p.add_argument("--frame-shift", type=float, default=None, help="seconds (default 0.01)")
    p.add_argument(
        "--time-offset",
        type=float,
        default=None,
        help="seconds added to every boundary (default 0; a trained model keeps its own)",
    )
    p.add_argument(
        "--format",
        choices=("TextGrid", "lab", "json"),
        action="append",
        help="output format(s) (default TextGrid; repeat for several)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (on a busy machine, 1)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.epilog = (
        "audio: any rate (resampled with soxr), stereo downmixed, 16/24-bit integer or float "
        "WAV, FLAC, OGG, Opus, MP3. transcripts (with --lexicon) are normalised as MFA does: "
        "lower case; punctuation removed except apostrophes and hyphens inside words; a "
        "hyphenated word the lexicon lacks is split into its parts; [bracketed] tokens kept "
        "whole; hesitations (uh, um) kept as words. words the lexicon lacks are aligned with "
        "the phone spn and reported (--strict skips their files). exit status: "
        + "; ".join(f"{k} {v}" for k, v in EXIT_STATUS.items())
    )


def _check_options(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the numeric options, or None."""
    import math

    if args.iterations < 0:
        return f"--iterations must be >= 0, got {args.iterations}"
    if args.mixtures < 1 or args.mixtures & (args.mixtures - 1):
        return f"--mixtures must be a power of 2 (1, 2, 4, ...), got {args.mixtures}"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size must be >= 1, got {args.batch_size}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    if args.jobs < 1:
        return f"--jobs must be >= 1, got {args.jobs}"
    if args.frame_shift is not None and not (0 < args.frame_shift < math.inf):
        return f"--frame-shift must be a positive number of seconds, got {args.frame_shift}"
    if args.time_offset is not None and not math.isfinite(args.time_offset):
        return f"--time-offset must be a finite number of seconds, got {args.time_offset}"
    return None


def _prepare_out(out: str, flag: str = "--out", why: str = "") -> Optional[str]:
    """Create the output folder (before any work); what is wrong with it, or None. ``flag``
    names the option in the message, ``why`` is added to a 'not a folder' message."""
    if os.path.exists(out) and not os.path.isdir(out):
        return f"{flag} {out} exists and is not a folder{why}"
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        return f"cannot create the output folder {flag} {out}: {err.strerror or err}"
    if not os.access(out, os.W_OK | os.X_OK):
        return f"the output folder {flag} {out} is not writable"
    return None


def _check_save_model(path: str) -> Optional[str]:
    if os.path.isdir(path):
        return f"--save-model {path} is a folder (give a file name)"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"--save-model {path}: the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--save-model {path}: the folder {folder} is not writable"
    return None


def _progress(total: int, desc: str, quiet: bool, unit: str = "file"):
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)


def run_align(args: argparse.Namespace) -> int:
    import torch

    from .alignment.corpus import (
        UNKNOWN_PHONE,
        corpus_entries,
        extract_corpus_features,
        prepare_transcripts,
    )
    from .alignment.forced import AlignerConfig, ForcedAligner
    from .alignment.lexicon import read_lexicon

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    bad = _check_options(args)
    if bad:
        return fail(bad)
    if args.save_model and args.model:
        return fail("--save-model saves a model trained on the corpus; not with --model")
    if args.save_model:
        bad = _check_save_model(args.save_model)
        if bad:
            return fail(bad)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        lexicon = read_lexicon(args.lexicon) if args.lexicon else None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return fail(f"cannot read the lexicon {args.lexicon}: {err}")
    if lexicon is not None and len(lexicon) == 0:
        return fail(f"the lexicon {args.lexicon} holds no pronunciations")
    t0 = time.perf_counter()
    if args.model:
        try:
            aligner = ForcedAligner.load(args.model, lexicon=lexicon)
        except (OSError, ValueError, RuntimeError) as err:
            return fail(f"cannot load the model {args.model}: {err}")
        if lexicon is None and aligner.lexicon is not None:
            say("using the lexicon saved with the model")
    else:
        aligner = None
        cfg = AlignerConfig()
        if args.frame_shift:
            cfg.frame_shift = args.frame_shift
            try:
                cfg.validate()
            except ValueError as err:
                return fail(f"--frame-shift {args.frame_shift}: {err}")
    errors: Dict[str, str] = {}
    try:
        layout, entries = corpus_entries(args.corpus_dir, args.layout, errors=errors)
    except (FileNotFoundError, NotADirectoryError) as err:
        return fail(str(err))
    except ValueError as err:
        return fail(f"--layout {args.layout}: {err}")
    except OSError as err:
        return fail(f"cannot list the corpus folder {args.corpus_dir}: {err}")
    if not entries and not errors:
        return fail(f"no audio files (.wav/.flac/.ogg/.opus/.mp3) in {args.corpus_dir}")
    # the output folder is checked before any reading or training
    bad = _prepare_out(args.out)
    if bad:
        return fail(bad)
    names = [e.name for e in entries]
    total = len(set(names) | set(errors))
    say(f"{layout} layout: {len(entries)} audio file(s) in {args.corpus_dir}")
    formats = list(dict.fromkeys(args.format or ["TextGrid"]))
    ext = {"TextGrid": ".TextGrid", "lab": ".lab", "json": ".json"}
    lex = lexicon if aligner is None else aligner.lexicon
    allow_unknown = aligner is None or UNKNOWN_PHONE in aligner.phone_index
    prepared = prepare_transcripts(
        entries, lex, errors=errors, strict=args.strict, allow_unknown=allow_unknown
    )
    unknown: Dict[str, List[str]] = {}
    for p in prepared:
        for w in p.unknown:
            unknown.setdefault(w, []).append(p.entry.name)
    if aligner is None:
        # the phone set comes from the lexicon, or from the transcripts themselves
        if lexicon is not None:
            phones = lexicon.phones()
            if unknown and UNKNOWN_PHONE not in phones:
                phones.append(UNKNOWN_PHONE)
        else:
            phones = _transcript_phones(prepared, cfg)
        aligner = ForcedAligner(phones, cfg, lexicon)
    if args.batch_size:
        aligner.config.batch_size = args.batch_size
    if args.time_offset is not None:
        aligner.config.time_offset = args.time_offset
    bar = _progress(len(prepared), "reading", args.quiet)
    utts = extract_corpus_features(
        aligner, prepared, errors=errors, jobs=args.jobs, progress=bar and bar.update
    )
    if bar:
        bar.close()
    say(f"read {len(utts)} of {total} files")
    if not utts:
        _report(errors, _remove_stale(args.out, errors, formats, ext))
        print("error: nothing could be read", file=sys.stderr)
        return 1
    status = 0
    if not args.model:
        say(
            f"training flat-start on {len(utts)} utterances ({args.method}, "
            f"{args.iterations} iterations, {args.mixtures} Gaussian(s)/state)"
        )
        n_it = args.iterations + 4 * max(args.mixtures.bit_length() - 1, 0)
        bar = _progress(n_it, "training", args.quiet, unit="iteration")
        try:
            aligner.fit(
                utts,
                iterations=args.iterations,
                method=args.method,
                mixtures=args.mixtures,
                errors=errors,
                progress=(lambda msg: bar.update(1)) if bar else None,
            )
        except ValueError as err:
            if bar:
                bar.close()
            _report(errors)
            print(f"error: training failed, nothing aligned: {err}", file=sys.stderr)
            old = [
                n for n in names for f in formats if os.path.isfile(_out_path(args.out, n, ext[f]))
            ]
            if old:
                print(
                    f"note: {args.out} still holds {len(old)} output(s) of an earlier run",
                    file=sys.stderr,
                )
            return 1
        if bar:
            bar.close()
        if args.save_model:
            try:
                aligner.save(args.save_model)
                say(f"model saved to {args.save_model}")
            except OSError as err:
                print(f"error: cannot save the model to {args.save_model}: {err}", file=sys.stderr)
                status = 1
    bar = _progress(len(utts), "aligning", args.quiet)
    with torch.no_grad():
        results = aligner.align(utts, errors=errors, progress=bar and bar.update)
    if bar:
        bar.close()
    written = set()
    for r in results:
        try:
            for fmt in formats:
                path = _out_path(args.out, r.name, ext[fmt])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if fmt == "TextGrid":
                    r.write_textgrid(path)
                elif fmt == "lab":
                    r.write_lab(path)
                else:
                    r.write_json(path)
            written.add(r.name)
        except (OSError, ValueError) as err:
            errors[r.name] = f"cannot write output: {err}"
    for n in names:  # every file is accounted for
        if n not in written and n not in errors:
            errors[n] = "not aligned"
    removed = _remove_stale(args.out, errors, formats, ext)
    audio = sum(u.duration or 0.0 for u in utts if u.name in written)
    speakers = {u.speaker for u in utts if u.name in written and u.speaker is not None}
    dt = time.perf_counter() - t0
    rtf = dt / audio if audio > 0 else float("nan")
    say(
        f"aligned {len(written)} of {total} files ({layout} layout"
        + (f", {len(speakers)} speaker(s)" if speakers else "")
        + f"): {audio / 3600:.4f} h of audio ({audio:.1f} s) in {dt:.1f} s wall time, "
        f"real-time factor {rtf:.3f}; output in {args.out}"
    )
    unk = {w: [n for n in ns if n in written] for w, ns in unknown.items()}
    unk = {w: ns for w, ns in unk.items() if ns}
    if unk:
        print(
            f"{len(unk)} word(s) not in the lexicon, aligned as {UNKNOWN_PHONE!r}: "
            + ", ".join(
                f"{w!r} ({ns[0]}" + (f" and {len(ns) - 1} more)" if len(ns) > 1 else ")")
                for w, ns in sorted(unk.items())
            ),
            file=sys.stderr,
        )
    _report(errors, removed)
    if errors:
        print(
            f"{len(errors)} of {total} file(s) failed (exit status 1); see above",
            file=sys.stderr,
        )
        status = 1
    return status


register_subcommand(
    "align",
    "forced-align a corpus (flat, MFA, LibriSpeech, LJSpeech or KSS layout) to TextGrids",
    _align_arguments,
    run_align,
)


def _out_path(out: str, name: str, ext: str) -> str:
    """OUT/SPEAKER/NAME.ext: the output mirrors the corpus's relative path."""
    return os.path.join(out, *name.split("/")) + ext


def _transcript_phones(prepared, cfg) -> List[str]:
    seen: Dict[str, None] = {}
    aliases = set(cfg.silence_aliases) | {cfg.silence_phone}
    for p in prepared:
        for tok in p.words:
            if tok not in aliases:
                seen.setdefault(tok, None)
    return list(seen)


def _remove_stale(out: str, errors: Dict[str, str], formats, ext) -> Dict[str, List[str]]:
    """Remove the outputs (of this run's formats) that failed files left in ``out`` from an
    earlier run, so that no stale result passes for a current one. name -> removed files."""
    removed: Dict[str, List[str]] = {}
    for name in errors:
        for fmt in formats:
            path = _out_path(out, name, ext[fmt])
            if os.path.isfile(path):
                try:
                    os.remove(path)
                except OSError:
                    continue
                removed.setdefault(name, []).append(os.path.basename(path))
    return removed


def _report(errors: Dict[str, str], removed: Optional[Dict[str, List[str]]] = None) -> None:
    if not errors:
        return
    print(f"{len(errors)} file(s) could not be aligned:", file=sys.stderr)
    for name in sorted(errors):
        extra = ""
        if removed and name in removed:
            extra = f" (removed the stale {', '.join(removed[name])} of an earlier run)"
        print(f"  {name}: {errors[name]}{extra}", file=sys.stderr)


# ------------------------------------------------------------------------------------------
# quicktest, benchmark


def _quicktest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print nothing, only set the exit code")


def run_quicktest(args: argparse.Namespace) -> int:
    from .quick_test import run_quick_test

    return 0 if run_quick_test(verbose=not args.quiet).passed else 1


def _benchmark_arguments(p: argparse.ArgumentParser) -> None:
    from .benchmark import add_arguments

    add_arguments(p)


def run_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import run_from_args

    return run_from_args(args)


# ------------------------------------------------------------------------------------------
# plot

PLOT_EXIT_STATUS = {
    0: "every picture was written",
    1: "some or all pictures failed (each is named with its reason)",
    2: "bad arguments: a missing AUDIO or TEXTGRID, a file paired with a folder, an -o that "
    "cannot be written, an option value",
}
"""Exit status of ``pytorch-hmm plot``."""


def _plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", help="audio file, or a corpus folder (NAME.wav ...)")
    p.add_argument(
        "textgrid",
        help="its TextGrid (or HTK .lab), or the folder of NAME.TextGrid files align wrote",
    )
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="the PNG to write; with folders: the folder for NAME.png (created)",
    )
    p.add_argument(
        "--tiers",
        nargs="+",
        metavar="TIER",
        help="tiers to draw, top to bottom (default: words and phones, those present)",
    )
    p.add_argument("--all-tiers", action="store_true", help="draw every tier of the TextGrid")
    p.add_argument("--title", help="title (default: the audio file's name)")
    p.add_argument("--spectrogram", choices=("mel", "linear"), default="mel")
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.1,
        help="seconds the TextGrid's end may differ from the audio's (default 0.1; "
        "negative: no check)",
    )
    p.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    p.add_argument("--width", type=float, help="figure width in inches (default: by duration)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only errors")


def _plot_pairs(args: argparse.Namespace) -> Tuple[List[Tuple[str, str, str]], Dict[str, str]]:
    """(name, audio, TextGrid) for every audio file of the corpus (any layout ``align`` reads;
    a name may be SPEAKER/NAME, and align's output mirrors it), and the names that lack a
    TextGrid (or audio) with the reason."""
    errors: Dict[str, str] = {}
    try:
        from .alignment.corpus import corpus_entries

        audio = {e.name: e.audio for e in corpus_entries(args.audio, "auto", errors=errors)[1]}
    except ImportError:  # pragma: no cover - an older corpus module
        from .alignment.corpus import corpus_files

        audio = {entry[0]: entry[1] for entry in corpus_files(args.audio)}
    grids: Dict[str, str] = {}
    for folder, _, files in os.walk(args.textgrid):
        rel = os.path.relpath(folder, args.textgrid)
        for fn in sorted(files):
            stem, ext = os.path.splitext(fn)
            name = stem if rel == "." else "/".join([*rel.split(os.sep), stem])
            if ext.lower() in (".textgrid", ".lab") and name not in grids:
                grids[name] = os.path.join(folder, fn)
    pairs = []
    for name in sorted(set(audio) | set(grids)):
        if name in errors:
            continue
        if name not in grids:
            errors[name] = f"no {name}.TextGrid in {args.textgrid}"
        elif name not in audio:
            errors[name] = f"no audio {name}.wav (.flac, .ogg) in {args.audio}"
        else:
            pairs.append((name, audio[name], grids[name]))
    return pairs, errors


def _plot_out_folder(out: str) -> Optional[str]:
    """Create the output folder of ``plot`` with folders; what is wrong with it, or None."""
    return _prepare_out(out, "-o", " (with folders, -o is the output folder)")


def run_plot(args: argparse.Namespace) -> int:
    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    try:
        from .plot import DEFAULT_TIERS, _matplotlib, plot_alignment

        _matplotlib()
    except ImportError as err:
        return fail(str(err))
    for path, what in ((args.audio, "AUDIO"), (args.textgrid, "TEXTGRID")):
        if not os.path.exists(path):
            return fail(f"{what} {path} does not exist")
    folders = os.path.isdir(args.audio), os.path.isdir(args.textgrid)
    if folders[0] != folders[1]:
        kinds = ["folder" if f else "file" for f in folders]
        return fail(
            "give an audio file and its TextGrid, or a corpus folder and the folder of "
            f"TextGrids; got {args.audio} ({kinds[0]}) and {args.textgrid} ({kinds[1]})"
        )
    if not 1 <= args.dpi <= 1000:
        return fail(f"--dpi must be in 1..1000, got {args.dpi}")
    if args.width is not None and not 1 <= args.width <= 200:
        return fail(f"--width must be in 1..200 inches, got {args.width}")
    if args.tiers and args.all_tiers:
        return fail("--tiers and --all-tiers exclude each other")
    tiers = None if args.all_tiers else (tuple(args.tiers) if args.tiers else DEFAULT_TIERS)
    errors: Dict[str, str] = {}
    if folders[0]:
        bad = _plot_out_folder(args.out)
        if bad:
            return fail(bad)
        try:
            pairs, errors = _plot_pairs(args)
        except (OSError, ValueError) as err:
            return fail(f"cannot list {args.audio} or {args.textgrid}: {err}")
        if not pairs and not errors:
            return fail(f"no audio files in {args.audio} and no TextGrids in {args.textgrid}")
        jobs = [(n, a, t, os.path.join(args.out, *n.split("/")) + ".png") for n, a, t in pairs]
    else:
        out = args.out
        name = os.path.splitext(os.path.basename(args.audio))[0]
        if os.path.isdir(out):
            out = os.path.join(out, name + ".png")
        folder = os.path.dirname(os.path.abspath(out))
        if os.path.exists(folder) and not os.path.isdir(folder):
            return fail(f"cannot write -o {out}: {folder} is a file")
        jobs = [(name, args.audio, args.textgrid, out)]
    total = len(jobs) + len(errors)
    written = 0
    for name, audio, grid, out in jobs:
        try:
            plot_alignment(
                audio,
                grid,
                out,
                tiers=tiers,
                title=args.title,
                spectrogram=args.spectrogram,
                tolerance=None if args.tolerance < 0 else args.tolerance,
                dpi=args.dpi,
                figsize=None if args.width is None else (args.width, None),
            )
        except (ValueError, TypeError, OSError) as err:
            errors[name] = str(err)
            continue
        written += 1
        if not args.quiet:
            print(f"wrote {out}", file=sys.stderr)
    if folders[0] and not args.quiet:
        print(f"wrote {written} of {total} picture(s) to {args.out}", file=sys.stderr)
    for name in sorted(errors):
        print(f"  {name}: {errors[name]}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} of {total} picture(s) failed (exit status 1)", file=sys.stderr)
        return 1
    return 0


register_subcommand(
    "plot",
    "a PNG of an alignment (spectrogram, word and phone boundaries) from audio + TextGrid",
    _plot_arguments,
    run_plot,
)


register_subcommand(
    "quicktest",
    "self-check of the installation (run_quick_test)",
    _quicktest_arguments,
    run_quicktest,
)
register_subcommand(
    "benchmark",
    "time every model type on a grid of sizes (about a minute by default)",
    _benchmark_arguments,
    run_benchmark,
)


# ------------------------------------------------------------------------------------------
# entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytorch-hmm", description="pytorch_hmm command line tools"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (add_arguments, run, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``pytorch-hmm`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
