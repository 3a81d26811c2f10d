"""The evaluation-case format, and scoring an estimate against a case.

A case is a folder holding
  audio.*        the recording (any audio extension),
  input.mid      the loose MIDI given to the aligner,
  reference.tsv  `onset offset pitch velocity`; row i is the true timing of input note i
                 (input notes in canonical order, as io.midi.read_midi returns them);
                 a `nan` onset marks a note that was not played and is not scored,
  meta.json      free-form facts about the case (optional; {} when absent).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AUDIO_SUFFIXES
from ..errors import InputError
from ..io.midi import read_midi
from ..io.table import read_note_table
from ..notes import Notes
from .metrics import NoteErrors, Scores, estimate_errors, note_errors, score_errors


@dataclass(frozen=True)
class Case:
    """One evaluation case. reference[i] is the true timing of input_notes[i]."""

    name: str
    path: Path
    audio: Path
    input_notes: Notes
    reference: Notes
    meta: dict[str, Any]

    @property
    def input_midi(self) -> Path:
        return self.path / "input.mid"


def is_case_dir(path: Path) -> bool:
    return path.is_dir() and (path / "input.mid").is_file() and (path / "reference.tsv").is_file()


def find_audio(case_dir: Path) -> Path:
    found = sorted(p for p in case_dir.glob("audio.*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not found:
        raise InputError(f"{case_dir}: no audio.* file with an audio extension ({', '.join(AUDIO_SUFFIXES)})")
    if len(found) > 1:
        raise InputError(f"{case_dir}: several audio files ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def load_case(case_dir: str | Path) -> Case:
    """Read and check a case folder (see the module docstring)."""
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise InputError(f"{case_dir}: case directory not found")
    audio = find_audio(case_dir)
    input_notes = read_midi(case_dir / "input.mid")
    reference = read_note_table(case_dir / "reference.tsv", keep_order=True)
    if len(reference) != len(input_notes):
        raise InputError(
            f"{case_dir}: reference.tsv has {len(reference)} rows but input.mid has {len(input_notes)} notes; "
            "row i must describe input note i"
        )
    bad = np.flatnonzero(reference.pitches != input_notes.pitches)
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{case_dir}: reference pitch disagrees with input.mid at {bad.size} rows "
            f"(first: row {i}, reference {reference.pitches[i]} vs input {input_notes.pitches[i]})"
        )
    meta_path = case_dir / "meta.json"
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise InputError(f"{meta_path}: expected a JSON object")
    return Case(case_dir.name, case_dir, audio, input_notes, reference, meta)


def case_errors(case: Case, est: Notes) -> NoteErrors:
    """Errors of an estimate for a case (metrics.estimate_errors, paired by the case's input notes)."""
    return estimate_errors(case.reference, est, paired_by=case.input_notes)


def missed_errors(case: Case) -> NoteErrors:
    """Errors of a case where every note was missed (e.g. the aligner failed)."""
    return note_errors(case.reference, np.full((len(case.reference), 2), np.nan), 0)


def score_case(case: Case, est: Notes) -> Scores:
    return score_errors(case_errors(case, est))
