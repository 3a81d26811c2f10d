"""Notes I/O, piano roll and audio features."""

import numpy as np
import pytest
import soundfile as sf

from midialign.config import FeatureConfig
from midialign.core.features import compute_features
from midialign.io.audio import load_audio, read_audio
from midialign.errors import InputError
from midialign.io.midi import read_midi, write_midi
from midialign.io.reader import read_notes
from midialign.io.table import read_note_table, write_note_table
from midialign.notes import Notes
from midialign.core.roll import notes_to_roll


def _notes() -> Notes:
    iv = [[0.5, 1.0], [0.5, 0.9], [1.2, 1.5], [1.5, 2.0], [0.1, 0.3]]
    return Notes(iv, [60, 64, 60, 60, 21], [80, 70, 60, 50, 40], pedal=[[0.4, 127], [1.4, 0]])


def test_notes_are_kept_in_canonical_order():
    n = _notes().sorted()
    assert list(n.onsets) == [0.1, 0.5, 0.5, 1.2, 1.5]
    assert list(n.pitches) == [21, 60, 64, 60, 60]


def test_notes_validate_units():
    with pytest.raises(ValueError, match="pitches"):
        Notes([[0, 1]], [12], [64])
    with pytest.raises(ValueError, match="offset"):
        Notes([[1.0, 0.5]], [60], [64])
    with pytest.raises(ValueError, match="length"):
        Notes([[0, 1], [1, 2]], [60], [64])


def test_midi_round_trip_keeps_notes_and_pedal(tmp_path):
    notes = _notes().sorted()
    path = tmp_path / "a.mid"
    write_midi(notes, path)
    back = read_midi(path)
    assert np.array_equal(back.pitches, notes.pitches)
    assert np.array_equal(back.velocities, notes.velocities)
    np.testing.assert_allclose(back.intervals, notes.intervals, atol=1e-3)
    np.testing.assert_allclose(back.pedal, notes.pedal, atol=1e-3)


def test_midi_without_notes_is_an_input_error(tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.write(str(tmp_path / "empty.mid"))
    with pytest.raises(InputError, match="no piano-range notes"):
        read_midi(tmp_path / "empty.mid")


def test_table_round_trip_and_maps_layout(tmp_path):
    notes = _notes().sorted()
    write_note_table(notes, tmp_path / "a.tsv")
    back = read_notes(tmp_path / "a.tsv")
    np.testing.assert_allclose(back.intervals, notes.intervals, atol=1e-6)
    maps = tmp_path / "maps.txt"
    maps.write_text("# onset,offset,note,velocity\n0.500004\t1.918478\t38.000000\t53.000000\n0.2\t0.4\t50.0\t60.0\n")
    m = read_note_table(maps)
    assert list(m.pitches) == [50, 38] and list(m.velocities) == [60, 53]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("onset,offset,pitch,velocity\n1.0,2.0,60,90\n")
    assert read_notes(csv_path).onsets[0] == 1.0


def test_roll_gap_exactly_where_a_note_is_restruck():
    fps = 100
    # 60 is re-struck at 1.0 s while still sounding; 62 is re-struck after a real gap.
    notes = Notes([[0.5, 1.0], [1.0, 1.5], [0.2, 0.4], [0.6, 0.8]], [60, 60, 62, 62], [64] * 4)
    roll = notes_to_roll(notes, fps, 200)
    row = roll[60 - 21]
    assert row[50:99].all() and row[99] == 0 and row[100:150].all() and row[150] == 0
    row62 = roll[62 - 21]
    assert row62[20:40].all() and not row62[40:60].any() and row62[60:80].all()
    # No gap anywhere else: the roll has exactly one zero inside the union of 60's notes.
    assert (row[50:150] == 0).sum() == 1


@pytest.mark.parametrize("kind", ["cqt", "mel"])
def test_feature_frames_line_up_with_the_roll(kind):
    """A 440 Hz tone starting at 1.00 s lights bin A4 (pitch 69) from frame 100."""
    cfg = FeatureConfig(kind=kind)
    sr = cfg.sample_rate
    t = np.arange(int(2.5 * sr)) / sr
    y = np.where(t >= 1.0, np.sin(2 * np.pi * 440.0 * t), 0.0).astype(np.float32)
    feats = compute_features(y, cfg)
    assert feats.shape == (88, int(2.5 * cfg.fps) + 1)
    if kind == "cqt":
        assert int(np.argmax(feats[:, 150])) + 21 == 69
    onset_frame = int(np.argmax(feats[:, 80:130].max(axis=0) > 0.5 * feats[:, 150].max())) + 80
    # The CQT's A4 filter is short; the Mel STFT window (128 ms) smears by up to half its length.
    tolerance = 1 if kind == "cqt" else cfg.mel_n_fft // (2 * cfg.hop_length)
    assert abs(onset_frame - 100) <= tolerance
    roll = notes_to_roll(Notes([[1.0, 2.0]], [69], [64]), cfg.fps, feats.shape[1])
    assert int(np.argmax(roll[69 - 21])) == 100


def test_load_audio_mixes_stereo_and_resamples(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    y = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32)
    for ext in ("wav", "flac", "ogg"):
        path = tmp_path / f"s.{ext}"
        sf.write(path, y, sr)
        out = load_audio(path, 16000)
        assert out.ndim == 1 and abs(len(out) - 16000) <= 2
        assert 0.5 < np.abs(out).max() < 0.9  # mean of the two channels


def test_read_audio_takes_a_path_or_samples_alike(tmp_path):
    sr = 22050
    t = np.arange(sr) / sr
    y = np.stack([np.sin(2 * np.pi * 330 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.wav", y, sr, subtype="FLOAT")
    from_file = read_audio(tmp_path / "s.wav", 16000)
    from_samples = read_audio((y, sr), 16000)
    assert from_samples.shape == (16000,)
    np.testing.assert_allclose(from_samples, from_file, atol=1e-6)
    with pytest.raises(InputError, match="silent"):
        read_audio((np.zeros(sr, np.float32), sr), 16000)

def test_bad_audio_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "missing.wav", 16000)
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(InputError, match="not a readable audio file"):
        load_audio(tmp_path / "bad.wav", 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(InputError, match="silent"):
        load_audio(tmp_path / "silent.wav", 16000)
    sf.write(tmp_path / "short.wav", np.ones(100, np.float32) * 0.1, 16000)
    with pytest.raises(InputError, match="too short"):
        load_audio(tmp_path / "short.wav", 16000)
