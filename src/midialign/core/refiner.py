"""The refinement stage: rounds of the network plus decoding, the DTW fallback and the pedal.

    refine(notes, feats, model=..., inference=..., keep_low_confidence=True) -> Refinement
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import InferenceConfig
from ..notes import Notes
from .decode import local_median_shift, refine_notes
from .network import LoadedModel, predict_probs
from .roll import notes_to_roll

# Pedal events follow the median shift of the notes within this many seconds.
PEDAL_WINDOW_S = 1.0


@dataclass(frozen=True)
class Refinement:
    """notes: the input re-timed; moved: (n,) bool, placed on a detection; confidence: (n,) in [0, 1];
    network_s, decode_s: seconds spent in the network and in decoding."""

    notes: Notes
    moved: np.ndarray
    confidence: np.ndarray
    network_s: float
    decode_s: float


def refine(notes: Notes, feats: np.ndarray, *, model: LoadedModel, inference: InferenceConfig = InferenceConfig(),
           keep_low_confidence: bool = False, progress: Callable[[float], None] | None = None) -> Refinement:
    """Move notes onto the audio with inference.passes rounds of the network.

    feats: (88, T) features of the recording at model.feature_cfg.fps (core.features.compute_features).
    keep_low_confidence: notes below inference.min_confidence keep their time from before the round
    (use it when `notes` come from DTW: its time is then the safer answer).
    A later round starts from the last one's notes, closer to the audio like most training inputs;
    between rounds, unconfident notes are recentred on their confident neighbours (recentre).
    progress: called with the share of the network's work done, 0-1.
    """
    current = notes
    moved = np.zeros(len(notes), bool)
    conf = np.zeros(len(notes))
    network_s = decode_s = 0.0
    for k in range(inference.passes):
        if k:
            current = recentre(notes, current, anchors=moved & (conf >= inference.anchor_confidence), window_s=inference.anchor_window_s)
        t = time.perf_counter()
        # Notes before 0 s start the roll at frame 0 (notes_to_roll clips them); moving every note
        # later instead would put the whole roll off the audio.
        roll = notes_to_roll(current, model.feature_cfg.fps, feats.shape[1])
        done = (lambda f, k=k: progress((k + f) / inference.passes)) if progress is not None else None
        prob = predict_probs(model.model, roll, feats, fps=model.feature_cfg.fps, cfg=inference, progress=done)
        t2 = time.perf_counter()
        network_s += t2 - t
        refined = refine_notes(current, prob, fps=model.feature_cfg.fps, cfg=inference)
        new = refined.notes.intervals.copy()
        conf = refined.confidence
        moved_now = refined.moved
        if keep_low_confidence:
            unsure = conf < inference.min_confidence
            new[unsure] = current.intervals[unsure]
            moved_now = moved_now & ~unsure
        current = current.with_times(new, warp_pedal(current, new))
        moved |= moved_now
        decode_s += time.perf_counter() - t2
    return Refinement(current, moved, conf, network_s, decode_s)


def recentre(start: Notes, current: Notes, *, anchors: np.ndarray, window_s: float) -> Notes:
    """Anchors keep their place; every other note goes back to its start time plus the
    median shift of the anchors within ±window_s of it (its current place if there are none).

    anchors: (n,) bool. Errors of the input (DTW's) are shared by neighbours, and the
    network finds a note best when it starts close.
    """
    if not anchors.any() or anchors.all():
        return current
    rest = np.flatnonzero(~anchors)
    shifts = local_median_shift(start.onsets[anchors], current.onsets[anchors] - start.onsets[anchors], start.onsets[rest], window_s)
    near = np.isfinite(shifts)
    new = current.intervals.copy()
    new[rest[near]] = start.intervals[rest[near]] + shifts[near, None]
    return current.with_times(new, warp_pedal(start, new))


def warp_pedal(notes: Notes, new: np.ndarray) -> np.ndarray:
    """Pedal events (m, 2) moved by the median shift of the notes within PEDAL_WINDOW_S.

    new: (n, 2) new intervals of `notes`. Events with no note near stay; event order is kept.
    """
    if len(notes.pedal) == 0:
        return notes.pedal
    ped = notes.pedal.copy()
    shifts = local_median_shift(notes.onsets, new[:, 0] - notes.onsets, ped[:, 0], PEDAL_WINDOW_S)
    ped[:, 0] += np.nan_to_num(shifts)
    ped[:, 0] = np.maximum.accumulate(ped[:, 0])
    return ped
