"""Audio files to mono float32 samples: libsndfile first, audioread (through librosa) for the rest."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

# Hour-long pieces are fine; longer is almost certainly a mistake.
MAX_AUDIO_S = 3 * 3600.0
MIN_AUDIO_S = 0.5
SILENCE_RMS = 1e-4


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """(n,) float32 mono samples at sample_rate (Hz) from any libsndfile format (wav, flac, ogg/opus, mp3),
    resampled with soxr; checked by check_audio."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:  # a format libsndfile lacks (m4a, wma, ...), or not audio
        y, sr = _load_with_audioread(path, exc)
    return check_audio(prepare_audio(y, sr, sample_rate), sample_rate, name=str(path))


def _load_with_audioread(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    import warnings

    try:
        import librosa

        with warnings.catch_warnings():  # the fallback's own warnings would bury our one-line error
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=False)
        return np.atleast_2d(y).T.astype(np.float32), int(sr)
    except Exception:
        raise InputError(f"{path}: not a readable audio file ({first_error})") from None


def prepare_audio(y: np.ndarray, sr: int, sample_rate: int) -> np.ndarray:
    """Mix an (n,) or (n, channels) array to mono float32 and resample."""
    import soxr

    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1)
    if y.ndim != 1:
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {y.shape}")
    if sr != sample_rate and len(y):
        y = soxr.resample(y, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(y)


def check_audio(y: np.ndarray, sample_rate: int, *, name: str = "audio") -> np.ndarray:
    """y itself, after refusing audio that is too short or long, non-finite or silent."""
    dur = len(y) / sample_rate
    if dur < MIN_AUDIO_S:
        raise InputError(f"{name}: audio is empty or too short ({dur:.2f} s)")
    if dur > MAX_AUDIO_S:
        raise InputError(f"{name}: audio is {dur / 3600:.1f} h long, more than the {MAX_AUDIO_S / 3600:.0f} h limit")
    if not np.isfinite(y).all():
        raise InputError(f"{name}: audio contains NaN or infinite samples")
    if float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise InputError(f"{name}: audio is silent")
    return y


def read_audio(audio: str | Path | tuple[np.ndarray, int], sample_rate: int) -> np.ndarray:
    """(n,) float32 mono samples at sample_rate (Hz) from a file path or (samples (n,) or (n, channels), rate);
    checked by check_audio."""
    if isinstance(audio, tuple):
        samples, rate = audio
        return check_audio(prepare_audio(samples, int(rate), sample_rate), sample_rate)
    return load_audio(audio, sample_rate)
