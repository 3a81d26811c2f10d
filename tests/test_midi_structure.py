"""The aligned MIDI keeps the input's structure (tracks, channels, meta events), plain or with a tempo map."""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from conftest import SR, score_and_audio
from midialign.alignment import Alignment
from midialign.cli import main
from midialign.config import MidiOutputConfig
from midialign.errors import InputError
from midialign.io.midi import midi_bytes, read_midi
from midialign.io.midi_structure import aligned_midi, fit_tempo_points, read_structure
from midialign.notes import Notes

PRELUDE = Path(__file__).resolve().parents[1] / "examples" / "prelude" / "input.mid"
TPB = 480  # coarse on purpose: the tempo-map output must refine it
BAR = 3 * TPB  # 3/4
N_BARS = 6
MELODY = (72, 74, 76, 77, 79, 81, 83, 84, 86)


def two_track_midi(path: Path) -> Path:
    """Type 1, 75 bpm, 3/4, D major, markers and text; right hand (channel 0, program 0, lyrics),
    left hand (channel 1, program 1, chords on each downbeat, pedal), a drum track (channel 9)."""
    def track(events: list[tuple[int, mido.Message]]) -> mido.MidiTrack:
        trk = mido.MidiTrack()
        now = 0
        for t, msg in sorted(events, key=lambda r: (r[0], r[1].type == "note_on")):
            trk.append(msg.copy(time=t - now))
            now = t
        return trk

    conductor = [(0, mido.MetaMessage("track_name", name="Song")), (0, mido.MetaMessage("key_signature", key="D")),
                 (0, mido.MetaMessage("time_signature", numerator=3, denominator=4)), (0, mido.MetaMessage("set_tempo", tempo=800_000)),
                 (0, mido.MetaMessage("marker", text="A")), (2 * BAR, mido.MetaMessage("marker", text="B")),
                 (4 * BAR, mido.MetaMessage("text", text="coda"))]
    right = [(0, mido.MetaMessage("track_name", name="Right hand")), (0, mido.Message("program_change", channel=0, program=0))]
    for beat in range(3 * N_BARS):
        t = beat * TPB
        pitch = MELODY[beat % len(MELODY)]
        right += [(t, mido.Message("note_on", channel=0, note=pitch, velocity=80)), (t + 400, mido.Message("note_off", channel=0, note=pitch))]
        if beat % 3 == 0:
            right.append((t, mido.MetaMessage("lyrics", text=f"la{beat}")))
    left = [(0, mido.MetaMessage("track_name", name="Left hand")), (0, mido.Message("program_change", channel=1, program=1))]
    for bar in range(N_BARS):
        t = bar * BAR
        for pitch in (50, 54, 57):
            left += [(t, mido.Message("note_on", channel=1, note=pitch, velocity=60)), (t + 2 * TPB, mido.Message("note_off", channel=1, note=pitch))]
        left += [(t + 10, mido.Message("control_change", channel=1, control=64, value=127)),
                 (t + BAR - 10, mido.Message("control_change", channel=1, control=64, value=0))]
    drums = [(0, mido.MetaMessage("track_name", name="Drums"))]
    for beat in range(3 * N_BARS):
        drums += [(beat * TPB, mido.Message("note_on", channel=9, note=42, velocity=70)), (beat * TPB + 60, mido.Message("note_off", channel=9, note=42))]
    mf = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mf.tracks.extend(track(e) for e in (conductor, right, left, drums))
    mf.save(str(path))
    return path


def warp(t, start: float = 0.0):
    """A performance: a little faster than written, with a swaying tempo (monotone)."""
    return start + 1.1 * np.asarray(t) + 0.08 * np.sin(1.3 * np.asarray(t))


def performed(notes: Notes, *, start: float = 0.0) -> tuple[Alignment, np.ndarray]:
    """(a fake alignment of notes played along warp, indices of notes that leave their chord):
    in every chord with a melody note, the melody leads by 20 ms; one chord's top note is 15 ms late."""
    iv = warp(notes.intervals, start)
    shared = np.flatnonzero([np.sum(np.abs(notes.onsets - t) < 1e-6) > 1 for t in notes.onsets])
    lead = shared[(notes.pitches[shared] >= 72) & (notes.onsets[shared] > 0)]  # nothing can lead the first chord
    iv[lead] -= 0.020
    late = shared[notes.pitches[shared] == 57][1:2]
    iv[late] += 0.015
    deviating = np.concatenate([lead, late])
    result = Alignment(notes, notes.with_times(iv), np.zeros(len(notes), bool), np.zeros(len(notes)), "dtw", float(iv.max()) + 1)
    return result, deviating


def notes_by_track(data: bytes) -> list[list[tuple[float, float, int]]]:
    """pretty_midi's notes of each instrument: sorted (start, end, pitch)."""
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    return [sorted((n.start, n.end, n.pitch) for n in inst.notes) for inst in pm.instruments]


def assert_close(got, want, atol: float = 1e-3) -> None:
    """Same shape, every number within atol (seconds)."""
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=atol, rtol=0)


def meta(mf: mido.MidiFile, kinds=("key_signature", "time_signature", "marker", "text", "lyrics", "track_name")) -> list:
    """(track, absolute tick, message without its time) of the meta events worth keeping."""
    out = []
    for ti, trk in enumerate(mf.tracks):
        now = 0
        for msg in trk:
            now += msg.time
            if msg.type in kinds:
                out.append((ti, now, msg.copy(time=0)))
    return out


def note_ons(mf: mido.MidiFile) -> list[list[tuple[int, int, int, int]]]:
    """Per track, (tick, channel, pitch, velocity) of every note-on, in file order."""
    out = []
    for trk in mf.tracks:
        now, rows = 0, []
        for msg in trk:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                rows.append((now, msg.channel, msg.note, msg.velocity))
        out.append(rows)
    return out


def bar_count(mf: mido.MidiFile) -> int:
    """Bars up to the last note-off under the file's time signatures."""
    sigs = sorted((t, m.numerator * 4 * mf.ticks_per_beat // m.denominator) for _, t, m in meta(mf, ("time_signature",)))
    end = max(t for rows in note_ons(mf) for t, *_ in rows) + 1
    bars, t = 0, 0
    while t < end:
        t += [length for at, length in sigs if at <= t][-1]
        bars += 1
    return bars


def tempo_events(mf: mido.MidiFile) -> list[tuple[int, int]]:
    return sorted((t, m.tempo) for _, t, m in meta(mf, ("set_tempo",)))


@pytest.fixture()
def two_track(tmp_path: Path) -> Path:
    return two_track_midi(tmp_path / "song.mid")


def test_plain_output_keeps_the_structure(two_track: Path) -> None:
    notes = read_midi(two_track)
    result, _ = performed(notes)
    out = aligned_midi(read_structure(two_track), result, name="song")
    src, got = mido.MidiFile(str(two_track)), mido.MidiFile(file=io.BytesIO(out.data))

    assert len(got.tracks) == len(src.tracks) == 4
    assert [m for _, _, m in meta(got)] == [m for _, _, m in meta(src)]  # names, signatures, markers, text, lyrics
    assert [Counter((c, p, v) for _, c, p, v in rows) for rows in note_ons(got)] == [Counter((c, p, v) for _, c, p, v in rows) for rows in note_ons(src)]
    programs = lambda mf: [(m.channel, m.program) for trk in mf.tracks for m in trk if m.type == "program_change"]
    assert programs(got) == programs(src) == [(0, 0), (1, 1)]
    assert len(tempo_events(got)) == 1

    # Every note (drums aside) where the single-track output has it, within 1 ms, track by track.
    single = sorted(n for track in notes_by_track(midi_bytes(result.notes)) for n in track)
    tracks = notes_by_track(out.data)
    assert_close(sorted(n for track in tracks[:2] for n in track), single)
    right = notes.pitches >= 72
    expected_right = sorted(zip(np.maximum(result.notes.onsets[right], 0.0), result.notes.offsets[right]))  # none before 0 s
    assert_close([(a, b) for a, b, _ in tracks[0]], expected_right)

    # The pedal and the drums moved with the notes.
    pm_in, pm_out = pretty_midi.PrettyMIDI(str(two_track)), pretty_midi.PrettyMIDI(io.BytesIO(out.data))
    pedal_in = [c.time for c in pm_in.instruments[1].control_changes]
    pedal_out = [c.time for c in pm_out.instruments[1].control_changes]
    assert_close(pedal_out[:-1], warp(pedal_in[:-1]), atol=5e-3)  # the last, after the last note, is extrapolated
    assert abs(pedal_out[-1] - pedal_in[-1]) > 0.5
    drums = [n.start for n in pm_out.instruments[2].notes]
    assert pm_out.instruments[2].is_drum
    assert_close(drums, warp([n.start for n in pm_in.instruments[2].notes]))


@pytest.mark.parametrize("start", [0.0, 0.7])
def test_tempo_map_keeps_ticks_and_plays_the_performance(two_track: Path, start: float) -> None:
    notes = read_midi(two_track)
    result, deviating = performed(notes, start=start)
    structure = read_structure(two_track)
    plain = aligned_midi(structure, result, name="song")
    out = aligned_midi(structure, result, name="song", tempo_map=True)
    src, got = mido.MidiFile(str(two_track)), mido.MidiFile(file=io.BytesIO(out.data))
    report = out.report
    scale = report["tick_scale"]
    assert got.ticks_per_beat == TPB * scale > TPB  # 480 ticks per beat are too coarse for 1 ms at 75 bpm
    # A recording that starts 0.7 s late: a 1/16-beat sliver at 11.2 s per beat takes up the wait.
    assert report["lead_in_beats"] == (0.0625 if start else 0.0)

    # Every note plays within 1 ms of the plain output. (Drums keep their ticks: the tempo map moves them.)
    for a, b in zip(notes_by_track(out.data)[:2], notes_by_track(plain.data)[:2]):
        assert_close(a, b)

    # Notes keep their ticks, except those that left the beat map, and with a late start the first
    # chord (at the lead-in's end), which are reported.
    first = np.flatnonzero(notes.onsets == notes.onsets.min()) if start else np.zeros(0, int)
    assert set(deviating.tolist()) | set(first.tolist()) <= set(report["off_grid_notes"])
    assert report["n_off_grid"] == len(report["off_grid_notes"]) < 0.5 * len(notes) + len(first)
    on_grid = 0
    for rows_in, rows_out in zip(note_ons(src), note_ons(got)):
        grid = Counter((t * scale, c, p) for t, c, p, _ in rows_in)
        on_grid += sum((Counter((t, c, p) for t, c, p, _ in rows_out) & grid).values())
    n_drums = 3 * N_BARS
    assert on_grid == len(notes) - report["n_off_grid"] + n_drums

    # Bars and beats stay the score's: signatures and markers at their ticks, the same bar count.
    assert meta(got) == [(ti, t * scale, m) for ti, t, m in meta(src)]
    assert bar_count(got) == bar_count(src) == N_BARS

    # Sparse tempo map: at most two events per beat, none for a change under 1 %.
    tempi = tempo_events(got)
    assert report["n_tempo_events"] == len(tempi) > 3
    assert np.bincount([t // got.ticks_per_beat for t, _ in tempi]).max() <= 2
    ratios = np.array([b for _, b in tempi[1:]]) / np.array([a for _, a in tempi[:-1]])
    assert np.all(np.abs(ratios - 1) >= 0.0099)

    # A notation program shows the score's bars, the first chord on the downbeat.
    music21 = pytest.importorskip("music21")
    path = two_track.with_name("tempo_map.mid")
    path.write_bytes(out.data)
    part = music21.converter.parse(str(path)).parts[0]
    assert len(part.getElementsByClass("Measure")) == N_BARS
    assert part.flatten().notes[0].offset == 0.0


def test_bundled_example_default_and_tempo_map() -> None:
    notes = read_midi(PRELUDE)
    result, _ = performed(notes, start=0.3)
    structure = read_structure(PRELUDE)
    plain = aligned_midi(structure, result, name="prelude")
    mapped = aligned_midi(structure, result, name="prelude", tempo_map=True)
    src = mido.MidiFile(str(PRELUDE))
    single = sorted(n for track in notes_by_track(midi_bytes(result.notes)) for n in track)
    for out in (plain, mapped):
        got = mido.MidiFile(file=io.BytesIO(out.data))
        assert [t.name for t in got.tracks] == [t.name for t in src.tracks]
        assert [m for _, _, m in meta(got)] == [m for _, _, m in meta(src)]
        assert_close(sorted(n for track in notes_by_track(out.data) for n in track), single)
    got = mido.MidiFile(file=io.BytesIO(mapped.data))
    assert np.bincount([t // got.ticks_per_beat for t, _ in tempo_events(got)]).max() <= 2
    assert bar_count(got) == bar_count(src)  # the recording starts 0.3 s late: no extra bar
    assert mapped.report["share_on_grid"] > 0.4


def test_steady_tempo_needs_one_event() -> None:
    beats = np.arange(0, 16, 0.5)
    points = fit_tempo_points(beats, 0.6 * beats + 0.001 * np.sin(beats), MidiOutputConfig())
    assert len(points) == 2  # the start and the end: the tempo never changes by 1 %


def test_notes_that_do_not_match_the_file_are_refused(two_track: Path) -> None:
    notes = read_midi(two_track)
    other = notes.subset(np.arange(len(notes)) > 0)
    result = Alignment(other, other, np.zeros(len(other), bool), np.zeros(len(other)), "none", 10.0)
    with pytest.raises(InputError, match="song: the file's notes do not match"):
        aligned_midi(read_structure(two_track), result, name="song")


def test_tempo_map_needs_beats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from midialign.io.table import write_note_table

    table = write_note_table(Notes([[0.1, 0.5], [0.6, 0.9]], [60, 64], [80, 80]), tmp_path / "n.tsv") or tmp_path / "n.tsv"
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(SR, np.float32) + 0.01, SR)
    rc = main(["align", str(tmp_path / "a.wav"), str(table), "--method", "none", "-o", str(tmp_path / "o.mid"), "--tempo-map"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "n.tsv: --tempo-map needs a MIDI or score input" in err and "Traceback" not in err
    assert not (tmp_path / "o.mid").exists()


SCORE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.1 Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd">
<score-partwise version="3.1">
  <part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>
  <part id="P1">
    <measure number="0" implicit="yes">
      <attributes><divisions>2</divisions><key><fifths>-1</fifths></key><time><beats>3</beats><beat-type>4</beat-type></time><staves>2</staves>
        <clef number="1"><sign>G</sign><line>2</line></clef><clef number="2"><sign>F</sign><line>4</line></clef></attributes>
      <note><pitch><step>C</step><octave>5</octave></pitch><duration>2</duration><voice>1</voice><type>quarter</type><staff>1</staff></note>
    </measure>
    <measure number="1">
      <note><pitch><step>F</step><octave>5</octave></pitch><duration>1</duration><voice>1</voice><type>eighth</type><staff>1</staff></note>
      <note><pitch><step>E</step><octave>5</octave></pitch><duration>1</duration><voice>1</voice><type>eighth</type><staff>1</staff></note>
      <note><pitch><step>D</step><octave>5</octave></pitch><duration>4</duration><voice>1</voice><type>half</type><staff>1</staff></note>
      <backup><duration>6</duration></backup>
      <note><pitch><step>F</step><octave>3</octave></pitch><duration>6</duration><voice>2</voice><type>half</type><dot/><staff>2</staff></note>
      <note><chord/><pitch><step>A</step><octave>3</octave></pitch><duration>6</duration><voice>2</voice><type>half</type><dot/><staff>2</staff></note>
    </measure>
    <measure number="2">
      <note><pitch><step>C</step><octave>5</octave></pitch><duration>6</duration><voice>1</voice><type>half</type><dot/><staff>1</staff></note>
      <backup><duration>6</duration></backup>
      <note><pitch><step>C</step><octave>3</octave></pitch><duration>6</duration><voice>2</voice><type>half</type><dot/><staff>2</staff></note>
    </measure>
  </part>
</score-partwise>
"""


def test_score_tempo_map_follows_parts_staves_and_bars(tmp_path: Path) -> None:
    score, notes, audio = score_and_audio(tmp_path, SCORE_XML)
    out = tmp_path / "out" / "perf.mid"
    assert main(["align", str(audio), str(score), "--method", "none", "-o", str(out), "--tempo-map", "--json", str(tmp_path / "out" / "a.json")]) == 0

    mf = mido.MidiFile(str(out))
    assert [t.name for t in mf.tracks] == ["score", "Piano staff 1", "Piano staff 2"]
    sigs = [(t, m.numerator, m.denominator) for _, t, m in meta(mf, ("time_signature",))]
    assert sigs == [(0, 1, 4), (mf.ticks_per_beat, 3, 4)]  # the pickup bar, then 3/4
    assert [m.key for _, _, m in meta(mf, ("key_signature",))] == ["F"]
    assert bar_count(mf) == 3
    report = json.loads((tmp_path / "out" / "a.json").read_text())["midi_output"]
    assert report["mode"] == "tempo_map" and report["n_off_grid"] == 0
    assert report["n_tempo_events"] == 1  # read_score plays the score at one tempo
    back = read_midi(out)
    np.testing.assert_allclose(back.onsets, notes.onsets, atol=1e-3)

    music21 = pytest.importorskip("music21")
    parsed = music21.converter.parse(str(out))
    part = parsed.parts[0]
    assert [ts.ratioString for ts in part.recurse().getElementsByClass("TimeSignature")][:2] == ["1/4", "3/4"]
    assert len(part.getElementsByClass("Measure")) == 3


@pytest.mark.parametrize("start, lead_in", [(0.01, 0.0), (0.5, 1 / 32), (3.0, 0.25)])
def test_one_chord_a_little_or_much_later(tmp_path: Path, start: float, lead_in: float) -> None:
    from midialign.io.midi import write_midi

    write_midi(Notes([[0, 1]] * 3, [60, 64, 67], [80] * 3), tmp_path / "chord.mid")
    notes = read_midi(tmp_path / "chord.mid")
    played = notes.intervals + start + np.array([[0.0], [0.01], [0.02]])
    result = Alignment(notes, notes.with_times(played), np.zeros(3, bool), np.zeros(3), "none", 3.0)
    out = aligned_midi(read_structure(tmp_path / "chord.mid"), result, name="chord", tempo_map=True)
    # A short wait moves the notes by ticks; a long one gets a slow first sliver of a beat, no extra bar.
    assert out.report["lead_in_beats"] == lead_in
    assert out.report["n_tempo_events"] == (2 if lead_in else 1)
    assert len(out.tempo) == 1 and abs(out.tempo[0, 1] - 120) < 0.1  # the input's tempo; the wait is no tempo
    assert bar_count(mido.MidiFile(file=io.BytesIO(out.data))) == 1
    assert_close(notes_by_track(out.data)[0], [(a, b, p) for (a, b), p in zip(played, notes.pitches)])


def test_tempo_events_stay_two_per_beat_after_a_short_rest() -> None:
    beats = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0])
    times = 0.1 + np.array([0.0, 0.3, 0.55, 0.9, 1.1, 1.45, 2.0])  # no steady tempo anywhere
    points = fit_tempo_points(beats, times, MidiOutputConfig())
    assert points[0].tolist() == [0.0, 0.0]
    assert np.bincount(np.floor(points[:-1, 0]).astype(int)).max() <= 2
    assert np.all(np.diff(points[:, 0]) >= 0.5)
