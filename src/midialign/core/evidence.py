"""Is this the right recording? A match score from the audio itself, and transposition checks.

A note that sounds where the alignment put it raises its own CQT bin there. The match score is
the median, over notes, of the log-CQT level at the note's pitch in the 60 ms from its aligned
onset (features.normalise scale: 1 is about the piece's loudest bin). It does not use the
network, so a refiner that moves notes onto whatever is nearby cannot inflate it.

With the default method, the 99 validation cases (asap_score renders and real ENSTDkAm
recordings) scored 0.70-0.90 and 20 wrong-piece pairs made from them 0.35-0.58
(benchmarks/match_check.py, docs/robustness.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import PITCH_MAX, PITCH_MIN, EvidenceConfig
from ..notes import Notes


def note_levels(feats: np.ndarray, notes: Notes, *, fps: int, cfg: EvidenceConfig, shift: int = 0) -> np.ndarray:
    """(n,) level of each note's pitch + shift (semitones) in its first cfg.window_s after its onset.

    feats: (88, T) normalised log CQT, frame k centred on k / fps. NaN for notes whose shifted
    pitch leaves the piano or whose onset lies outside the audio's inner part.
    """
    feats = np.asarray(feats)
    if feats.ndim != 2 or feats.shape[0] != PITCH_MAX - PITCH_MIN + 1:
        raise ValueError(f"feats must be (88, T), got {feats.shape}")
    n_frames = feats.shape[1]
    width = max(1, int(round(cfg.window_s * fps)))
    start = np.round(notes.onsets * fps)
    key = notes.pitches.astype(np.int64) + shift - PITCH_MIN
    valid = np.isfinite(start) & (start >= 0) & (start + width <= n_frames) & (key >= 0) & (key < feats.shape[0])
    out = np.full(len(notes), np.nan)
    k, s = key[valid], start[valid].astype(np.int64)
    out[valid] = np.max([feats[k, s + d] for d in range(width)], axis=0)
    return out


def match_score(feats: np.ndarray, notes: Notes, *, fps: int, cfg: EvidenceConfig, shift: int = 0) -> float:
    """Median note level (note_levels) in [0, 1]; NaN when no note can be measured."""
    levels = note_levels(feats, notes, fps=fps, cfg=cfg, shift=shift)
    levels = levels[np.isfinite(levels)]
    return float(np.median(levels)) if len(levels) else float("nan")


@dataclass(frozen=True)
class MatchCheck:
    """score: match_score of the aligned notes (NaN: none measurable); transposition: semitones by
    which the recording sounds away from the notes (+12: an octave higher), 0 when it does not."""

    score: float
    transposition: int

    def warning(self, cfg: EvidenceConfig) -> str | None:
        """One line for the user, or None when the notes match the recording."""
        if self.transposition:
            way = "higher" if self.transposition > 0 else "lower"
            size = "an octave" if abs(self.transposition) == 12 else "a semitone"
            return (f"the recording sounds {size} {way} than the MIDI (match score {self.score:.2f}): "
                    f"is the MIDI transposed by {-self.transposition:+d} semitones?")
        if np.isfinite(self.score) and self.score < cfg.min_score:
            return (f"match score {self.score:.2f} is below {cfg.min_score:.2f}: "
                    "the recording may not be of these notes (right pieces score 0.70-0.90)")
        return None


def check_match(feats: np.ndarray, notes: Notes, *, fps: int, cfg: EvidenceConfig,
                realign: Callable[[Notes], Notes] | None = None) -> MatchCheck:
    """The match score of aligned notes and the transposition, if any, it reveals.

    At the aligned times, the level at pitch + shift for shift -12, -1, +1, +12 is compared with
    the notes' own: a transposed MIDI still aligns (DTW's chroma ignores octaves, and a semitone's
    neighbour leaks into its bin), so only these comparisons reveal it. A semitone is confirmed
    by aligning the shifted notes again with realign (notes -> aligned notes), when given: a right
    MIDI then scores lower, a transposed one clearly higher.
    """
    own = match_score(feats, notes, fps=fps, cfg=cfg)
    if not np.isfinite(own):
        return MatchCheck(own, 0)
    margins = {-12: cfg.octave_below_margin, 12: cfg.octave_above_margin, -1: cfg.semitone_margin, 1: cfg.semitone_margin}
    shifted = {s: match_score(feats, notes, fps=fps, cfg=cfg, shift=s) for s in margins}
    gains = {s: shifted[s] - own - m if np.isfinite(shifted[s]) else -np.inf for s, m in margins.items()}
    for shift in sorted(gains, key=lambda s: -gains[s]):
        if gains[shift] <= 0:
            break
        if abs(shift) == 12 or realign is None:
            # The notes at the shifted pitch must score like a right pair, not just less badly.
            if shifted[shift] >= cfg.min_score:
                return MatchCheck(own, shift)
            continue
        moved = Notes(notes.intervals, np.clip(notes.pitches + shift, PITCH_MIN, PITCH_MAX), notes.velocities, notes.pedal)
        again = match_score(feats, realign(moved), fps=fps, cfg=cfg)
        if again > own + cfg.semitone_confirm_gain and again >= cfg.min_score:
            return MatchCheck(own, shift)
    return MatchCheck(own, 0)
