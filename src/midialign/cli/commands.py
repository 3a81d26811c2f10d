"""Subcommands of the `midialign` CLI. Keep module-level imports light (no torch/librosa)."""
from __future__ import annotations

import argparse
import logging

from ..config import DEFAULT_METHOD, METHODS

log = logging.getLogger("midialign")


def register_cli(sub: argparse._SubParsersAction) -> None:
    _register_align(sub)
    _register_make_cases(sub)
    _register_make_dataset(sub)
    _register_train(sub)
    _register_evaluate(sub)
    _register_bench(sub)
    _register_batch(sub)
    # -- other subcommands register below (one function each) --


# ---------------------------------------------------------------- align

def _register_align(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="align a MIDI (or score / note table) to a piano recording")
    p.add_argument("audio", help="recording: wav, flac, ogg, mp3, ...")
    p.add_argument("midi", help="MIDI, note table (.tsv/.csv) or score (.musicxml, .mxl, .musicxml.gz, .mei, .krn)")
    p.add_argument("-o", "--output", required=True, help="aligned MIDI to write")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS, help=f"default: {DEFAULT_METHOD}")
    p.add_argument("--csv", help="also write a per-note CSV table")
    p.add_argument("--sv", metavar="CSV", help="also write a Sonic Visualiser note layer (time,value,duration,level,label)")
    p.add_argument("--match", metavar="FILE", help="also write a match file (needs a score input and partitura)")
    p.add_argument("--json", metavar="FILE", help="also write a JSON summary (method, timings, share moved, low-confidence notes)")
    p.add_argument("--tempo-map", action="store_true",
                   help="keep the input's ticks, bars and beats and carry the performance in a tempo map (notes off the beat map move by "
                        "ticks; every note plays within 1 ms of its aligned time). Use it for score input (MusicXML/MEI/kern or a score MIDI) "
                        "and to open the result in a DAW or notation program; without it the MIDI keeps the input's tracks at one tempo")
    p.add_argument("--plot", metavar="PNG", help="also draw a piano-roll overlay and, for MIDI or score input, the local tempo (needs matplotlib)")
    p.add_argument("--plot-range", nargs=2, type=float, metavar=("START", "END"), help="plot window in seconds (default: 0 20)")
    p.add_argument("--weights", help="model checkpoint (default: the shipped model)")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 3, writing nothing, when the recording does not seem to match the notes "
                        "(a low match score, or a transposed MIDI); without it that is a warning")
    p.add_argument("--offsets", default="roll", choices=["roll", "input"],
                   help="where offsets come from: the network's frame roll near the input's offset (default), or the input (after DTW with dtw+crnn)")
    p.set_defaults(func=_run_align)


def _run_align(args: argparse.Namespace) -> int:
    """Check every output, align, then write all outputs at once; never over an input."""
    from pathlib import Path

    from ..io.writers import OutputPaths, check_outputs, has_beats, output_midi, write_outputs

    opt = lambda value: Path(value) if value else None
    paths = OutputPaths(midi=opt(args.output), csv=opt(args.csv), sv=opt(args.sv), match=opt(args.match), json=opt(args.json), plot=opt(args.plot))
    check_outputs(paths, audio=args.audio, notes=args.midi, tempo_map=args.tempo_map)
    from ..plot import DEFAULT_PLOT_SPAN_S, check_plot_range, import_matplotlib

    plot_range = check_plot_range(*args.plot_range) if args.plot_range else (0.0, DEFAULT_PLOT_SPAN_S)
    if args.plot:
        import_matplotlib()

    from ..aligner import Aligner
    from ..config import InferenceConfig
    from .running import StageBar, library_warnings_to_debug, run_interruptibly

    aligner = Aligner(args.weights, inference=InferenceConfig(offsets=args.offsets))
    bar = StageBar(enabled=log.isEnabledFor(logging.INFO))
    try:
        with library_warnings_to_debug():
            result = run_interruptibly(lambda: aligner.align(args.audio, args.midi, method=args.method, progress=bar))
    finally:
        bar.close()
    problem = aligner.mismatch(result) if args.strict else None
    if problem is not None:
        log.error("%s: does not match %s: %s; nothing written (--strict)", args.audio, args.midi, problem)
        return 3
    midi = output_midi(result, args.midi, tempo_map=args.tempo_map)
    png = None
    if args.plot:
        from ..plot import plot_png

        tempo = None
        if has_beats(args.midi):
            tempo = midi.tempo if args.tempo_map else output_midi(result, args.midi, tempo_map=True).tempo
        png = plot_png(result, args.audio, start=plot_range[0], end=plot_range[1], tempo=tempo)
    write_outputs(result, paths, audio=args.audio, notes=args.midi, plot_png=png, midi=midi)
    match = f", match score {result.match_score:.2f}" if result.match_score == result.match_score else ""  # NaN: not measured
    log.info("aligned %d notes with %s in %.2f s (%.0f%% moved%s) -> %s", len(result.notes), result.method,
             result.timings.get("total", 0.0), 100 * result.share_moved, match, args.output)
    if args.tempo_map:
        log.info("tempo map: %d tempo events; %d of %d notes moved off their input ticks", midi.report["n_tempo_events"],
                 midi.report["n_off_grid"], midi.report["n_notes"])
    return 0


# ---------------------------------------------------------------- make-dataset / train

def _register_make_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-dataset", help="build training features: MAPS audio, and/or the rendered corpus ((n)ASAP + MAPS MIDI in many timbres and rooms)")
    p.add_argument("--maps", help="MAPS root (with manifest.csv and reserved_pieces.txt)")
    p.add_argument("--out", default="cache", help="cache directory (default: cache)")
    p.add_argument("--splits", default="train,val", help="MAPS audio splits to cache (empty: none)")
    p.add_argument("--asap", help="(n)ASAP root: render its training performances into OUT/rendered")
    p.add_argument("--asap-exclude", help="validation performances whose pieces stay out of training "
                   "(default: cases/asap_score/used_performances.txt, which must exist)")
    p.add_argument("--asap-count", type=int, help="render only this many (n)ASAP performances, spread over pieces (default: all)")
    p.add_argument("--render-maps", action="store_true", help="also render the MAPS train note tables into OUT/rendered")
    p.add_argument("--timbres", help="comma-separated training timbres (default: every installed one)")
    p.add_argument("--timbres-per-source", type=int, help="render each piece in this many of the timbres, in turn (default: all)")
    p.add_argument("--max-s", type=float, help="render at most this much of each piece (default: all of it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.set_defaults(func=_run_make_dataset)


def _run_make_dataset(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..config import FeatureConfig
    from ..errors import InputError
    from ..training.data import build_cache, build_rendered_corpus, maps_pieces, render_sources

    if args.maps is None and args.asap is None:
        raise InputError("give --maps and/or --asap")
    if args.render_maps and args.maps is None:
        raise InputError("--render-maps needs --maps")
    if args.asap or args.render_maps:
        from ..training.render import TRAIN_TIMBRES, training_timbres

        exclude = None
        if args.asap:
            exclude = Path(args.asap_exclude or "cases/asap_score/used_performances.txt")
            if not exclude.is_file():
                raise InputError(f"{exclude}: list of validation performances not found; give --asap-exclude "
                                 "(make-cases writes it) so their pieces stay out of training")
        timbres = tuple(t.strip() for t in args.timbres.split(",")) if args.timbres else tuple(training_timbres(TRAIN_TIMBRES))
        if not timbres:
            raise InputError("no training timbre is installed (see docs/training.md, Data at scale)")
        t0 = time.time()
        sources = render_sources(asap_root=args.asap, exclude_file=exclude, maps_root=args.maps if args.render_maps else None,
                                 asap_count=args.asap_count, seed=args.seed)
        manifest = build_rendered_corpus(sources, timbres, Path(args.out) / "rendered", FeatureConfig(), seed=args.seed,
                                         max_s=args.max_s, timbres_per_source=args.timbres_per_source, jobs=args.jobs)
        for name, t in manifest["summary"].items():
            log.info("rendered %s: %d recordings, %.2f h, %.1f s of audio per s", name, t["recordings"], t["hours"], t["audio_s_per_s"])
        log.info("rendered corpus: %d recordings in %.0f s", len(manifest["recordings"]), time.time() - t0)
    for split in (s for s in args.splits.split(",") if s and args.maps):
        t0 = time.time()
        manifest = build_cache(maps_pieces(args.maps, split), Path(args.out) / f"maps_{split}", FeatureConfig(), jobs=args.jobs)
        recs = manifest["recordings"]
        hours = sum(r["duration_s"] for r in recs) / 3600
        log.info("maps_%s: %d recordings, %.2f h, %d notes, %.0f s", split, len(recs), hours, sum(r["n_notes"] for r in recs), time.time() - t0)
    return 0


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the CRNN refiner on a feature cache (resumable)")
    p.add_argument("--recipe", default="default", help="named recipe: frames, onsets, room, default (the shipped model's four stages) or tiny")
    p.add_argument("--cache", nargs="+", default=["cache/maps_train"], help="training cache dirs")
    p.add_argument("--val-cache", nargs="*", default=["cache/maps_val"], help="validation cache dirs")
    p.add_argument("--out", default="runs/default", help="run directory (checkpoints, log.csv)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    p.add_argument("--max-minutes", type=float, help="override the recipe's training-time budget")
    p.add_argument("--max-epochs", type=int, help="override the recipe's epoch limit")
    p.add_argument("--init", help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--lr", type=float, help="override the recipe's initial learning rate")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..training.train import RECIPES, train

    if args.recipe not in RECIPES:
        raise ValueError(f"unknown recipe {args.recipe!r}; choose from {sorted(RECIPES)}")
    from dataclasses import replace

    recipe = RECIPES[args.recipe]
    if args.max_minutes is not None:
        recipe = replace(recipe, train=replace(recipe.train, max_minutes=args.max_minutes))
    if args.lr is not None:
        recipe = replace(recipe, train=replace(recipe.train, lr=args.lr))
    if args.max_epochs is not None:
        recipe = replace(recipe, train=replace(recipe.train, max_epochs=args.max_epochs))
    result = train([Path(c) for c in args.cache], [Path(c) for c in args.val_cache], Path(args.out), recipe, args.device, resume=not args.restart, init=Path(args.init) if args.init else None)
    log.info("trained %d epochs in %.1f min, best val loss %.4f; weights in %s/best.pt", result["epochs"], result["minutes"], result["best_val_loss"], args.out)
    return 0


# ---------------------------------------------------------------- evaluate

def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score an aligned MIDI against an evaluation case's reference, or against a reference note table")
    p.add_argument("case_dir", nargs="?", help="case folder: audio.*, input.mid, reference.tsv, meta.json (or give --reference)")
    p.add_argument("estimate", help="aligned MIDI (or note table) to score")
    p.add_argument("--reference", metavar="REF.tsv",
                   help="note table (onset offset pitch [velocity]) instead of a case folder: row i is the true timing of note i, a nan onset is not scored; "
                        "an estimate with other notes is paired by pitch and onset")
    p.add_argument("--json", dest="json_out", help="also write the scores as JSON")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..errors import InputError
    from ..evaluation.metrics import estimate_errors, format_scores, score_errors
    from ..io.atomic import atomic_write_text, check_writable
    from ..io.reader import read_notes

    if (args.case_dir is None) == (args.reference is None):
        raise InputError("give either a case folder or --reference REF.tsv (not both)")
    if args.json_out:
        check_writable(Path(args.json_out), "--json")
    if args.reference:
        from ..io.table import read_note_table

        reference = read_note_table(args.reference, keep_order=True)
        scores = score_errors(estimate_errors(reference, read_notes(args.estimate)))
        source = {"reference": str(args.reference)}
        print(f"reference {args.reference}: {args.estimate}")
    else:
        from ..evaluation.cases import load_case, score_case

        case = load_case(args.case_dir)
        scores = score_case(case, read_notes(args.estimate))
        source = {"case": case.name}
        print(f"case {case.name}: {args.estimate}")
    print(format_scores(scores))
    if args.json_out:
        doc = {**source, "estimate": str(args.estimate), "scores": scores.to_dict()}
        atomic_write_text(args.json_out, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return 0


# ---------------------------------------------------------------- bench

def _register_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run alignment methods over case sets and tabulate the scores")
    p.add_argument("case_dirs", nargs="+", metavar="CASES_DIR", help="folder of case folders (or one case folder)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated; default: all of " + ",".join(METHODS))
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--md", help="also write the Markdown tables here")
    p.add_argument("--weights", help="model checkpoint for crnn methods (default: the shipped model)")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..evaluation.bench import run_bench

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"--methods: unknown {unknown or args.methods!r}; choose from {','.join(METHODS)}")
    from ..aligner import Aligner

    aligner = Aligner(args.weights)
    run_bench([Path(d) for d in args.case_dirs], methods=methods, align_fn=lambda audio, midi, method: aligner.align(audio, midi, method=method).notes,
              out_json=Path(args.out), out_md=Path(args.md) if args.md else None)
    return 0


# ---------------------------------------------------------------- batch

def _register_batch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="align many (audio, MIDI) pairs; resumable, parallel")
    p.add_argument("pairs", metavar="PAIRS.csv|DIR", help="CSV with columns audio,midi[,name] (paths relative to it), or a folder of audio files with same-stem MIDIs")
    p.add_argument("--out", required=True, help="output folder: <name>.mid, <name>.json, batch_summary.csv")
    p.add_argument("--jobs", type=int, default=1, help="parallel workers (default: 1)")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS, help=f"default: {DEFAULT_METHOD}")
    p.add_argument("--weights", help="model checkpoint (default: the shipped model)")
    p.add_argument("--executor", default="local", choices=["local", "ray"], help="local processes (default) or Ray (optional extra)")
    p.set_defaults(func=_run_batch)


def _run_batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .batch import SUMMARY_NAME, BatchConfig, find_pairs, format_table, run_batch

    pairs = find_pairs(args.pairs)
    cfg = BatchConfig(out_dir=Path(args.out), method=args.method, weights=Path(args.weights) if args.weights else None,
                      jobs=args.jobs, executor=args.executor, progress=not args.quiet)
    results = run_batch(pairs, cfg)
    if not args.quiet:
        print(format_table(results))  # the table the user asked for, on stdout
    failed = [r for r in results if r.status == "failed"]
    if failed:
        log.error("%d of %d pairs failed (see %s)", len(failed), len(results), Path(args.out) / SUMMARY_NAME)
        return 1
    return 0


# ---------------------------------------------------------------- make-cases

def _register_make_cases(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-cases", help="build validation case folders (audio, input.mid, reference.tsv, meta.json)")
    p.add_argument("--maps", help="MAPS root (with manifest.csv and reserved_pieces.txt)")
    p.add_argument("--asap", help="(n)ASAP root (with metadata.csv)")
    p.add_argument("--out", required=True, help="output folder; finished cases are skipped")
    p.add_argument("--sets", default="maps_am_jitter50,maps_am_jitter100,maps_am_tempo,asap_score",
                   help="comma-separated case sets (default: all four)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--asap-count", type=int, default=30, help="number of (n)ASAP performances (default 30)")
    p.set_defaults(func=_run_make_cases)


def _run_make_cases(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..evaluation.make_cases import make_cases, summarize

    sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
    t0 = time.time()
    result = make_cases(Path(args.out), maps_root=Path(args.maps) if args.maps else None, asap_root=Path(args.asap) if args.asap else None,
                        sets=sets, seed=args.seed, asap_count=args.asap_count)
    print(summarize(result))
    log.info("done in %.0f s", time.time() - t0)
    return 0
