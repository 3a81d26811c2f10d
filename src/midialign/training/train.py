"""Training of the CRNN refiner (training-only code; inference never imports this).

Batches are random crops of cached recordings. The loose input is made on
the fly from the true notes with a Generator seeded by (seed, epoch), so a
run is deterministic and resumes exactly at an epoch boundary.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import AugmentConfig, FeatureConfig, ModelConfig, TrainConfig, config_to_dict
from ..core.features import denormalise, normalise
from .model import CRNN, save_checkpoint
from ..core.roll import notes_to_roll, onset_roll
from ..io.atomic import atomic_write_bytes
from .augment import apply_timing, clip_notes, draw_timing
from .data import CachedRecording, load_cache

log = logging.getLogger("midialign")


@dataclass(frozen=True)
class Recipe:
    model: ModelConfig
    features: FeatureConfig
    augment: AugmentConfig
    train: TrainConfig
    # Per-crop jitter J is drawn from U(jitter_min_s, augment.jitter_s) so one model covers small and large errors.
    jitter_min_s: float = 0.005


_AUGMENT = AugmentConfig(jitter_s=0.08, tempo_range=0.02, warp_max_s=0.06, chord_spread_s=0.03, p_drop=0.03, p_extra=0.03)
_TRAIN = TrainConfig(segment_s=10.0, batch_size=8, lr=1e-3, max_epochs=40, steps_per_epoch=100, patience=6, max_minutes=70.0)

# The shipped model is trained in four stages, each starting from the last (see the model card):
# frames -> onsets (adds the onset head) -> room (room augmentation, lower learning rate)
# -> default (inputs always at least 40 ms off).
RECIPES: dict[str, Recipe] = {
    # The paper's output only: the aligned frame roll.
    "frames": Recipe(ModelConfig(), FeatureConfig(), _AUGMENT, replace(_TRAIN, room_augment=False)),
    "onsets": Recipe(ModelConfig(onset_head=True), FeatureConfig(), _AUGMENT, replace(_TRAIN, onset_weight=5.0, room_augment=False)),
    "room": Recipe(ModelConfig(onset_head=True), FeatureConfig(), _AUGMENT, replace(_TRAIN, lr=5e-4, onset_weight=5.0)),
    # With small jitter the cheapest answer is to copy the input's onset, and on unfamiliar audio the
    # earlier stages did: their onset peaks sat between the input and the sound. Jitter of at least
    # 40 ms makes the input say only which note is near, so the timing has to come from the audio.
    "default": Recipe(
        ModelConfig(onset_head=True), FeatureConfig(), replace(_AUGMENT, jitter_s=0.1), replace(_TRAIN, lr=5e-4, onset_weight=5.0), jitter_min_s=0.04
    ),
    # A few steps, for tests and ablation smoke runs.
    "tiny": Recipe(
        ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16, onset_head=True, onset_channels=4),
        FeatureConfig(),
        AugmentConfig(),
        TrainConfig(segment_s=2.0, batch_size=2, max_epochs=1, steps_per_epoch=2, patience=1, max_minutes=5.0),
    ),
}


def augment_features(feats: np.ndarray, rng: np.random.Generator, room: bool = True, p_reverb: float = 0.8) -> np.ndarray:
    """Level, tilt and noise on a log CQT, after (with room) a room and microphone change.

    All parameters come from rng. These stand in for the pianos, rooms and
    microphones that MAPS's software pianos do not cover.
    """
    out = _room_and_microphone(feats, rng, p_reverb) if room else feats
    gain = rng.uniform(0.8, 1.2)
    tilt = rng.uniform(-0.1, 0.1) * np.linspace(-1.0, 1.0, feats.shape[0], dtype=np.float32)[:, None]
    noise = rng.uniform(0.0, 0.03) * rng.standard_normal(feats.shape, dtype=np.float32)
    return np.clip(out * gain + tilt * (out > 0.05) + noise, 0.0, None).astype(np.float32)


def _room_and_microphone(feats: np.ndarray, rng: np.random.Generator, p_reverb: float) -> np.ndarray:
    """In the magnitude domain: a random smooth EQ across bins and, with probability
    p_reverb, a reverberant tail (an exponential decay per bin, RT60 from 0.2 to
    1.5 s, longer in the bass); then the features' log compression again."""
    mag = denormalise(feats)
    n_bins = feats.shape[0]
    eq_db = np.interp(np.arange(n_bins), np.linspace(0, n_bins - 1, 6), rng.uniform(-6.0, 6.0, 6))
    mag *= 10.0 ** (eq_db[:, None] / 20.0)
    if rng.random() < p_reverb:
        from scipy.signal import fftconvolve

        rt60 = rng.uniform(0.2, 1.5) * np.linspace(1.5, 0.5, n_bins)  # s, per bin
        decay = 10.0 ** (-3.0 / (rt60 * 100.0))  # amplitude factor per 10 ms frame
        wet = rng.uniform(0.1, 1.0)  # steady-state tail energy relative to the direct sound
        # Each bin's tail is its magnitude convolved with decay**n (n >= 1), cut at -80 dB: one
        # batched FFT convolution instead of a recursive filter per bin.
        n_taps = min(int(np.ceil(np.log(1e-4) / np.log(decay.max()))) + 1, mag.shape[1])  # longer never reaches the crop
        kernel = decay[:, None] ** np.arange(n_taps)[None, :]
        kernel[:, 0] = 0.0
        tail = fftconvolve(mag, kernel, axes=1)[:, : mag.shape[1]]
        mag += wet * ((1.0 - decay) / decay)[:, None] * tail
    return normalise(mag, log=True).astype(np.float32)


def make_example(rec: CachedRecording, start_frame: int, n_frames: int, fps: int, aug: AugmentConfig, rng: np.random.Generator, aug_features: bool = False, room: bool = True) -> tuple[np.ndarray, ...]:
    """(input roll, features, target roll, onset target, mask) for one crop; all (88, n_frames) except mask (n_frames,)."""
    feats = rec.features[:, start_frame:start_frame + n_frames].astype(np.float32)
    valid = feats.shape[1]
    t0 = start_frame / fps
    notes = clip_notes(rec.notes, t0, t0 + n_frames / fps)
    if len(notes):
        loose, target = apply_timing(notes, draw_timing(notes, aug, rng))
    else:
        loose = target = notes
    if aug_features:
        feats = augment_features(feats, rng, room=room)
    x = notes_to_roll(loose, fps, n_frames)
    y = notes_to_roll(target, fps, n_frames)
    onsets = onset_roll(target, fps, n_frames)
    if valid < n_frames:
        feats = np.pad(feats, ((0, 0), (0, n_frames - valid)))
    mask = np.zeros(n_frames, dtype=np.float32)
    mask[:valid] = 1.0
    y[:, valid:] = 0.0
    onsets[:, valid:] = 0.0
    return x, feats, y, onsets, mask


def sample_batch(recs: list[CachedRecording], weights: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    fps = recipe.features.fps
    n = int(round(recipe.train.segment_s * fps))
    items = []
    for _ in range(recipe.train.batch_size):
        rec = recs[int(rng.choice(len(recs), p=weights))]
        start = int(rng.integers(0, max(1, rec.features.shape[1] - n)))
        jitter = float(rng.uniform(recipe.jitter_min_s, recipe.augment.jitter_s))
        items.append(make_example(rec, start, n, fps, replace(recipe.augment, jitter_s=jitter), rng, aug_features=True, room=recipe.train.room_augment))
    return tuple(torch.from_numpy(np.stack(a)) for a in zip(*items))


def validation_batches(recs: list[CachedRecording], recipe: Recipe, seed: int, every_s: float = 30.0, jitter_s: float = 0.05) -> list[tuple[torch.Tensor, ...]]:
    """Fixed crops of the validation recordings with the paper's J = 50 ms jitter only."""
    fps = recipe.features.fps
    n = int(round(recipe.train.segment_s * fps))
    aug = AugmentConfig(jitter_s=jitter_s, tempo_range=0.0, warp_max_s=0.0, chord_spread_s=0.0, p_drop=0.0, p_extra=0.0)
    rng = np.random.default_rng(seed)
    items = []
    for rec in recs:
        for start in range(0, max(1, rec.features.shape[1] - n), int(every_s * fps)):
            items.append(make_example(rec, start, n, fps, aug, rng))
    bs = recipe.train.batch_size
    return [tuple(torch.from_numpy(np.stack(a)) for a in zip(*items[i:i + bs])) for i in range(0, len(items), bs)]


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE averaged over unpadded frames; weight (like target) scales each cell."""
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    m = mask[:, None, :].expand_as(loss)
    if weight is not None:
        loss = loss * weight
    return (loss * m).sum() / m.sum().clamp(min=1.0)


def model_loss(logits: torch.Tensor, frames: torch.Tensor, onsets: torch.Tensor, mask: torch.Tensor, tc: TrainConfig, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Frame-roll BCE, plus the onset-roll BCE when the model has an onset head."""
    loss = masked_bce(logits[:, 0], frames, mask, weight)
    if logits.shape[1] > 1:
        loss = loss + tc.onset_weight * masked_bce(logits[:, 1], onsets, mask)
    return loss


def load_init(model: CRNN, path: Path, dev: torch.device) -> None:
    """Start from other weights (a checkpoint, or a run's last.pt); only an onset head they lack may stay freshly initialised."""
    payload = torch.load(path, map_location=dev, weights_only=True)
    state = payload["state_dict"] if "state_dict" in payload else payload["model"]
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"{path}: weights do not fit this model: {str(exc).splitlines()[0]}") from None
    if unexpected or any(not k.startswith("onset_") for k in missing):
        raise ValueError(f"{path}: weights do not fit this model (missing {missing}, unexpected {unexpected})")
    log.info("starting from the weights of %s%s", path, " (new onset head)" if missing else "")


def train(train_cache: list[Path], val_cache: list[Path], out_dir: Path, recipe: Recipe, device: str = "auto", resume: bool = True, init: Path | None = None) -> dict:
    """Train with early stopping on validation loss.

    Writes last.pt (resumable), best.pt and epochN.pt (shippable checkpoints), log.csv.
    """
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    torch.manual_seed(recipe.train.seed)
    recs = [r for c in train_cache for r in load_cache(c, feature_cfg=recipe.features)]
    val_recs = [r for c in val_cache for r in load_cache(c, feature_cfg=recipe.features)]
    if not recs:
        raise ValueError("no training recordings in the cache")
    weights = np.array([r.features.shape[1] for r in recs], dtype=np.float64)
    weights /= weights.sum()
    val = validation_batches(val_recs, recipe, recipe.train.seed) if val_recs else []

    model = CRNN(recipe.model).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    # Cut the learning rate when validation stalls; on CPU budgets this gains more than waiting.
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.3, patience=1)
    state_path, best_path, log_path = out_dir / "last.pt", out_dir / "best.pt", out_dir / "log.csv"
    epoch, best, bad_epochs, elapsed = 0, float("inf"), 0, 0.0
    if resume and state_path.exists():
        st = torch.load(state_path, map_location=dev, weights_only=True)
        model.load_state_dict(st["model"], strict=True)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        epoch, best, bad_epochs, elapsed = int(st["epoch"]), float(st["best"]), int(st["bad_epochs"]), float(st["elapsed"])
        log.info("resumed %s at epoch %d (best val %.4f)", state_path, epoch, best)
    elif init is not None:
        load_init(model, init, dev)
    (out_dir / "recipe.json").write_text(json.dumps({k: config_to_dict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in recipe.__dict__.items()}, indent=1))

    tc = recipe.train
    while epoch < tc.max_epochs and bad_epochs < tc.patience and elapsed < tc.max_minutes * 60:
        t_start = time.time()
        rng = np.random.default_rng([tc.seed, epoch])
        torch.manual_seed(tc.seed * 100003 + epoch)
        model.train()
        losses = []
        bar = tqdm(range(tc.steps_per_epoch), desc=f"epoch {epoch}", leave=False)
        for _ in bar:
            x, f, y, o, m = (t.to(dev) for t in sample_batch(recs, weights, recipe, rng))
            weight = 1.0 + tc.shift_weight * (y - x).abs() if tc.shift_weight else None
            loss = model_loss(model(x, f), y, o, m, tc, weight)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        val_loss = evaluate_loss(model, val, dev, tc) if val else float(np.mean(losses))
        epoch += 1
        elapsed += time.time() - t_start
        sched.step(val_loss)
        improved = val_loss < best
        # Validation loss only loosely follows alignment accuracy: keep every epoch's weights to score.
        epoch_path = out_dir / f"epoch{epoch}.pt"
        save_checkpoint(epoch_path, model, feature_cfg=recipe.features, extra={"epoch": epoch, "val_loss": val_loss})  # copies tensors to CPU
        if improved:
            best, bad_epochs = val_loss, 0
            atomic_write_bytes(best_path, epoch_path.read_bytes())
        else:
            bad_epochs += 1
        _append_log(log_path, epoch, float(np.mean(losses)), val_loss, time.time() - t_start)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch, "best": best, "bad_epochs": bad_epochs, "elapsed": elapsed}, state_path)
        log.info("epoch %d: train %.4f val %.4f%s lr %.1e (%.0f s)", epoch, np.mean(losses), val_loss, " *" if improved else "", opt.param_groups[0]["lr"], time.time() - t_start)
    return {"epochs": epoch, "best_val_loss": best, "minutes": elapsed / 60}


@torch.inference_mode()
def evaluate_loss(model: CRNN, batches: list[tuple[torch.Tensor, ...]], dev: torch.device, tc: TrainConfig) -> float:
    model.eval()
    total, weight = 0.0, 0.0
    for x, f, y, o, m in (tuple(t.to(dev) for t in b) for b in batches):
        total += float(model_loss(model(x, f), y, o, m, tc)) * float(m.sum())
        weight += float(m.sum())
    return total / max(weight, 1.0)


def _append_log(path: Path, epoch: int, train_loss: float, val_loss: float, seconds: float) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["epoch", "train_loss", "val_loss", "seconds"])
        w.writerow([epoch, f"{train_loss:.5f}", f"{val_loss:.5f}", f"{seconds:.1f}"])
