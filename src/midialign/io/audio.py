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
    resampled with soxr; checked by check_audio.

    Read, mixed and resampled block by block: an hour of 44.1 kHz stereo never sits in memory
    at its own rate, only its 16 kHz mono result.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with sf.SoundFile(str(path)) as f:
            check_duration(f.frames / f.samplerate, name=str(path))  # before reading hours of samples
            y = _read_mono(f, sample_rate)
    except sf.SoundFileError as exc:  # a format libsndfile lacks (m4a, wma, ...), or not audio
        y = prepare_audio(*_load_with_audioread(path, exc), sample_rate)
    return check_audio(y, sample_rate, name=str(path))


def _read_mono(f, sample_rate: int, block: int = 1 << 16) -> np.ndarray:
    """The open soundfile.SoundFile's samples, mixed to mono and resampled block by block (soxr's stream
    gives the same samples as one soxr.resample call)."""
    import soxr

    stream = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ") if f.samplerate != sample_rate else None
    # One buffer of the expected length, filled in place: no list of blocks to concatenate (twice the memory).
    out = np.empty(int(np.ceil(max(f.frames, 0) * sample_rate / f.samplerate)) + block, dtype=np.float32)
    filled = 0
    while True:
        x = f.read(block, dtype="float32", always_2d=True).mean(axis=1, dtype=np.float32)
        last = len(x) < block
        y = stream.resample_chunk(x, last=last) if stream is not None else x
        if filled + len(y) > len(out):  # a file whose header undercounts its frames
            out = np.concatenate([out[:filled], np.empty(len(out) + len(y), dtype=np.float32)])
        out[filled:filled + len(y)] = y
        filled += len(y)
        if last:
            return out[:filled]


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
    check_duration(len(y) / sample_rate, name=name)
    if not np.isfinite(y).all():
        raise InputError(f"{name}: audio contains NaN or infinite samples")
    energy = sum(float(np.dot(c, c)) for c in np.array_split(y.astype(np.float32, copy=False), max(1, len(y) // (1 << 20))))
    if np.sqrt(energy / max(len(y), 1)) < SILENCE_RMS:
        raise InputError(f"{name}: audio is silent")
    return y


def check_duration(seconds: float, *, name: str) -> None:
    """Refuse audio shorter than MIN_AUDIO_S or longer than MAX_AUDIO_S seconds."""
    if seconds < MIN_AUDIO_S:
        raise InputError(f"{name}: audio is empty or too short ({seconds:.2f} s)")
    if seconds > MAX_AUDIO_S:
        raise InputError(f"{name}: audio is {seconds / 3600:.1f} h long, more than the {MAX_AUDIO_S / 3600:.0f} h limit")


def read_audio(audio: str | Path | tuple[np.ndarray, int], sample_rate: int) -> np.ndarray:
    """(n,) float32 mono samples at sample_rate (Hz) from a file path or (samples (n,) or (n, channels), rate);
    checked by check_audio."""
    if isinstance(audio, tuple):
        samples, rate = audio
        return check_audio(prepare_audio(samples, int(rate), sample_rate), sample_rate)
    return load_audio(audio, sample_rate)
