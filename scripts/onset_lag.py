"""How late the sound starts after the annotated onsets, per data set, with no model involved.

For every annotated note, the nearest per-pitch CQT flux peak (the DTW front end's onset detector,
with no shift) within 60 ms; prints the median and quartiles of peak time minus annotation.
Usage: python scripts/onset_lag.py cache/maps_train cache/stage/maps_am_jitter50 cache/stage/asap_score
(a MAPS feature cache from `make-dataset`, or case sets cached by scripts/stage_cases.py).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from midialign.config import DTWConfig

from midialign.core.dtw import cqt_onset_peaks
from midialign.config import FeatureConfig


def peak_lags(feats: np.ndarray, onsets: np.ndarray, pitches: np.ndarray, fps: int) -> np.ndarray:
    peaks = cqt_onset_peaks(feats.astype(np.float64), fps, DTWConfig(onset_shift_s=0.0))
    out = []
    for t, p in zip(onsets, pitches):
        if np.isfinite(t) and int(p) in peaks:
            d = peaks[int(p)][0] / 1000.0 - t
            d = d[np.abs(d) < 0.06]
            if len(d):
                out.append(d[np.argmin(np.abs(d))])
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--every", type=int, default=6, help="MAPS caches: use every n-th recording")
    args = ap.parse_args()
    fps = FeatureConfig().fps
    for d in map(Path, args.dirs):
        lags = []
        if (d / "manifest.json").is_file():
            for row in json.loads((d / "manifest.json").read_text())["recordings"][:: args.every]:
                ann = np.genfromtxt(row["annotation"], delimiter="\t", skip_header=1, ndmin=2)
                lags.append(peak_lags(np.load(d / row["features"]), ann[:, 0], ann[:, 2], fps))
        else:
            for f in sorted(d.glob("*.npz")):
                z = np.load(f)
                lags.append(peak_lags(z["feats"], z["ref"][:, 0], z["pitches"], fps))
        lag = np.concatenate(lags) * 1000
        q1, med, q3 = np.percentile(lag, [25, 50, 75])
        print(f"{d.name:20s} notes {len(lag):6d}  lag median {med:+5.1f} ms  (quartiles {q1:+5.1f}, {q3:+5.1f})")


if __name__ == "__main__":
    main()
