"""The note list every stage passes around.

Notes are kept sorted by (onset, pitch, offset). An aligner changes times
only: output note i is input note i with new onset/offset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import PITCH_MAX, PITCH_MIN


@dataclass(frozen=True)
class Notes:
    """Notes in seconds. intervals is (n, 2) [onset, offset]; pitches are MIDI 21-108.

    pedal is (m, 2) [time s, CC64 value 0-127], sorted by time.
    """

    intervals: np.ndarray
    pitches: np.ndarray
    velocities: np.ndarray
    pedal: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def __post_init__(self) -> None:
        iv = np.asarray(self.intervals, dtype=np.float64).reshape(-1, 2)
        p = np.asarray(self.pitches).astype(np.int64).reshape(-1)
        v = np.asarray(self.velocities).astype(np.int64).reshape(-1)
        ped = np.asarray(self.pedal, dtype=np.float64).reshape(-1, 2)
        if not (len(iv) == len(p) == len(v)):
            raise ValueError(f"intervals ({len(iv)}), pitches ({len(p)}) and velocities ({len(v)}) differ in length")
        if len(p) and (p.min() < PITCH_MIN or p.max() > PITCH_MAX):
            raise ValueError(f"pitches must lie in {PITCH_MIN}-{PITCH_MAX}, got {p.min()}-{p.max()}")
        finite = np.isfinite(iv).all(axis=1)
        if np.any(iv[finite, 1] < iv[finite, 0]):
            raise ValueError("a note ends before it starts (offset < onset)")
        object.__setattr__(self, "intervals", iv)
        object.__setattr__(self, "pitches", p)
        object.__setattr__(self, "velocities", np.clip(v, 1, 127))
        object.__setattr__(self, "pedal", ped[np.argsort(ped[:, 0], kind="stable")] if len(ped) else ped)

    def __len__(self) -> int:
        return len(self.pitches)

    @property
    def onsets(self) -> np.ndarray:
        return self.intervals[:, 0]

    @property
    def offsets(self) -> np.ndarray:
        return self.intervals[:, 1]

    @property
    def end_time(self) -> float:
        t = self.intervals[np.isfinite(self.intervals)]
        return float(t.max()) if t.size else 0.0

    def order(self) -> np.ndarray:
        """Indices that put notes into the canonical (onset, pitch, offset) order."""
        return np.lexsort((self.offsets, self.pitches, self.onsets))

    def sorted(self) -> "Notes":
        idx = self.order()
        return Notes(self.intervals[idx], self.pitches[idx], self.velocities[idx], self.pedal)

    def with_times(self, intervals: np.ndarray, pedal: np.ndarray | None = None) -> "Notes":
        """Same notes (same count, pitch, velocity, order) at new times."""
        intervals = np.asarray(intervals, dtype=np.float64)
        if intervals.shape != self.intervals.shape:
            raise ValueError(f"new intervals have shape {intervals.shape}, expected {self.intervals.shape}")
        return Notes(intervals, self.pitches, self.velocities, self.pedal if pedal is None else pedal)

    def subset(self, mask: np.ndarray) -> "Notes":
        return Notes(self.intervals[mask], self.pitches[mask], self.velocities[mask], self.pedal)

    def shifted(self, seconds: float) -> "Notes":
        ped = self.pedal.copy()
        ped[:, 0] += seconds
        return Notes(self.intervals + seconds, self.pitches, self.velocities, ped)


def same_identity(a: Notes, b: Notes) -> bool:
    """True when b is a re-timing of a: same count, pitches and velocities, index by index."""
    return len(a) == len(b) and np.array_equal(a.pitches, b.pitches) and np.array_equal(a.velocities, b.velocities)
