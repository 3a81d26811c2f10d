"""The CRNN of Murgul et al. (2025), its checkpoint format and windowed inference."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import DEFAULT_WEIGHTS, N_KEYS, FeatureConfig, InferenceConfig, ModelConfig, config_from_dict, config_to_dict
from ..errors import InputError
from ..io.atomic import atomic_write_bytes

FORMAT_VERSION = 1


class ConvStrand(nn.Module):
    """3 x (Conv 3x3, BatchNorm, ReLU), pooling over pitch after convs 2 and 3, then Dense + dropout."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.conv_channels
        block = lambda cin, cout: [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(
            *block(1, c1),
            *block(c1, c2),
            PitchPool(),
            *block(c2, c3),
            PitchPool(),
        )
        self.dense = nn.Sequential(nn.Linear(c3 * (N_KEYS // 4), cfg.embed_size), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 88, T) -> (B, 1, T, 88) so pooling over the last axis pools pitch.
        h = self.convs(x.transpose(1, 2).unsqueeze(1))
        b, c, t, f = h.shape
        return self.dense(h.permute(0, 2, 1, 3).reshape(b, t, c * f))


class PitchPool(nn.Module):
    """Max over adjacent pitch pairs: (B, C, T, F) -> (B, C, T, F // 2), nn.MaxPool2d((1, 2)).

    At inference a max over a reshape: the same values without the indices MaxPool2d
    computes, which in this layout took a fifth of the network's time.
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training:  # keep MaxPool2d's gradient routing at ties
            return nn.functional.max_pool2d(h, (1, 2))
        width = h.shape[-1] // 2 * 2
        return h[..., :width].unflatten(-1, (-1, 2)).amax(-1)


def _local_net(cin: int, c: int) -> nn.Sequential:
    """Convolutions over (time, pitch) at full pitch resolution; 17 frames of context."""
    return nn.Sequential(
        nn.Conv2d(cin, c, (9, 5), padding=(4, 2)),
        nn.ReLU(inplace=True),
        nn.Conv2d(c, c, (9, 3), padding=(4, 1)),
        nn.ReLU(inplace=True),
        nn.Conv2d(c, 1, 1),
    )


class CRNN(nn.Module):
    """Aligned-roll predictor: (roll, features) each (B, 88, T) -> logits (B, C, 88, T).

    Channel 0 is the frame roll; channel 1, with ``onset_head``, the onset roll.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio = ConvStrand(cfg)
        self.midi = ConvStrand(cfg) if cfg.midi_input else None
        width = cfg.embed_size * (2 if cfg.midi_input else 1)
        if cfg.rnn == "lstm":
            self.rnn: nn.Module | None = nn.LSTM(width, cfg.rnn_hidden, batch_first=True, bidirectional=True)
        elif cfg.rnn == "gru":
            self.rnn = nn.GRU(width, cfg.rnn_hidden, batch_first=True, bidirectional=True)
        else:
            self.rnn = None
        out_width = 2 * cfg.rnn_hidden if self.rnn is not None else width
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(out_width, N_KEYS)
        self.local: nn.Module | None = None
        if cfg.local_head:
            self.local = _local_net(2 if cfg.midi_input else 1, cfg.local_channels)
        self.onset_linear: nn.Module | None = None
        self.onset_local: nn.Module | None = None
        if cfg.onset_head:
            self.onset_linear = nn.Linear(out_width, N_KEYS)
            # Inputs: [roll,] features and their rise (half-wave rectified difference).
            self.onset_local = _local_net(3 if cfg.midi_input else 2, cfg.onset_channels)

    @property
    def n_outputs(self) -> int:
        return 2 if self.cfg.onset_head else 1

    def forward(self, roll: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        if roll.shape != feats.shape or roll.shape[1] != N_KEYS:
            raise ValueError(f"roll {tuple(roll.shape)} and features {tuple(feats.shape)} must both be (B, 88, T)")
        h = self.audio(feats)
        if self.midi is not None:
            h = torch.cat([self.midi(roll), h], dim=-1)
        if self.rnn is not None:
            h, _ = self.rnn(h)
        h = self.dropout(h)
        logits = self.head(h).transpose(1, 2)
        planes = [roll, feats] if self.midi is not None else [feats]
        if self.local is not None:
            logits = logits + _apply_local(self.local, planes)
        if self.onset_linear is None or self.onset_local is None:
            return logits[:, None]
        rise = torch.relu(torch.diff(feats, dim=-1, prepend=feats[..., :1]))
        onset = self.onset_linear(h).transpose(1, 2) + _apply_local(self.onset_local, planes + [rise])
        return torch.stack([logits, onset], 1)


def _apply_local(net: nn.Module, planes: list[torch.Tensor]) -> torch.Tensor:
    """Run a local net on (B, 88, T) planes stacked as channels; returns (B, 88, T)."""
    x = torch.stack(planes, 1).transpose(2, 3)  # (B, C, T, 88)
    return net(x).squeeze(1).transpose(1, 2)


# ---------------------------------------------------------------- checkpoints

@dataclass(frozen=True)
class LoadedModel:
    model: CRNN
    model_cfg: ModelConfig
    feature_cfg: FeatureConfig
    sha256: str


def save_checkpoint(path: str | Path, model: CRNN, *, feature_cfg: FeatureConfig, extra: dict | None = None) -> None:
    """Plain tensors and dicts only: loadable with weights_only=True."""
    import io

    payload = {
        "format_version": FORMAT_VERSION,
        "configs": {"model": config_to_dict(model.cfg), "features": config_to_dict(feature_cfg)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if extra:
        payload["extra"] = extra
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_weights_path() -> Path:
    return Path(str(resources.files("midialign") / "weights" / DEFAULT_WEIGHTS))


def load_model(path: str | Path | None = None) -> LoadedModel:
    """A checkpoint {format_version, configs, state_dict} (weights_only, strict); None loads the shipped model.

    Raises InputError naming the file when it is missing, unreadable or of another format.
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise InputError(f"{path}: model weights not found")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise InputError(f"{path}: not a midialign checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        found = payload.get("format_version") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(f"{path}: unsupported checkpoint format {found!r} (expected format_version {FORMAT_VERSION})")
    try:
        model_cfg = config_from_dict(ModelConfig, payload["configs"]["model"])
        feature_cfg = config_from_dict(FeatureConfig, payload["configs"]["features"])
        model = CRNN(model_cfg)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: checkpoint does not match its configs ({' '.join(str(exc).split())[:300]})") from None
    model.eval()
    return LoadedModel(model, model_cfg, feature_cfg, file_sha256(path))


# ---------------------------------------------------------------- inference

def _window_weight(n: int, fade: int) -> np.ndarray:
    """Flat-top window whose linear fades sum to one where neighbours overlap."""
    w = np.ones(n, dtype=np.float32)
    if fade > 0:
        ramp = (np.arange(fade, dtype=np.float32) + 0.5) / fade
        w[:fade] = ramp
        w[n - fade:] = ramp[::-1]
    return w


@torch.inference_mode()
def predict_probs(model: CRNN, roll: np.ndarray, feats: np.ndarray, *, fps: int, cfg: InferenceConfig) -> np.ndarray:
    """Probabilities (C, 88, T) for a whole piece from overlapping windows, cross-faded.

    C is ``model.n_outputs``: the frame roll, then the onset roll if the model has one.

    Batches of windows run on torch.get_num_threads() threads at once, each single-threaded:
    the LSTM's thousands of small steps cost more in thread hand-offs than they gain inside one
    batch, many times more when other processes share the cores.
    Memory is bounded by that many batches of batch_size windows, whatever the piece length.
    """
    if roll.shape != feats.shape:
        raise ValueError(f"roll {roll.shape} and features {feats.shape} differ")
    total = roll.shape[1]
    win = int(round(cfg.window_s * fps))
    hop = int(round(cfg.hop_s * fps))
    if not 0 < hop <= win:
        raise ValueError("need 0 < hop_s <= window_s")
    model.eval()
    if total <= win:
        x = torch.from_numpy(np.ascontiguousarray(roll[None], dtype=np.float32))
        f = torch.from_numpy(np.ascontiguousarray(feats[None], dtype=np.float32))
        return torch.sigmoid(model(x, f))[0].numpy()
    starts = list(range(0, total - win, hop)) + [total - win]
    fade = win - hop
    inner = _window_weight(win, fade)
    first, last = inner.copy(), inner.copy()
    first[:fade] = 1.0  # nothing before the first window to fade into
    last[win - fade:] = 1.0
    acc = np.zeros((model.n_outputs, N_KEYS, total), dtype=np.float32)
    norm = np.zeros(total, dtype=np.float32)

    def run(batch: list[int]) -> np.ndarray:
        with torch.inference_mode():  # thread-local: the decorator covers the caller only
            x = torch.from_numpy(np.stack([roll[:, s:s + win] for s in batch]).astype(np.float32))
            f = torch.from_numpy(np.stack([feats[:, s:s + win] for s in batch]).astype(np.float32))
            return torch.sigmoid(model(x, f)).numpy()

    threads = torch.get_num_threads()
    # Small batches rather than idle threads on short pieces.
    size = max(1, min(cfg.batch_size, -(-len(starts) // threads)))
    batches = [starts[b:b + size] for b in range(0, len(starts), size)]
    workers = min(threads, len(batches))
    if workers > 1:
        torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            for group in range(0, len(batches), workers):
                for batch, prob in zip(batches[group:group + workers], pool.map(run, batches[group:group + workers])):
                    for s, p in zip(batch, prob):
                        w = first if s == 0 else last if s == total - win else inner
                        acc[..., s:s + win] += p * w
                        norm[s:s + win] += w
    finally:
        torch.set_num_threads(threads)
    return acc / np.maximum(norm, 1e-6)
