"""read_notes: any supported note file, chosen by its suffix."""
from __future__ import annotations

from pathlib import Path

from ..config import MIDI_SUFFIXES, SCORE_SUFFIXES, TABLE_SUFFIXES
from ..errors import InputError
from ..notes import Notes


def read_notes(path: str | Path) -> Notes:
    """Read notes from a MIDI file, a note table (TSV/CSV) or a score, by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in MIDI_SUFFIXES:
        from .midi import read_midi

        return read_midi(path)
    if suffix in TABLE_SUFFIXES:
        from .table import read_note_table

        return read_note_table(path)
    if suffix in SCORE_SUFFIXES:
        from .score import read_score

        return read_score(path)
    raise InputError(f"{path}: unsupported note file type {suffix!r} (use .mid, .tsv, .csv or a score file)")
