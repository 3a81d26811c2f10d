"""Note tables (TSV/CSV, MAPS TSV) to and from Notes."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..notes import Notes
from .atomic import atomic_write_text


def read_note_table(path: str | Path, *, keep_order: bool = False) -> Notes:
    """Read `onset offset pitch velocity` as TSV or CSV, or the MAPS TSV (`# onset,offset,note,velocity`).

    keep_order keeps row order (and nan onsets) instead of sorting, for reference tables.
    """
    return read_note_table_indexed(path, keep_order=keep_order)[0]


def read_note_table_indexed(path: str | Path, *, keep_order: bool = False) -> tuple[Notes, np.ndarray]:
    """(read_note_table(path), (n,) int: note i's data row in the file, from 0, blank lines not counted)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not text:
        raise InputError(f"{path}: empty note table")
    header = text[0].lstrip("#").strip()
    delim = "\t" if "\t" in header or "\t" in (text[1] if len(text) > 1 else "") else ","
    cols = [c.strip().lower() for c in header.replace("\t", ",").split(",")]
    has_header = not _is_number(cols[0])
    body = text[1:] if has_header else text
    if not has_header:
        cols = ["onset", "offset", "pitch", "velocity"]
    alias = {"note": "pitch", "midi_pitch": "pitch", "start": "onset", "end": "offset"}
    cols = [alias.get(c, c) for c in cols]
    try:
        idx = [cols.index(c) for c in ("onset", "offset", "pitch")]
    except ValueError:
        raise InputError(f"{path}: note table needs columns onset, offset, pitch (got {cols})") from None
    vel_idx = cols.index("velocity") if "velocity" in cols else None
    rows = []
    for line in csv.reader(body, delimiter=delim):
        if not line or not "".join(line).strip():
            continue
        try:
            vals = [float(line[i]) for i in idx]
            vel = float(line[vel_idx]) if vel_idx is not None else 64.0
        except (ValueError, IndexError):
            raise InputError(f"{path}: malformed row {line!r}") from None
        rows.append(vals + [vel])
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    if len(arr) == 0 and not keep_order:
        raise InputError(f"{path}: note table has no notes")
    notes = Notes(arr[:, :2], arr[:, 2], arr[:, 3])
    if keep_order:
        return notes, np.arange(len(notes))
    return notes.sorted(), notes.order()


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def write_note_table(notes: Notes, path: str | Path, *, delimiter: str = "\t") -> None:
    lines = [delimiter.join(["onset", "offset", "pitch", "velocity"])]
    for (on, off), p, v in zip(notes.intervals, notes.pitches, notes.velocities):
        lines.append(delimiter.join([f"{on:.6f}", f"{off:.6f}", str(int(p)), str(int(v))]))
    atomic_write_text(path, "\n".join(lines) + "\n")
