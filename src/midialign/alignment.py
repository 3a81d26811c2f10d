"""The result of an alignment: the input notes, the same notes re-timed, and how sure each is."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import InferenceConfig
from .notes import Notes, same_identity


@dataclass(frozen=True)
class Alignment:
    """notes[i] is input_notes[i] at its new time (seconds in the recording).

    moved: (n,) bool, the refiner moved this note onto the audio.
    confidence: (n,) float in [0, 1].
    path: (K, 2) [input time s, audio time s] from the DTW stage, or None.
    timings: seconds per stage. min_confidence: the threshold the alignment was made with.
    input_index: (n,) int, note i's row in the input file (readers sort notes and may drop some);
    None means the input's own order, 0..n-1.
    match_score: core.evidence's median level of the notes' pitches at their aligned onsets, 0-1
    (NaN: not measured); transposition: semitones the recording sounds away from the notes, or 0.
    """

    input_notes: Notes
    notes: Notes
    moved: np.ndarray
    confidence: np.ndarray
    method: str
    audio_duration_s: float
    path: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    min_confidence: float = InferenceConfig.min_confidence
    input_index: np.ndarray | None = None
    match_score: float = float("nan")
    transposition: int = 0

    def __post_init__(self) -> None:
        index = np.arange(len(self.notes)) if self.input_index is None else np.asarray(self.input_index, dtype=np.int64)
        if index.shape != (len(self.notes),):
            raise ValueError(f"input_index needs one entry per note ({len(self.notes)}), got shape {index.shape}")
        object.__setattr__(self, "input_index", index)
        if not same_identity(self.input_notes, self.notes):
            raise ValueError("aligned notes must keep the input's count, pitches and order")
        if len(self.moved) != len(self.notes) or len(self.confidence) != len(self.notes):
            raise ValueError(f"moved ({len(self.moved)}) and confidence ({len(self.confidence)}) need one entry per note ({len(self.notes)})")

    @property
    def low_confidence(self) -> np.ndarray:
        """(n,) bool: notes below the confidence threshold."""
        return self.confidence < self.min_confidence

    @property
    def share_moved(self) -> float:
        return float(self.moved.mean()) if len(self.moved) else 0.0

    def summary(self) -> dict:
        low = np.flatnonzero(self.low_confidence)
        return {
            "method": self.method,
            "n_notes": len(self.notes),
            "audio_duration_s": round(self.audio_duration_s, 3),
            "share_moved": round(self.share_moved, 4),
            "n_low_confidence": int(len(low)),
            "low_confidence_threshold": self.min_confidence,
            "low_confidence_notes": low[:200].tolist(),
            "match_score": round(self.match_score, 4) if np.isfinite(self.match_score) else None,
            "transposition_semitones": self.transposition,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
        }
