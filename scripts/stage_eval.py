"""Score the refiner on staged cases (scripts/stage_cases.py) in a fraction of a bench run.

Usage: python scripts/stage_eval.py cache/stage/asap_score --start dtw [--ckpt PATH] [--passes 2]
Prints the share within 10/25/50/100 ms for the start notes and the refined notes,
and a breakdown of the refined errors by moved / kept.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from midialign.config import InferenceConfig
from midialign.core.network import load_model
from midialign.notes import Notes
from midialign.core.refiner import refine

W = (0.01, 0.025, 0.05, 0.1)


def shares(e: np.ndarray) -> str:
    a = np.abs(e)
    a = np.where(np.isfinite(a), a, np.inf)
    return "/".join(f"{100 * np.mean(a <= w):5.1f}" for w in W)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage")
    ap.add_argument("--start", choices=["input", "dtw"], default="dtw")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--passes", type=int, default=InferenceConfig.passes)
    ap.add_argument("--max-shift", type=float, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override InferenceConfig fields (floats)")
    ap.add_argument("--fallback", choices=["auto", "on", "off"], default="auto",
                    help="keep the start time of unconfident notes (auto: only when starting from dtw, as the pipeline does)")
    ap.add_argument("--offsets", choices=["roll", "input"], default=InferenceConfig.offsets)
    ap.add_argument("--dump", default=None, help="save per-note arrays to this npz")
    args = ap.parse_args()
    cfg = InferenceConfig(passes=args.passes, offsets=args.offsets)
    if args.max_shift is not None:
        cfg = replace(cfg, max_shift_s=args.max_shift)
    for item in args.set:
        k, v = item.split("=")
        cfg = replace(cfg, **{k: float(v)})
    lm = load_model(args.ckpt)
    files = sorted(Path(args.stage).glob("*.npz"))[: args.limit]
    e0, e1, mv, cf, st, case, f0, f1 = [], [], [], [], [], [], [], []
    fallback = args.start == "dtw" if args.fallback == "auto" else args.fallback == "on"
    for f in files:
        z = np.load(f)
        notes = Notes(z[args.start], z["pitches"], z["velocities"])
        feats = z["feats"].astype(np.float32)
        r = refine(notes, feats, model=lm, inference=cfg, keep_low_confidence=fallback)
        out, moved, conf = r.notes, r.moved, r.confidence
        ref = z["ref"][:, 0]
        played = np.isfinite(ref)  # the bench scores only notes the reference has
        e0.append((notes.onsets - ref)[played])
        e1.append((out.onsets - ref)[played])
        f0.append((notes.offsets - z["ref"][:, 1])[played])
        f1.append((out.offsets - z["ref"][:, 1])[played])
        mv.append(moved[played])
        cf.append(conf[played])
        st.append(notes.onsets[played])
        case.append(np.full(played.sum(), len(case)))
        print(f"{f.stem[:50]:50s} start {shares(e0[-1])}  refined {shares(e1[-1])}", flush=True)
    e0, e1, mv, cf, st, case, f0, f1 = map(np.concatenate, (e0, e1, mv, cf, st, case, f0, f1))
    print(f"{'ALL':50s} start {shares(e0)}  refined {shares(e1)}  n={len(e0)}")
    print(f"{'offsets':50s} start {shares(f0)}  refined {shares(f1)}")
    print(f"moved {mv.mean():.1%}: {shares(e1[mv])}   kept: {shares(e1[~mv])}   kept-start: {shares(e0[~mv])}")
    if args.dump:
        np.savez(args.dump, e0=e0, e1=e1, moved=mv, conf=cf, start=st, case=case)


if __name__ == "__main__":
    main()
