"""Global alignment: memory-restricted multi-scale DTW (synctoolbox) of MIDI against audio.

Both sides become 12-d quantised chroma plus 12-d DLNCO onset features at
``DTWConfig.feature_rate``; ``sync_via_mrmsdtw`` aligns them and the path is
made strictly monotonic so it can be inverted and interpolated.

The path is a (K, 2) float array of [MIDI time s, audio time s], strictly
increasing in both columns. ``warp_times`` / ``warp_notes`` push note times
through it.

Audio front ends (``DTWConfig.audio_features``):

* ``"cqt"``: pitch energies and per-pitch onsets from the log CQT the rest of
  the pipeline computes anyway (100 fps, 88 bins from A0). Fast.
* ``"synctoolbox"``: the library's IIR filter bank at 22050 Hz
  (``audio_to_pitch_features`` / ``audio_to_pitch_onset_features``). The
  reference; several times slower.
"""
from __future__ import annotations

import contextlib
import io
from typing import Iterator

import numpy as np

from ..config import MIN_NOTE_S, PITCH_MAX, PITCH_MIN, DTWConfig, FeatureConfig
from ..errors import InputError
from ..notes import Notes
from .features import denormalise
from .mrmsdtw import mrmsdtw

REFERENCE_PITCH_RATE = 50  # synctoolbox filter-bank features are computed at this rate
# synctoolbox's chroma and DLNCO constants.
CHROMA_QUANT_STEPS = (0.4, 0.2, 0.1, 0.05)
CHROMA_NORM_THRESHOLD = 0.001
DLNCO_LOG_GAMMA = 10000.0
DLNCO_LOCAL_MAX_S = 0.8
DLNCO_LOCAL_FLOOR = 0.1
DLNCO_DECAY = np.sqrt(1 / np.arange(1, 11))


# ---------------------------------------------------------------- path API

def dtw_path(
    y: np.ndarray,
    notes: Notes,
    *,
    sample_rate: int,
    cfg: DTWConfig,
    cqt: np.ndarray | None = None,
    fps: int | None = None,
) -> np.ndarray:
    """Strictly monotonic (K, 2) path [MIDI time s, audio time s] aligning `notes` to mono audio `y`.

    `cqt` is an optional precomputed (88, T) log CQT from features.compute_features
    at `fps` frames/s (used by the "cqt" front end; computed here when absent).
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise InputError(f"dtw_path needs mono audio, got shape {y.shape}")
    valid = np.isfinite(notes.intervals).all(axis=1)
    if not valid.any():
        raise InputError("no notes with finite times to align")
    fr = cfg.feature_rate
    # Features start at MIDI time 0; notes before 0 are shifted in and out again.
    midi_origin = min(0.0, float(notes.intervals[valid, 0].min()))
    audio_dur = len(y) / sample_rate

    chroma_m, onset_m = midi_features(notes, fr, midi_origin, cfg.final_ring_s)
    if cfg.audio_features == "cqt":
        if cqt is None:
            fcfg = FeatureConfig(sample_rate=sample_rate)
            from .features import compute_features

            cqt, fps = compute_features(y, fcfg), fcfg.fps
        elif fps is None:
            raise ValueError("fps is required with a precomputed cqt")
        chroma_a, onset_a = cqt_audio_features(cqt, int(fps), cfg)
    else:
        chroma_a, onset_a = synctoolbox_audio_features(y, sample_rate, cfg)
    n_audio = int(np.ceil(audio_dur * fr)) + 1
    chroma_a, onset_a = _fit_length(chroma_a, n_audio), _fit_length(onset_a, n_audio)

    pad = int(round(cfg.pad_s * fr))
    chroma_m, onset_m = _pad(chroma_m, pad), _pad(onset_m, pad)
    chroma_a, onset_a = _pad(chroma_a, pad), _pad(onset_a, pad)

    wp = mrmsdtw(chroma_m, chroma_a, onset1=onset_m, onset2=onset_a, step_weights=cfg.step_weights,
                 threshold_rec=cfg.threshold_rec, win_len_smooth=cfg.win_len_smooth,
                 downsamp_smooth=cfg.downsamp_smooth, alpha=cfg.alpha,
                 tube=None if cfg.tube_s is None else int(round(cfg.tube_s * fr)))
    path = strictly_monotonic(wp.T).astype(np.float64) / fr - cfg.pad_s
    path[:, 0] += midi_origin
    return path


def warp_times(t: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Map MIDI times to audio times: linear through the path, slope 1 beyond its ends.

    Slope 1 outside: the path ends sit in padded silence where DTW's local slope
    says nothing about tempo, so keeping the original spacing is the safest guess.
    NaN stays NaN.
    """
    t = np.asarray(t, dtype=np.float64)
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) < 1:
        raise ValueError(f"path must be (K, 2) with K >= 1, got {path.shape}")
    x, y = path[:, 0], path[:, 1]
    if len(x) > 1 and not (np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)):
        raise ValueError("path must be strictly increasing in both columns")
    out = np.interp(t, x, y)
    out = np.where(t < x[0], y[0] + (t - x[0]), out)
    out = np.where(t > x[-1], y[-1] + (t - x[-1]), out)
    return out


def warp_notes(notes: Notes, path: np.ndarray, *, bias_s: float = 0.0) -> Notes:
    """Warp every onset, offset and pedal event; same notes, same order, offset >= onset + 10 ms."""
    on = warp_times(notes.onsets, path) + bias_s
    off = warp_times(notes.offsets, path) + bias_s
    off = np.where(np.isfinite(on) & np.isfinite(off), np.maximum(off, on + MIN_NOTE_S), off)
    pedal = notes.pedal.copy()
    if len(pedal):
        pedal[:, 0] = warp_times(pedal[:, 0], path) + bias_s
    return notes.with_times(np.stack([on, off], axis=1), pedal)


def align_notes(
    y: np.ndarray,
    notes: Notes,
    *,
    sample_rate: int,
    cfg: DTWConfig,
    cqt: np.ndarray | None = None,
    fps: int | None = None,
) -> tuple[Notes, np.ndarray]:
    """dtw_path then warp_notes with cfg.bias_s; returns (warped notes, path)."""
    path = dtw_path(y, notes, sample_rate=sample_rate, cfg=cfg, cqt=cqt, fps=fps)
    return warp_notes(notes, path, bias_s=cfg.bias_s), path


# ---------------------------------------------------------------- MIDI side

def midi_features(notes: Notes, feature_rate: int, origin: float = 0.0, final_ring_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(12, N) quantised chroma and (12, N) DLNCO of the notes, frame j centred on origin + j / feature_rate.

    Notes still sounding at the last onset are extended by final_ring_s in the chroma.
    """
    valid = np.isfinite(notes.intervals).all(axis=1)
    iv = notes.intervals[valid] - origin
    pitches = np.clip(notes.pitches[valid], PITCH_MIN, PITCH_MAX).astype(int)
    if final_ring_s > 0:
        iv = iv.copy()
        iv[iv[:, 1] >= iv[:, 0].max(), 1] += final_ring_s
    start = iv[:, 0]
    duration = np.maximum(iv[:, 1] - iv[:, 0], 1.0 / feature_rate)
    velocities = notes.velocities[valid].astype(np.float64)

    f_chroma = np.zeros((12, _n_pitch_frames(start, duration, feature_rate)))
    # pitch_to_chroma(pitch_energies(...)) a row at a time: the same additions in the same order.
    for pitch, row in pitch_energy_rows(start, duration, pitches=pitches, velocities=velocities, feature_rate=feature_rate):
        f_chroma[pitch % 12] += row
    chroma = quantize_chroma(f_chroma)
    f_peaks = onset_peaks(start, pitches=pitches, velocities=velocities)
    n = chroma.shape[1]
    # DLNCO indexes round(t * fr); keep every peak inside the sequence.
    _clip_peaks(f_peaks, (n - 1) * 1000.0 / feature_rate)
    dlnco = onsets_to_dlnco(f_peaks, feature_rate=feature_rate, length=n)
    return chroma, dlnco


def pitch_energies(start: np.ndarray, duration: np.ndarray, *, pitches: np.ndarray, velocities: np.ndarray,
                   feature_rate: int) -> np.ndarray:
    """(128, N) pitch energies of notes, N frames at feature_rate; all (n,) inputs, times in s.

    synctoolbox's ``df_to_pitch_features`` without pandas, equal to it bit for bit: frame
    w-1 (1-based window w) gathers velocity * the note's overlap with [(w-2) step, w step] / (2 step).
    """
    n_frames = _n_pitch_frames(start, duration, feature_rate)
    f_pitch = np.zeros((128, n_frames), dtype=np.float64)
    for pitch, row in pitch_energy_rows(start, duration, pitches=pitches, velocities=velocities, feature_rate=feature_rate):
        f_pitch[pitch] = row
    return f_pitch


def _n_pitch_frames(start: np.ndarray, duration: np.ndarray, feature_rate: int) -> int:
    return int(np.ceil((start + duration).max() * 1000 / (1000 / feature_rate))) if len(start) else 0


def pitch_energy_rows(start: np.ndarray, duration: np.ndarray, *, pitches: np.ndarray, velocities: np.ndarray,
                      feature_rate: int) -> Iterator[tuple[int, np.ndarray]]:
    """(pitch, (N,) row of pitch_energies) for each pitch the notes use, lowest first: one row in
    memory at a time (an hour at 100 frames/s is 2.9 MB a row, 370 MB for all 128)."""
    step_ms = 1 / feature_rate * 1000
    start_ms = 1000 * start
    end_ms = 1000 * (start + duration)
    n_frames = _n_pitch_frames(start, duration, feature_rate)
    first = np.floor(start_ms / step_ms).astype(int) + 1
    last = np.minimum(np.floor(end_ms / step_ms) + 2, n_frames).astype(int)
    count = np.maximum(last - first + 1, 0)
    note = np.repeat(np.arange(len(start)), count)
    window = first[note] + np.arange(len(note)) - np.repeat(np.cumsum(count) - count, count)
    right = window * step_ms
    contribution = (np.minimum(end_ms[note], right) - np.maximum(start_ms[note], right - 2 * step_ms)) / (2 * step_ms)
    energy = velocities[note] * contribution
    for pitch in np.unique(pitches):
        mine = pitches[note] == pitch
        row = np.zeros(n_frames, dtype=np.float64)
        # add.at sums in note order, as synctoolbox's loop does.
        np.add.at(row, window[mine] - 1, energy[mine])
        yield int(pitch), row


def onset_peaks(start: np.ndarray, *, pitches: np.ndarray, velocities: np.ndarray) -> dict:
    """Onset peaks {MIDI pitch: (2, K) [[ms...], [velocity / 1e6...]]} of notes; (n,) inputs, start in s.

    synctoolbox's ``df_to_pitch_onset_features`` without pandas, equal to it bit for bit,
    including its zero peaks that pad K to a multiple of 1000.
    """
    f_peaks: dict = {}
    for pitch in np.unique(pitches):
        mine = pitches == pitch
        n = int(mine.sum())
        peaks = np.zeros((2, 1000 * -(-n // 1000)))
        peaks[0, :n] = 1000 * start[mine]
        peaks[1, :n] = velocities[mine] / 1e6
        f_peaks[int(pitch)] = peaks[:, np.argsort(peaks[0])]
    return f_peaks


def _clip_peaks(f_peaks: dict, max_ms: float) -> None:
    for p, arr in f_peaks.items():
        arr = np.asarray(arr, dtype=np.float64).reshape(2, -1)
        arr[0] = np.clip(arr[0], 0.0, max_ms)
        f_peaks[p] = arr


# ---------------------------------------------------------------- chroma and DLNCO (synctoolbox's, in numpy)

def pitch_to_chroma(f_pitch: np.ndarray) -> np.ndarray:
    """(12, N) chroma: the rows of the (128, N) pitch features from MIDI 21 to 108 summed per pitch class.

    synctoolbox's ``pitch_to_chroma``, bit for bit (same additions in the same order).
    """
    f_pitch = np.asarray(f_pitch, dtype=np.float64)
    chroma = np.zeros((12, f_pitch.shape[1]))
    # Octave blocks of 12 pitches from 12 to 119, rows outside 21..108 left out, added low to high.
    for octave_start in range(12, 120, 12):
        for c in range(12):
            p = octave_start + c
            if PITCH_MIN <= p <= PITCH_MAX:
                chroma[c] += f_pitch[p]
    return chroma


def quantize_chroma(f_chroma: np.ndarray, *, quant_steps=CHROMA_QUANT_STEPS, norm_thresh: float = CHROMA_NORM_THRESHOLD) -> np.ndarray:
    """(12, N) quantised chroma: each frame l1-normalised (zero where no entry exceeds norm_thresh),
    then each entry scored 0.25 per step of quant_steps it exceeds. synctoolbox's ``quantize_chroma``."""
    f_chroma = np.asarray(f_chroma, dtype=np.float64)
    # Per-column sums over a contiguous copy: the same pairwise summation as synctoolbox's per-frame np.sum.
    energy = np.ascontiguousarray(f_chroma.T).sum(axis=1)
    active = (f_chroma > norm_thresh).any(axis=0)
    distr = np.zeros_like(f_chroma)
    distr[:, active] = f_chroma[:, active] / energy[active]
    quantized = np.zeros_like(f_chroma)
    for step in quant_steps:
        quantized += (distr > step) * (1 / len(quant_steps))
    return quantized


def onsets_to_dlnco(f_peaks: dict, *, feature_rate: int, length: int) -> np.ndarray:
    """(12, length) DLNCO features from onset peaks {MIDI pitch: (2, K) [[ms...], [height...]]}.

    synctoolbox's ``pitch_onset_features_to_DLNCO``: log(1 + 1e4 height) summed per chroma at frame
    round(t * feature_rate) (halves up), divided by the local max over +-0.4 s of the frame norms
    (at least 0.1), then each onset decays over 10 frames as sqrt(1 / n). Peaks must lie inside the
    sequence (see _clip_peaks).
    """
    pitches = [p for p in range(PITCH_MIN, PITCH_MAX + 1) if p in f_peaks]
    onsets = np.zeros((length, 12))
    if pitches:
        # Pitch by pitch, peak by peak: the additions in synctoolbox's order.
        times = np.concatenate([np.asarray(f_peaks[p][0, :] / 1000).reshape(-1) for p in pitches])
        values = np.concatenate([np.asarray(np.log(f_peaks[p][1, :] * DLNCO_LOG_GAMMA + 1)).reshape(-1) for p in pitches])
        chroma = np.concatenate([np.full(np.asarray(f_peaks[p]).shape[1], p % 12) for p in pitches])
        x = times * feature_rate
        frame = np.floor(x).astype(np.int64) + (x - np.floor(x) >= 0.5)  # MATLAB's round
        np.add.at(onsets, (frame, chroma), values)
    norms = np.linalg.norm(onsets, axis=1)
    filt = int(DLNCO_LOCAL_MAX_S * feature_rate)
    filt -= filt % 2
    local = np.maximum(max_filter(norms[None, :], filt + 1)[0], DLNCO_LOCAL_FLOOR)
    normalised = onsets / local[:, None]
    # Decay: frame k takes max over n < 10 of DLNCO_DECAY[n] * normalised[k - n].
    n_coef = len(DLNCO_DECAY)
    padded = np.concatenate([np.zeros((n_coef - 1, 12)), normalised])
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_coef, axis=0)  # (length, 12, n_coef), oldest first
    return (windows * DLNCO_DECAY[::-1]).max(axis=2).T


def max_filter(x: np.ndarray, size: int) -> np.ndarray:
    """Centred running maximum of odd length `size` along the last axis of (d, T) x, zeros beyond the
    ends: scipy.ndimage.maximum_filter1d(x, size, axis=1, mode="constant") in O(T) (van Herk / Gil-Werman)."""
    x = np.asarray(x)
    if size % 2 != 1:
        raise ValueError(f"max_filter needs an odd size, got {size}")
    if size == 1:
        return x.copy()
    d, t = x.shape
    half = size // 2
    n_blocks = -(-(t + 2 * half) // size) + 1
    padded = np.zeros((d, n_blocks * size), dtype=x.dtype)
    padded[:, half:half + t] = x
    blocks = padded.reshape(d, n_blocks, size)
    forward = np.maximum.accumulate(blocks, axis=2).reshape(d, -1)  # max from each block's start
    backward = np.maximum.accumulate(blocks[:, :, ::-1], axis=2)[:, :, ::-1].reshape(d, -1)  # to its end
    # Window [s, s + size) spans the end of one block and the start of the next.
    s = np.arange(t)
    return np.maximum(backward[:, s], forward[:, s + size - 1])


def centred_filter(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(d, T) x convolved along its last axis with an odd-length symmetric window, centred, zeros beyond
    the ends: scipy.ndimage.convolve1d(x, window, axis=1, mode="constant")."""
    half = len(window) // 2
    padded = np.pad(x, ((0, 0), (half, half)))
    return np.lib.stride_tricks.sliding_window_view(padded, len(window), axis=1) @ window[::-1]


# ---------------------------------------------------------------- audio side

def cqt_audio_features(cqt: np.ndarray, fps: int, cfg: DTWConfig) -> tuple[np.ndarray, np.ndarray]:
    """(12, N) quantised chroma and (12, N) DLNCO from an (88, T) log CQT (features.normalise, log=True).

    Key by key, so memory holds a few float64 rows, not (128, T) matrices (an hour: 370 MB each).
    """
    if cqt.ndim != 2 or cqt.shape[0] != PITCH_MAX - PITCH_MIN + 1:
        raise ValueError(f"cqt must be (88, T), got {cqt.shape}")
    fr = cfg.feature_rate
    if fps % fr:
        raise ValueError(f"cqt fps {fps} must be a multiple of the feature rate {fr}")
    step = fps // fr
    n_out = (cqt.shape[1] - 1) // step + 1
    win = np.bartlett(2 * step + 1)[1:-1]
    win /= win.sum()

    f_chroma = np.zeros((12, n_out))
    for key in range(cqt.shape[0]):  # low to high: pitch_to_chroma's order of additions
        # Energies like synctoolbox's STMSP.
        energy = denormalise(cqt[key:key + 1]) ** 2
        # Frame j must be centred on j / fr: a centred triangle over 2 * step - 1 frames, then decimate.
        if step > 1:
            energy = centred_filter(energy, win)
        f_chroma[(key + PITCH_MIN) % 12] += energy[0, ::step][:n_out]
    chroma = quantize_chroma(f_chroma)

    f_peaks = cqt_onset_peaks(cqt, fps, cfg)
    _clip_peaks(f_peaks, (n_out - 1) * 1000.0 / fr)
    dlnco = onsets_to_dlnco(f_peaks, feature_rate=fr, length=n_out)
    return chroma, dlnco


def cqt_onset_peaks(logc: np.ndarray, fps: int, cfg: DTWConfig) -> dict:
    """Per-pitch onset peaks {midi pitch: [[ms...], [height...]]} from half-wave rectified log-CQT flux
    of the (88, T) log CQT, key by key."""
    f_peaks: dict = {}
    for key in range(logc.shape[0]):
        row = np.asarray(logc[key], dtype=np.float64)
        flux = np.zeros((1, len(row)))
        flux[0, 1:] = np.maximum(row[1:] - row[:-1], 0.0)
        # Peaks: local maxima over +-30 ms, above an absolute floor and a fraction of the local 2 s max.
        near = max_filter(flux, 2 * int(round(0.03 * fps)) + 1)
        k = np.flatnonzero((flux[0] == near[0]) & (flux[0] >= cfg.onset_threshold))
        if not len(k):
            continue
        # The 2 s max only where it matters, at the candidate peaks (few): same values as a full filter.
        padded = np.pad(flux[0], (fps, fps))
        wide = np.lib.stride_tricks.sliding_window_view(padded, 2 * fps + 1)[k].max(axis=1)
        k = k[flux[0, k] >= cfg.onset_rel_threshold * wide]
        if not len(k):
            continue
        # The flux at frame k is the rise between frames k-1 and k: the onset sits half a frame earlier.
        t_ms = ((k - 0.5) / fps + cfg.onset_shift_s) * 1000.0
        # Heights in the range synctoolbox's MIDI peaks use (velocity / 1e6), before its log(1 + 1e4 x).
        f_peaks[key + PITCH_MIN] = np.stack([np.maximum(t_ms, 0.0), flux[0, k] * 1e-2])
    return f_peaks


def synctoolbox_audio_features(y: np.ndarray, sample_rate: int, cfg: DTWConfig) -> tuple[np.ndarray, np.ndarray]:
    """The reference: synctoolbox's filter-bank pitch and onset features at 22050 Hz."""
    import soxr
    # The reference only: synctoolbox (numba, scipy, matplotlib) is imported here, never on the default path.
    from synctoolbox.feature import pitch, pitch_onset

    fs = cfg.reference_sample_rate
    x = np.asarray(y, dtype=np.float64)
    if sample_rate != fs:
        # Its filter bank is designed for 22050 Hz only.
        x = soxr.resample(x, sample_rate, fs, quality="HQ")
    # Its STMSP hop is int(fs / rate) samples, so a rate that does not divide 22050 Hz would drift:
    # compute at its native 50 frames/s and interpolate to the feature rate.
    native = cfg.feature_rate if fs % cfg.feature_rate == 0 else REFERENCE_PITCH_RATE
    with contextlib.redirect_stdout(io.StringIO()):
        f_pitch = pitch.audio_to_pitch_features(f_audio=x, Fs=fs, feature_rate=native)
        f_peaks = pitch_onset.audio_to_pitch_onset_features(f_audio=x, Fs=fs)
    if native != cfg.feature_rate:
        t_native = np.arange(f_pitch.shape[1]) / native
        t_out = np.arange(int(np.floor(t_native[-1] * cfg.feature_rate)) + 1) / cfg.feature_rate
        f_pitch = np.stack([np.interp(t_out, t_native, row) for row in f_pitch])
    chroma = quantize_chroma(pitch_to_chroma(f_pitch))
    n = chroma.shape[1]
    _clip_peaks(f_peaks, (n - 1) * 1000.0 / cfg.feature_rate)
    dlnco = onsets_to_dlnco(f_peaks, feature_rate=cfg.feature_rate, length=n)
    return chroma, dlnco


# ---------------------------------------------------------------- helpers

def _fit_length(f: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad (d, T) features to n frames."""
    if f.shape[1] >= n:
        return f[:, :n]
    return np.pad(f, ((0, 0), (0, n - f.shape[1])))


def _pad(f: np.ndarray, n: int) -> np.ndarray:
    """n frames of silence (zeros) at both ends; chroma zeros become the uniform vector in mrmsdtw."""
    return np.pad(f, ((0, 0), (n, n))) if n > 0 else f


def strictly_monotonic(path: np.ndarray) -> np.ndarray:
    """The (K, 2) index path's diagonal steps, plus its first and last point: strictly increasing in both columns.

    libfmp's compute_strict_alignment_path_mask, which synctoolbox wraps, without importing libfmp.
    """
    end = path[-1]
    keep = np.concatenate([[True], (path[1:, 0] > path[:-1, 0]) & (path[1:, 1] > path[:-1, 1])])
    keep[(path[:, 0] == end[0]) | (path[:, 1] == end[1])] = False
    keep[-1] = True
    return path[keep]
