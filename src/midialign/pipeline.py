"""The end-to-end aligner and its Python API: midialign.align(audio, midi, method=...)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import FeatureConfig, InferenceConfig
from .notes import InputError, Notes, read_notes, same_identity

log = logging.getLogger("midialign")

METHODS = ("none", "dtw", "crnn", "dtw+crnn")
DEFAULT_METHOD = "dtw+crnn"


@dataclass
class Alignment:
    """Result of an alignment. notes[i] is input_notes[i] at its new time."""

    input_notes: Notes
    notes: Notes
    moved: np.ndarray  # (n,) bool: the refiner moved this note
    confidence: np.ndarray  # (n,) float in [0, 1]
    method: str
    audio_duration_s: float
    path: np.ndarray | None = None  # (K, 2) [input time s, audio time s] from the DTW stage
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    min_confidence: float = InferenceConfig.min_confidence  # the threshold this alignment was made with

    def __post_init__(self) -> None:
        if not same_identity(self.input_notes, self.notes):
            raise ValueError("aligned notes must keep the input's count, pitches and order")

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
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "warnings": self.warnings,
        }


AudioInput = str | Path | tuple[np.ndarray, int]
NotesInput = str | Path | Notes


def _load_inputs(audio: AudioInput, midi: NotesInput, sample_rate: int) -> tuple[np.ndarray, Notes]:
    from .features import check_audio, load_audio, prepare_audio

    if isinstance(audio, tuple):
        y = check_audio(prepare_audio(audio[0], int(audio[1]), sample_rate), sample_rate)
    else:
        y = load_audio(audio, sample_rate)
    notes = midi if isinstance(midi, Notes) else read_notes(midi)
    if len(notes) == 0:
        raise InputError("the MIDI has no notes")
    if not np.isfinite(notes.intervals).all():
        raise InputError("note times must be finite")
    return y, notes


def align(
    audio: AudioInput,
    midi: NotesInput,
    method: str = DEFAULT_METHOD,
    weights: str | Path | None = None,
    inference: InferenceConfig = InferenceConfig(),
    model=None,
) -> Alignment:
    """Align notes to a recording.

    audio: a path, or (samples, sample_rate) with samples (n,) or (n, channels).
    midi: a path (.mid, .tsv/.csv, score) or a Notes list.
    method: none | dtw | crnn | dtw+crnn (default).
    model: an already loaded midialign.model.LoadedModel (saves reloading in batch runs).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    use_net = "crnn" in method
    if use_net and model is None:
        from .model import load_model

        model = load_model(weights)
        timings["load_model"] = time.perf_counter() - t0
    fcfg = model.feature_cfg if model is not None else FeatureConfig()
    t = time.perf_counter()
    y, notes = _load_inputs(audio, midi, fcfg.sample_rate)
    duration = len(y) / fcfg.sample_rate
    timings["load"] = time.perf_counter() - t
    warnings = _sanity_warnings(notes, duration)
    for w in warnings:
        log.warning(w)
    if method == "none":
        return Alignment(notes, notes, np.zeros(len(notes), bool), np.zeros(len(notes)), method, duration, None, timings, warnings, inference.min_confidence)

    from .features import compute_features

    t = time.perf_counter()
    feats = compute_features(y, fcfg)
    timings["features"] = time.perf_counter() - t
    current, path = notes, None
    if method.startswith("dtw"):
        from .coarse import DTWConfig, align_notes

        t = time.perf_counter()
        current, path = align_notes(y, fcfg.sample_rate, notes, DTWConfig(), cqt=feats, fps=fcfg.fps)
        timings["dtw"] = time.perf_counter() - t
    moved = np.zeros(len(notes), bool)
    conf = np.full(len(notes), 0.5 if path is not None else 0.0)
    if use_net:
        current, moved, conf = _refine(current, feats, fcfg, model, inference, timings, keep_low_confidence=path is not None)
    timings["total"] = time.perf_counter() - t0
    if use_net and len(notes) >= 20 and moved.mean() < 0.2:
        warnings.append(f"only {moved.mean():.0%} of notes were found in the audio: is this the right recording?")
        log.warning(warnings[-1])
    return Alignment(notes, current, moved, conf, method, duration, path, timings, warnings, inference.min_confidence)


def _refine(notes: Notes, feats: np.ndarray, fcfg: FeatureConfig, model, inference: InferenceConfig, timings: dict[str, float], keep_low_confidence: bool) -> tuple[Notes, np.ndarray, np.ndarray]:
    """inference.passes rounds of the network; each round starts from the last one's notes.

    A later round sees an input closer to the audio, like most of its training inputs.
    """
    current = notes
    moved = np.zeros(len(notes), bool)
    conf = np.zeros(len(notes))
    for k in range(inference.passes):
        if k:
            current = _recentre(notes, current, moved & (conf >= inference.anchor_confidence), inference.anchor_window_s)
        current, moved_now, conf = _refine_once(current, feats, fcfg, model, inference, timings, keep_low_confidence)
        moved |= moved_now
    return current, moved, conf


def _recentre(start: Notes, current: Notes, anchors: np.ndarray, window_s: float) -> Notes:
    """Anchors keep their place; every other note goes back to its start time plus the
    median shift of the anchors within ±window_s of it (its current place if there are none)."""
    from .refine import local_median_shift

    if not anchors.any() or anchors.all():
        return current
    rest = np.flatnonzero(~anchors)
    shifts = local_median_shift(start.onsets[anchors], current.onsets[anchors] - start.onsets[anchors], start.onsets[rest], window_s)
    near = np.isfinite(shifts)
    new = current.intervals.copy()
    new[rest[near]] = start.intervals[rest[near]] + shifts[near, None]
    return current.with_times(new, _warp_pedal(start, new))


def _refine_once(notes: Notes, feats: np.ndarray, fcfg: FeatureConfig, model, inference: InferenceConfig, timings: dict[str, float], keep_low_confidence: bool) -> tuple[Notes, np.ndarray, np.ndarray]:
    from .model import predict_probs
    from .refine import refine_notes
    from .roll import notes_to_roll

    t = time.perf_counter()
    # The roll has no negative frames: move notes that start before 0 in, and back out after.
    shift = max(0.0, -float(notes.onsets.min()))
    placed = notes.shifted(shift) if shift else notes
    roll = notes_to_roll(placed, fcfg.fps, feats.shape[1])
    prob = predict_probs(model.model, roll, feats, fcfg.fps, inference)
    timings["network"] = timings.get("network", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    refined = refine_notes(placed, prob, fcfg.fps, inference)
    new = refined.notes.intervals - shift
    conf = refined.confidence
    moved = refined.moved
    if keep_low_confidence:
        # Where the network is unsure, the DTW (or previous round's) time is the safer answer.
        unsure = conf < inference.min_confidence
        new[unsure] = notes.intervals[unsure]
        moved = moved & ~unsure
    out = notes.with_times(new, _warp_pedal(notes, new))
    timings["postprocess"] = timings.get("postprocess", 0.0) + time.perf_counter() - t
    return out, moved, conf


def _warp_pedal(notes: Notes, new: np.ndarray) -> np.ndarray:
    """Move pedal events by the median note shift around them, so pedal stays with its notes."""
    from .refine import local_median_shift

    if len(notes.pedal) == 0:
        return notes.pedal
    ped = notes.pedal.copy()
    shifts = local_median_shift(notes.onsets, new[:, 0] - notes.onsets, ped[:, 0], 1.0)
    ped[:, 0] += np.nan_to_num(shifts)  # no note within 1 s: the event stays
    ped[:, 0] = np.maximum.accumulate(ped[:, 0])  # keep event order
    return ped


def _sanity_warnings(notes: Notes, audio_s: float) -> list[str]:
    span = notes.end_time - float(np.nanmin(notes.onsets))
    if audio_s < 0.5 * span:
        return [f"the audio ({audio_s:.1f} s) is far shorter than the MIDI ({span:.1f} s): the result is unlikely to be right"]
    return []


# ---------------------------------------------------------------- CLI glue

def align_cli(args) -> int:
    """`midialign align`: read, align, write outputs atomically, never over an input."""
    from .outputs import check_outputs

    # Every output option (-o, --csv, --sv, --match, --json, --plot) is checked
    # against the inputs before the slow part runs.
    check_outputs(args)
    result = align(args.audio, args.midi, method=args.method, weights=getattr(args, "weights", None),
                   inference=InferenceConfig(offsets=args.offsets))
    from .outputs import write_outputs

    write_outputs(result, args)
    log.info("aligned %d notes with %s in %.2f s (%.0f%% moved) -> %s", len(result.notes), result.method, result.timings.get("total", 0.0), 100 * result.share_moved, args.output)
    return 0
