"""The match check: a wrong piece or a transposed MIDI is reported, a right one is not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TinyPair, make_notes
from midialign.cli import main
from midialign.config import EvidenceConfig
from midialign.core.evidence import check_match, match_score
from midialign.io.midi import write_midi
from midialign.notes import Notes

FPS = 100
CFG = EvidenceConfig()


def played(notes: Notes, *, leak: float = 0.8, harmonic: float = 0.6, fundamental: float = 1.0) -> np.ndarray:
    """(88, T) features of notes as a piano sounds them: the note's bin at `fundamental` for 100 ms from
    its onset, its second harmonic (+12) at `harmonic`, the semitones beside it at `leak` (CQT bins overlap)."""
    feats = np.zeros((88, int(notes.end_time * FPS) + 50), dtype=np.float32)
    for on, p in zip(notes.onsets, notes.pitches):
        k, key = int(round(on * FPS)), int(p) - 21
        for offset, level in ((0, fundamental), (12, harmonic), (-1, leak), (1, leak)):
            if 0 <= key + offset < 88:
                feats[key + offset, k:k + 10] = np.maximum(feats[key + offset, k:k + 10], level)
    return feats


def transposed(notes: Notes, semitones: int) -> Notes:
    return Notes(notes.intervals, notes.pitches + semitones, notes.velocities)


@pytest.fixture()
def notes() -> Notes:
    rng = np.random.default_rng(0)
    on = 0.5 + 0.3 * np.arange(40)
    return Notes(np.stack([on, on + 0.2], 1), rng.integers(45, 80, 40), np.full(40, 80))


def test_right_notes_match_and_are_not_transposed(notes: Notes) -> None:
    check = check_match(played(notes), notes, fps=FPS, cfg=CFG)
    assert check.score == pytest.approx(1.0) and check.transposition == 0
    assert check.warning(CFG) is None


@pytest.mark.parametrize("midi_shift", [12, -12, 1, -1])
def test_a_transposed_midi_is_named(notes: Notes, midi_shift: int) -> None:
    feats = played(notes)
    check = check_match(feats, transposed(notes, midi_shift), fps=FPS, cfg=CFG)
    assert check.transposition == -midi_shift
    assert f"transposed by {midi_shift:+d} semitones" in check.warning(CFG)


def test_an_octave_is_found_where_second_harmonics_outsound_fundamentals(notes: Notes) -> None:
    feats = played(notes, harmonic=1.0, fundamental=0.9)  # a bass-heavy piece
    assert check_match(feats, notes, fps=FPS, cfg=CFG).transposition == 0
    assert check_match(feats, transposed(notes, 12), fps=FPS, cfg=CFG).transposition == -12


def test_a_semitone_needs_the_realignment_to_agree(notes: Notes) -> None:
    feats, midi = played(notes), transposed(notes, 1)
    # Aligning the shifted notes again puts them somewhere else: not confirmed.
    elsewhere = lambda shifted: shifted.with_times(shifted.intervals + 0.15)
    assert check_match(feats, midi, fps=FPS, cfg=CFG, realign=elsewhere).transposition == 0
    assert check_match(feats, midi, fps=FPS, cfg=CFG, realign=lambda shifted: shifted).transposition == -1


def test_another_piece_scores_low(notes: Notes) -> None:
    other = Notes(notes.intervals + 0.13, np.random.default_rng(1).integers(21, 108, len(notes)), notes.velocities)
    check = check_match(played(notes), other, fps=FPS, cfg=CFG)
    assert check.score < CFG.min_score and check.transposition == 0
    assert "may not be of these notes" in check.warning(CFG)


def test_features_must_have_88_bins(notes: Notes) -> None:
    with pytest.raises(ValueError, match=r"feats must be \(88, T\)"):
        match_score(np.zeros((12, 100)), notes, fps=FPS, cfg=CFG)


def test_cli_reports_the_score_and_strict_refuses_a_wrong_piece(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, js = tmp_path / "out.mid", tmp_path / "out.json"
    assert main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(out), "--json", str(js), "--method", "dtw", "--strict"]) == 0
    doc = json.loads(js.read_text())
    assert doc["match_score"] >= CFG.min_score and doc["transposition_semitones"] == 0

    wrong = tmp_path / "wrong.mid"
    write_midi(transposed(make_notes(seed=0), 5), wrong)  # another tune: every note a fourth away
    capsys.readouterr()
    assert main(["align", str(tiny_pair.audio), str(wrong), "-o", str(tmp_path / "w.mid"), "--method", "dtw"]) == 0
    assert "may not be of these notes" in capsys.readouterr().err
    assert main(["align", str(tiny_pair.audio), str(wrong), "-o", str(tmp_path / "w2.mid"), "--method", "dtw", "--strict"]) == 3
    err = capsys.readouterr().err
    assert "does not match" in err and str(tiny_pair.audio) in err and "--strict" in err
    assert not (tmp_path / "w2.mid").exists()
