"""Subcommands of the `midialign` CLI. Keep module-level imports light (no torch/librosa)."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("midialign")


def register_cli(sub: argparse._SubParsersAction) -> None:
    _register_align(sub)
    _register_make_dataset(sub)
    _register_train(sub)
    _register_evaluate(sub)
    _register_bench(sub)
    # -- other subcommands register below (one function each) --


# ---------------------------------------------------------------- align

def _register_align(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="align a MIDI (or score / note table) to a piano recording")
    p.add_argument("audio", help="recording: wav, flac, ogg, mp3, ...")
    p.add_argument("midi", help="MIDI, note table (.tsv/.csv) or score (.musicxml/.mei/.krn)")
    p.add_argument("-o", "--output", required=True, help="aligned MIDI to write")
    p.add_argument("--method", default="dtw+crnn", choices=["none", "dtw", "crnn", "dtw+crnn"], help="default: dtw+crnn")
    p.add_argument("--csv", help="also write a per-note CSV table")
    p.add_argument("--sv", metavar="CSV", help="also write a Sonic Visualiser note layer (time,value,duration,level,label)")
    p.add_argument("--match", metavar="FILE", help="also write a match file (needs a score input and partitura)")
    p.add_argument("--json", metavar="FILE", help="also write a JSON summary (method, timings, share moved, low-confidence notes)")
    p.add_argument("--plot", metavar="PNG", help="also draw a piano-roll overlay (needs matplotlib)")
    p.add_argument("--plot-range", nargs=2, type=float, metavar=("START", "END"), help="plot window in seconds (default: 0 20)")
    p.add_argument("--weights", help="model checkpoint (default: the shipped model)")
    p.set_defaults(func=_run_align)


def _run_align(args: argparse.Namespace) -> int:
    from .pipeline import align_cli

    return align_cli(args)


# ---------------------------------------------------------------- make-dataset / train

def _register_make_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-dataset", help="precompute training features (float16 CQT) for MAPS train/val")
    p.add_argument("--maps", required=True, help="MAPS root (with manifest.csv and reserved_pieces.txt)")
    p.add_argument("--out", default="cache", help="cache directory (default: cache)")
    p.add_argument("--splits", default="train,val")
    p.add_argument("--jobs", type=int, default=2)
    p.set_defaults(func=_run_make_dataset)


def _run_make_dataset(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from .config import FeatureConfig
    from .data import build_cache, maps_pieces

    for split in args.splits.split(","):
        t0 = time.time()
        manifest = build_cache(maps_pieces(args.maps, split), Path(args.out) / f"maps_{split}", FeatureConfig(), jobs=args.jobs)
        recs = manifest["recordings"]
        hours = sum(r["duration_s"] for r in recs) / 3600
        log.info("maps_%s: %d recordings, %.2f h, %d notes, %.0f s", split, len(recs), hours, sum(r["n_notes"] for r in recs), time.time() - t0)
    return 0


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the CRNN refiner on a feature cache (resumable)")
    p.add_argument("--recipe", default="default", help="named recipe (default, tiny)")
    p.add_argument("--cache", nargs="+", default=["cache/maps_train"], help="training cache dirs")
    p.add_argument("--val-cache", nargs="*", default=["cache/maps_val"], help="validation cache dirs")
    p.add_argument("--out", default="runs/default", help="run directory (checkpoints, log.csv)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .train import RECIPES, train

    if args.recipe not in RECIPES:
        raise ValueError(f"unknown recipe {args.recipe!r}; choose from {sorted(RECIPES)}")
    result = train([Path(c) for c in args.cache], [Path(c) for c in args.val_cache], Path(args.out), RECIPES[args.recipe], args.device, resume=not args.restart)
    log.info("trained %d epochs in %.1f min, best val loss %.4f; weights in %s/best.pt", result["epochs"], result["minutes"], result["best_val_loss"], args.out)
    return 0


# ---------------------------------------------------------------- evaluate

def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score an aligned MIDI against an evaluation case's reference")
    p.add_argument("case_dir", help="case folder: audio.*, input.mid, reference.tsv, meta.json")
    p.add_argument("estimate", help="aligned MIDI (or note table) to score")
    p.add_argument("--json", dest="json_out", help="also write the scores as JSON")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from .metrics import format_scores, load_case, score_case
    from .notes import atomic_write_text, read_notes

    case = load_case(args.case_dir)
    scores = score_case(case, read_notes(args.estimate))
    print(f"case {case.name}: {args.estimate}")
    print(format_scores(scores))
    if args.json_out:
        doc = {"case": case.name, "estimate": str(args.estimate), "scores": scores.to_dict()}
        atomic_write_text(args.json_out, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return 0


# ---------------------------------------------------------------- bench

_BENCH_METHODS = ("none", "dtw", "crnn", "dtw+crnn")


def _register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run alignment methods over case sets and tabulate the scores")
    p.add_argument("case_dirs", nargs="+", metavar="CASES_DIR", help="folder of case folders (or one case folder)")
    p.add_argument("--methods", default=",".join(_BENCH_METHODS), help="comma-separated; default: all of " + ",".join(_BENCH_METHODS))
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--md", help="also write the Markdown tables here")
    p.add_argument("--weights", help="model checkpoint for crnn methods (default: the shipped model)")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import run_bench
    from .notes import InputError, Notes

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in _BENCH_METHODS]
    if unknown or not methods:
        raise InputError(f"--methods: unknown {unknown or args.methods!r}; choose from {','.join(_BENCH_METHODS)}")
    weights = args.weights

    def align_fn(audio: Path, midi: Path, method: str) -> Notes:
        from .pipeline import align  # heavy (torch, librosa): only when a run starts

        return align(audio, midi, method=method, weights=weights).notes

    run_bench([Path(d) for d in args.case_dirs], methods, align_fn, Path(args.out), Path(args.md) if args.md else None)
    return 0
