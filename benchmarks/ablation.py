"""Reduced-budget ablation study (the paper's Tables 2-6), from a clean clone given the MAPS data.

Every architecture/feature variant is trained for the same small budget
(STEPS steps of 8 x 10 s crops) on MAPS train, then scored with the crnn
method on the first PIECES ENSTDkAm validation recordings (first SECONDS s
each), J = 50 ms. The test-time jitter and tempo sweeps use the shipped model.
Absolute numbers are far below a full training run: compare rows, not to
Table 1.

    python benchmarks/ablation.py --maps ../shared/data/maps --out results/ablation
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from midialign.training.augment import apply_jitter, clip_notes, draw_jitter
from midialign.config import FeatureConfig, ModelConfig
from midialign.training.data import build_cache, maps_pieces
from midialign.io.audio import load_audio
from midialign.core.network import load_model
from midialign.io.table import read_note_table
from midialign.notes import Notes
from midialign.aligner import align

STEPS_PER_EPOCH, EPOCHS = 40, 3
PIECES, SECONDS = 6, 60.0
WINDOWS_MS = (10, 25, 50, 100)

VARIANTS: dict[str, tuple[ModelConfig, FeatureConfig]] = {
    "CRNN-LSTM, log CQT, 100 fps (default)": (ModelConfig(), FeatureConfig()),
    "CRNN-GRU": (ModelConfig(rnn="gru"), FeatureConfig()),
    "CNN (no RNN)": (ModelConfig(rnn="none"), FeatureConfig()),
    "paper CRNN without local head": (ModelConfig(local_head=False), FeatureConfig()),
    "blind transcription (no MIDI input)": (ModelConfig(midi_input=False), FeatureConfig()),
    "log Mel": (ModelConfig(), FeatureConfig(kind="mel")),
    "linear CQT": (ModelConfig(), FeatureConfig(log=False)),
    "50 fps": (ModelConfig(), FeatureConfig(fps=50)),
}


def feature_key(cfg: FeatureConfig) -> str:
    return f"{cfg.kind}_{'log' if cfg.log else 'lin'}_{cfg.fps}fps"


def val_set(maps: Path) -> list[tuple[np.ndarray, Notes]]:
    out = []
    for p in maps_pieces(maps, "val")[:PIECES]:
        y = load_audio(p.audio, 16000)[: int(SECONDS * 16000)]
        ref = clip_notes(read_note_table(p.annotation), 0, SECONDS - 1)
        out.append((y, ref.subset(ref.offsets < SECONDS - 1.5).sorted()))
    return out


def score(errors_s: list[np.ndarray]) -> dict:
    e = np.abs(np.concatenate(errors_s)) * 1000
    row = {f"<={w}ms": float(np.mean(e <= w) * 100) for w in WINDOWS_MS}
    row.update(mean_ms=float(e.mean()), median_ms=float(np.median(e)), n=int(e.size))
    return row


def evaluate(model, data, method: str, jitter_s: float, tempo_range: float, seed: int = 0) -> dict:
    errors = []
    for i, (y, ref) in enumerate(data):
        rng = np.random.default_rng([seed, i])
        a, b = draw_jitter(len(ref), jitter_s, rng)
        loose = apply_jitter(ref, a, b)
        if tempo_range:
            loose = loose.with_times(loose.intervals * rng.uniform(1 - tempo_range, 1 + tempo_range))
        order = loose.order()
        result = align((y, 16000), loose.sorted(), method=method, model=model)
        errors.append(result.notes.onsets - ref.onsets[order])
    return score(errors)


def train_variant(name: str, model_cfg: ModelConfig, feat_cfg: FeatureConfig, maps: Path, work: Path):
    from midialign.training.train import RECIPES, train

    cache = work / "cache" / feature_key(feat_cfg)
    if not (cache / "maps_train" / "manifest.json").exists():
        build_cache(maps_pieces(maps, "train"), cache / "maps_train", feat_cfg, jobs=2)
    base = RECIPES["frames"]  # the recipe the ablation table was run with
    recipe = replace(base, model=model_cfg, features=feat_cfg,
                     train=replace(base.train, steps_per_epoch=STEPS_PER_EPOCH, max_epochs=EPOCHS, patience=EPOCHS, max_minutes=60.0))
    run = work / "runs" / name.split(",")[0].replace(" ", "_").replace("(", "").replace(")", "")
    t = time.time()
    train([cache / "maps_train"], [], run, recipe)
    return load_model(run / "best.pt"), time.time() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("results/ablation"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = val_set(args.maps)
    results: dict = {"budget": f"{EPOCHS * STEPS_PER_EPOCH} steps x 8 crops of 10 s", "eval": f"first {PIECES} ENSTDkAm pieces x {SECONDS:.0f} s",
                     "architecture": {}, "jitter": {}, "tempo": {}}
    path = args.out / "ablation.json"
    if path.exists():
        results.update(json.loads(path.read_text()))
    for name, (mcfg, fcfg) in VARIANTS.items():
        if name in results["architecture"]:
            continue
        model, seconds = train_variant(name, mcfg, fcfg, args.maps, args.out)
        row = evaluate(model, data, "crnn", 0.05, 0.0)
        row["train_s"] = seconds
        results["architecture"][name] = row
        path.write_text(json.dumps(results, indent=1))
        print(name, row, flush=True)
    shipped = load_model()
    for j in (0.025, 0.05, 0.1, 0.2):
        key = f"J = {j * 1000:.0f} ms"
        results["jitter"].setdefault(key, {m: evaluate(shipped, data, m, j, 0.0) for m in ("none", "crnn")})
    for r in (0.0, 0.05, 0.1, 0.2):
        key = f"tempo ±{r * 100:.0f} %"
        results["tempo"].setdefault(key, {m: evaluate(shipped, data, m, 0.05, r) for m in ("none", "crnn", "dtw+crnn")})
    path.write_text(json.dumps(results, indent=1))
    (args.out / "ablation.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    cols = [f"<={w}ms" for w in WINDOWS_MS]
    head = "| " + " | ".join(["%s" % c.replace("<=", "≤") for c in cols]) + " | median ms |"
    lines = [f"Budget per variant: {results['budget']}; scored on the {results['eval']}, J = 50 ms, method crnn.", "",
             "| variant " + head, "|---|" + "---:|" * (len(cols) + 1)]
    for name, row in results["architecture"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.1f}" for c in cols) + f" | {row['median_ms']:.1f} |")
    for section, title in (("jitter", "test-time jitter"), ("tempo", "tempo change (J = 50 ms)")):
        lines += ["", f"Shipped model, {title}:", "", "| setting | method " + head, "|---|---|" + "---:|" * (len(cols) + 1)]
        for key, by_method in results[section].items():
            for m, row in by_method.items():
                lines.append(f"| {key} | {m} | " + " | ".join(f"{row[c]:.1f}" for c in cols) + f" | {row['median_ms']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
