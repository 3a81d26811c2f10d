"""The log-magnitude CQT (or Mel) front end.

Frames are centred: feature frame k is centred on time k / fps, the same
convention as the piano roll.
"""
from __future__ import annotations

import numpy as np

from ..config import LOG_GAIN, FeatureConfig


def compute_features(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(n_bins, frames) float32 feature matrix of mono samples y (n,) at cfg.sample_rate Hz, frame k
    centred on k / fps; frames = 1 + n // hop_length for the CQT.

    The CQT comes from core.cqt (numpy and soxr: librosa.cqt's magnitudes without librosa's seconds of
    import and numba compilation); only the Mel front end still uses librosa.
    """
    if cfg.kind == "cqt":
        from .cqt import cqt_magnitude

        mag = cqt_magnitude(y, cfg.sample_rate, hop_length=cfg.hop_length, fmin=cfg.fmin_hz, n_bins=cfg.n_bins,
                            bins_per_octave=cfg.bins_per_octave)
    else:
        import librosa

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


def normalise(mag: np.ndarray, log: bool) -> np.ndarray:
    """log1p compression (or linear), scaled so a piece's loudest bin is ~1.

    Per-piece scaling makes the network indifferent to recording gain.
    """
    peak = float(np.percentile(mag, 99.9)) if mag.size else 0.0
    mag = (mag / max(peak, 1e-8)).astype(np.float32, copy=False)
    if log:
        # In place: an hour's CQT is 127 MB a copy.
        np.multiply(mag, LOG_GAIN, out=mag)
        np.log1p(mag, out=mag)
        mag /= np.float32(np.log1p(LOG_GAIN))
    return mag


def denormalise(feats: np.ndarray) -> np.ndarray:
    """Undo normalise's log compression: (n_bins, T) magnitudes with the piece's peak at about 1."""
    return np.expm1(np.asarray(feats, dtype=np.float64) * np.log1p(LOG_GAIN)) / LOG_GAIN
