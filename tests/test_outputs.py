"""Every `align` output format is written through the CLI and read back by a library that consumes it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pytest

from conftest import TinyPair, score_and_audio
from midialign.cli import main
from midialign.errors import InputError
from midialign.io.midi import read_midi

SCORE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.1 Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd">
<score-partwise version="3.1">
  <part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>
  <part id="P1">
    <measure number="1">
      <attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time><clef><sign>G</sign><line>2</line></clef></attributes>
      <note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>E</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>G</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><chord/><pitch><step>C</step><octave>5</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>E</step><octave>5</octave></pitch><duration>1</duration><type>quarter</type></note>
    </measure>
    <measure number="2">
      <note><pitch><step>D</step><octave>4</octave></pitch><duration>2</duration><type>half</type></note>
      <note><pitch><step>B</step><octave>3</octave></pitch><duration>2</duration><type>half</type></note>
    </measure>
  </part>
</score-partwise>
"""


def test_all_formats_round_trip(tiny_pair: TinyPair, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["align", str(tiny_pair.audio), str(tiny_pair.midi), "--method", "crnn", "--weights", str(tiny_weights),
            "-o", str(out / "a.mid"), "--csv", str(out / "a.csv"), "--sv", str(out / "a.sv.csv"),
            "--json", str(out / "a.json"), "--plot", str(out / "a.png"), "--plot-range", "0.5", "3"]
    assert main(args) == 0
    inp = tiny_pair.notes

    # MIDI: every input note, same pitches and velocities, pedal kept.
    pm = pretty_midi.PrettyMIDI(str(out / "a.mid"))
    got = sorted((n.start, n.pitch, n.velocity) for i in pm.instruments for n in i.notes)
    assert len(got) == len(inp)
    assert sorted((p, v) for _, p, v in got) == sorted(zip(inp.pitches.tolist(), inp.velocities.tolist()))
    assert [c.number for c in pm.instruments[0].control_changes].count(64) == len(inp.pedal)

    # CSV: one row per input note, in input order.
    df = pd.read_csv(out / "a.csv")
    assert list(df.columns) == ["index", "input_index", "pitch", "velocity", "input_onset", "input_offset", "onset", "offset", "moved", "confidence"]
    assert df["index"].tolist() == list(range(len(inp)))
    assert df["pitch"].tolist() == inp.pitches.tolist()
    assert df["velocity"].tolist() == inp.velocities.tolist()
    np.testing.assert_allclose(df["input_onset"], inp.onsets, atol=1e-5)
    assert set(df["moved"].unique()) <= {0, 1}
    assert df["confidence"].between(0, 1).all()
    # The CSV's new times are the MIDI's times (to the MIDI tick).
    assert sorted(zip(df["pitch"], df["onset"].round(2))) == sorted((p, round(t, 2)) for t, p, _ in got)

    # Sonic Visualiser note layer: time,value,duration,level,label without header.
    sv = pd.read_csv(out / "a.sv.csv", header=None, names=["time", "value", "duration", "level", "label"])
    assert len(sv) == len(inp)
    np.testing.assert_allclose(sv["time"], df["onset"], atol=1e-6)
    assert sv["value"].tolist() == inp.pitches.tolist()
    np.testing.assert_allclose(sv["duration"], df["offset"] - df["onset"], atol=1e-5)
    assert sv["level"].between(0, 1).all()
    assert sv["label"].str.match(r"^[A-G]#?-?\d+ #\d+$").all()

    # JSON summary.
    doc = json.loads((out / "a.json").read_text())
    assert doc["method"] == "crnn" and doc["n_notes"] == len(inp)
    assert 0 <= doc["share_moved"] <= 1
    assert doc["n_low_confidence"] == len(doc["low_confidence_notes"]) or doc["n_low_confidence"] > 200
    assert {"network", "total"} <= set(doc["timings_s"])

    # Plot: a real, non-trivial PNG.
    png = (out / "a.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    import matplotlib.image

    img = matplotlib.image.imread(out / "a.png")
    assert img.shape[0] > 200 and img.shape[1] > 200 and img[..., :3].std() > 0.05
    # Atomic writes leave no temporary files behind.
    assert not list(out.glob(".*.tmp"))


def test_plot_default_range_with_dtw(tiny_pair: TinyPair, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    assert main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "--method", "dtw", "-o", str(tmp_path / "a.mid"), "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000


def test_match_file_from_a_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from midialign.io.score import import_partitura

    score, notes, audio = score_and_audio(tmp_path, SCORE_XML, shift_s=0.05)
    pt = import_partitura()
    match = tmp_path / "out" / "perf.match"
    assert main(["align", str(audio), str(score), "--method", "none", "-o", str(tmp_path / "out" / "perf.mid"), "--match", str(match)]) == 0

    perf, alignment, _ = pt.load_match(str(match), create_score=True)
    pairs = [a for a in alignment if a["label"] == "match"]
    assert len(pairs) == len(notes) == 7
    pna = perf.performedparts[0].note_array()
    by_id = {str(r["id"]): r for r in pna}
    # Every score note is matched to a performed note of the same pitch.
    snotes = {str(n.id): n for n in pt.load_score(str(score)).parts[0].notes_tied}
    for a in pairs:
        assert by_id[a["performance_id"]]["pitch"] == snotes[a["score_id"].split("-")[0]].midi_pitch
    np.testing.assert_allclose(np.sort(pna["onset_sec"]), np.sort(notes.onsets), atol=2e-3)


def test_match_needs_a_score_input(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "--method", "none", "-o", str(tmp_path / "a.mid"), "--match", str(tmp_path / "a.match")])
    err = capsys.readouterr().err
    assert rc == 1
    assert str(tiny_pair.midi) in err and "--match needs a score" in err
    assert not (tmp_path / "a.mid").exists()  # refused before any work


@pytest.mark.parametrize("which", ["-o", "--csv", "--plot"])
def test_outputs_never_overwrite_inputs(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str) -> None:
    before = tiny_pair.midi.read_bytes(), tiny_pair.audio.read_bytes()
    args = ["align", str(tiny_pair.audio), str(tiny_pair.midi), "--method", "none", "-o", str(tmp_path / "a.mid")]
    args += [which, str(tiny_pair.midi if which != "--csv" else tiny_pair.audio)]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1 and "refusing to overwrite an input file" in err
    assert (tiny_pair.midi.read_bytes(), tiny_pair.audio.read_bytes()) == before


def test_same_path_for_two_outputs_is_refused(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = str(tmp_path / "x.csv")
    assert main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "--method", "none", "-o", str(tmp_path / "a.mid"), "--csv", same, "--sv", same]) == 1
    assert "given to both --csv and --sv" in capsys.readouterr().err


def test_bad_plot_range(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "--method", "none", "-o", str(tmp_path / "a.mid"), "--plot", str(tmp_path / "p.png"), "--plot-range", "3", "1"])
    assert rc == 1 and "--plot-range 3.0 1.0" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(tiny_pair: TinyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from midialign.plot import import_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InputError, match="--plot needs matplotlib"):
        import_matplotlib()


def test_midi_output_keeps_identity_with_method_none(tiny_pair: TinyPair, tmp_path: Path) -> None:
    assert main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "--method", "none", "-o", str(tmp_path / "deep" / "dir" / "a.mid")]) == 0
    back = read_midi(tmp_path / "deep" / "dir" / "a.mid")
    np.testing.assert_allclose(back.intervals, tiny_pair.notes.intervals, atol=1e-3)
    np.testing.assert_array_equal(back.velocities, tiny_pair.notes.velocities)
