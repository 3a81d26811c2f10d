"""What keeps `midialign align` quick: no plotting or data-frame packages on the align path, and the
numpy stand-ins for synctoolbox's pandas/sklearn helpers equal to the originals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midialign.core.dtw import euclidean_distances, midi_features, onset_peaks, pitch_energies, strictly_monotonic
from midialign.notes import Notes

from conftest import TinyPair

SRC = Path(__file__).resolve().parent.parent / "src"
HEAVY = ("matplotlib", "IPython", "music21", "pandas", "partitura", "sklearn", "libfmp")

ALIGN_AND_LIST_MODULES = """
import json, sys
from midialign.cli.app import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
""" % (HEAVY,)


def test_align_path_imports_no_plotting_or_dataframe_packages(tiny_pair: TinyPair, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "aligned.mid"
    cmd = [sys.executable, "-c", ALIGN_AND_LIST_MODULES, "align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(out),
           "--method", "dtw+crnn", "--weights", str(tiny_weights), "--csv", str(tmp_path / "notes.csv"), "--json", str(tmp_path / "s.json")]
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "modules": []}
    assert out.is_file()


def test_deferred_packages_are_real_when_imported_after_alignment(tiny_pair: TinyPair, tiny_weights: Path) -> None:
    """The stand-in modules used while synctoolbox is imported must not leak into sys.modules."""
    pytest.importorskip("matplotlib")
    script = """
import sys
from midialign.aligner import Aligner
Aligner(sys.argv[3]).align(sys.argv[1], sys.argv[2], method="dtw")
import matplotlib.pyplot as plt
import synctoolbox.feature.dlnco as dlnco
print(type(plt.figure).__name__, type(dlnco.plt.figure).__name__, hasattr(sys.modules["matplotlib"], "__file__"))
"""
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script, str(tiny_pair.audio), str(tiny_pair.midi), str(tiny_weights)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # synctoolbox's own plotting still reaches the real pyplot, on first use.
    # The last line: some pyfluidsynth versions print where they found the library on import.
    assert proc.stdout.strip().splitlines()[-1].split() == ["function", "_Deferred", "True"]


def random_notes(n: int, seed: int) -> Notes:
    rng = np.random.default_rng(seed)
    on = np.sort(rng.uniform(0.0, 20.0, n))
    off = on + rng.uniform(0.005, 2.0, n)
    # Same-pitch repeats at equal times too: the peak sort must order them as synctoolbox does.
    on[5:8] = on[4]
    return Notes(np.stack([on, off], 1), rng.integers(21, 109, n), rng.integers(1, 128, n))


@pytest.mark.parametrize("feature_rate", [50, 100])
def test_midi_features_equal_synctoolbox_dataframe_features(feature_rate: int) -> None:
    pd = pytest.importorskip("pandas")
    from synctoolbox.feature.csv_tools import df_to_pitch_features, df_to_pitch_onset_features

    notes = random_notes(2500, seed=feature_rate)  # more than 1000 notes on some pitches' padding boundary
    start, pitch, vel = notes.onsets, notes.pitches.astype(int), notes.velocities.astype(float)
    duration = np.maximum(notes.offsets - notes.onsets, 1.0 / feature_rate)
    frame = lambda: pd.DataFrame({"start": start, "duration": duration, "pitch": pitch, "velocity": vel, "instrument": "piano"})

    expected = df_to_pitch_features(frame(), feature_rate=feature_rate)
    got = pitch_energies(start, duration, pitches=pitch, velocities=vel, feature_rate=feature_rate)
    assert got.shape == expected.shape and np.array_equal(got, expected)

    expected_peaks = df_to_pitch_onset_features(frame())
    got_peaks = onset_peaks(start, pitches=pitch, velocities=vel)
    assert sorted(got_peaks) == sorted(expected_peaks)
    for p, peaks in expected_peaks.items():
        assert np.array_equal(got_peaks[p], peaks), p


def test_midi_features_shapes() -> None:
    chroma, dlnco = midi_features(random_notes(40, seed=1), 100)
    assert chroma.shape == dlnco.shape and chroma.shape[0] == 12
    assert np.isfinite(chroma).all() and np.isfinite(dlnco).all()


def test_euclidean_distances_equal_sklearn() -> None:
    from sklearn.metrics.pairwise import euclidean_distances as sklearn_distances

    rng = np.random.default_rng(3)
    a, b = rng.random((12, 300)), rng.random((12, 250))
    assert np.array_equal(euclidean_distances(a.T, b.T), sklearn_distances(a.T, b.T))
    assert np.array_equal(euclidean_distances(a.T, a.T), sklearn_distances(a.T, a.T))


def test_strictly_monotonic_equals_synctoolbox() -> None:
    from synctoolbox.dtw.utils import make_path_strictly_monotonic

    rng = np.random.default_rng(4)
    steps = np.array([[1, 0], [0, 1], [1, 1]])[rng.integers(0, 3, 500)]
    path = np.concatenate([[[0, 0]], np.cumsum(steps, axis=0)]).T
    got = strictly_monotonic(path.T).T
    assert np.array_equal(got, make_path_strictly_monotonic(path))
    assert (np.diff(got, axis=1) > 0).all()
