"""Scores (MusicXML, also .mxl and .musicxml.gz; MEI; kern) through partitura: their notes, and the ids that name them."""
from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np

from ..config import PITCH_MAX, PITCH_MIN, SCORE_SUFFIXES
from ..errors import InputError
from ..notes import Notes


def _load_score(pt, path: str | Path):
    """partitura's Score of a file; gzipped MusicXML is unpacked first (partitura refuses .gz)."""
    if str(path).lower().endswith(".gz"):
        with gzip.open(path) as xml:
            return pt.load_musicxml(xml)
    return pt.load_score(str(path))


def load_unfolded_score(path: str | Path):
    """(partitura part with parts merged and repeats unfolded maximally, its note array)."""
    pt = import_partitura()
    try:
        score = _load_score(pt, path)
        part = pt.score.unfold_part_maximal(pt.score.merge_parts(score.parts))
        return part, part.note_array()
    except Exception as exc:
        raise InputError(f"{path}: not a readable score ({type(exc).__name__}: {exc})") from None


def is_score(path: str | Path) -> bool:
    """True for the score files partitura reads, by suffix (double ones such as .musicxml.gz included)."""
    return Path(path).name.lower().endswith(SCORE_SUFFIXES)


def _piano_notes(path: str | Path):
    """(unfolded part, its note array restricted to A0-C8 in Notes order: (onset, pitch, offset),
    each of those notes' row in the unfolded note array)."""
    part, na = load_unfolded_score(path)
    kept = np.flatnonzero((na["pitch"] >= PITCH_MIN) & (na["pitch"] <= PITCH_MAX))
    if not len(kept):
        raise InputError(f"{path}: score contains no piano-range notes")
    na = na[kept]
    on = na["onset_beat"].astype(np.float64)
    off = on + np.maximum(na["duration_beat"].astype(np.float64), 1e-3)
    order = np.lexsort((off, na["pitch"], on))
    return part, na[order], kept[order]


def read_score(path: str | Path, *, tempo_bpm: float = 100.0) -> Notes:
    """Notes of a MusicXML/MEI/kern score (partitura, optional): parts merged, repeats unfolded,
    beats played at tempo_bpm from time 0 s."""
    return read_score_indexed(path, tempo_bpm=tempo_bpm)[0]


def read_score_indexed(path: str | Path, *, tempo_bpm: float = 100.0) -> tuple[Notes, np.ndarray]:
    """(read_score(path), (n,) int: note i's row in partitura's note array of the unfolded score)."""
    _, na, rows = _piano_notes(path)
    sec_per_beat = 60.0 / tempo_bpm
    on = (na["onset_beat"] - na["onset_beat"].min()) * sec_per_beat
    off = on + np.maximum(na["duration_beat"], 1e-3) * sec_per_beat
    return Notes(np.stack([on, off], 1), na["pitch"], np.full(len(na), 64)), rows


def score_note_ids(path: str | Path):
    """(unfolded part, (n,) note ids, (n,) pitches), note i being note i of read_score(path)."""
    part, na, _ = _piano_notes(path)
    return part, na["id"], na["pitch"]


def import_partitura():
    """Import partitura (optional), without its import-time soundfont download.

    partitura >= 1.5 downloads a soundfont when pyfluidsynth is importable and
    the soundfont is missing, which fails (or hangs) offline. Hiding
    fluidsynth during that import skips the download; we never synthesise
    through partitura.
    """
    if "partitura" in sys.modules:
        return sys.modules["partitura"]
    spec = importlib.util.find_spec("partitura")
    if spec is None:
        raise InputError("partitura is not installed (pip install partitura): it is needed for scores and match files")
    hide = not _partitura_soundfont_present(spec)
    # pretty_midi may already have imported fluidsynth: hide it anyway, then put it back.
    saved = sys.modules.get("fluidsynth", _MISSING)
    if hide:
        sys.modules["fluidsynth"] = None  # type: ignore[assignment]  # makes `import fluidsynth` raise ImportError
    try:
        import partitura
    finally:
        if hide:
            if saved is _MISSING:
                del sys.modules["fluidsynth"]
            else:
                sys.modules["fluidsynth"] = saved
    return partitura


_MISSING = object()


def _partitura_soundfont_present(spec) -> bool:
    roots = list(spec.submodule_search_locations or [])
    return any((Path(r) / "assets" / "MuseScore_General.sf3").exists() for r in roots)


# Key names mido writes, by number of sharps (negative: flats) + 7.
_MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
_MINOR_KEYS = ("Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m", "C#m", "G#m", "D#m", "A#m")
SCORE_MIDI_TICKS_FALLBACK = 960


def score_midi(path: str | Path):
    """The score as a mido.MidiFile on its own beat grid, repeats unfolded as read_score unfolds them.

    Track 0 holds the time and key signatures, one time signature per change of bar
    length (a pickup bar of one beat in 4/4 gets 1/4, as a notation program writes it),
    so the file has the score's bars. Then one track per part and staff, named after
    them, on a channel per part. Ticks per beat are the least common multiple of the
    parts' divisions per quarter note, so every onset is an exact tick.
    """
    import math

    import mido

    pt = import_partitura()
    try:
        parts = [pt.score.unfold_part_maximal(p) for p in _load_score(pt, path).parts]
        arrays = [p.note_array(include_staff=True) for p in parts]
    except Exception as exc:
        raise InputError(f"{path}: not a readable score ({type(exc).__name__}: {exc})") from None
    divs = [int(d) for p in parts for d in np.asarray(p.quarter_durations())[:, 1]]
    tpb = math.lcm(*divs) if divs else SCORE_MIDI_TICKS_FALLBACK
    if tpb > 0x7FFF:
        tpb = SCORE_MIDI_TICKS_FALLBACK
    first = parts[0]
    # A pickup bar starts before quarter 0: the file starts with it.
    origin = min(float(first.quarter_map(m.start.t)) for m in first.iter_all(pt.score.Measure)) if first.measures else 0.0
    to_tick = lambda quarters: int(round((float(quarters) - origin) * tpb))

    conductor = [(0, mido.MetaMessage("track_name", name=Path(path).stem))]
    bar_sig = None
    for m in first.iter_all(pt.score.Measure):
        start, end = first.quarter_map(m.start.t), first.quarter_map(m.end.t)
        beats, beat_type, _ = first.time_signature_map(m.start.t)
        numerator = (float(end) - float(start)) * int(beat_type) / 4
        sig = (int(round(numerator)), int(beat_type)) if abs(numerator - round(numerator)) < 1e-6 and round(numerator) >= 1 else (int(beats), int(beat_type))
        if sig != bar_sig:
            conductor.append((to_tick(start), mido.MetaMessage("time_signature", numerator=sig[0], denominator=sig[1])))
            bar_sig = sig
    for ks in first.iter_all(pt.score.KeySignature):
        names = _MINOR_KEYS if ks.mode == "minor" else _MAJOR_KEYS
        conductor.append((to_tick(first.quarter_map(ks.start.t)), mido.MetaMessage("key_signature", key=names[int(np.clip(ks.fifths, -7, 7)) + 7])))

    mf = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mf.tracks.append(_track(conductor))
    for pi, (part, na) in enumerate(zip(parts, arrays)):
        channel = pi % 15 + (pi % 15 >= 9)  # skip the drum channel
        for staff in np.unique(na["staff"]):
            rows = na[na["staff"] == staff]
            label = part.part_name or part.id
            events = [(0, mido.MetaMessage("track_name", name=f"{label} staff {int(staff)}" if len(np.unique(na["staff"])) > 1 else label)),
                      (0, mido.Message("program_change", channel=channel, program=0))]
            for on, dur, p in zip(rows["onset_quarter"], rows["duration_quarter"], rows["pitch"]):
                t_on = to_tick(on)
                events.append((t_on, mido.Message("note_on", channel=channel, note=int(p), velocity=64)))
                events.append((max(to_tick(on + dur), t_on + 1), mido.Message("note_off", channel=channel, note=int(p), velocity=0)))
            mf.tracks.append(_track(events))
    return mf


def _track(events: list):
    """A mido track of (absolute tick, message), note-offs before other events at one tick."""
    import mido

    trk = mido.MidiTrack()
    now = 0
    for t, msg in sorted(events, key=lambda r: (r[0], r[1].type not in ("note_off", "track_name"))):
        trk.append(msg.copy(time=t - now))
        now = t
    trk.append(mido.MetaMessage("end_of_track", time=0))
    return trk
