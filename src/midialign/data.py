"""Corpus readers and the feature cache used for training.

Every reader takes a root path; nothing here knows where the shared data lives.
"""
from __future__ import annotations

import csv
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import FeatureConfig, config_to_dict
from .notes import Notes, atomic_write_text, read_note_table

# Aliases of reserved pieces that the reserved list does not name.
RESERVED_ALIASES = frozenset({"chpn_op10_e01"})


class ReservedPieceError(ValueError):
    pass


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


def check_not_reserved(piece_id: str, reserved: frozenset[str]) -> None:
    if piece_id in reserved:
        raise ReservedPieceError(f"piece {piece_id} is reserved (held out); it may not be used for training")


# ---------------------------------------------------------------- feature cache

def _cache_one(args: tuple[Piece, Path, FeatureConfig]) -> dict:
    from .features import compute_features, load_audio

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


def build_cache(pieces: list[Piece], out_dir: str | Path, cfg: FeatureConfig, jobs: int = 2) -> dict:
    """Compute float16 features per recording into out_dir with a manifest.

    Resumable: recordings whose features exist are not recomputed.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(p, out, cfg) for p in pieces]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex:
            rows = list(tqdm(ex.map(_cache_one, tasks), total=len(tasks), desc=f"features {out.name}"))
    else:
        rows = [_cache_one(t) for t in tqdm(tasks, desc=f"features {out.name}")]
    manifest = {"features": config_to_dict(cfg), "recordings": rows}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


@dataclass
class CachedRecording:
    stem: str
    features: np.ndarray  # (88, T) float16
    notes: Notes


def load_cache(cache_dir: str | Path) -> list[CachedRecording]:
    cache = Path(cache_dir)
    manifest = json.loads((cache / "manifest.json").read_text())
    out = []
    for row in manifest["recordings"]:
        feats = np.load(cache / row["features"])
        out.append(CachedRecording(row["stem"], feats, read_note_table(row["annotation"])))
    return out
