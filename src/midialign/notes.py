"""The note list: one in-memory representation, MIDI and TSV/CSV I/O.

Notes are kept sorted by (onset, pitch, offset). An aligner changes times
only: output note i is input note i with new onset/offset.
"""
from __future__ import annotations

import csv
import importlib.util
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import PITCH_MAX, PITCH_MIN

log = logging.getLogger("midialign")


class InputError(ValueError):
    """A bad user input; the CLI prints it as one line."""


@dataclass(frozen=True)
class Notes:
    """Notes in seconds. intervals is (n, 2) [onset, offset]; pitches are MIDI 21-108.

    pedal is (m, 2) [time s, CC64 value 0-127], sorted by time.
    """

    intervals: np.ndarray
    pitches: np.ndarray
    velocities: np.ndarray
    pedal: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def __post_init__(self) -> None:
        iv = np.asarray(self.intervals, dtype=np.float64).reshape(-1, 2)
        p = np.asarray(self.pitches).astype(np.int64).reshape(-1)
        v = np.asarray(self.velocities).astype(np.int64).reshape(-1)
        ped = np.asarray(self.pedal, dtype=np.float64).reshape(-1, 2)
        if not (len(iv) == len(p) == len(v)):
            raise ValueError(f"intervals ({len(iv)}), pitches ({len(p)}) and velocities ({len(v)}) differ in length")
        if len(p) and (p.min() < PITCH_MIN or p.max() > PITCH_MAX):
            raise ValueError(f"pitches must lie in {PITCH_MIN}-{PITCH_MAX}, got {p.min()}-{p.max()}")
        finite = np.isfinite(iv).all(axis=1)
        if np.any(iv[finite, 1] < iv[finite, 0]):
            raise ValueError("a note ends before it starts (offset < onset)")
        object.__setattr__(self, "intervals", iv)
        object.__setattr__(self, "pitches", p)
        object.__setattr__(self, "velocities", np.clip(v, 1, 127))
        object.__setattr__(self, "pedal", ped[np.argsort(ped[:, 0], kind="stable")] if len(ped) else ped)

    def __len__(self) -> int:
        return len(self.pitches)

    @property
    def onsets(self) -> np.ndarray:
        return self.intervals[:, 0]

    @property
    def offsets(self) -> np.ndarray:
        return self.intervals[:, 1]

    @property
    def end_time(self) -> float:
        t = self.intervals[np.isfinite(self.intervals)]
        return float(t.max()) if t.size else 0.0

    def order(self) -> np.ndarray:
        """Indices that put notes into the canonical (onset, pitch, offset) order."""
        return np.lexsort((self.offsets, self.pitches, self.onsets))

    def sorted(self) -> "Notes":
        idx = self.order()
        return Notes(self.intervals[idx], self.pitches[idx], self.velocities[idx], self.pedal)

    def with_times(self, intervals: np.ndarray, pedal: np.ndarray | None = None) -> "Notes":
        """Same notes (same count, pitch, velocity, order) at new times."""
        intervals = np.asarray(intervals, dtype=np.float64)
        if intervals.shape != self.intervals.shape:
            raise ValueError(f"new intervals have shape {intervals.shape}, expected {self.intervals.shape}")
        return Notes(intervals, self.pitches, self.velocities, self.pedal if pedal is None else pedal)

    def subset(self, mask: np.ndarray) -> "Notes":
        return Notes(self.intervals[mask], self.pitches[mask], self.velocities[mask], self.pedal)

    def shifted(self, seconds: float) -> "Notes":
        ped = self.pedal.copy()
        ped[:, 0] += seconds
        return Notes(self.intervals + seconds, self.pitches, self.velocities, ped)


def same_identity(a: Notes, b: Notes) -> bool:
    """True when b is a re-timing of a: same count, pitches and velocities, index by index."""
    return len(a) == len(b) and np.array_equal(a.pitches, b.pitches) and np.array_equal(a.velocities, b.velocities)


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside the target, then rename over it."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes 0600 files; give the output the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------- MIDI

def read_midi(path: str | Path, clip_range: bool = True) -> Notes:
    """Read every non-drum instrument, merged, with sustain-pedal events.

    Notes outside A0-C8 are dropped when clip_range is set (a piano cannot play them).
    """
    import pretty_midi

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
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
    if clip_range and len(arr):
        inside = (arr[:, 2] >= PITCH_MIN) & (arr[:, 2] <= PITCH_MAX)
        if inside.any() and not inside.all():
            log.warning("%s: dropped %d notes outside the piano range A0-C8 (MIDI 21-108)", path, int((~inside).sum()))
        arr = arr[inside]
    if len(arr) == 0:
        raise InputError(f"{path}: MIDI contains no piano-range notes")
    arr[:, 1] = np.maximum(arr[:, 1], arr[:, 0])
    return Notes(arr[:, :2], arr[:, 2], arr[:, 3], np.array(pedal).reshape(-1, 2)).sorted()


def notes_to_pretty_midi(notes: Notes):
    import pretty_midi

    # One tempo (120 bpm) and a fine resolution: ticks are 1/1920 beat = 0.26 ms.
    pm = pretty_midi.PrettyMIDI(resolution=1920, initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=0, name="Piano")
    for (on, off), p, v in zip(notes.intervals, notes.pitches, notes.velocities):
        on = max(float(on), 0.0)
        off = max(float(off), on + 1e-3)
        inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=on, end=off))
    for t, val in notes.pedal:
        inst.control_changes.append(pretty_midi.ControlChange(64, int(np.clip(val, 0, 127)), max(float(t), 0.0)))
    pm.instruments.append(inst)
    return pm


def write_midi(notes: Notes, path: str | Path) -> None:
    import io

    buf = io.BytesIO()
    notes_to_pretty_midi(notes).write(buf)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------- TSV / CSV

def read_note_table(path: str | Path, keep_order: bool = False) -> Notes:
    """Read `onset offset pitch velocity` as TSV or CSV, or the MAPS TSV (`# onset,offset,note,velocity`).

    keep_order keeps row order (and nan onsets) instead of sorting, for reference tables.
    """
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
    return notes if keep_order else notes.sorted()


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def write_note_table(notes: Notes, path: str | Path, delimiter: str = "\t") -> None:
    lines = [delimiter.join(["onset", "offset", "pitch", "velocity"])]
    for (on, off), p, v in zip(notes.intervals, notes.pitches, notes.velocities):
        lines.append(delimiter.join([f"{on:.6f}", f"{off:.6f}", str(int(p)), str(int(v))]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_notes(path: str | Path) -> Notes:
    """Read notes from MIDI, TSV or CSV, by extension."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mid", ".midi", ".kar"):
        return read_midi(path)
    if suffix in (".tsv", ".csv", ".txt"):
        return read_note_table(path)
    if suffix in (".musicxml", ".xml", ".mxl", ".mei", ".krn"):
        return read_score(path)
    raise InputError(f"{path}: unsupported note file type {suffix!r} (use .mid, .tsv, .csv or a score file)")


def load_unfolded_score(path: str | Path):
    """(partitura part with parts merged and repeats unfolded maximally, its note array)."""
    pt = import_partitura()
    try:
        score = pt.load_score(str(path))
        part = pt.score.unfold_part_maximal(pt.score.merge_parts(score.parts))
        return part, part.note_array()
    except Exception as exc:
        raise InputError(f"{path}: not a readable score ({type(exc).__name__}: {exc})") from None


def read_score(path: str | Path, tempo_bpm: float = 100.0) -> Notes:
    """Read a MusicXML/MEI/kern score through partitura (optional), repeats unfolded."""
    _, na = load_unfolded_score(path)
    sec_per_beat = 60.0 / tempo_bpm
    on = na["onset_beat"] * sec_per_beat
    off = on + np.maximum(na["duration_beat"], 1e-3) * sec_per_beat
    keep = (na["pitch"] >= PITCH_MIN) & (na["pitch"] <= PITCH_MAX)
    if not keep.any():
        raise InputError(f"{path}: score contains no piano-range notes")
    start = on[keep].min()
    on, off = on - start, off - start
    return Notes(np.stack([on, off], 1)[keep], na["pitch"][keep], np.full(keep.sum(), 64)).sorted()


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
