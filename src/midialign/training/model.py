"""The CRNN of Murgul et al. (2025) in torch, for training, and its checkpoint writer.

Inference never imports this module: core.network runs the same network in numpy from the
checkpoint file (core.checkpoint reads it without torch).
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from ..config import N_KEYS, FeatureConfig, ModelConfig, config_from_dict, config_to_dict
from ..core.checkpoint import FORMAT_VERSION
from ..errors import InputError
from ..io.atomic import atomic_write_bytes


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
    core.network.CRNN is the same network in numpy; keep the two in step.
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

def save_checkpoint(path: str | Path, model: CRNN, *, feature_cfg: FeatureConfig, extra: dict | None = None) -> None:
    """Write {format_version, configs, state_dict[, extra]}: plain tensors and dicts only, so both
    torch.load(weights_only=True) and core.checkpoint's torch-free reader accept it."""
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


def load_torch_model(path: str | Path) -> CRNN:
    """A checkpoint as a torch CRNN in eval mode (torch.load weights_only=True, load_state_dict strict=True).

    Raises InputError naming the file when it is missing, unreadable or does not match its configs.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model weights not found")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise InputError(f"{path}: not a midialign checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: unsupported checkpoint format (expected format_version {FORMAT_VERSION})")
    try:
        model = CRNN(config_from_dict(ModelConfig, payload["configs"]["model"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: checkpoint does not match its configs ({' '.join(str(exc).split())[:300]})") from None
    return model.eval()
