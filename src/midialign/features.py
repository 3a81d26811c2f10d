"""Audio loading and the log-magnitude CQT (or Mel) front end.

Frames are centred: feature frame k is centred on time k / fps, the same
convention as the piano roll.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import FeatureConfig
from .notes import InputError

# Hour-long pieces are fine; longer is almost certainly a mistake.
MAX_AUDIO_S = 3 * 3600.0
MIN_AUDIO_S = 0.5
SILENCE_RMS = 1e-4


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Load any libsndfile format (wav, flac, ogg/opus, mp3), mix to mono, resample with soxr."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        y, sr = _load_with_audioread(path, exc)
    return check_audio(prepare_audio(y, sr, sample_rate), sample_rate, str(path))


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


def check_audio(y: np.ndarray, sample_rate: int, name: str = "audio") -> np.ndarray:
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


def compute_features(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(n_bins, frames) float32 feature matrix, frame k centred on k / fps."""
    import librosa

    if cfg.kind == "cqt":
        mag = np.abs(
            librosa.cqt(
                y,
                sr=cfg.sample_rate,
                hop_length=cfg.hop_length,
                fmin=cfg.fmin_hz,
                n_bins=cfg.n_bins,
                bins_per_octave=cfg.bins_per_octave,
            )
        )
    else:
        mag = librosa.feature.melspectrogram(
            y=y,
            sr=cfg.sample_rate,
            n_fft=cfg.mel_n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_bins,
            fmin=cfg.fmin_hz,
            power=1.0,
        )
    return normalise(mag.astype(np.float32), cfg.log)


LOG_SCALE = float(np.log1p(100.0))  # normalise's log compression: log1p(100 x) / LOG_SCALE


def normalise(mag: np.ndarray, log: bool) -> np.ndarray:
    """log1p compression (or linear), scaled so a piece's loudest bin is ~1.

    Per-piece scaling makes the network indifferent to recording gain.
    """
    peak = float(np.percentile(mag, 99.9)) if mag.size else 0.0
    mag = mag / max(peak, 1e-8)
    if log:
        return np.log1p(100.0 * mag) / LOG_SCALE
    return mag


def n_frames_for(duration_s: float, fps: int) -> int:
    return int(np.floor(duration_s * fps)) + 1
