"""Command line: ``pytorch-hmm SUBCOMMAND ...``.

``pytorch-hmm align CORPUS_DIR --out OUT_DIR [--lexicon DICT] [--model FILE]`` aligns a folder of
``NAME.wav`` files, each beside a ``NAME.txt`` transcript, and writes ``OUT_DIR/NAME.TextGrid``
(tiers ``words`` and ``phones``), the way Montreal Forced Aligner users work. With ``--lexicon``
(MFA dictionary format) transcripts hold words; without it each holds the phone sequence. With
no ``--model`` a model is trained flat-start on the corpus itself first (``--save-model`` keeps
it). Files that cannot be aligned are reported by name with the reason; the others are still
aligned. The exit status is non-zero only if nothing could be aligned.

Subcommands register themselves in :data:`SUBCOMMANDS` (name -> (add_arguments, run)), so others
(``quicktest``, ``benchmark``) can be added beside ``align``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["SUBCOMMANDS", "build_parser", "main", "register_subcommand"]

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

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        lexicon = read_lexicon(args.lexicon) if args.lexicon else None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        print(f"error: cannot read the lexicon {args.lexicon}: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.model:
        try:
            aligner = ForcedAligner.load(args.model, lexicon=lexicon)
        except (OSError, ValueError, RuntimeError) as err:
            print(f"error: cannot load the model {args.model}: {err}", file=sys.stderr)
            return 2
        if lexicon is None and aligner.lexicon is not None:
            say("using the lexicon saved with the model")
    else:
        aligner = None
        cfg = AlignerConfig()
        if args.frame_shift:
            cfg.frame_shift = args.frame_shift
    try:
        files = corpus_files(args.corpus_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no audio files (.wav/.flac/.ogg) in {args.corpus_dir}", file=sys.stderr)
        return 2
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
        _report(errors)
        print("error: nothing could be read", file=sys.stderr)
        return 1
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
            print(f"error: training failed: {err}", file=sys.stderr)
            return 1
        if bar:
            bar.close()
        if args.save_model:
            aligner.save(args.save_model)
            say(f"model saved to {args.save_model}")
    os.makedirs(args.out, exist_ok=True)
    bar = _progress(len(utts), "aligning", args.quiet)
    with torch.no_grad():
        results = aligner.align(utts, errors=errors, progress=bar and bar.update)
    if bar:
        bar.close()
    formats = args.format or ["TextGrid"]
    written = 0
    for r in results:
        try:
            for fmt in formats:
                if fmt == "TextGrid":
                    r.write_textgrid(os.path.join(args.out, r.name + ".TextGrid"))
                elif fmt == "lab":
                    r.write_lab(os.path.join(args.out, r.name + ".lab"))
                else:
                    r.write_json(os.path.join(args.out, r.name + ".json"))
            written += 1
        except (OSError, ValueError) as err:
            errors[r.name] = f"cannot write output: {err}"
    audio = sum(u.duration or 0.0 for u in utts)
    dt = time.perf_counter() - t0
    say(
        f"aligned {written} of {len(files)} files ({audio:.1f} s of audio) in {dt:.1f} s; "
        f"output in {args.out}"
    )
    _report(errors)
    return 0 if written else 1


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


def _report(errors: Dict[str, str]) -> None:
    if not errors:
        return
    print(f"{len(errors)} file(s) could not be aligned:", file=sys.stderr)
    for name in sorted(errors):
        print(f"  {name}: {errors[name]}", file=sys.stderr)


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
