"""MIDI files to and from Notes (pretty_midi)."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from ..config import PITCH_MAX, PITCH_MIN
from ..errors import InputError
from ..notes import Notes
from .atomic import atomic_write_bytes

log = logging.getLogger("midialign")
MAX_READ_TICKS = 50_000_000


def read_midi(path: str | Path, *, clip_range: bool = True) -> Notes:
    """Read every non-drum instrument, merged, with sustain-pedal events.

    Notes outside A0-C8 are dropped when clip_range is set (a piano cannot play them).
    """
    return read_midi_indexed(path, clip_range=clip_range)[0]


def read_midi_indexed(path: str | Path, *, clip_range: bool = True) -> tuple[Notes, np.ndarray]:
    """(read_midi(path), (n,) int: note i's row in the file), counting rows over the notes of
    the non-drum instruments in file order, as pretty_midi lists them, dropped notes included."""
    import pretty_midi

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        # pretty_midi refuses a last tick past 1e7 as "likely corrupt": an hour at 1920 ticks per
        # beat and 120 bpm passes it. Its tick-to-time table costs 8 bytes a tick, so allow 3 hours' worth.
        pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK, MAX_READ_TICKS)
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # pretty_midi raises many types on corrupt files
        raise InputError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    rows, pedal = [], []
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        rows.extend((n.start, n.end, n.pitch, n.velocity) for n in inst.notes)
        pedal.extend((c.time, c.value) for c in inst.control_changes if c.number == 64)
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    kept = np.arange(len(arr))
    if clip_range and len(arr):
        inside = (arr[:, 2] >= PITCH_MIN) & (arr[:, 2] <= PITCH_MAX)
        if inside.any() and not inside.all():
            log.warning("%s: dropped %d notes outside the piano range A0-C8 (MIDI 21-108); the CSV's input_index keeps each note's row",
                        path, int((~inside).sum()))
        arr, kept = arr[inside], kept[inside]
    if len(arr) == 0:
        raise InputError(f"{path}: MIDI contains no piano-range notes")
    arr[:, 1] = np.maximum(arr[:, 1], arr[:, 0])
    notes = Notes(arr[:, :2], arr[:, 2], arr[:, 3], np.array(pedal).reshape(-1, 2))
    return notes.sorted(), kept[notes.order()]


def notes_to_pretty_midi(notes: Notes):
    import pretty_midi

    from .midi_structure import plain_tempo_us

    # One tempo (120 bpm, slower for files over 40 min) and a fine resolution: ticks are 1/1920 beat = 0.26 ms.
    end = float(np.nanmax(np.concatenate([[0.0], notes.offsets, notes.pedal[:, 0]])))
    pm = pretty_midi.PrettyMIDI(resolution=1920, initial_tempo=6e7 / plain_tempo_us(end))
    inst = pretty_midi.Instrument(program=0, name="Piano")
    for (on, off), p, v in zip(notes.intervals, notes.pitches, notes.velocities):
        on = max(float(on), 0.0)
        off = max(float(off), on + 1e-3)
        inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=on, end=off))
    for t, val in notes.pedal:
        inst.control_changes.append(pretty_midi.ControlChange(64, int(np.clip(val, 0, 127)), max(float(t), 0.0)))
    pm.instruments.append(inst)
    return pm


def midi_bytes(notes: Notes) -> bytes:
    """A standard MIDI file of the notes and pedal (one piano track, 120 bpm)."""
    buf = io.BytesIO()
    notes_to_pretty_midi(notes).write(buf)
    return buf.getvalue()


def write_midi(notes: Notes, path: str | Path) -> None:
    atomic_write_bytes(path, midi_bytes(notes))
