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


def load_unfolded_score(path: str | Path):
    """(partitura part with parts merged and repeats unfolded maximally, its note array)."""
    pt = import_partitura()
    try:
        if str(path).lower().endswith(".gz"):
            with gzip.open(path) as xml:
                score = pt.load_musicxml(xml)
        else:
            score = pt.load_score(str(path))
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
