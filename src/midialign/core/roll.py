"""Binary and soft piano rolls (88 x frames), and reading times back from probability rolls.

Frame k is centred on time k / fps. A note covers frames
[round(onset*fps), round(offset*fps)), at least one frame.
"""
from __future__ import annotations

import numpy as np

from ..config import N_KEYS, PITCH_MIN
from ..notes import Notes


def time_to_frame(t: np.ndarray | float, fps: float) -> np.ndarray:
    return np.rint(np.asarray(t, dtype=np.float64) * fps).astype(np.int64)


def notes_to_roll(notes: Notes, fps: float, n_frames: int | None = None, restrike_gap: bool = True) -> np.ndarray:
    """Binary roll of shape (88, n_frames), float32.

    Where a note starts while the same pitch still sounds (or ends on the
    very frame it starts), the frame just before the new onset is cleared so
    the re-strike stays visible.
    """
    valid = np.isfinite(notes.intervals).all(axis=1)
    iv, pitches = notes.intervals[valid], notes.pitches[valid]
    start = np.maximum(time_to_frame(iv[:, 0], fps), 0)
    end = np.maximum(time_to_frame(iv[:, 1], fps), start + 1)
    if n_frames is None:
        n_frames = int(end.max()) + 1 if len(end) else 1
    roll = np.zeros((N_KEYS, n_frames), dtype=np.float32)
    keys = pitches - PITCH_MIN
    for k, s, e in zip(keys, start, end):
        if s < n_frames:
            roll[k, s:min(e, n_frames)] = 1.0
    if restrike_gap:
        for key in np.unique(keys):
            s, e = start[keys == key], end[keys == key]
            order = np.argsort(s, kind="stable")
            s, e = s[order], e[order]
            # A note is a re-strike when an earlier-starting note of its key still sounds at its frame.
            n_earlier = np.searchsorted(s, s, side="left")
            latest_end = np.maximum.accumulate(e)
            restruck = (n_earlier > 0) & (latest_end[np.maximum(n_earlier - 1, 0)] >= s)
            gaps = s[restruck & (s > 0) & (s < n_frames)]
            roll[key, gaps - 1] = 0.0
    return roll


def onset_roll(notes: Notes, fps: float, n_frames: int, half_width: float = 1.5) -> np.ndarray:
    """Soft onset targets (88, n_frames): a triangle of half_width frames around each exact onset.

    The triangle keeps the sub-frame onset time in the values either side of
    the peak, which the peak interpolation in decode.onset_peaks reads back.
    """
    roll = np.zeros((N_KEYS, n_frames), dtype=np.float32)
    valid = np.isfinite(notes.onsets)
    centre = notes.onsets[valid] * fps
    keys = notes.pitches[valid] - PITCH_MIN
    reach = int(np.ceil(half_width))
    for off in range(-reach, reach + 1):
        frame = np.rint(centre).astype(np.int64) + off
        value = np.clip(1.0 - np.abs(frame - centre) / half_width, 0.0, 1.0).astype(np.float32)
        ok = (frame >= 0) & (frame < n_frames) & (value > 0)
        np.maximum.at(roll, (keys[ok], frame[ok]), value[ok])
    return roll


def active_segments(prob: np.ndarray, threshold: float):
    """Yield (key index, first frame, end frame exclusive) of every run of prob >= threshold."""
    active = prob >= threshold
    for key in np.flatnonzero(active.any(axis=1)):
        edges = np.diff(np.concatenate([[0], active[key].astype(np.int8), [0]]))
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            yield int(key), int(s), int(e)


def crossing_frame(row: np.ndarray, k: int, threshold: float) -> float:
    """Fractional frame of the threshold crossing between frames k-1 and k.

    A hard 0->1 step at frame k maps back to exactly k, matching
    round(t * fps) in notes_to_roll.
    """
    if k <= 0 or k >= len(row):
        return float(k)
    a, b = row[k - 1], row[k]
    if a == b:
        return float(k)
    frac = (threshold - a) / (b - a)
    return float(k - 0.5 + np.clip(frac, 0.0, 1.0))
