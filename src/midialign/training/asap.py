"""Reader for (n)ASAP: performances, note alignments and score notes with their ids.

Everything takes the dataset root as an argument. Score side: the xml_ids of
note_alignment.tsv.gz are MusicXML note ids plus a ``-k`` repeat suffix;
partitura's ``load_musicxml`` + ``unfold_part_maximal`` + ``note_array()``
produces exactly these ids (checked: Bach bwv_846/bwv_875, Beethoven 18-2,
Chopin Ballade 1, Schumann Toccata: every id partitura gives is in the
alignment). The only alignment ids it lacks are tied continuation notes,
which partitura merges into the first note of the tie and which the
alignment lists as "deletion"; they are ignored. Reading ids from the XML by
hand would mean re-implementing repeat unfolding, so partitura is used.

partitura >= 1.5 downloads a soundfont at import time when pyfluidsynth is
importable (and fails offline), so it is imported with fluidsynth hidden.
"""
from __future__ import annotations

import csv
import gzip
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import PITCH_MAX, PITCH_MIN
from ..errors import ReservedPieceError
from ..io.midi import read_midi
from ..io.score import import_partitura
from ..notes import Notes

# ASAP folders dropped by the held-out rule (data README): Vienna 4x22,
# Batik/Mozart and MAPS reserved pieces. Prefix match on folder paths.
EXCLUDED_FOLDERS: tuple[str, ...] = (
    "Mozart/",
    "Chopin/Etudes_op_10/3",
    "Chopin/Ballades/2",
    "Chopin/Etudes_op_10/1",
    "Chopin/Etudes_op_25/4",
    "Chopin/Sonata_2/1st_no_repeat",
    "Liszt/Gran_Etudes_de_Paganini/6_Theme_and_Variations",
    "Liszt/Transcendental_Etudes/5",
    "Beethoven/Piano_Sonatas/8-1",
    "Beethoven/Piano_Sonatas/8-2",
    "Beethoven/Piano_Sonatas/8-3",
    "Beethoven/Piano_Sonatas/21-1",
    "Schubert/Wanderer_fantasie",
    "Schubert/Impromptu_op.90_D.899/1",
    "Schubert/Moment_Musical_no_1",
    "Schumann/Kreisleriana/3",
    "Schumann/Kreisleriana/4",
)


def is_excluded(folder: str) -> bool:
    """True for a held-out folder (covers variants such as 21-1_no_repeat and ..._repeat)."""
    f = folder.strip("/").replace("\\", "/") + "/"
    for ex in EXCLUDED_FOLDERS:
        e = ex.rstrip("/")
        if f.startswith(e + "/") or (not ex.endswith("/") and f.startswith(e + "_")):
            return True
    return False


def check_folder(folder: str) -> None:
    if is_excluded(folder):
        raise ReservedPieceError(f"ASAP folder {folder} is excluded by the held-out rule and may not be used")


@dataclass(frozen=True)
class Performance:
    """One row of metadata.csv, paths absolute."""

    composer: str
    title: str
    folder: str  # relative, e.g. "Bach/Fugue/bwv_846"
    name: str  # performance stem, e.g. "Shi05M"
    midi: Path
    xml_score: Path | None
    midi_score: Path
    alignment: Path | None
    robust: bool

    @property
    def key(self) -> str:
        """Relative performance MIDI path: the id written to used_performances.txt."""
        return f"{self.folder}/{self.name}.mid"


def list_performances(root: str | Path) -> list[Performance]:
    """All performances in metadata.csv (excluded folders are refused, not listed)."""
    root = Path(root)
    path = root / "metadata.csv"
    if not path.is_file():
        raise ValueError(f"{path}: ASAP metadata.csv not found")
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            folder = row["folder"].strip("/")
            check_folder(folder)
            opt = lambda k: (root / row[k]) if row.get(k) else None  # noqa: E731
            out.append(Performance(
                composer=row["composer"], title=row["title"], folder=folder,
                name=Path(row["midi_performance"]).stem, midi=root / row["midi_performance"],
                xml_score=opt("xml_score"), midi_score=root / row["midi_score"], alignment=opt("note_alignments"),
                robust=row.get("robust_note_alignment", "") in ("1", "1.0"),
            ))
    return out


def load_performance(perf: Performance) -> Notes:
    """Performance notes with sustain pedal (notes.read_midi), canonical order."""
    check_folder(perf.folder)
    return read_midi(perf.midi)


def indexed_performance_notes(midi_path: str | Path) -> np.ndarray:
    """(k, 6) [onset s, offset s, pitch, velocity, channel, track] in ASAP midi_id order.

    Pairing and order as in the dataset README: a note_on (velocity > 0) is
    closed by the next note_off / zero-velocity note_on of the same channel
    and pitch in the same track (first opened, first closed), then notes are
    sorted by (onset, pitch, offset, channel, track). Row k is midi_id n<k>.
    Pitches outside the piano range are kept so that indices stay valid.
    """
    import mido

    mf = mido.MidiFile(str(midi_path))
    tempos: list[tuple[int, int]] = []
    for track in mf.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
    tempos.sort(key=lambda x: x[0])
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0, 500000))
    t_ticks = np.array([t for t, _ in tempos], dtype=np.float64)
    t_tempo = np.array([v for _, v in tempos], dtype=np.float64)
    # seconds at each tempo change
    t_secs = np.concatenate([[0.0], np.cumsum(np.diff(t_ticks) * t_tempo[:-1] / 1e6 / mf.ticks_per_beat)])

    def to_sec(ticks: np.ndarray) -> np.ndarray:
        i = np.searchsorted(t_ticks, ticks, side="right") - 1
        return t_secs[i] + (ticks - t_ticks[i]) * t_tempo[i] / 1e6 / mf.ticks_per_beat

    rows = []
    for ti, track in enumerate(mf.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            elif msg.type in ("note_off", "note_on"):
                q = open_notes.get((msg.channel, msg.note))
                if q:
                    on, vel = q.pop(0)
                    rows.append((on, tick, msg.note, vel, msg.channel, ti))
        for (ch, pitch), q in open_notes.items():
            rows.extend((on, tick, pitch, vel, ch, ti) for on, vel in q)
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    arr[:, 0] = to_sec(arr[:, 0])
    arr[:, 1] = to_sec(arr[:, 1])
    order = np.lexsort((arr[:, 5], arr[:, 4], arr[:, 1], arr[:, 2], arr[:, 0]))
    return arr[order]


@dataclass(frozen=True)
class NoteAlignment:
    """Parsed note_alignment.tsv.gz."""

    matches: dict[str, int]  # xml_id -> performance note index (first row wins on duplicates)
    deletions: frozenset[str]
    insertions: frozenset[int]
    n_duplicates: int  # rows whose xml_id or midi_id was already used


def read_alignment(path: str | Path) -> NoteAlignment:
    """Matches / deletions / insertions; tolerates duplicate and missing rows."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: note alignment not found")
    opener = gzip.open if path.suffix == ".gz" else open
    matches: dict[str, int] = {}
    deletions: set[str] = set()
    insertions: set[int] = set()
    used_midi: set[int] = set()
    dup = 0
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            cols = line.rstrip("\n").split("\t")
            if i == 0 and cols[0] == "xml_id":
                continue
            if len(cols) < 2:
                continue
            xml_id, midi_id = cols[0], cols[1]
            if midi_id == "deletion":
                deletions.add(xml_id)
            elif xml_id == "insertion":
                insertions.add(int(midi_id.lstrip("n")))
            elif midi_id.startswith("n"):
                k = int(midi_id[1:])
                if xml_id in matches or k in used_midi:
                    dup += 1
                    continue
                matches[xml_id] = k
                used_midi.add(k)
    # A note listed both as match and as deletion counts as matched.
    return NoteAlignment(matches, frozenset(deletions - matches.keys()), frozenset(insertions - used_midi), dup)


@dataclass(frozen=True)
class ScoreNotes:
    """Unfolded score notes: ids with the -k suffix, positions in quarter notes."""

    ids: np.ndarray  # (n,) str
    onset_q: np.ndarray
    duration_q: np.ndarray
    pitch: np.ndarray


def load_score_notes(xml_path: str | Path) -> ScoreNotes:
    """Score notes of a (gzipped) MusicXML, repeats unfolded maximally, ties merged."""
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise ValueError(f"{xml_path}: MusicXML score not found")
    pt = import_partitura()
    data = gzip.decompress(xml_path.read_bytes()) if xml_path.suffix == ".gz" else xml_path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "score.musicxml"
        p.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # partitura warns about every dangling slur/tuplet
            score = pt.load_musicxml(str(p))
            arrays = [pt.score.unfold_part_maximal(part).note_array() for part in score.parts]
    ids = np.concatenate([a["id"].astype(str) for a in arrays])
    on = np.concatenate([a["onset_quarter"] for a in arrays]).astype(np.float64)
    dur = np.concatenate([a["duration_quarter"] for a in arrays]).astype(np.float64)
    pitch = np.concatenate([a["pitch"] for a in arrays]).astype(np.int64)
    order = np.lexsort((pitch, on))
    return ScoreNotes(ids[order], on[order], dur[order], pitch[order])


@dataclass(frozen=True)
class ScoreToPerformance:
    """Score notes with their performed note (index into indexed_performance_notes, -1 if not played)."""

    score: ScoreNotes
    perf_index: np.ndarray  # (n,) int
    perf: np.ndarray  # indexed_performance_notes()
    n_alignment_ids_missing: int  # alignment score ids not in the unfolded score (tied continuations)
    n_pitch_mismatch: int  # matched pairs whose pitches differ (set to unplayed)


def score_to_performance(perf: Performance) -> ScoreToPerformance:
    check_folder(perf.folder)
    if perf.xml_score is None or perf.alignment is None:
        raise ValueError(f"{perf.key}: needs both xml_score and note alignment")
    score = load_score_notes(perf.xml_score)
    al = read_alignment(perf.alignment)
    pn = indexed_performance_notes(perf.midi)
    idx = np.array([al.matches.get(i, -1) for i in score.ids], dtype=np.int64)
    idx[idx >= len(pn)] = -1  # ids beyond the MIDI (aligned against another version)
    ok = idx >= 0
    bad = ok.copy()
    bad[ok] = pn[idx[ok], 2].astype(np.int64) != score.pitch[ok]
    idx[bad] = -1
    known = set(score.ids.tolist())
    missing = sum(1 for k in al.matches if k not in known)
    return ScoreToPerformance(score, idx, pn, missing, int(bad.sum()))


def piano_range(pitch: np.ndarray) -> np.ndarray:
    return (pitch >= PITCH_MIN) & (pitch <= PITCH_MAX)
