"""Corpus readers and the feature cache used for training.

Every reader takes a root path; nothing here knows where the shared data lives.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FeatureConfig, config_from_dict, config_to_dict
from ..errors import ReservedPieceError
from ..io.atomic import atomic_write_text
from ..io.table import read_note_table, write_note_table
from ..notes import Notes

# Aliases of reserved pieces that the reserved list does not name.
RESERVED_ALIASES = frozenset({"chpn_op10_e01"})


@dataclass(frozen=True)
class Piece:
    """One recording with exact note annotations."""

    piece_id: str
    source: str  # e.g. "maps:AkPnBcht"
    audio: Path
    annotation: Path


def read_reserved(maps_root: str | Path) -> frozenset[str]:
    path = Path(maps_root) / "reserved_pieces.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: reserved list missing; refusing to read MAPS without it")
    ids = {ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    return frozenset(ids | RESERVED_ALIASES)


def maps_pieces(maps_root: str | Path, split: str) -> list[Piece]:
    """MAPS recordings of a split from manifest.csv. Train refuses reserved pieces."""
    root = Path(maps_root)
    reserved = read_reserved(root)
    out = []
    with open(root / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != split:
                continue
            if split == "train" and row["piece"] in reserved:
                raise ReservedPieceError(f"MAPS piece {row['piece']} is reserved and may not be used for training")
            out.append(Piece(row["piece"], f"maps:{row['piano']}", root / row["audio"], root / row["annotation"]))
    return out


# ---------------------------------------------------------------- feature cache

def _cache_one(args: tuple[Piece, Path, FeatureConfig]) -> dict:
    from ..core.features import compute_features
    from ..io.audio import load_audio

    piece, out_dir, cfg = args
    stem = Path(piece.audio).stem
    feat_path = out_dir / f"{stem}.npy"
    notes = read_note_table(piece.annotation)
    if not feat_path.exists():
        y = load_audio(piece.audio, cfg.sample_rate)
        feats = compute_features(y, cfg).astype(np.float16)
        tmp = feat_path.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        tmp.rename(feat_path)
    n_frames = int(np.load(feat_path, mmap_mode="r").shape[1])
    return {
        "stem": stem,
        "piece": piece.piece_id,
        "source": piece.source,
        "audio": str(piece.audio),
        "annotation": str(piece.annotation),
        "features": feat_path.name,
        "n_frames": n_frames,
        "duration_s": n_frames / cfg.fps,
        "n_notes": len(notes),
    }


def check_cache_config(out_dir: Path, cfg: FeatureConfig) -> None:
    """Refuse to reuse a cache folder whose features were computed with another FeatureConfig."""
    manifest = out_dir / "manifest.json"
    if manifest.is_file():
        have = config_from_dict(FeatureConfig, json.loads(manifest.read_text())["features"])
        if have != cfg:
            raise ValueError(f"{out_dir}: cached features were computed with {have}, not {cfg}; use another folder or delete it")


def map_with_progress(fn: Callable[[Any], Any], tasks: list, *, jobs: int, desc: str) -> list:
    """[fn(t) for t in tasks] with a progress bar, over `jobs` worker processes when jobs > 1."""
    from tqdm import tqdm

    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex:
            return list(tqdm(ex.map(fn, tasks), total=len(tasks), desc=desc))
    return [fn(t) for t in tqdm(tasks, desc=desc)]


def build_cache(pieces: list[Piece], out_dir: str | Path, cfg: FeatureConfig, *, jobs: int = 2) -> dict:
    """Compute float16 features per recording into out_dir with a manifest.

    Resumable: recordings whose features exist are not recomputed. A folder made with
    another FeatureConfig is refused.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_cache_config(out, cfg)
    tasks = [(p, out, cfg) for p in pieces]
    rows = map_with_progress(_cache_one, tasks, jobs=jobs, desc=f"features {out.name}")
    manifest = {"features": config_to_dict(cfg), "recordings": rows}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


@dataclass
class CachedRecording:
    stem: str
    features: np.ndarray  # (88, T) float16
    notes: Notes


def load_cache(cache_dir: str | Path, *, feature_cfg: FeatureConfig | None = None) -> list[CachedRecording]:
    """The recordings of a cache folder; with feature_cfg, refuse a cache computed with another."""
    cache = Path(cache_dir)
    if feature_cfg is not None:
        check_cache_config(cache, feature_cfg)
    manifest = json.loads((cache / "manifest.json").read_text())
    out = []
    for row in manifest["recordings"]:
        feats = np.load(cache / row["features"])
        out.append(CachedRecording(row["stem"], feats, read_note_table(row["annotation"])))
    return out


# ---------------------------------------------------------------- rendered (n)ASAP

TRAIN_SOUNDFONTS = ("timgm6mb", "fluidr3mono", "musescore_lite")  # csound_gm is held out for asap_score


def asap_training_performances(asap_root: str | Path, exclude_file: str | Path | None, count: int, seed: int):
    """count (n)ASAP performances, spread over pieces, none from a folder listed in exclude_file.

    Whole folders (pieces) of excluded performances are left out, so no
    validation piece is seen in training, played by anyone.
    """
    from .asap import is_excluded, list_performances

    banned: set[str] = set()
    if exclude_file is not None:
        for line in Path(exclude_file).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                banned.add(str(Path(line.strip()).parent))
    perfs = [p for p in list_performances(asap_root) if p.folder not in banned and not is_excluded(p.folder)]
    rng = np.random.default_rng(seed)
    by_folder: dict[str, list] = {}
    for p in perfs:
        by_folder.setdefault(p.folder, []).append(p)
    folders = sorted(by_folder)
    rng.shuffle(folders)
    chosen = []
    for rnd in range(max(len(v) for v in by_folder.values())):  # round-robin over pieces
        for f in folders:
            if len(chosen) < count and rnd < len(by_folder[f]):
                chosen.append(by_folder[f][rnd])
    return chosen


def _render_one(args: tuple) -> dict:
    from ..core.features import compute_features
    from .asap import load_performance
    from .augment import clip_notes
    from .render import apply_effects, available_soundfonts, draw_effects, render_notes

    perf, out_dir, cfg, seed, max_s = args
    stem = f"{perf.folder.replace('/', '_')}_{perf.name}"
    feat_path, tsv_path, meta_path = out_dir / f"{stem}.npy", out_dir / f"{stem}.tsv", out_dir / f"{stem}.json"
    if not meta_path.exists():
        rng = np.random.default_rng(seed)
        fonts = available_soundfonts()
        names = [n for n in TRAIN_SOUNDFONTS if n in fonts]
        font = names[int(rng.integers(len(names)))]
        notes = load_performance(perf)
        start = float(notes.onsets.min())
        notes = clip_notes(notes, start, start + max_s)  # key-release offsets stay the ground truth
        notes = notes.subset(notes.onsets > 0) if len(notes) else notes
        effects = draw_effects(rng)
        y = apply_effects(render_notes(notes, fonts[font], sample_rate=cfg.sample_rate), cfg.sample_rate, effects)
        feats = compute_features(y, cfg).astype(np.float16)
        np.save(out_dir / f"{stem}.tmp.npy", feats)
        (out_dir / f"{stem}.tmp.npy").rename(feat_path)
        write_note_table(Notes(notes.intervals, notes.pitches, notes.velocities), tsv_path)
        atomic_write_text(meta_path, json.dumps({"soundfont": font, "effects": effects.to_json(), "seed": seed, "crop_s": [start, start + max_s]}))
    meta = json.loads(meta_path.read_text())
    n_frames = int(np.load(feat_path, mmap_mode="r").shape[1])
    return {"stem": stem, "piece": perf.folder, "source": f"asap:{perf.folder}/{perf.name}", "features": feat_path.name,
            "annotation": str(tsv_path), "n_frames": n_frames, "duration_s": n_frames / cfg.fps,
            "n_notes": sum(1 for _ in open(tsv_path)) - 1, **meta}


def build_rendered_cache(perfs: list, out_dir: str | Path, cfg: FeatureConfig, *, seed: int, max_s: float = 180.0, jobs: int = 2) -> dict:
    """Render performances with training soundfonts and random effects, then cache features. Resumable."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_cache_config(out, cfg)
    tasks = [(p, out, cfg, seed * 100003 + i, max_s) for i, p in enumerate(perfs)]
    rows = map_with_progress(_render_one, tasks, jobs=jobs, desc=f"render {out.name}")
    manifest = {"features": config_to_dict(cfg), "seed": seed, "max_s": max_s, "recordings": rows}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest
