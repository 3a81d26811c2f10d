"""Post-processing: from the network's aligned-roll probabilities back to the input notes.

The paper's recipe (threshold, segment per pitch, match by pitch and order,
move matched notes) with a sturdier matcher:
- per pitch, an optimal order-preserving assignment with a squared-distance
  cost (convex costs never cross in 1-D) and a skip cost, solved exactly by
  an edit-distance dynamic programme on independent blocks, so a note never
  takes a detection that is nearer to its neighbour;
- segments are split at clear dips so a quickly repeated note that the
  network merged still gives two onsets;
- with an onset roll (models with an onset head), detections are its
  peaks, placed at sub-frame precision by parabolic interpolation, and
  the frame roll only gives the offsets;
- a note without a detection follows the median shift of matched notes
  around it (it keeps its input time when there are none); with an onset
  roll it then takes a weak peak close to that new time, if there is one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MIN_NOTE_S, PITCH_MIN, InferenceConfig
from ..notes import Notes
from .roll import active_segments, crossing_frame

# Confidence given to notes moved by their neighbours' shift, not by a detection.
NEIGHBOUR_CONFIDENCE = 0.25
NEIGHBOUR_WINDOW_S = 1.0
MIN_DIP = 0.2
# Frames after an onset peak within which the frame roll must rise for the detection to give an offset.
ONSET_TO_FRAME = 5


@dataclass(frozen=True)
class Detection:
    pitch: int
    onset: float
    offset: float  # nan when unknown
    strength: float  # peak probability in the first frames


@dataclass(frozen=True)
class Refined:
    notes: Notes
    moved: np.ndarray  # matched to a detection
    confidence: np.ndarray


def detect_notes(prob: np.ndarray, fps: float, threshold: float) -> list[Detection]:
    """Segments above threshold per pitch, split at dips; onsets/offsets at sub-frame precision."""
    out: list[Detection] = []
    for key, s, e in active_segments(prob, threshold):
        row = prob[key]
        for a, b in _split_at_dips(row, s, e):
            on = crossing_frame(row, a, threshold) if a == s else float(a)
            off = crossing_frame(row, b, threshold) if b == e else float(b)
            out.append(Detection(key + PITCH_MIN, on / fps, off / fps, float(row[a:min(b, a + 3)].max())))
    return out


def onset_peaks(onset_prob: np.ndarray, fps: float, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of the onset roll at or above threshold, ordered by (key, frame).

    Returns (keys, frames, onsets in seconds at sub-frame precision, peak heights).
    """
    p = onset_prob
    left = np.concatenate([np.zeros((p.shape[0], 1), p.dtype), p[:, :-1]], axis=1)
    right = np.concatenate([p[:, 1:], np.zeros((p.shape[0], 1), p.dtype)], axis=1)
    keys, frames = np.nonzero((p >= threshold) & (p >= left) & (p > right))
    # Vertex of the parabola through the peak and its neighbours.
    a, b, c = left[keys, frames], p[keys, frames], right[keys, frames]
    curv = a - 2 * b + c
    delta = np.where(curv < 0, 0.5 * (a - c) / np.where(curv < 0, curv, -1.0), 0.0)
    return keys, frames, (frames + np.clip(delta, -0.5, 0.5)) / fps, b


def detect_onsets(onset_prob: np.ndarray, frame_prob: np.ndarray, *, fps: float, cfg: InferenceConfig,
                  peaks: tuple[np.ndarray, ...] | None = None) -> list[Detection]:
    """Peaks of the onset roll per pitch, at sub-frame precision.

    A detection ends where the frame roll, once risen after the peak, falls
    below threshold; its offset is nan when the frame roll does not rise.
    `peaks`: onset_peaks output at a threshold up to cfg.onset_threshold, if already computed.
    """
    p = onset_prob
    if peaks is None:
        peaks = onset_peaks(p, fps, cfg.onset_threshold)
    keep = peaks[3] >= cfg.onset_threshold
    keys, frames, onsets, b = (a[keep] for a in peaks)
    out: list[Detection] = []
    for i, (key, k) in enumerate(zip(keys, frames)):
        nxt = frames[i + 1] if i + 1 < len(frames) and keys[i + 1] == key else p.shape[1]
        row = frame_prob[key, k:nxt]
        # The frame roll may rise a few frames after the onset peak; without it the offset is unknown (nan).
        on = np.flatnonzero(row[:ONSET_TO_FRAME + 1] >= cfg.threshold)
        offset = np.nan
        if len(on):
            below = np.flatnonzero(row[on[0]:] < cfg.threshold)
            end = k + on[0] + below[0] if len(below) else nxt
            offset = max(end / fps, float(onsets[i]) + MIN_NOTE_S)
        out.append(Detection(int(key) + PITCH_MIN, float(onsets[i]), offset, float(b[i])))
    return out


def _split_at_dips(row: np.ndarray, s: int, e: int) -> list[tuple[int, int]]:
    """Cut [s, e) at local minima that drop MIN_DIP below the peaks on both sides."""
    if e - s < 5:
        return [(s, e)]
    seg = row[s:e]
    cuts = []
    for k in range(2, len(seg) - 2):
        if seg[k] <= seg[k - 1] and seg[k] < seg[k + 1]:
            left, right = seg[:k].max(), seg[k + 1:].max()
            if min(left, right) - seg[k] >= MIN_DIP:
                cuts.append(s + k + 1)  # the re-strike starts after the dip frame
    bounds = [s] + cuts + [e]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]


def match_pitch(onsets: np.ndarray, det_onsets: np.ndarray, *, max_shift: float,
                det_strength: np.ndarray | None = None, height_weight: float = 0.0) -> np.ndarray:
    """For sorted input onsets of one pitch, the index of the detection each takes, or -1.

    Optimal under squared distance with skip cost max_shift**2: order-preserving. With
    det_strength, a detection's cost is lowered by height_weight * max_shift**2 * its strength.
    """
    n, m = len(onsets), len(det_onsets)
    result = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return result
    for note_idx, det_idx in _blocks(onsets, det_onsets, max_shift):
        d = onsets[note_idx][:, None] - det_onsets[det_idx][None, :]
        cost = d ** 2
        if det_strength is not None and height_weight:
            cost = cost - height_weight * max_shift ** 2 * det_strength[det_idx][None, :]
        cost[np.abs(d) > max_shift] = np.inf
        for r, c in enumerate(_ordered_assignment(cost, skip=max_shift ** 2)):
            if c >= 0:
                result[note_idx[r]] = det_idx[c]
    return result


def _ordered_assignment(cost: np.ndarray, *, skip: float) -> np.ndarray:
    """(n,) column each row takes (-1: none) minimising the total cost, rows and columns in order.

    cost: (n, m), rows and columns sorted in time, inf where forbidden; a row left out costs
    `skip`, a column left out nothing. With costs (a_i - b_j)^2 - h_j an assignment's crossing
    pairs never beat their uncrossed swap, so this O(n m) edit-distance programme is optimal
    among all assignments (what linear_sum_assignment would find, at equal total cost).
    """
    n, m = cost.shape
    # total[i, j]: least cost of the first i rows using only the first j columns.
    total = np.zeros((n + 1, m + 1))
    for i in range(1, n + 1):
        step = total[i - 1] + skip
        step[1:] = np.minimum(step[1:], total[i - 1, :-1] + cost[i - 1])
        total[i] = np.minimum.accumulate(step)  # leaving columns unused is free
    # Back from (n, m), re-deriving each step: the same sums, so equalities are exact.
    choice = np.full(n, -1, dtype=np.int64)
    i, j = n, m
    while i > 0:
        if j > 0 and total[i, j] == total[i, j - 1]:
            j -= 1
        elif j > 0 and total[i, j] == total[i - 1, j - 1] + cost[i - 1, j - 1]:
            choice[i - 1] = j - 1
            i, j = i - 1, j - 1
        else:
            i -= 1
    return choice


def _blocks(a: np.ndarray, b: np.ndarray, gap: float):
    """Split two sorted time lists into groups separated by more than `gap`, which cannot interact."""
    times = np.concatenate([a, b])
    kind = np.concatenate([np.zeros(len(a), int), np.ones(len(b), int)])
    idx = np.concatenate([np.arange(len(a)), np.arange(len(b))])
    order = np.argsort(times, kind="stable")
    times, kind, idx = times[order], kind[order], idx[order]
    cuts = np.flatnonzero(np.diff(times) > gap) + 1
    for grp in np.split(np.arange(len(times)), cuts):
        notes = idx[grp][kind[grp] == 0]
        dets = idx[grp][kind[grp] == 1]
        if len(notes) and len(dets):
            yield notes, dets


def refine_notes(notes: Notes, prob: np.ndarray, *, fps: float, cfg: InferenceConfig, follow_neighbours: bool = True) -> Refined:
    """Move each input note to its detection in the probability roll.

    prob is a frame roll (88, T), or (C, 88, T) from model.predict_probs:
    frame roll, then onset roll if C == 2.
    """
    onset_roll = prob.ndim == 3 and prob.shape[0] == 2
    if onset_roll:
        # One peak search serves both the detections and the weak second chance.
        peaks = onset_peaks(prob[1], fps, min(cfg.onset_threshold, cfg.weak_onset_threshold))
        dets = detect_onsets(prob[1], prob[0], fps=fps, cfg=cfg, peaks=peaks)
    elif prob.ndim == 3 and prob.shape[0] == 1:
        dets = detect_notes(prob[0], fps, cfg.threshold)
    elif prob.ndim == 2:
        dets = detect_notes(prob, fps, cfg.threshold)
    else:
        raise ValueError(f"probabilities must be (88, T) or (C, 88, T) with C 1 or 2, got {prob.shape}")
    new = notes.intervals.copy()
    moved = np.zeros(len(notes), dtype=bool)
    conf = np.zeros(len(notes))
    by_pitch: dict[int, list[Detection]] = {}
    for d in dets:
        by_pitch.setdefault(d.pitch, []).append(d)
    for pitch in np.unique(notes.pitches):
        idx = np.flatnonzero(notes.pitches == pitch)
        idx = idx[np.argsort(notes.onsets[idx], kind="stable")]
        cand = sorted(by_pitch.get(int(pitch), []), key=lambda d: d.onset)
        if not cand:
            continue
        det_on = np.array([d.onset for d in cand])
        strength = np.array([d.strength for d in cand])
        choice = match_pitch(notes.onsets[idx], det_on, max_shift=cfg.max_shift_s, det_strength=strength, height_weight=cfg.height_weight)
        for i, c in zip(idx, choice):
            if c < 0:
                continue
            d = cand[c]
            shift = d.onset - notes.onsets[i]
            new[i, 0] = d.onset
            # The note keeps its input duration unless the frame roll gives an offset near it:
            # sustained sound (pedal, resonance) can keep the frame roll up long after the key is released.
            kept = notes.offsets[i] + shift
            new[i, 1] = max(d.offset, d.onset + MIN_NOTE_S) if abs(d.offset - kept) <= cfg.max_shift_s else kept
            moved[i] = True
            conf[i] = d.strength * (1.0 - 0.5 * abs(shift) / cfg.max_shift_s)
    if follow_neighbours:
        followed = ~moved
        _follow_neighbours(notes, new, moved, conf)
        if onset_roll and followed.any():
            keys, _, weak_onsets, heights = peaks
            weak = heights >= cfg.weak_onset_threshold
            _take_weak_onsets(notes, new, moved, followed, keys[weak] + PITCH_MIN, weak_onsets[weak], cfg.weak_window_s, fps)
    if cfg.offsets == "input":
        new[:, 1] = notes.offsets
    _keep_offsets_after_onsets(notes, new)
    return Refined(notes.with_times(new), moved, np.clip(conf, 0.0, 1.0))


def local_median_shift(times: np.ndarray, shifts: np.ndarray, at: np.ndarray, window_s: float) -> np.ndarray:
    """For each time in `at`, the median of the shifts whose times lie within ±window_s; nan where none do."""
    order = np.argsort(times, kind="stable")
    t, s = times[order], shifts[order]
    lo = np.searchsorted(t, at - window_s)
    hi = np.searchsorted(t, at + window_s)
    return np.array([np.median(s[a:b]) if b > a else np.nan for a, b in zip(lo, hi)], dtype=np.float64)


def _follow_neighbours(notes: Notes, new: np.ndarray, moved: np.ndarray, conf: np.ndarray) -> None:
    """Unmatched notes take the median onset shift of matched notes within NEIGHBOUR_WINDOW_S."""
    if not moved.any():
        return
    rest = np.flatnonzero(~moved)
    s = local_median_shift(notes.onsets[moved], new[moved, 0] - notes.onsets[moved], notes.onsets[rest], NEIGHBOUR_WINDOW_S)
    near = np.isfinite(s)
    new[rest[near]] = notes.intervals[rest[near]] + s[near, None]
    conf[rest[near]] = NEIGHBOUR_CONFIDENCE


def _take_weak_onsets(notes: Notes, new: np.ndarray, moved: np.ndarray, followed: np.ndarray, peak_pitches: np.ndarray, peak_onsets: np.ndarray, window_s: float, fps: float) -> None:
    """Notes that only followed their neighbours take a weak onset peak within window_s of where they were put.

    Soft notes inside chords and notes far off in the input often leave a peak below the
    detection threshold; near the neighbours' estimate it is much more likely theirs.
    Peaks within 1.5 frames of one a matched note took are not offered. Confidence stays
    at the neighbours' level: the peak is weak.
    """
    for pitch in np.unique(notes.pitches[followed]):
        same = notes.pitches == pitch
        cand = np.sort(peak_onsets[peak_pitches == pitch])
        taken = new[same & moved, 0]
        if len(taken) and len(cand):
            cand = cand[np.abs(cand[:, None] - taken[None, :]).min(axis=1) > 1.5 / fps]
        if not len(cand):
            continue
        idx = np.flatnonzero(same & followed)
        idx = idx[np.argsort(new[idx, 0], kind="stable")]
        choice = match_pitch(new[idx, 0], cand, max_shift=window_s)
        for i, c in zip(idx, choice):
            if c >= 0:
                new[i] += cand[c] - new[i, 0]
                moved[i] = True


def _keep_offsets_after_onsets(notes: Notes, new: np.ndarray) -> None:
    bad = new[:, 1] < new[:, 0] + MIN_NOTE_S
    new[bad, 1] = new[bad, 0] + np.maximum(notes.offsets[bad] - notes.onsets[bad], MIN_NOTE_S)

