"""Corpus readers and the feature cache used for training.

Every reader takes a root path; nothing here knows where the shared data lives.
"""
from __future__ import annotations

import contextlib
import csv
import json
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AcousticsConfig, FeatureConfig, config_from_dict, config_to_dict
from ..errors import ReservedPieceError
from ..io.atomic import atomic_write_text
from ..io.midi import read_midi
from ..io.table import read_note_table, write_note_table
from ..notes import Notes

# The rendered corpus's manifest is rewritten after this many renders.
MANIFEST_EVERY = 10

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
    features: np.ndarray  # (88, T) float16, memory-mapped
    notes: Notes


def load_cache(cache_dir: str | Path, *, feature_cfg: FeatureConfig | None = None) -> list[CachedRecording]:
    """The recordings of a cache folder; with feature_cfg, refuse a cache computed with another."""
    cache = Path(cache_dir)
    if feature_cfg is not None:
        check_cache_config(cache, feature_cfg)
    manifest = json.loads((cache / "manifest.json").read_text())
    out = []
    for row in manifest["recordings"]:
        # Memory-mapped: crops read only their frames. Annotation paths may be relative to the cache.
        feats = np.load(cache / row["features"], mmap_mode="r")
        out.append(CachedRecording(row["stem"], feats, read_note_table(cache / row["annotation"])))
    return out


# ---------------------------------------------------------------- rendered corpus

@dataclass(frozen=True)
class RenderSource:
    """Notes to render: an (n)ASAP performance MIDI (with pedal) or a MAPS note table (without)."""

    key: str  # e.g. "asap:Bach/Fugue/bwv_846/Shi05M" or "maps:alb_esp2"
    path: Path  # the MIDI or TSV
    piece: str  # folder or piece id, for splitting and reporting


def asap_training_performances(asap_root: str | Path, exclude_file: str | Path | None, count: int | None, seed: int):
    """count (n)ASAP performances (None: all), spread over pieces, none from a folder listed in exclude_file.

    Whole folders (pieces) of excluded performances are left out, so no
    validation piece is seen in training, played by anyone; so are folders
    held out by asap.is_excluded.
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
    count = len(perfs) if count is None else count
    chosen = []
    for rnd in range(max((len(v) for v in by_folder.values()), default=0)):  # round-robin over pieces
        for f in folders:
            if len(chosen) < count and rnd < len(by_folder[f]):
                chosen.append(by_folder[f][rnd])
    return chosen


def render_sources(*, asap_root: str | Path | None, exclude_file: str | Path | None, maps_root: str | Path | None,
                   asap_count: int | None = None, seed: int = 0) -> list[RenderSource]:
    """The MIDI of the rendered corpus: (n)ASAP training performances, then one note table per MAPS train piece."""
    out = []
    if asap_root is not None:
        for p in asap_training_performances(asap_root, exclude_file, asap_count, seed):
            out.append(RenderSource(f"asap:{p.folder}/{p.name}", p.midi, p.folder))
    if maps_root is not None:
        seen: set[str] = set()
        for piece in maps_pieces(maps_root, "train"):  # refuses reserved pieces
            if piece.piece_id not in seen:  # a piece's tables on several pianos are near copies
                seen.add(piece.piece_id)
                out.append(RenderSource(f"maps:{piece.piece_id}", piece.annotation, piece.piece_id))
    return out


def _source_notes(src: RenderSource) -> Notes:
    if src.key.startswith("asap:"):
        from .asap import check_folder, piano_range

        check_folder(src.piece)  # held-out folders never render, whoever built the list
        notes = read_midi(src.path)
        return notes.subset(piano_range(notes.pitches))
    return read_note_table(src.path)


def _item_stem(src: RenderSource, timbre: str) -> str:
    return f"{src.key.replace(':', '_').replace('/', '_')}__{timbre}"


def item_seed(seed: int, stem: str) -> int:
    """A render's seed: from the corpus seed and its name only, so it does not depend on what else is built."""
    return int(np.random.SeedSequence([seed, zlib.crc32(stem.encode())]).generate_state(1)[0])


def _render_item(args: tuple) -> dict:
    """Render, colour and cache one (source, timbre); skipped when its meta file exists (the resume unit)."""
    from ..core.features import compute_features
    from .acoustics import apply_acoustics, draw_acoustics
    from .augment import clip_notes
    from .render import render_timbre

    src, timbre, out_dir, cfg, acoustics, seed, max_s = args
    stem = _item_stem(src, timbre)
    meta_path = out_dir / f"{stem}.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    t0 = time.time()
    rng = np.random.default_rng(item_seed(seed, stem))
    notes = _source_notes(src)
    start = max(float(notes.onsets.min()) - 0.5, 0.0) if len(notes) else 0.0
    end = start + max_s if max_s else notes.end_time + 1.0
    notes = clip_notes(notes, start, end)  # key-release offsets stay the ground truth
    params = draw_acoustics(rng, acoustics)
    y = render_timbre(notes, timbre, sample_rate=cfg.sample_rate, duration_s=min(end - start, notes.end_time + 1.0))
    y, codec = apply_acoustics(y, cfg.sample_rate, params)
    feats = compute_features(y, cfg).astype(np.float16)
    np.save(out_dir / f"{stem}.tmp.npy", feats)
    (out_dir / f"{stem}.tmp.npy").rename(out_dir / f"{stem}.npy")
    write_note_table(Notes(notes.intervals, notes.pitches, notes.velocities), out_dir / f"{stem}.tsv")
    meta = {"stem": stem, "source": src.key, "piece": src.piece, "timbre": timbre, "seed": item_seed(seed, stem),
            "crop_s": [start, end], "features": f"{stem}.npy", "annotation": f"{stem}.tsv", "n_frames": int(feats.shape[1]),
            "duration_s": len(y) / cfg.sample_rate, "n_notes": len(notes), "acoustics": params.to_json(), "codec_result": codec,
            "render_s": round(time.time() - t0, 2)}
    atomic_write_text(meta_path, json.dumps(meta))
    return json.loads(meta_path.read_text())  # as a resumed run reads it


def corpus_summary(rows: list[dict]) -> dict:
    """Hours, recordings and render speed per timbre."""
    out: dict[str, dict] = {}
    for r in rows:
        t = out.setdefault(r["timbre"], {"recordings": 0, "hours": 0.0, "render_s": 0.0})
        t["recordings"] += 1
        t["hours"] += r["duration_s"] / 3600
        t["render_s"] += r["render_s"]
    for t in out.values():
        t["audio_s_per_s"] = round(t["hours"] * 3600 / max(t["render_s"], 1e-9), 2)
        t["hours"] = round(t["hours"], 4)
        t["render_s"] = round(t["render_s"], 1)
    return out


def build_rendered_corpus(sources: list[RenderSource], timbres: tuple[str, ...], out_dir: str | Path, cfg: FeatureConfig, *,
                          acoustics: AcousticsConfig = AcousticsConfig(), seed: int = 0, max_s: float | None = None,
                          timbres_per_source: int | None = None, jobs: int = 2) -> dict:
    """Render every source in timbres_per_source of the timbres (default all; source i takes timbres i, i+1, ...
    in turn, so each timbre gets its share) through a drawn room/microphone/codec chain, and cache the features.

    Per render OUT holds <stem>.npy (float16 features (88, frames)), <stem>.tsv (labels, on the
    attacks) and <stem>.json (timbre, acoustic parameters, seed). Resumable: finished renders are
    kept, so a killed run loses only the renders in flight. manifest.json, rewritten every
    MANIFEST_EVERY renders and at the end, records the FeatureConfig, the AcousticsConfig, the
    seed, hours per timbre and every render's row.
    """
    from tqdm import tqdm

    from .render import training_timbres

    installed = training_timbres(timbres)  # refuses held-out timbres
    missing = [t for t in timbres if t not in installed]
    if missing:
        raise ValueError(f"timbres not installed: {', '.join(missing)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_cache_config(out, cfg)
    k = len(timbres) if timbres_per_source is None else min(timbres_per_source, len(timbres))
    tasks = [(s, timbres[(i + j) % len(timbres)], out, cfg, acoustics, seed, max_s) for i, s in enumerate(sources) for j in range(k)]
    finished = [out / f"{_item_stem(s, t)}.json" for s, t, *_ in tasks]
    todo = [task for task, meta in zip(tasks, finished) if not meta.exists()]
    rows = [json.loads(meta.read_text()) for meta in finished if meta.exists()]
    bar = tqdm(total=len(tasks), initial=len(rows), desc=f"render {out.name}", unit="rec")

    def write_manifest() -> dict:
        manifest = {"features": config_to_dict(cfg), "acoustics": config_to_dict(acoustics), "seed": seed, "max_s": max_s,
                    "timbres": list(timbres), "timbres_per_source": k, "complete": len(rows) == len(tasks), "summary": corpus_summary(rows), "recordings": rows}
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
        return manifest

    with ProcessPoolExecutor(jobs) if jobs > 1 else contextlib.nullcontext() as ex:
        for row in (ex.map(_render_item, todo) if ex else map(_render_item, todo)):
            rows.append(row)
            bar.update()
            if len(rows) % MANIFEST_EVERY == 0:  # a partial corpus is usable while the rest renders
                write_manifest()
    bar.close()
    return write_manifest()
