"""Command line: ``pytorch-hmm SUBCOMMAND ...``.

``pytorch-hmm align CORPUS_DIR --out OUT_DIR [--lexicon DICT] [--model FILE]`` aligns a folder of
``NAME.wav`` files, each beside a ``NAME.txt`` transcript, and writes ``OUT_DIR/NAME.TextGrid``
(tiers ``words`` and ``phones``), the way Montreal Forced Aligner users work. With ``--lexicon``
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
    p.add_argument("corpus_dir", help="folder of NAME.wav files, each beside a NAME.txt")
    p.add_argument("--out", "-o", required=True, help="output folder for NAME.TextGrid files")
    p.add_argument("--lexicon", "-l", help="pronunciation dictionary (MFA format)")
    p.add_argument(
        "--model",
        "-m",
        help="a trained aligner (ForcedAligner.save); default: "
        "train flat-start on the corpus first",
    )
    p.add_argument("--save-model", help="save the model trained on the corpus to this file")
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
    p.epilog = "exit status: " + "; ".join(f"{k} {v}" for k, v in EXIT_STATUS.items())


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
    if args.frame_shift is not None and not (0 < args.frame_shift < math.inf):
        return f"--frame-shift must be a positive number of seconds, got {args.frame_shift}"
    if args.time_offset is not None and not math.isfinite(args.time_offset):
        return f"--time-offset must be a finite number of seconds, got {args.time_offset}"
    return None


def _prepare_out(out: str) -> Optional[str]:
    """Create the output folder (before any work); what is wrong with it, or None."""
    if os.path.exists(out) and not os.path.isdir(out):
        return f"--out {out} exists and is not a folder"
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        return f"cannot create the output folder --out {out}: {err.strerror or err}"
    if not os.access(out, os.W_OK | os.X_OK):
        return f"the output folder --out {out} is not writable"
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

    from .alignment.corpus import corpus_files, load_corpus
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
    try:
        files = corpus_files(args.corpus_dir)
    except (FileNotFoundError, NotADirectoryError) as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"cannot list the corpus folder {args.corpus_dir}: {err}")
    if not files:
        return fail(f"no audio files (.wav/.flac/.ogg) in {args.corpus_dir}")
    # the output folder is checked before any reading or training
    bad = _prepare_out(args.out)
    if bad:
        return fail(bad)
    formats = list(dict.fromkeys(args.format or ["TextGrid"]))
    ext = {"TextGrid": ".TextGrid", "lab": ".lab", "json": ".json"}
    errors: Dict[str, str] = {}
    if aligner is None:
        # the phone set comes from the lexicon, or from the transcripts themselves
        if lexicon is not None:
            phones = lexicon.phones()
        else:
            phones = _transcript_phones(files, cfg)
        aligner = ForcedAligner(phones, cfg, lexicon)
    if args.batch_size:
        aligner.config.batch_size = args.batch_size
    if args.time_offset is not None:
        aligner.config.time_offset = args.time_offset
    bar = _progress(len(files), "reading", args.quiet)
    utts = load_corpus(aligner, args.corpus_dir, errors=errors, progress=bar and bar.update)
    if bar:
        bar.close()
    say(f"read {len(utts)} of {len(files)} files")
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
                fn
                for n, _, _ in files
                for fn in (n + ext[f] for f in formats)
                if os.path.isfile(os.path.join(args.out, fn))
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
    written = 0
    for r in results:
        try:
            for fmt in formats:
                path = os.path.join(args.out, r.name + ext[fmt])
                if fmt == "TextGrid":
                    r.write_textgrid(path)
                elif fmt == "lab":
                    r.write_lab(path)
                else:
                    r.write_json(path)
            written += 1
        except (OSError, ValueError) as err:
            errors[r.name] = f"cannot write output: {err}"
    aligned = {r.name for r in results}
    for n, _, _ in files:  # every file is accounted for
        if n not in aligned and n not in errors:
            errors[n] = "not aligned"
    removed = _remove_stale(args.out, errors, formats, ext)
    audio = sum(u.duration or 0.0 for u in utts)
    dt = time.perf_counter() - t0
    say(
        f"aligned {written} of {len(files)} files ({audio:.1f} s of audio) in {dt:.1f} s; "
        f"output in {args.out}"
    )
    _report(errors, removed)
    if errors:
        print(
            f"{len(errors)} of {len(files)} file(s) failed (exit status 1); see above",
            file=sys.stderr,
        )
        status = 1
    return status


register_subcommand(
    "align",
    "forced-align a corpus folder (NAME.wav + NAME.txt) to TextGrids",
    _align_arguments,
    run_align,
)


def _transcript_phones(files, cfg) -> List[str]:
    seen: Dict[str, None] = {}
    aliases = set(cfg.silence_aliases) | {cfg.silence_phone}
    for _, _, txt in files:
        if txt is None:
            continue
        try:
            with open(txt, encoding="utf-8") as f:
                for tok in f.read().split():
                    if tok not in aliases:
                        seen.setdefault(tok, None)
        except (OSError, UnicodeDecodeError):
            continue
    return list(seen)


def _remove_stale(out: str, errors: Dict[str, str], formats, ext) -> Dict[str, List[str]]:
    """Remove the outputs (of this run's formats) that failed files left in ``out`` from an
    earlier run, so that no stale result passes for a current one. name -> removed files."""
    removed: Dict[str, List[str]] = {}
    for name in errors:
        for fmt in formats:
            path = os.path.join(out, name + ext[fmt])
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
