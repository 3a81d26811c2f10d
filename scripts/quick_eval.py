"""Fast check of a checkpoint on cached validation features: J=50 ms jitter, refiner only.

Not the benchmark (that is `midialign bench` on case folders); this is for
comparing training runs in minutes. The refiner runs as in the pipeline's crnn
method, with --passes rounds (default 1). Usage: python scripts/quick_eval.py CKPT... [--pieces 8] [--seconds 60]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from midialign.training.augment import apply_jitter, clip_notes, draw_jitter
from midialign.config import InferenceConfig
from midialign.training.data import load_cache
from midialign.core.network import load_model
from midialign.core.refiner import refine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--cache", default="cache/maps_val")
    ap.add_argument("--pieces", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-shift", type=float, default=None)
    ap.add_argument("--passes", type=int, default=1)
    args = ap.parse_args()
    recs = load_cache(args.cache)[: args.pieces]
    cfg = InferenceConfig(passes=args.passes)
    if args.max_shift is not None:
        cfg = replace(cfg, max_shift_s=args.max_shift)
    for ck in ["none"] + args.checkpoints:
        lm = None if ck == "none" else load_model(ck)
        errs, jit = [], []
        rng = np.random.default_rng(0)
        for rec in recs:
            fps = 100
            n = min(rec.features.shape[1], int(args.seconds * fps))
            truth = clip_notes(rec.notes, 0.0, n / fps)
            truth = truth.subset(truth.onsets >= 0.05)
            on, off = draw_jitter(len(truth), 0.05, rng)
            loose = apply_jitter(truth, on, off)
            if lm is None:
                est = loose.onsets
            else:
                feats = rec.features[:, :n].astype(np.float32)
                est = refine(loose, feats, model=lm, inference=cfg).notes.onsets
            errs.append(est - truth.onsets)
            jit.append(on)
        e = np.concatenate(errs)
        a = np.abs(e)
        share = [100 * np.mean(a <= w) for w in (0.01, 0.025, 0.05, 0.1)]
        print(f"{ck:40s} n={len(e)} " + "/".join(f"{s:.1f}" for s in share)
              + f"  signed median {1000*np.median(e):+.1f} ms  |e| median {1000*np.median(a):.1f}", flush=True)
        if lm is not None:
            # What a constant onset correction by the signed median would give (an upper bound on calibration).
            c = np.abs(e - np.median(e))
            print(" " * 41 + "if debiased: " + "/".join(f"{100 * np.mean(c <= w):.1f}" for w in (0.01, 0.025, 0.05, 0.1)), flush=True)
            # How much of the input's error the output keeps (0: none, 1: the input was copied).
            j = np.concatenate(jit)
            near = a <= 0.1  # wrong peaks would dominate a least-squares slope
            print(" " * 41 + f"input error kept (slope): {np.polyfit(j[near], e[near], 1)[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
