"""read_notes: any supported note file, chosen by its suffix."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import MIDI_SUFFIXES, TABLE_SUFFIXES
from ..errors import InputError
from ..notes import Notes
from .score import is_score


def read_notes(path: str | Path) -> Notes:
    """Read notes from a MIDI file, a note table (TSV/CSV) or a score, by suffix."""
    return read_notes_indexed(path)[0]


def read_notes_indexed(path: str | Path) -> tuple[Notes, np.ndarray]:
    """(read_notes(path), (n,) int: note i's row in the file), so that a note can be traced back to
    its row even when the reader sorted the notes or dropped some (out of the piano's range)."""
    suffix = Path(path).suffix.lower()
    if suffix in MIDI_SUFFIXES:
        from .midi import read_midi_indexed

        return read_midi_indexed(path)
    if suffix in TABLE_SUFFIXES:
        from .table import read_note_table_indexed

        return read_note_table_indexed(path)
    if is_score(path):
        from .score import read_score_indexed

        return read_score_indexed(path)
    raise InputError(f"{path}: unsupported note file type {suffix!r} (use .mid, .tsv, .csv or a score: .musicxml, .mxl, .musicxml.gz, .mei, .krn)")
