"""The aligner: load the model once, then align any number of recordings.

    from midialign import Aligner
    aligner = Aligner()                       # the shipped model
    result = aligner.align("take1.flac", "score.mid")
    result.notes                              # the input notes at their times in the recording
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .alignment import Alignment
from .config import DEFAULT_METHOD, METHODS, MIN_NOTE_S, DTWConfig, EvidenceConfig, FeatureConfig, InferenceConfig
from .errors import InputError
from .notes import Notes

if TYPE_CHECKING:
    from .core.evidence import MatchCheck

log = logging.getLogger("midialign")

AudioInput = str | Path | tuple[np.ndarray, int]
NotesInput = str | Path | Notes


class Aligner:
    """Aligns notes to recordings with one model, loaded on first use by a network method.

    weights: a checkpoint path, or None for the shipped model.
    inference: windowing, decoding and fallback settings; dtw: the coarse stage's; evidence: the
    match check's (a wrong piece or a transposed MIDI).
    model: an already loaded core.network.LoadedModel, used instead of weights.
    """

    def __init__(self, weights: str | Path | None = None, *, inference: InferenceConfig = InferenceConfig(),
                 dtw: DTWConfig = DTWConfig(), evidence: EvidenceConfig = EvidenceConfig(), model=None) -> None:
        self.weights = weights
        self.inference = inference
        self.dtw = dtw
        self.evidence = evidence
        self._model = model

    @property
    def model(self):
        """The loaded network (core.network.LoadedModel); loads it on first access."""
        if self._model is None:
            from .core.network import load_model

            self._model = load_model(self.weights)
        return self._model

    def align(self, audio: AudioInput, notes: NotesInput, *, method: str = DEFAULT_METHOD,
              progress: Callable[[str, float], None] | None = None) -> Alignment:
        """Align notes to a recording.

        audio: a path, or (samples, sample_rate) with samples (n,) or (n, channels).
        notes: a path (.mid, .tsv/.csv, score) or a Notes list, times in seconds.
        method: none | dtw | crnn | dtw+crnn (default).
        progress: called with (stage, share of it done 0-1) as the stages (read, features, dtw,
        network, check) start, advance and end.
        """
        report = progress if progress is not None else (lambda stage, done: None)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        import_align_path(method)
        timings["imports"] = time.perf_counter() - t0
        use_net = "crnn" in method
        if use_net and self._model is None:
            t = time.perf_counter()
            self.model
            timings["load_model"] = time.perf_counter() - t
        fcfg = self.model.feature_cfg if use_net else FeatureConfig()
        report("read", 0.0)
        t = time.perf_counter()
        input_index = None
        if not isinstance(notes, Notes):
            from .io.reader import read_notes_indexed

            notes, input_index = read_notes_indexed(notes)
        y, notes = load_inputs(audio, notes, sample_rate=fcfg.sample_rate)
        duration = len(y) / fcfg.sample_rate
        timings["load"] = time.perf_counter() - t
        report("read", 1.0)
        warnings = sanity_warnings(notes, duration)
        if method == "none":
            return self._result(notes, notes, np.zeros(len(notes), bool), np.zeros(len(notes)), method=method,
                                duration=duration, path=None, timings=timings, warnings=warnings, input_index=input_index)

        from .core.features import compute_features

        report("features", 0.0)
        t = time.perf_counter()
        feats = compute_features(y, fcfg)
        timings["features"] = time.perf_counter() - t
        report("features", 1.0)
        current, path = notes, None
        if method.startswith("dtw"):
            from .core.dtw import align_notes

            report("dtw", 0.0)
            t = time.perf_counter()
            current, path = align_notes(y, notes, sample_rate=fcfg.sample_rate, cfg=self.dtw, cqt=feats, fps=fcfg.fps)
            timings["dtw"] = time.perf_counter() - t
            report("dtw", 1.0)
        moved = np.zeros(len(notes), bool)
        conf = np.full(len(notes), 0.5 if path is not None else 0.0)
        if use_net:
            from .core.refiner import refine

            report("network", 0.0)
            refined = refine(current, feats, model=self.model, inference=self.inference, keep_low_confidence=path is not None,
                             progress=lambda done: report("network", done))
            report("network", 1.0)
            current, moved, conf = refined.notes, refined.moved, refined.confidence
            timings["network"] = refined.network_s
            timings["postprocess"] = refined.decode_s
        report("check", 0.0)
        t = time.perf_counter()
        check = self._check_match(feats, current, y=y, fcfg=fcfg, dtw_used=path is not None)
        timings["match_check"] = time.perf_counter() - t
        report("check", 1.0)
        timings["total"] = time.perf_counter() - t0
        if (line := check.warning(self.evidence)) is not None:
            warnings.append(line)
        return self._result(notes, current, moved, conf, method=method, duration=duration, path=path, timings=timings,
                            warnings=warnings, input_index=input_index, check=check)

    def mismatch(self, result: Alignment) -> str | None:
        """The match check's warning for result (a wrong piece or a transposed MIDI), or None."""
        from .core.evidence import MatchCheck

        return MatchCheck(result.match_score, result.transposition).warning(self.evidence)

    def _check_match(self, feats: np.ndarray, aligned: Notes, *, y: np.ndarray, fcfg: FeatureConfig, dtw_used: bool) -> "MatchCheck":
        """core.evidence.check_match of the aligned notes; a suspected semitone is aligned again by DTW."""
        from .core.evidence import check_match

        realign = None
        if dtw_used:
            from .core.dtw import align_notes

            realign = lambda shifted: align_notes(y, shifted, sample_rate=fcfg.sample_rate, cfg=self.dtw, cqt=feats, fps=fcfg.fps)[0]
        return check_match(feats, aligned, fps=fcfg.fps, cfg=self.evidence, realign=realign)

    def _result(self, notes: Notes, aligned: Notes, moved: np.ndarray, conf: np.ndarray, *, method: str, duration: float,
                path: np.ndarray | None, timings: dict[str, float], warnings: list[str], input_index: np.ndarray | None,
                check: "MatchCheck | None" = None) -> Alignment:
        aligned, n_clipped = clip_to_audio(aligned, duration)
        if n_clipped:
            warnings.append(f"{n_clipped} of {len(aligned)} notes fell outside the audio (0-{duration:.2f} s) and were clipped into it")
        for w in warnings:
            log.warning(w)
        score, shift = (check.score, check.transposition) if check is not None else (float("nan"), 0)
        return Alignment(notes, aligned, moved, conf, method, duration, path, timings, tuple(warnings), self.inference.min_confidence,
                         input_index, score, shift)


def align(audio: AudioInput, notes: NotesInput, *, method: str = DEFAULT_METHOD, weights: str | Path | None = None,
          inference: InferenceConfig = InferenceConfig()) -> Alignment:
    """One alignment with a fresh Aligner; see Aligner.align. Use an Aligner for many files."""
    return Aligner(weights, inference=inference).align(audio, notes, method=method)


def import_align_path(method: str) -> None:
    """Import the libraries `method` needs, so the stage timings that follow measure work only.

    A fraction of a second in a new process (numpy, soxr), nothing after.
    """
    if method == "none":
        return
    from .core import cqt  # noqa: F401

    if method.startswith("dtw"):
        from .core import dtw  # noqa: F401  (numpy only)
    if "crnn" in method:
        from .core import refiner  # noqa: F401  (the numpy CRNN: no torch)


def load_inputs(audio: AudioInput, notes: NotesInput, *, sample_rate: int) -> tuple[np.ndarray, Notes]:
    """(mono float32 samples at sample_rate, notes), checked: audio not silent, notes finite and non-empty."""
    from .io.audio import read_audio
    from .io.reader import read_notes

    y = read_audio(audio, sample_rate)
    notes = notes if isinstance(notes, Notes) else read_notes(notes)
    if len(notes) == 0:
        raise InputError("the MIDI has no notes")
    if not np.isfinite(notes.intervals).all():
        raise InputError("note times must be finite")
    return y, notes


def clip_to_audio(notes: Notes, duration_s: float) -> tuple[Notes, int]:
    """(notes clipped into the audio, how many were clipped). Times in seconds.

    A note starting before 0 s or after duration_s - MIN_NOTE_S, or ending after duration_s, gets
    its onset clipped to [0, duration_s - MIN_NOTE_S] and its offset to [onset + MIN_NOTE_S,
    duration_s]; other notes keep their times. Pedal times are clipped to [0, duration_s].
    A score much longer than its recording leaves notes outside it (DTW pads both ends).
    """
    on, off = notes.onsets, notes.offsets
    last_onset = max(duration_s - MIN_NOTE_S, 0.0)
    outside = (on < 0.0) | (on > last_onset) | (off > duration_s)
    new_on = np.clip(on, 0.0, last_onset)
    new_off = np.maximum(np.minimum(off, duration_s), new_on + MIN_NOTE_S)
    intervals = np.where(outside[:, None], np.stack([new_on, new_off], 1), notes.intervals)
    pedal = notes.pedal.copy()
    pedal[:, 0] = np.clip(pedal[:, 0], 0.0, duration_s)
    return notes.with_times(intervals, pedal), int(outside.sum())


def sanity_warnings(notes: Notes, audio_s: float) -> list[str]:
    """Warnings about a pairing that is unlikely to align (audio far shorter than the notes)."""
    span = notes.end_time - float(np.nanmin(notes.onsets))
    if audio_s < 0.5 * span:
        return [f"the audio ({audio_s:.1f} s) is far shorter than the MIDI ({span:.1f} s): the result is unlikely to be right"]
    return []
