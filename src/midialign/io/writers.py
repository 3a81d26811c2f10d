"""Everything `midialign align` can write, as one all-or-nothing set.

Formats: aligned MIDI (the input's structure, plain or with a tempo map:
io.midi_structure), per-note CSV, Sonic Visualiser note layer, match file
(partitura, score input only), JSON summary and a piano-roll picture (PNG
bytes made by midialign.plot). check_outputs() refuses a bad set before any
work; write_outputs() renders every file, then renames them all into place.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import MIDI_SUFFIXES
from ..errors import InputError
from ..notes import Notes
from .atomic import check_writable, write_all
from .score import import_partitura, is_score, score_note_ids

if TYPE_CHECKING:
    from ..alignment import Alignment
    from .midi_structure import AlignedMidi

log = logging.getLogger("midialign")

_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
OUTPUT_OPTIONS = {"midi": "-o", "csv": "--csv", "sv": "--sv", "match": "--match", "json": "--json", "plot": "--plot"}
CSV_COLUMNS = ("index", "input_index", "pitch", "velocity", "input_onset", "input_offset", "onset", "offset", "moved", "confidence")


@dataclass(frozen=True)
class OutputPaths:
    """The files to write; None skips one. Names in messages are the CLI's options."""

    midi: Path | None = None
    csv: Path | None = None
    sv: Path | None = None
    match: Path | None = None
    json: Path | None = None
    plot: Path | None = None

    def items(self) -> list[tuple[str, Path]]:
        """(CLI option, path) of every requested output."""
        return [(OUTPUT_OPTIONS[f.name], Path(getattr(self, f.name))) for f in fields(self) if getattr(self, f.name) is not None]


def check_outputs(paths: OutputPaths, *, audio: str | Path, notes: str | Path, tempo_map: bool = False) -> None:
    """Refuse a bad output set before the slow alignment runs: an output over an input,
    one path twice, a folder, an unwritable place, --match without a score input, or
    --tempo-map without beats (a note table)."""
    inputs = {Path(audio).resolve(): "audio", Path(notes).resolve(): "MIDI"}
    seen: dict[Path, str] = {}
    for opt, path in paths.items():
        real = path.resolve()
        if real in inputs:
            raise InputError(f"{path}: refusing to overwrite an input file (the {inputs[real]} given to {opt})")
        if real in seen:
            raise InputError(f"{path}: given to both {seen[real]} and {opt}")
        check_writable(path, opt)
        seen[real] = opt
    if paths.match is not None and not is_score(notes):
        raise InputError(f"{notes}: --match needs a score input (MusicXML, MEI or kern), not {Path(notes).suffix or 'a file without extension'}")
    if tempo_map and not has_beats(notes):
        raise InputError(f"{notes}: --tempo-map needs a MIDI or score input (a note table has no beats)")
    if is_score(notes):
        # Imported safely here first, so no later import tries to download a soundfont.
        import_partitura()


def has_beats(notes: str | Path) -> bool:
    """True for inputs with a beat grid (MIDI, scores), which --tempo-map needs."""
    return Path(notes).suffix.lower() in MIDI_SUFFIXES or is_score(notes)


def output_midi(result: Alignment, notes: str | Path, *, tempo_map: bool = False) -> AlignedMidi:
    """The aligned MIDI file for an input file: a MIDI's own structure, a score's parts and
    staves (io.score.score_midi), or for a note table one piano track at 120 bpm.

    tempo_map: keep the input's ticks and carry the performance in a tempo map.
    """
    from .midi import midi_bytes
    from .midi_structure import AlignedMidi, aligned_midi, read_structure

    if Path(notes).suffix.lower() in MIDI_SUFFIXES:
        return aligned_midi(read_structure(notes), result, name=str(notes), tempo_map=tempo_map)
    if is_score(notes):
        from .score import score_midi

        return aligned_midi(read_structure(score_midi(notes), name=str(notes)), result, name=str(notes), tempo_map=tempo_map, same_clock=False)
    if tempo_map:
        raise InputError(f"{notes}: --tempo-map needs a MIDI or score input (a note table has no beats)")
    return AlignedMidi(midi_bytes(result.notes), np.array([[0.0, 120.0]]), {"mode": "single_track", "n_tracks": 1, "n_tempo_events": 1})


def write_outputs(result: Alignment, paths: OutputPaths, *, audio: str | Path, notes: str | Path, plot_png: bytes | None = None,
                  midi: AlignedMidi | None = None) -> None:
    """Render every requested output, then rename them all into place (all or nothing).

    audio, notes: the input paths, recorded in the JSON and the match file.
    plot_png: the picture for paths.plot (midialign.plot.plot_png).
    midi: the aligned MIDI (output_midi); made plain from the input when None.
    """
    if midi is None and (paths.midi or paths.json):
        midi = output_midi(result, notes)
    files: dict[Path, bytes] = {}
    if paths.midi:
        files[paths.midi] = midi.data
    if paths.csv:
        files[paths.csv] = csv_text(result).encode()
    if paths.sv:
        files[paths.sv] = sv_text(result.notes).encode()
    if paths.match:
        name = paths.midi.name if paths.midi else Path(audio).name
        files[paths.match] = match_text(result.notes, notes, performance_name=name).encode()
    if paths.json:
        files[paths.json] = json_text(result, audio=audio, notes=notes, midi_report=midi.report).encode()
    if paths.plot:
        if plot_png is None:
            raise ValueError("paths.plot needs plot_png")
        files[paths.plot] = plot_png
    write_all(files)
    for opt, path in paths.items():
        log.debug("wrote %s %s", opt, path)


# ---------------------------------------------------------------- tables

def csv_text(result: Alignment) -> str:
    """One row per input note, in input order: where it was, where it went, how sure.
    input_index is the note's row in the input file (see io.reader.read_notes_indexed)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    inp, out = result.input_notes, result.notes
    for i in range(len(out)):
        w.writerow([
            i,
            int(result.input_index[i]),
            int(out.pitches[i]),
            int(out.velocities[i]),
            f"{inp.intervals[i, 0]:.6f}",
            f"{inp.intervals[i, 1]:.6f}",
            f"{out.intervals[i, 0]:.6f}",
            f"{out.intervals[i, 1]:.6f}",
            int(bool(result.moved[i])),
            f"{float(result.confidence[i]):.4f}",
        ])
    return buf.getvalue()


def note_name(pitch: int) -> str:
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def sv_text(notes: Notes) -> str:
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
    return buf.getvalue()


def json_text(result: Alignment, *, audio: str | Path | None = None, notes: str | Path | None = None,
              midi_report: dict | None = None) -> str:
    """The JSON summary; midi_report (AlignedMidi.report) goes under "midi_output"."""
    doc = {"audio": str(audio) if audio is not None else None, "midi": str(notes) if notes is not None else None}
    doc.update(result.summary())
    if midi_report is not None:
        doc["midi_output"] = midi_report
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------- match (partitura)

def match_text(notes: Notes, score_path: str | Path, *, performance_name: str | None = None) -> str:
    """A match file: aligned note i is the performance of score note i (io.score.read_score order)."""
    if not is_score(score_path):
        raise InputError(f"{score_path}: --match needs a score input (MusicXML, MEI or kern)")
    pt = import_partitura()
    part, ids, pitches = score_note_ids(score_path)
    if len(ids) != len(notes) or not np.array_equal(pitches, notes.pitches):
        raise InputError(f"{score_path}: cannot write the match file: the score's notes no longer match the aligned notes ({len(ids)} vs {len(notes)})")
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
        return "".join(line.matchline + "\n" for line in mf.lines)
    except Exception as exc:  # partitura raises many types
        raise InputError(f"{score_path}: partitura could not write the match file ({type(exc).__name__}: {exc})") from None
