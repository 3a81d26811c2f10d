"""Cache features and the DTW stage's notes for case sets, for fast refiner experiments.

Writes cache/stage/<set>/<case>.npz with feats (float16), input/dtw/reference intervals,
pitches and velocities. Resumable: finished cases are skipped.
Usage: python scripts/stage_cases.py cases/asap_score cases/maps_am_jitter50 ...
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from midialign.evaluation.bench import discover_case_set
from midialign.config import DTWConfig
from midialign.core.dtw import align_notes
from midialign.config import FeatureConfig
from midialign.core.features import compute_features
from midialign.aligner import load_inputs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--out", default="cache/stage")
    args = ap.parse_args()
    fcfg = FeatureConfig()
    for s in args.sets:
        cs = discover_case_set(s)
        out = Path(args.out) / Path(s).name
        out.mkdir(parents=True, exist_ok=True)
        for case in tqdm(cs.cases, desc=Path(s).name):
            dst = out / f"{case.name}.npz"
            if dst.exists():
                continue
            y, notes = load_inputs(case.audio, case.input_midi, sample_rate=fcfg.sample_rate)
            feats = compute_features(y, fcfg)
            dtw, _ = align_notes(y, notes, sample_rate=fcfg.sample_rate, cfg=DTWConfig(), cqt=feats, fps=fcfg.fps)
            tmp = dst.with_suffix(".tmp.npz")
            np.savez(tmp, feats=feats.astype(np.float16), input=notes.intervals, dtw=dtw.intervals,
                     ref=case.reference.intervals, pitches=notes.pitches, velocities=notes.velocities)
            tmp.rename(dst)


if __name__ == "__main__":
    main()
