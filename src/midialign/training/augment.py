"""Timing augmentation that makes a loosely aligned input from true notes.

Parameters are drawn from a seeded numpy Generator (draw_*), then applied
deterministically (apply_*), so a manifest can store and replay them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MIN_NOTE_S, AugmentConfig
from ..notes import Notes



@dataclass(frozen=True)
class TimingParams:
    """Everything needed to replay one augmentation."""

    onset_shift: np.ndarray  # (n,) s
    offset_shift: np.ndarray  # (n,) s
    tempo: float
    warp_knots_t: np.ndarray  # (k,) s, increasing
    warp_knots_dt: np.ndarray  # (k,) s, displacement at each knot
    drop: np.ndarray  # (n,) bool: note removed from input and target
    extra: np.ndarray  # (m, 4) onset, offset, pitch, velocity: input-only notes

    def to_json(self) -> dict:
        return {
            "tempo": self.tempo,
            "warp_knots_t": self.warp_knots_t.round(5).tolist(),
            "warp_knots_dt": self.warp_knots_dt.round(5).tolist(),
            "n_dropped": int(self.drop.sum()),
            "n_extra": int(len(self.extra)),
        }


def draw_jitter(n: int, jitter_s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(-jitter_s, jitter_s, n), rng.uniform(-jitter_s, jitter_s, n)


def apply_jitter(notes: Notes, onset_shift: np.ndarray, offset_shift: np.ndarray) -> Notes:
    """Shift onsets and offsets independently; offsets stay >= onset + 10 ms."""
    on = notes.onsets + onset_shift
    off = np.maximum(notes.offsets + offset_shift, on + MIN_NOTE_S)
    return notes.with_times(np.stack([on, off], axis=1))


def draw_chord_spread(notes: Notes, spread_s: float, rng: np.random.Generator, chord_window_s: float = 0.03) -> np.ndarray:
    """Per-note onset offsets that spread each chord (notes within chord_window_s) like a pianist's hand.

    Each chord gets a width from U(0, spread_s) and its notes offsets from U(-width/2, width/2); single notes stay.
    """
    shift = np.zeros(len(notes))
    if spread_s <= 0 or len(notes) == 0:
        return shift
    on = notes.onsets
    group_start = np.concatenate([[True], np.diff(on) > chord_window_s])
    groups = np.cumsum(group_start) - 1
    width = rng.uniform(0, spread_s, groups[-1] + 1)
    in_chord = np.bincount(groups)[groups] > 1
    return np.where(in_chord, rng.uniform(-0.5, 0.5, len(notes)) * width[groups], 0.0)


def draw_warp(duration_s: float, max_dev_s: float, knots_per_10s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a smooth displacement curve, |dt| <= max_dev_s, kept monotone by construction."""
    k = max(2, int(np.ceil(duration_s / 10.0 * knots_per_10s)) + 1)
    t = np.linspace(0.0, max(duration_s, 1e-3), k)
    dt = rng.uniform(-max_dev_s, max_dev_s, k)
    # Keep |slope| well below 1 so t + d(t) stays strictly increasing.
    spacing = t[1] - t[0]
    dt = np.clip(dt, -0.15 * spacing, 0.15 * spacing)
    return t, dt


def warp_by_knots(times: np.ndarray, knots_t: np.ndarray, knots_dt: np.ndarray) -> np.ndarray:
    """Apply the displacement curve with monotone cubic (PCHIP) interpolation."""
    from scipy.interpolate import PchipInterpolator

    if len(knots_t) < 2:
        return times.copy()
    curve = PchipInterpolator(knots_t, knots_dt, extrapolate=False)
    d = curve(np.clip(times, knots_t[0], knots_t[-1]))
    return times + np.nan_to_num(d)


def draw_timing(notes: Notes, cfg: AugmentConfig, rng: np.random.Generator) -> TimingParams:
    n = len(notes)
    on_j, off_j = draw_jitter(n, cfg.jitter_s, rng)
    on_j = on_j + draw_chord_spread(notes, cfg.chord_spread_s, rng)
    tempo = float(rng.uniform(1 - cfg.tempo_range, 1 + cfg.tempo_range)) if cfg.tempo_range > 0 else 1.0
    kt, kdt = draw_warp(notes.end_time, cfg.warp_max_s, cfg.warp_knots_per_10s, rng) if cfg.warp_max_s > 0 else (np.zeros(0), np.zeros(0))
    drop = rng.random(n) < cfg.p_drop
    m = int(rng.binomial(n, cfg.p_extra)) if n else 0
    extra = np.zeros((m, 4))
    if m:
        src = rng.integers(0, n, m)
        extra[:, 0] = notes.onsets[src] + rng.uniform(-0.5, 0.5, m)
        extra[:, 1] = extra[:, 0] + rng.uniform(0.05, 0.5, m)
        extra[:, 2] = np.clip(notes.pitches[src] + rng.choice([-12, -2, -1, 1, 2, 12], m), 21, 108)
        extra[:, 3] = 64
    return TimingParams(on_j, off_j, tempo, kt, kdt, drop, extra)


def apply_timing(notes: Notes, p: TimingParams) -> tuple[Notes, Notes]:
    """Return (loose input, matching target). Dropped notes leave both; extra notes join the input only."""
    loose = apply_jitter(notes, p.onset_shift, p.offset_shift)
    iv = loose.intervals
    if len(p.warp_knots_t):
        iv = np.stack([warp_by_knots(iv[:, 0], p.warp_knots_t, p.warp_knots_dt), warp_by_knots(iv[:, 1], p.warp_knots_t, p.warp_knots_dt)], 1)
        iv[:, 1] = np.maximum(iv[:, 1], iv[:, 0] + MIN_NOTE_S)
    iv = iv * p.tempo
    keep = ~p.drop
    loose = Notes(iv[keep], notes.pitches[keep], notes.velocities[keep])
    target = notes.subset(keep)
    if len(p.extra):
        ex = p.extra.copy()
        ex[:, :2] *= p.tempo
        loose = Notes(np.concatenate([loose.intervals, ex[:, :2]]), np.concatenate([loose.pitches, ex[:, 2]]), np.concatenate([loose.velocities, ex[:, 3]]))
    return loose, target


def clip_notes(notes: Notes, start: float, end: float) -> Notes:
    """Notes sounding in [start, end), clipped to it and shifted to start at 0."""
    on, off = notes.onsets, notes.offsets
    keep = (off > start) & (on < end)
    iv = np.clip(notes.intervals[keep], start, end) - start
    ped = notes.pedal[(notes.pedal[:, 0] >= start) & (notes.pedal[:, 0] < end)] if len(notes.pedal) else notes.pedal
    ped = ped.copy()
    if len(ped):
        ped[:, 0] -= start
    return Notes(iv, notes.pitches[keep], notes.velocities[keep], ped)
