"""Shared fixtures: a tiny untrained checkpoint and a few-second synthetic piano pair."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from midialign.io.midi import read_midi, write_midi
from midialign.notes import Notes

SR = 16000


def pytest_configure(config: pytest.Config) -> None:
    # Tiny tensors: one thread avoids multi-second OpenMP start-up stalls
    # when the machine's cores are busy (e.g. a training run beside the tests).
    import torch

    torch.set_num_threads(1)


@dataclass(frozen=True)
class TinyPair:
    audio: Path
    midi: Path
    notes: Notes  # what the MIDI holds (the audio plays them 30 ms later)


def piano_tone(pitch: int, dur: float, velocity: int, sr: int = SR) -> np.ndarray:
    """Decaying harmonic sines: enough like a piano note for a CQT."""
    t = np.arange(int(dur * sr)) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    y = np.zeros_like(t)
    for h in range(1, 6):
        if h * f0 < sr / 2:
            y += np.sin(2 * np.pi * h * f0 * t) / h * np.exp(-t * (2.0 + h))
    attack = np.minimum(t / 0.005, 1.0)
    return (velocity / 127) * 0.2 * y * attack


def synth(notes: Notes, duration: float, sr: int = SR) -> np.ndarray:
    y = np.zeros(int(duration * sr), dtype=np.float64)
    for (on, off), p, v in zip(notes.intervals, notes.pitches, notes.velocities):
        tone = piano_tone(int(p), off - on + 0.3, int(v), sr)
        s = int(on * sr)
        n = min(len(tone), len(y) - s)
        if n > 0:
            y[s:s + n] += tone[:n]
    return (y / max(np.abs(y).max(), 1e-9) * 0.5).astype(np.float32)


def make_notes(n: int = 12, seed: int = 0) -> Notes:
    rng = np.random.default_rng(seed)
    on = 0.2 + 0.25 * np.arange(n)
    dur = rng.uniform(0.12, 0.22, n)  # < the 0.25 s step: no same-pitch overlaps, which MIDI can't keep
    pitches = rng.choice([48, 55, 60, 62, 64, 65, 67, 69, 72], n)
    vel = rng.integers(50, 110, n)
    pedal = np.array([[0.1, 100.0], [1.5, 0.0], [1.6, 90.0], [2.9, 0.0]])
    return Notes(np.stack([on, on + dur], 1), pitches, vel, pedal).sorted()


def write_pair(root: Path, name: str = "piece", n: int = 12, seed: int = 0, offset_s: float = 0.03) -> TinyPair:
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    notes = make_notes(n, seed)
    audio = root / f"{name}.wav"
    sf.write(audio, synth(notes.shifted(offset_s), notes.end_time + 0.8), SR)
    midi = root / f"{name}.mid"
    write_midi(notes, midi)
    return TinyPair(audio, midi, read_midi(midi))  # times as the MIDI holds them (tick-rounded)


@pytest.fixture()
def tiny_pair(tmp_path: Path) -> TinyPair:
    """About 4 s of 16 kHz synthetic piano and its MIDI (audio 30 ms late)."""
    return write_pair(tmp_path / "pair")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, very small CRNN checkpoint: exercises the crnn path in milliseconds."""
    import torch

    from midialign.config import FeatureConfig, ModelConfig
    from midialign.training.model import CRNN, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(path, CRNN(ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16)), feature_cfg=FeatureConfig())
    return path


def notes_from_rows(rows: list[tuple[float, float, int]]) -> Notes:
    """Notes from (onset, offset, pitch) rows, velocity 80."""
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return Notes(arr[:, :2], arr[:, 2], np.full(len(arr), 80))


def write_case(root: Path, input_notes: Notes, reference: Notes, name: str = "case") -> Path:
    """An evaluation case folder; the audio is a tiny noise wav (never analysed by these tests)."""
    import json

    import soundfile as sf

    from midialign.io.table import write_note_table

    d = root / name
    d.mkdir(parents=True)
    sf.write(d / "audio.wav", np.random.default_rng(0).normal(0, 1e-3, 16000).astype(np.float32), 16000)
    write_midi(input_notes, d / "input.mid")
    write_note_table(reference, d / "reference.tsv")
    (d / "meta.json").write_text(json.dumps({"source": "synthetic"}))
    return d


def score_and_audio(root: Path, xml: str, *, shift_s: float = 0.0) -> tuple[Path, Notes, Path]:
    """(root/score.musicxml holding xml, its notes as read_score reads them, root/perf.wav playing
    them shift_s late). Skips the test when partitura is not installed."""
    import soundfile as sf

    from midialign.errors import InputError
    from midialign.io.score import import_partitura, read_score

    try:
        import_partitura()
    except InputError:
        pytest.skip("partitura not installed")
    score = root / "score.musicxml"
    score.write_text(xml)
    notes = read_score(score)
    audio = root / "perf.wav"
    sf.write(audio, synth(notes.shifted(shift_s) if shift_s else notes, notes.end_time + 0.5), SR)
    return score, notes, audio

