"""core.cqt: librosa.cqt's magnitudes from numpy and soxr, and a CQT front end that never imports librosa."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midialign.config import FeatureConfig
from midialign.core import cqt
from midialign.core.cqt import cqt_magnitude
from midialign.core.features import compute_features, normalise

ROOT = Path(__file__).resolve().parent.parent


def _tones_and_noise(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """(n,) float32: a low and a high tone that start and stop mid-signal, over quiet noise."""
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    y = (0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 55.0 * t) * (t > 0.7)
         + 0.2 * np.sin(2 * np.pi * 3000.0 * t) * (t < 1.3) + 0.02 * rng.standard_normal(len(t)))
    return y.astype(np.float32)


# (sample_rate, fps, n_bins, bins_per_octave, seconds): the default; an odd hop (no downsampling at all);
# a hop with many factors of 2 at a high rate (librosa's early downsampling); a partial lowest octave.
CONFIGS = [
    (16000, 100, 88, 12, 2.0),
    (22050, 50, 88, 12, 2.0),
    (51200, 100, 88, 12, 1.5),
    (16000, 100, 62, 12, 1.37),
]


@pytest.mark.parametrize(("sr", "fps", "n_bins", "bpo", "seconds"), CONFIGS)
def test_matches_librosa_cqt(sr, fps, n_bins, bpo, seconds):
    librosa = pytest.importorskip("librosa")
    cfg = FeatureConfig(sample_rate=sr, fps=fps, n_bins=n_bins, bins_per_octave=bpo)
    y = _tones_and_noise(sr, seconds)
    ref = np.abs(librosa.cqt(y, sr=sr, hop_length=cfg.hop_length, fmin=cfg.fmin_hz, n_bins=n_bins,
                             bins_per_octave=bpo))
    ours = cqt_magnitude(y, sr, hop_length=cfg.hop_length, fmin=cfg.fmin_hz, n_bins=n_bins, bins_per_octave=bpo)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    # librosa works in complex64: the two differ by float32 rounding only.
    assert np.max(np.abs(ours - ref)) <= 1e-5 * ref.max()
    feats_ref = normalise(ref.astype(np.float32), cfg.log)
    assert np.max(np.abs(compute_features(y, cfg) - feats_ref)) < 1e-4


def test_frames_and_pitch_of_a_tone():
    """Frame t is centred on sample t * hop; a 440 Hz tone peaks in bin A4 = 48 semitones above A0."""
    cfg = FeatureConfig()
    y = np.sin(2 * np.pi * 440.0 * np.arange(12345) / cfg.sample_rate).astype(np.float32)
    mag = cqt_magnitude(y, cfg.sample_rate, hop_length=cfg.hop_length, fmin=cfg.fmin_hz, n_bins=cfg.n_bins,
                        bins_per_octave=cfg.bins_per_octave)
    assert mag.shape == (88, 1 + 12345 // cfg.hop_length)
    assert set(np.argmax(mag[:, 10:-10], axis=0)) == {48}


def test_chunking_does_not_change_the_result(monkeypatch):
    """Chunks of a few frames (so most frames sit near a chunk edge) give the same numbers as one chunk."""
    cfg = FeatureConfig()
    y = _tones_and_noise(cfg.sample_rate, 1.0, seed=3)

    def magnitude() -> np.ndarray:
        return cqt_magnitude(y, cfg.sample_rate, hop_length=cfg.hop_length, fmin=cfg.fmin_hz, n_bins=cfg.n_bins,
                             bins_per_octave=cfg.bins_per_octave)

    whole = magnitude()
    monkeypatch.setattr(cqt, "_CHUNK_VALUES", 1000)
    np.testing.assert_allclose(magnitude(), whole, rtol=1e-5, atol=1e-6 * whole.max())


def test_filters_above_nyquist_are_refused():
    with pytest.raises(ValueError, match="Nyquist"):
        cqt_magnitude(np.zeros(8000, np.float32), 8000, hop_length=80, fmin=27.5, n_bins=88, bins_per_octave=12)


FEATURES_AND_LIST_MODULES = """
import json, sys
import numpy as np
from midialign.config import FeatureConfig
from midialign.core.features import compute_features
feats = compute_features(np.random.default_rng(0).standard_normal(16000).astype(np.float32), FeatureConfig())
print(json.dumps({"shape": list(feats.shape), "modules": sorted(sys.modules)}))
"""


def test_cqt_features_import_no_librosa():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", FEATURES_AND_LIST_MODULES], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"] == [88, 101]
    heavy = {"librosa", "numba", "torch", "scipy.signal", "scipy.stats", "scipy.sparse"}
    assert heavy.isdisjoint(report["modules"])
