"""The numpy global DTW: synctoolbox's chroma/DLNCO features and smoothing reproduced, the scipy filters
replaced, the band DTW optimal, a known warp recovered, the align path free of numba/scipy/synctoolbox,
and the note matcher as good as the Hungarian method."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midialign.core.decode import match_pitch
from midialign.core.dtw import centred_filter, max_filter, onsets_to_dlnco, pitch_to_chroma, quantize_chroma
from midialign.core.mrmsdtw import band_dtw, cost_block, mrmsdtw, normalize_columns, smooth_downsample, tube_around

SRC = Path(__file__).resolve().parent.parent / "src"
STEPS = (1.5, 1.5, 2.0)


def random_peaks(rng: np.random.Generator, n_frames: int, feature_rate: int) -> dict:
    peaks = {}
    for p in rng.choice(np.arange(21, 109), 30, replace=False):
        k = int(rng.integers(1, 20))
        t = np.sort(rng.uniform(0, (n_frames - 1) * 1000 / feature_rate, k))
        t[0] = (np.floor(t[0] * feature_rate / 1000) + 0.5) * 1000 / feature_rate  # exactly half a frame: rounds up
        peaks[int(p)] = np.stack([t, rng.random(k) * 1e-4])
    return peaks


def test_chroma_and_quantisation_equal_synctoolbox() -> None:
    chroma_tools = pytest.importorskip("synctoolbox.feature.chroma")
    rng = np.random.default_rng(1)
    f_pitch = rng.random((128, 400)) ** 4
    f_pitch[:, ::7] = 0.0  # silent frames stay zero
    f_pitch[:, 3] = 1e-4  # below the l1 threshold
    expected = chroma_tools.pitch_to_chroma(f_pitch)
    assert np.array_equal(pitch_to_chroma(f_pitch), expected)
    assert np.array_equal(quantize_chroma(expected), chroma_tools.quantize_chroma(expected))


@pytest.mark.parametrize("feature_rate", [50, 100])
def test_dlnco_equals_synctoolbox(feature_rate: int) -> None:
    dlnco_tools = pytest.importorskip("synctoolbox.feature.dlnco")
    rng = np.random.default_rng(feature_rate)
    n = 700
    peaks = random_peaks(rng, n, feature_rate)
    expected = dlnco_tools.pitch_onset_features_to_DLNCO(f_peaks=peaks, feature_rate=feature_rate, feature_sequence_length=n)
    got = onsets_to_dlnco(peaks, feature_rate=feature_rate, length=n)
    assert got.shape == expected.shape == (12, n)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
    assert (got > 0).any()


@pytest.mark.parametrize(("n", "win", "down"), [(1000, 201, 100), (1003, 101, 50), (999, 21, 10), (57, 21, 10), (5, 201, 100), (10, 1, 1)])
def test_smoothing_and_normalisation_equal_synctoolbox(n: int, win: int, down: int) -> None:
    utils = pytest.importorskip("synctoolbox.feature.utils")
    x = np.random.default_rng(n).random((12, n))
    x[:, :3] = 0.0
    expected, _ = utils.smooth_downsample_feature(x, input_feature_rate=100, win_len_smooth=win, downsamp_smooth=down)
    got = smooth_downsample(x, win_len=win, downsamp=down)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(normalize_columns(got), utils.normalize_feature(got, norm_ord=2, threshold=0.001))


@pytest.mark.parametrize("size", [1, 3, 7, 201, 1001])
def test_max_filter_equals_scipy(size: int) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(size)
    x = rng.random((5, 300)) * (rng.random((5, 300)) > 0.7)
    assert np.array_equal(max_filter(x, size), ndimage.maximum_filter1d(x, size, axis=1, mode="constant"))
    with pytest.raises(ValueError, match="odd size"):
        max_filter(x, 4)


def testcentred_filter_equals_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).random((4, 200))
    window = np.bartlett(9)[1:-1]
    window /= window.sum()
    np.testing.assert_allclose(centred_filter(x, window), ndimage.convolve1d(x, window, axis=1, mode="constant"), atol=1e-15)


def path_cost(cost: np.ndarray, path: np.ndarray) -> float:
    step = np.diff(path, axis=1)
    weight = np.where((step == 1).all(axis=0), STEPS[2], np.where(step[0] == 1, STEPS[0], STEPS[1]))
    return float(cost[path[0, 0], path[1, 0]] + np.sum(weight * cost[path[0, 1:], path[1, 1:]]))


def test_full_band_dtw_equals_synctoolbox_dtw() -> None:
    core = pytest.importorskip("synctoolbox.dtw.core")
    rng = np.random.default_rng(2)
    c1, c2 = normalize_columns(rng.random((12, 80))), normalize_columns(rng.random((12, 95)))
    o1, o2 = rng.random((12, 80)), rng.random((12, 95))
    cost = cost_block(c1, c2, o1, o2, alpha=0.3)
    acc, _, expected = core.compute_warping_path(cost, step_sizes=np.array([[1, 0], [0, 1], [1, 1]]), step_weights=np.array(STEPS))
    got = band_dtw(c1, c2, np.zeros(80, int), np.full(80, 94), step_weights=STEPS, o1=o1, o2=o2, alpha=0.3)
    assert got[:, 0].tolist() == [0, 0] and got[:, -1].tolist() == [79, 94]
    assert path_cost(cost, got) == pytest.approx(acc[-1, -1], rel=1e-12)
    assert path_cost(cost, got) <= path_cost(cost, expected.astype(int)) + 1e-9


def test_band_dtw_stays_in_its_band_and_rejects_bad_bands() -> None:
    rng = np.random.default_rng(3)
    c1, c2 = normalize_columns(rng.random((12, 60))), normalize_columns(rng.random((12, 60)))
    lo, hi = tube_around(np.stack([np.arange(60), np.arange(60)]), radius=3, shape=(60, 60))
    path = band_dtw(c1, c2, lo, hi)
    assert ((path[1] >= lo[path[0]]) & (path[1] <= hi[path[0]])).all()
    assert (np.diff(path, axis=1) >= 0).all() and (np.diff(path, axis=1).sum(axis=0) >= 1).all()
    with pytest.raises(ValueError, match="reachable"):
        band_dtw(c1, c2, np.r_[0, np.full(59, 30)], np.r_[5, np.full(59, 59)])


def chroma_sequence(n_chords: int, frames_per_chord: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(12, T) chroma of random 3-note chords, each held its number of frames; and each chord's first frame."""
    chords = [rng.choice(12, 3, replace=False) for _ in range(n_chords)]
    starts = np.concatenate([[0], np.cumsum(frames_per_chord)[:-1]])
    chroma = np.zeros((12, int(np.sum(frames_per_chord))))
    for c, s, k in zip(chords, starts, frames_per_chord):
        chroma[c, s:s + k] = 1.0
    return chroma, starts


def test_mrmsdtw_recovers_a_known_tempo_change() -> None:
    rng = np.random.default_rng(4)
    n_chords = 300
    held = rng.integers(10, 40, n_chords)
    # The second sequence: first half 1.5x slower, second half 0.8x, so 5000+ frames on each side.
    stretch = np.where(np.arange(n_chords) < n_chords // 2, 1.5, 0.8)
    chroma1, starts1 = chroma_sequence(n_chords, held, rng)
    rng = np.random.default_rng(4)
    rng.integers(10, 40, n_chords)
    chroma2, starts2 = chroma_sequence(n_chords, np.round(held * stretch).astype(int), rng)
    onset1, onset2 = np.zeros_like(chroma1), np.zeros_like(chroma2)
    onset1[:, starts1], onset2[:, starts2] = 1.0, 1.0
    path = mrmsdtw(chroma1, chroma2, onset1=onset1, onset2=onset2, step_weights=STEPS, threshold_rec=10**5,
                   win_len_smooth=(41, 21, 1), downsamp_smooth=(20, 10, 1), alpha=0.3, tube=50)
    assert path[:, 0].tolist() == [0, 0] and path[:, -1].tolist() == [chroma1.shape[1] - 1, chroma2.shape[1] - 1]
    # Where the path puts each chord's first frame: within a frame of the true onset.
    at_start = np.array([path[1, np.flatnonzero(path[0] == s)].min() for s in starts1])
    assert np.abs(at_start - starts2).max() <= 1


def test_align_path_imports_no_numba_scipy_or_synctoolbox() -> None:
    script = """
import json, sys
import numpy as np
import midialign.core.dtw, midialign.core.decode
from midialign.config import DTWConfig
from midialign.notes import Notes
notes = Notes([[0.5, 1.0], [1.0, 1.5], [1.5, 2.5]], [60, 64, 67], [80, 80, 80])
t = np.arange(0, 3.0, 1 / 16000)
y = sum(np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) * ((t >= a) & (t < b)) for (a, b), p in zip(notes.intervals, notes.pitches))
cqt = np.random.default_rng(0).random((88, 301)).astype(np.float32)
path = midialign.core.dtw.dtw_path(y.astype(np.float32), notes, sample_rate=16000, cfg=DTWConfig(), cqt=cqt, fps=100)
midialign.core.decode.match_pitch(np.array([1.0]), np.array([1.01]), max_shift=0.1)
heavy = ("numba", "scipy", "synctoolbox", "librosa", "torch", "sklearn", "pandas", "matplotlib")
print(json.dumps({"points": len(path), "modules": sorted(m for m in sys.modules if m.split(".")[0] in heavy)}))
"""
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["points"] > 10
    assert report["modules"] == []


def hungarian_choice(onsets, dets, max_shift, strength, weight):
    optimize = pytest.importorskip("scipy.optimize")
    d = onsets[:, None] - dets[None, :]
    cost = d ** 2 - (0 if strength is None else weight * max_shift ** 2 * strength[None, :])
    big = 1e6
    cost[np.abs(d) > max_shift] = big
    skip = np.full((len(onsets), len(onsets)), big)
    np.fill_diagonal(skip, max_shift ** 2)
    rows, cols = optimize.linear_sum_assignment(np.concatenate([cost, skip], axis=1))
    choice = np.full(len(onsets), -1)
    for r, c in zip(rows, cols):
        if c < len(dets) and cost[r, c] < big:
            choice[r] = c
    return choice


def total_cost(onsets, dets, choice, max_shift, strength, weight) -> float:
    total = 0.0
    for i, c in enumerate(choice):
        if c < 0:
            total += max_shift ** 2
        else:
            assert abs(onsets[i] - dets[c]) <= max_shift
            total += (onsets[i] - dets[c]) ** 2 - (0 if strength is None else weight * max_shift ** 2 * strength[c])
    return total


def test_match_pitch_is_as_good_as_the_hungarian_method() -> None:
    rng = np.random.default_rng(5)
    for trial in range(400):
        onsets = np.sort(rng.uniform(0, 2, rng.integers(1, 10)))
        dets = np.sort(rng.uniform(0, 2, rng.integers(1, 10)))
        if trial % 3 == 0:  # ties
            onsets, dets = np.round(onsets, 1), np.round(dets, 1)
        max_shift = rng.uniform(0.05, 0.5)
        strength = rng.random(len(dets)) if trial % 2 else None
        got = match_pitch(onsets, dets, max_shift=max_shift, det_strength=strength, height_weight=0.3)
        taken = got[got >= 0]
        assert len(set(taken.tolist())) == len(taken) and (np.diff(taken) > 0).all()  # one each, in order
        expected = hungarian_choice(onsets, dets, max_shift, strength, 0.3)
        assert total_cost(onsets, dets, got, max_shift, strength, 0.3) <= total_cost(onsets, dets, expected, max_shift, strength, 0.3) + 1e-12


def test_cqt_onset_peaks_equal_the_scipy_filter_definition() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    from midialign.config import DTWConfig
    from midialign.core.dtw import cqt_onset_peaks

    cfg = DTWConfig()
    logc = np.cumsum(np.random.default_rng(0).normal(0, 0.05, (88, 1500)), axis=1).clip(0, 1)
    flux = np.zeros_like(logc)
    flux[:, 1:] = np.maximum(logc[:, 1:] - logc[:, :-1], 0)
    near = ndimage.maximum_filter1d(flux, 7, axis=1, mode="constant")
    wide = ndimage.maximum_filter1d(flux, 201, axis=1, mode="constant")
    expected = (flux == near) & (flux >= cfg.onset_threshold) & (flux >= cfg.onset_rel_threshold * wide)
    got = cqt_onset_peaks(logc, 100, cfg)
    assert sorted(got) == [int(k) + 21 for k in np.flatnonzero(expected.any(axis=1))]
    for pitch, peaks in got.items():
        frames = np.flatnonzero(expected[pitch - 21])
        np.testing.assert_allclose(peaks[0], np.maximum((frames - 0.5) * 10.0, 0.0))
        np.testing.assert_array_equal(peaks[1], flux[pitch - 21, frames] * 1e-2)
