"""Writers for everything `midialign align` can produce, each written atomically.

Formats: aligned MIDI (-o), per-note CSV (--csv), Sonic Visualiser note
layer (--sv), match file via partitura (--match), JSON summary (--json) and
a piano-roll picture (--plot). No writer ever writes over an input file:
check_outputs() refuses that before any work is done.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import PITCH_MAX, PITCH_MIN, FeatureConfig
from .notes import InputError, Notes, atomic_write_bytes, atomic_write_text, import_partitura, load_unfolded_score, write_midi

if TYPE_CHECKING:  # the pipeline imports heavy modules lazily; so do we
    from .pipeline import Alignment

log = logging.getLogger("midialign")

SCORE_SUFFIXES = (".musicxml", ".xml", ".mxl", ".mei", ".krn")
DEFAULT_PLOT_SPAN_S = 20.0
# (argparse dest, option) for every file-writing option of `align`.
OUTPUT_OPTIONS = (("output", "-o"), ("csv", "--csv"), ("sv", "--sv"), ("match", "--match"), ("json", "--json"), ("plot", "--plot"))
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


# ---------------------------------------------------------------- entry points

def output_paths(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(option, path) for every output the user asked for."""
    return [(opt, Path(getattr(args, dest))) for dest, opt in OUTPUT_OPTIONS if getattr(args, dest, None)]


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse bad output requests before the (slow) alignment runs."""
    inputs = {Path(args.audio).resolve(): "audio", Path(args.midi).resolve(): "MIDI"}
    seen: dict[Path, str] = {}
    for opt, path in output_paths(args):
        real = path.resolve()
        if real in inputs:
            raise InputError(f"{path}: refusing to overwrite an input file (the {inputs[real]} given to {opt})")
        if real in seen:
            raise InputError(f"{path}: given to both {seen[real]} and {opt}")
        if path.is_dir():
            raise InputError(f"{path}: is a directory ({opt} needs a file name)")
        seen[real] = opt
    if getattr(args, "match", None) and not is_score(args.midi):
        raise InputError(f"{args.midi}: --match needs a score input (MusicXML, MEI or kern), not {Path(args.midi).suffix or 'a file without extension'}")
    plot_range(args)  # validates --plot-range
    if getattr(args, "plot", None):
        _import_matplotlib()
    if is_score(args.midi):
        # notes.read_score imports partitura plainly; importing it here first,
        # safely, keeps that import from trying to download a soundfont.
        import_partitura()


def write_outputs(result: Alignment, args: argparse.Namespace) -> None:
    """Write every output named in args (see OUTPUT_OPTIONS)."""
    check_outputs(args)  # cheap; also guards callers that skipped align_cli
    if getattr(args, "output", None):
        write_midi(result.notes, args.output)
    if getattr(args, "csv", None):
        write_csv(result, args.csv)
    if getattr(args, "sv", None):
        write_sv(result.notes, args.sv)
    if getattr(args, "match", None):
        perf_name = Path(args.output).name if getattr(args, "output", None) else Path(args.audio).name
        write_match(result.notes, args.midi, args.match, performance_name=perf_name)
    if getattr(args, "json", None):
        write_json(result, args.json, audio=args.audio, midi=args.midi)
    if getattr(args, "plot", None):
        start, end = plot_range(args)
        write_plot(result, args.audio, args.plot, start, end)
    for opt, path in output_paths(args):
        log.debug("wrote %s %s", opt, path)


def is_score(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SCORE_SUFFIXES


def plot_range(args: argparse.Namespace) -> tuple[float, float]:
    rng = getattr(args, "plot_range", None)
    if rng is None:
        return 0.0, DEFAULT_PLOT_SPAN_S
    start, end = float(rng[0]), float(rng[1])
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start:
        raise InputError(f"--plot-range {rng[0]} {rng[1]}: need 0 <= START < END (seconds)")
    return start, end


# ---------------------------------------------------------------- tables

CSV_COLUMNS = ("index", "pitch", "velocity", "input_onset", "input_offset", "onset", "offset", "moved", "confidence")


def write_csv(result: Alignment, path: str | Path) -> None:
    """One row per input note, in input order: where it was, where it went, how sure."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    inp, out = result.input_notes, result.notes
    for i in range(len(out)):
        w.writerow([
            i,
            int(out.pitches[i]),
            int(out.velocities[i]),
            f"{inp.intervals[i, 0]:.6f}",
            f"{inp.intervals[i, 1]:.6f}",
            f"{out.intervals[i, 0]:.6f}",
            f"{out.intervals[i, 1]:.6f}",
            int(bool(result.moved[i])),
            f"{float(result.confidence[i]):.4f}",
        ])
    atomic_write_text(path, buf.getvalue())


def note_name(pitch: int) -> str:
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def write_sv(notes: Notes, path: str | Path) -> None:
    """A Sonic Visualiser note layer: `time,value,duration,level,label`, no header.

    This is the column order Sonic Visualiser's own note-layer CSV export uses
    and the one its CSV import offers for a note layer (File > Import
    Annotation Layer: time, value = MIDI pitch, duration, level, label).
    level is velocity / 127, as in Sonic Visualiser's MIDI import.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for i, ((on, off), p, v) in enumerate(zip(notes.intervals, notes.pitches, notes.velocities)):
        w.writerow([f"{on:.6f}", int(p), f"{max(off - on, 0.0):.6f}", f"{v / 127:.4f}", f"{note_name(int(p))} #{i}"])
    atomic_write_text(path, buf.getvalue())


def write_json(result: Alignment, path: str | Path, audio: str | Path | None = None, midi: str | Path | None = None) -> None:
    doc = {"audio": str(audio) if audio is not None else None, "midi": str(midi) if midi is not None else None}
    doc.update(result.summary())
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


# ---------------------------------------------------------------- match (partitura)

def score_note_ids(score_path: str | Path):
    """(unfolded part, note ids in the order of notes.read_score's Notes).

    Mirrors read_score: merge parts, unfold repeats maximally, keep piano
    range, sort by (onset, pitch, offset).
    """
    part, na = load_unfolded_score(score_path)
    keep = (na["pitch"] >= PITCH_MIN) & (na["pitch"] <= PITCH_MAX)
    na = na[keep]
    on = na["onset_beat"].astype(np.float64)
    off = on + np.maximum(na["duration_beat"].astype(np.float64), 1e-3)
    order = np.lexsort((off, na["pitch"], on))
    return part, na["id"][order], na["pitch"][order]


def write_match(notes: Notes, score_path: str | Path, path: str | Path, performance_name: str | None = None) -> None:
    """A match file: aligned note i is the performance of score note i."""
    if not is_score(score_path):
        raise InputError(f"{score_path}: --match needs a score input (MusicXML, MEI or kern)")
    pt = import_partitura()
    part, ids, pitches = score_note_ids(score_path)
    if len(ids) != len(notes) or not np.array_equal(pitches, notes.pitches):
        raise InputError(f"{score_path}: cannot write {path}: the score's notes no longer match the aligned notes ({len(ids)} vs {len(notes)})")
    na = np.zeros(len(notes), dtype=[("id", "U32"), ("pitch", "i4"), ("onset_sec", "f8"), ("duration_sec", "f8"), ("velocity", "i4")])
    na["id"] = [f"p{i}" for i in range(len(notes))]
    na["pitch"] = notes.pitches
    # match files store ticks; a note must not start before 0.
    na["onset_sec"] = np.maximum(notes.onsets, 0.0)
    na["duration_sec"] = np.maximum(notes.offsets - na["onset_sec"], 1e-3)
    na["velocity"] = notes.velocities
    try:
        ppart = pt.performance.PerformedPart.from_note_array(na)
        ppart.controls = [
            {"number": 64, "value": int(np.clip(v, 0, 127)), "time": max(float(t), 0.0), "track": 0, "channel": 1}
            for t, v in notes.pedal
        ]
        alignment = [{"label": "match", "score_id": str(s), "performance_id": f"p{i}"} for i, s in enumerate(ids)]
        mf = pt.io.exportmatch.save_match(
            alignment, pt.performance.Performance(ppart), part, out=None,
            score_filename=Path(score_path).name, performance_filename=performance_name,
        )
        text = "".join(line.matchline + "\n" for line in mf.lines)
    except Exception as exc:
        raise RuntimeError(f"{path}: partitura could not write the match file ({type(exc).__name__}: {exc})") from None
    atomic_write_text(path, text)


# ---------------------------------------------------------------- plot

def _import_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plot needs matplotlib (pip install 'midialign[plot]')") from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def write_plot(result: Alignment, audio: str | Path | tuple[np.ndarray, int], path: str | Path, start: float = 0.0, end: float = DEFAULT_PLOT_SPAN_S, feature_cfg: FeatureConfig = FeatureConfig()) -> None:
    """Piano roll over [start, end) s: CQT behind, input notes outlined, aligned notes filled.

    Low-confidence notes (network methods only: for none/dtw confidence
    carries no information) are marked with a red x at their aligned onset.
    """
    plt = _import_matplotlib()
    from matplotlib.patches import Rectangle

    from .features import check_audio, compute_features, load_audio, prepare_audio

    sr = feature_cfg.sample_rate
    if isinstance(audio, tuple):
        y = check_audio(prepare_audio(audio[0], int(audio[1]), sr), sr)
    else:
        y = load_audio(audio, sr)
    end = min(end, max(len(y) / sr, start + 1.0 / feature_cfg.fps))
    seg = y[int(start * sr):int(np.ceil(end * sr))]
    feats = compute_features(seg, feature_cfg) if len(seg) >= feature_cfg.hop_length else np.zeros((feature_cfg.n_bins, 1), np.float32)

    inp, out = result.input_notes, result.notes
    pitches = out.pitches
    visible = ((inp.offsets > start) & (inp.onsets < end)) | ((out.offsets > start) & (out.onsets < end))
    lo = int(pitches[visible].min()) - 3 if visible.any() else PITCH_MIN
    hi = int(pitches[visible].max()) + 3 if visible.any() else PITCH_MAX
    lo, hi = max(lo, PITCH_MIN), min(hi, PITCH_MAX)

    fig, ax = plt.subplots(figsize=(min(4 + 0.6 * (end - start), 24), 6), dpi=110)
    try:
        # Feature bin k is MIDI pitch 21 + k (12 bins/octave from A0).
        ax.imshow(feats, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                  extent=(start - 0.5 / feature_cfg.fps, start + (feats.shape[1] - 0.5) / feature_cfg.fps, PITCH_MIN - 0.5, PITCH_MIN + feats.shape[0] - 0.5))
        for i in np.flatnonzero(visible):
            p = float(pitches[i])
            ion, ioff = inp.intervals[i]
            aon, aoff = out.intervals[i]
            ax.add_patch(Rectangle((ion, p - 0.4), max(ioff - ion, 0.01), 0.8, fill=False, edgecolor="tab:blue", linewidth=0.9))
            ax.add_patch(Rectangle((aon, p - 0.3), max(aoff - aon, 0.01), 0.6, facecolor="tab:orange", alpha=0.65, edgecolor="none"))
        low = visible & result.low_confidence if "crnn" in result.method else np.zeros(len(out), bool)
        if low.any():
            ax.plot(out.onsets[low], pitches[low], "x", color="red", markersize=6, label="low confidence")
        ax.plot([], [], "s", markerfacecolor="none", markeredgecolor="tab:blue", label="input")
        ax.plot([], [], "s", color="tab:orange", label=f"aligned ({result.method})")
        ax.set_xlim(start, end)
        ax.set_ylim(lo - 0.5, hi + 0.5)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("MIDI pitch")
        ax.set_title(f"{len(out)} notes, {result.share_moved:.0%} moved by the network" if "crnn" in result.method else f"{len(out)} notes ({result.method})")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
