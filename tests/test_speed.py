"""What keeps `midialign align` quick: no plotting, data-frame, torch, librosa, numba or scipy on the align path, and the
numpy stand-ins for synctoolbox's pandas/libfmp helpers equal to the originals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midialign.core.dtw import midi_features, onset_peaks, pitch_energies, strictly_monotonic
from midialign.notes import Notes

from conftest import TinyPair

SRC = Path(__file__).resolve().parent.parent / "src"
# Plotting and data-frame packages, and everything that takes seconds to import or JIT-compiles on
# a first run: the align path runs on numpy alone.
HEAVY = ("matplotlib", "IPython", "music21", "pandas", "partitura", "sklearn", "libfmp", "synctoolbox", "torch", "librosa",
         "numba", "scipy")

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
    csv_tools = pytest.importorskip("synctoolbox.feature.csv_tools")
    df_to_pitch_features, df_to_pitch_onset_features = csv_tools.df_to_pitch_features, csv_tools.df_to_pitch_onset_features

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


def test_strictly_monotonic_equals_synctoolbox() -> None:
    make_path_strictly_monotonic = pytest.importorskip("synctoolbox.dtw.utils").make_path_strictly_monotonic

    rng = np.random.default_rng(4)
    steps = np.array([[1, 0], [0, 1], [1, 1]])[rng.integers(0, 3, 500)]
    path = np.concatenate([[[0, 0]], np.cumsum(steps, axis=0)]).T
    got = strictly_monotonic(path.T).T
    assert np.array_equal(got, make_path_strictly_monotonic(path))
    assert (np.diff(got, axis=1) > 0).all()
