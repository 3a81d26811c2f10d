"""Bad inputs: one line on stderr naming the file and the problem, and exit code 1; odd-but-fine inputs work."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from conftest import SR, TinyPair, synth
from midialign.cli import main
from midialign.io.midi import read_midi


def run_align(capsys: pytest.CaptureFixture[str], audio: Path, midi: Path, out: Path, *extra: str) -> tuple[int, str]:
    rc = main(["align", str(audio), str(midi), "-o", str(out), "--method", "none", *extra])
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, path: Path, problem: str) -> None:
    assert rc == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # nothing but the error
    assert lines[0].startswith("midialign: error: ")
    assert str(path) in lines[0] and problem in lines[0], lines[0]


def write_midi_notes(path: Path, pitches: list[int]) -> Path:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes += [pretty_midi.Note(80, p, 0.2 + 0.3 * i, 0.4 + 0.3 * i) for i, p in enumerate(pitches)]
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


# ---------------------------------------------------------------- bad audio

def test_missing_audio(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.wav"
    rc, err = run_align(capsys, missing, tiny_pair.midi, tmp_path / "o.mid")
    assert_one_line_error(rc, err, missing, "file not found")
    assert not (tmp_path / "o.mid").exists()


def test_unreadable_audio(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio")
    rc, err = run_align(capsys, junk, tiny_pair.midi, tmp_path / "o.mid")
    assert_one_line_error(rc, err, junk, "not a readable audio file")


def test_empty_audio(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    rc, err = run_align(capsys, empty, tiny_pair.midi, tmp_path / "o.mid")
    assert_one_line_error(rc, err, empty, "audio is empty or too short")


def test_silent_audio(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * SR, np.float32), SR)
    rc, err = run_align(capsys, silent, tiny_pair.midi, tmp_path / "o.mid")
    assert_one_line_error(rc, err, silent, "audio is silent")


# ---------------------------------------------------------------- bad MIDI

def test_missing_midi(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.mid"
    rc, err = run_align(capsys, tiny_pair.audio, missing, tmp_path / "o.mid")
    assert_one_line_error(rc, err, missing, "file not found")


def test_corrupt_midi(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    rc, err = run_align(capsys, tiny_pair.audio, bad, tmp_path / "o.mid")
    assert_one_line_error(rc, err, bad, "not a readable MIDI file")


def test_midi_without_notes(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = write_midi_notes(tmp_path / "empty.mid", [])
    rc, err = run_align(capsys, tiny_pair.audio, empty, tmp_path / "o.mid")
    assert_one_line_error(rc, err, empty, "no piano-range notes")


def test_midi_with_only_out_of_range_notes(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_of_range = write_midi_notes(tmp_path / "high_low.mid", [10, 120, 127])
    rc, err = run_align(capsys, tiny_pair.audio, out_of_range, tmp_path / "o.mid")
    assert_one_line_error(rc, err, out_of_range, "no piano-range notes")


def test_out_of_range_notes_are_dropped_with_a_warning(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixed = write_midi_notes(tmp_path / "mixed.mid", [60, 10, 64, 120, 67])
    rc, err = run_align(capsys, tiny_pair.audio, mixed, tmp_path / "o.mid")
    assert rc == 0
    assert read_midi(tmp_path / "o.mid").pitches.tolist() == [60, 64, 67]
    assert "WARNING" in err and "mixed.mid" in err


def test_unsupported_note_file(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "notes.docx"
    doc.write_bytes(b"PK")
    rc, err = run_align(capsys, tiny_pair.audio, doc, tmp_path / "o.mid")
    assert_one_line_error(rc, err, doc, "unsupported note file type")


def test_missing_weights(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "nope.pt"
    rc = main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(tmp_path / "o.mid"), "--method", "crnn", "--weights", str(weights)])
    assert_one_line_error(rc, capsys.readouterr().err, weights, "model weights not found")


# ---------------------------------------------------------------- odd but fine

def test_audio_far_shorter_than_midi_warns_loudly(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.wav"
    y, _ = sf.read(tiny_pair.audio, dtype="float32")
    sf.write(short, y[: int(0.8 * SR)], SR)
    rc = main(["align", str(short), str(tiny_pair.midi), "-o", str(tmp_path / "o.mid"), "--method", "dtw", "--json", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "WARNING" in err and "far shorter than the MIDI" in err
    assert "far shorter" in (tmp_path / "o.json").read_text()


@pytest.mark.parametrize(("sr", "channels"), [(44100, 2), (22050, 1), (48000, 2)])
def test_stereo_and_other_sample_rates_work(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str], sr: int, channels: int) -> None:
    import soxr

    y = soxr.resample(synth(tiny_pair.notes, tiny_pair.notes.end_time + 0.5), SR, sr)
    audio = tmp_path / f"a_{sr}.wav"
    sf.write(audio, np.stack([y] * channels, 1) if channels > 1 else y, sr)
    rc = main(["align", str(audio), str(tiny_pair.midi), "-o", str(tmp_path / "o.mid"), "--method", "dtw"])
    assert rc == 0, capsys.readouterr().err
    assert len(read_midi(tmp_path / "o.mid")) == len(tiny_pair.notes)


def test_quiet_prints_nothing_on_success(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quiet", "align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(tmp_path / "o.mid"), "--method", "none"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


# ---------------------------------------------------------------- batch inputs

def test_batch_missing_pairs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "pairs.csv"
    rc = main(["batch", str(missing), "--out", str(tmp_path / "out")])
    assert_one_line_error(rc, capsys.readouterr().err, missing, "file not found")


def test_batch_pairs_csv_without_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "pairs.csv"
    bad.write_text("wav,mid\na.wav,a.mid\n")
    rc = main(["batch", str(bad), "--out", str(tmp_path / "out")])
    assert_one_line_error(rc, capsys.readouterr().err, bad, "needs columns audio,midi")


def test_batch_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    rc = main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--method", "none"])
    assert_one_line_error(rc, capsys.readouterr().err, tmp_path / "in", "no (audio, MIDI) pairs found")


def test_a_command_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import midialign.cli.commands as commands

    def needs_torch(args):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(commands, "_run_train", needs_torch)
    from midialign.cli import main

    assert main(["train", "--cache", "c", "--out", "o"]) == 1
    assert capsys.readouterr().err.strip() == "midialign: error: this needs the torch package: pip install 'midialign[train]'"
