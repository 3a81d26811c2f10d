"""The CRNN of Murgul et al. (2025) in numpy, for inference: loading and windowed prediction.

training.model.CRNN is the network in torch (training); a checkpoint it saves loads here without
torch (core.checkpoint), and CRNN below computes what the torch model computes in eval mode
(dropout off, BatchNorm on its running statistics), in float32.

Layout: convolutions run on (B, C, T, F) for channels, time and pitch, as torch's; each is a
matmul of torch's flattened (Cout, Cin * kt * kf) weight by im2col blocks (see _conv).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..config import N_KEYS, FeatureConfig, InferenceConfig, ModelConfig, config_from_dict
from ..errors import InputError
from .checkpoint import FORMAT_VERSION, default_weights_path, file_sha256, read_checkpoint

F32 = np.float32
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default
# Bytes of one im2col block: small enough to stay in cache between its copy and its matmul.
IM2COL_BYTES = 1 << 20


def parameter_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of training.model.CRNN(cfg) and its shape: what a checkpoint must hold exactly."""
    shapes: dict[str, tuple[int, ...]] = {}
    c1, c2, c3 = cfg.conv_channels

    def conv(name: str, cin: int, cout: int, kt: int, kf: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, kt, kf)
        shapes[f"{name}.bias"] = (cout,)

    def linear(name: str, cin: int, cout: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin)
        shapes[f"{name}.bias"] = (cout,)

    for strand in ("audio", "midi") if cfg.midi_input else ("audio",):
        for index, (cin, cout) in zip((0, 3, 7), ((1, c1), (c1, c2), (c2, c3))):
            conv(f"{strand}.convs.{index}", cin, cout, 3, 3)
            for stat in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{strand}.convs.{index + 1}.{stat}"] = (cout,)
            shapes[f"{strand}.convs.{index + 1}.num_batches_tracked"] = ()
        linear(f"{strand}.dense.0", c3 * (N_KEYS // 4), cfg.embed_size)
    width = cfg.embed_size * (2 if cfg.midi_input else 1)
    out_width = width
    if cfg.rnn != "none":
        gates = (4 if cfg.rnn == "lstm" else 3) * cfg.rnn_hidden
        for suffix in ("l0", "l0_reverse"):
            shapes[f"rnn.weight_ih_{suffix}"] = (gates, width)
            shapes[f"rnn.weight_hh_{suffix}"] = (gates, cfg.rnn_hidden)
            shapes[f"rnn.bias_ih_{suffix}"] = (gates,)
            shapes[f"rnn.bias_hh_{suffix}"] = (gates,)
        out_width = 2 * cfg.rnn_hidden
    linear("head", out_width, N_KEYS)

    def local(name: str, cin: int, c: int) -> None:
        conv(f"{name}.0", cin, c, 9, 5)
        conv(f"{name}.2", c, c, 9, 3)
        conv(f"{name}.4", c, 1, 1, 1)

    if cfg.local_head:
        local("local", 2 if cfg.midi_input else 1, cfg.local_channels)
    if cfg.onset_head:
        linear("onset_linear", out_width, N_KEYS)
        local("onset_local", 3 if cfg.midi_input else 2, cfg.onset_channels)
    return shapes


# ---------------------------------------------------------------- layers

@dataclass(frozen=True)
class _Conv:
    """A same-padded 2-D convolution over (time, pitch), a BatchNorm after it folded in.

    w: (Cout, Cin * kt * kf), torch's weight flattened; b: (Cout,).
    """

    w: np.ndarray
    b: np.ndarray
    kt: int
    kf: int


def _make_conv(state: dict[str, np.ndarray], name: str, bn: str | None = None) -> _Conv:
    w, b = state[f"{name}.weight"].astype(F32), state[f"{name}.bias"].astype(F32)
    if bn is not None:  # eval-mode BatchNorm is an affine map per channel: fold it into the conv
        scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"] + BN_EPS)
        b = (b - state[f"{bn}.running_mean"]) * scale + state[f"{bn}.bias"]
        w = w * scale[:, None, None, None]
    cout, _, kt, kf = w.shape
    return _Conv(np.ascontiguousarray(w.reshape(cout, -1), F32), b.astype(F32), kt, kf)


def _conv(x: np.ndarray, conv: _Conv, *, relu: bool) -> np.ndarray:
    """(B, Cin, T, F) -> (B, Cout, T, F), zero padding keeping T and F; ReLU after when relu.

    im2col on the padded input flattened over (time, pitch): there a kernel offset (dt, df) is a
    shift of dt * Fp + df, so each im2col row is a contiguous slice and one strided copy builds
    the block (outputs are computed at all Fp padded pitch columns; the 2 * (kf // 2) extra are
    dropped). Blocks of a few time rows of about IM2COL_BYTES stay in cache between copy and matmul.
    """
    b_, cin, t_, f_ = x.shape
    kt, kf, cout = conv.kt, conv.kf, conv.w.shape[0]
    out = np.empty((b_, cout, t_, f_), F32)
    if kt == kf == 1:
        for bi in range(b_):
            dst = out[bi].reshape(cout, -1)
            np.matmul(conv.w, x[bi].reshape(cin, -1), out=dst)
            dst += conv.b[:, None]
        return np.maximum(out, 0, out=out) if relu else out
    pt, pf = kt // 2, kf // 2
    fp = f_ + 2 * pf
    tp = t_ + 2 * pt + 1  # a spare row: the last block's shifted slices run up to kf - 1 past the end
    padded = np.zeros((b_, cin, tp, fp), F32)
    padded[:, :, pt:pt + t_, pf:pf + f_] = x
    flat = padded.reshape(b_, cin, tp * fp)
    k = cin * kt * kf
    rows = max(1, min(t_, IM2COL_BYTES // (k * fp * 4)))
    cols = np.empty((k, rows * fp), F32)
    res = np.empty((cout, rows * fp), F32)
    item = flat.itemsize
    for bi in range(b_):
        # (cin, dt, df, column) -> flat[bi, cin, dt * fp + df + column]: im2col rows in w's order, a view.
        shifted = np.lib.stride_tricks.as_strided(flat[bi], shape=(cin, kt, kf, t_ * fp),
                                                  strides=(flat.strides[1], fp * item, item, item), writeable=False)
        for t0 in range(0, t_, rows):
            n = min(rows, t_ - t0)
            width = n * fp
            block = cols[:, :width]
            np.copyto(block.reshape(cin, kt, kf, width), shifted[..., t0 * fp:t0 * fp + width])
            r = res[:, :width]
            np.matmul(conv.w, block, out=r)
            r += conv.b[:, None]
            dst, src = out[bi, :, t0:t0 + n], r.reshape(cout, n, fp)[:, :, :f_]
            if relu:
                np.maximum(src, 0, out=dst)  # ReLU and the copy out in one pass
            else:
                dst[...] = src
    return out


def _pitch_pool(h: np.ndarray) -> np.ndarray:
    """Max over adjacent pitch pairs: (B, C, T, F) -> (B, C, T, F // 2)."""
    f_ = h.shape[-1] // 2 * 2
    return np.maximum(h[..., 0:f_:2], h[..., 1:f_:2])


class _Strand:
    """ConvStrand: 3 x (conv 3x3 + BatchNorm + ReLU), pitch pooling after convs 2 and 3, Dense + ReLU."""

    def __init__(self, state: dict[str, np.ndarray], name: str) -> None:
        self.convs = [_make_conv(state, f"{name}.convs.{i}", f"{name}.convs.{i + 1}") for i in (0, 3, 7)]
        self.dense_w = np.ascontiguousarray(state[f"{name}.dense.0.weight"].astype(F32).T)  # (C * F, E)
        self.dense_b = state[f"{name}.dense.0.bias"].astype(F32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, 88, T) -> (B, T, E)."""
        h = _conv(np.ascontiguousarray(x.transpose(0, 2, 1)[:, None]), self.convs[0], relu=True)
        h = _pitch_pool(_conv(h, self.convs[1], relu=True))
        h = _pitch_pool(_conv(h, self.convs[2], relu=True))
        b_, c, t_, f_ = h.shape
        out = np.ascontiguousarray(h.transpose(0, 2, 1, 3)).reshape(b_ * t_, c * f_) @ self.dense_w  # torch flattens (C, F)
        out += self.dense_b
        return np.maximum(out, 0, out=out).reshape(b_, t_, -1)


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """In-place logistic function via tanh: no overflow for large negative inputs."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


class _BiRNN:
    """One bidirectional LSTM or GRU layer (torch's gate order and equations), batch first.

    Input projections for all frames and both directions are one matmul; the time loop then
    runs both directions at once, a (2, B, H) @ (2, H, G) matmul per step.
    """

    def __init__(self, state: dict[str, np.ndarray], *, kind: str, hidden: int) -> None:
        self.kind, self.hidden = kind, hidden
        h = hidden
        dirs = ("l0", "l0_reverse")
        # LSTM gates i, f, g, o -> i, f, o, g so the three sigmoids are one slice, and those rows
        # halved: sigmoid(x) = (tanh(x / 2) + 1) / 2, so one tanh over all four gates serves each step.
        order = np.r_[0:2 * h, 3 * h:4 * h, 2 * h:3 * h] if kind == "lstm" else np.arange(3 * h)
        scale = np.r_[np.full(3 * h, 0.5, F32), np.ones(h, F32)] if kind == "lstm" else np.ones(3 * h, F32)
        w_ih = [state[f"rnn.weight_ih_{d}"].astype(F32)[order] * scale[:, None] for d in dirs]
        b_ih = [state[f"rnn.bias_ih_{d}"].astype(F32)[order] * scale for d in dirs]
        b_hh = [state[f"rnn.bias_hh_{d}"].astype(F32)[order] * scale for d in dirs]
        self.w_ih = np.ascontiguousarray(np.concatenate(w_ih).T)  # (W, 2G)
        if kind == "lstm":  # both biases add to the input projection
            self.b_ih = np.concatenate([b_ih[0] + b_hh[0], b_ih[1] + b_hh[1]])
            self.b_hh = None
        else:  # the GRU's candidate gate scales W_hn h + b_hn by r: b_hh stays apart
            self.b_ih = np.concatenate(b_ih)
            self.b_hh = np.stack(b_hh)[:, None, :]  # (2, 1, G)
        self.w_hh = np.ascontiguousarray(np.stack([(state[f"rnn.weight_hh_{d}"].astype(F32)[order] * scale[:, None]).T for d in dirs]))  # (2, H, G)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, T, W) -> (B, T, 2H): forward outputs, then backward ones."""
        b_, t_, _ = x.shape
        h = self.hidden
        g = self.w_hh.shape[2]
        proj = (x.reshape(b_ * t_, -1) @ self.w_ih + self.b_ih).reshape(b_, t_, 2, g)
        seq = np.empty((t_, 2, b_, g), F32)  # time-major; the backward direction reversed in time
        seq[:, 0] = proj[:, :, 0].transpose(1, 0, 2)
        seq[:, 1] = proj[:, ::-1, 1].transpose(1, 0, 2)
        state = np.zeros((2, b_, h), F32)
        outs = np.empty((t_, 2, b_, h), F32)
        gates = np.empty((2, b_, g), F32)
        if self.kind == "lstm":
            cell = np.zeros((2, b_, h), F32)
            tmp = np.empty((2, b_, h), F32)
            for t in range(t_):
                np.matmul(outs[t - 1] if t else state, self.w_hh, out=gates)  # the last output is the state
                gates += seq[t]
                np.tanh(gates, out=gates)
                sig = gates[..., :3 * h]  # i, f, o from tanh(x / 2)
                sig *= 0.5
                sig += 0.5
                cell *= gates[..., h:2 * h]
                np.multiply(gates[..., :h], gates[..., 3 * h:], out=tmp)
                cell += tmp
                np.tanh(cell, out=outs[t])
                outs[t] *= gates[..., 2 * h:3 * h]
        else:
            rz = np.empty((2, b_, 2 * h), F32)
            cand = np.empty((2, b_, h), F32)
            for t in range(t_):
                np.matmul(state, self.w_hh, out=gates)
                gates += self.b_hh
                np.add(seq[t, :, :, :2 * h], gates[..., :2 * h], out=rz)
                _sigmoid_(rz)
                np.multiply(rz[..., :h], gates[..., 2 * h:], out=cand)
                cand += seq[t, :, :, 2 * h:]
                np.tanh(cand, out=cand)
                state -= cand  # h' = n + z * (h - n)
                state *= rz[..., h:]
                state += cand
                outs[t] = state
        out = np.empty((b_, t_, 2 * h), F32)
        out[:, :, :h] = outs[:, 0].transpose(1, 0, 2)
        out[:, :, h:] = outs[::-1, 1].transpose(1, 0, 2)
        return out


class _Local:
    """The pitch-local head: conv (9, 5) + ReLU, conv (9, 3) + ReLU, conv 1x1, over stacked planes."""

    def __init__(self, state: dict[str, np.ndarray], name: str) -> None:
        self.convs = [_make_conv(state, f"{name}.{i}") for i in (0, 2, 4)]

    def __call__(self, planes: list[np.ndarray]) -> np.ndarray:
        """Planes each (B, 88, T) -> (B, T, 88)."""
        h = np.ascontiguousarray(np.stack(planes, 1).transpose(0, 1, 3, 2))  # (B, C, T, 88)
        h = _conv(h, self.convs[0], relu=True)
        h = _conv(h, self.convs[1], relu=True)
        return _conv(h, self.convs[2], relu=False)[:, 0]


class CRNN:
    """Aligned-roll predictor in numpy: (roll, features) each (B, 88, T) -> logits (B, C, 88, T), float32.

    Channel 0 is the frame roll; channel 1, with ``onset_head``, the onset roll. Built from a
    state_dict of numpy arrays (core.checkpoint.read_checkpoint) whose keys and shapes are exactly
    parameter_shapes(cfg); the same computation as training.model.CRNN in eval mode.
    """

    def __init__(self, cfg: ModelConfig, state: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        # Trainable parameters, as torch's model.parameters() counts them (no BatchNorm statistics).
        self.n_parameters = sum(int(v.size) for k, v in state.items() if not k.split(".")[-1].startswith(("running_", "num_batches")))
        self.audio = _Strand(state, "audio")
        self.midi = _Strand(state, "midi") if cfg.midi_input else None
        self.rnn = _BiRNN(state, kind=cfg.rnn, hidden=cfg.rnn_hidden) if cfg.rnn != "none" else None
        self.head_w = np.ascontiguousarray(state["head.weight"].astype(F32).T)
        self.head_b = state["head.bias"].astype(F32)
        self.local = _Local(state, "local") if cfg.local_head else None
        self.onset_w = self.onset_b = self.onset_local = None
        if cfg.onset_head:
            self.onset_w = np.ascontiguousarray(state["onset_linear.weight"].astype(F32).T)
            self.onset_b = state["onset_linear.bias"].astype(F32)
            self.onset_local = _Local(state, "onset_local")

    @property
    def n_outputs(self) -> int:
        return 2 if self.cfg.onset_head else 1

    def __call__(self, roll: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """Logits (B, C, 88, T) for roll and feats (B, 88, T) at the model's frame rate."""
        if roll.shape != feats.shape or roll.ndim != 3 or roll.shape[1] != N_KEYS:
            raise ValueError(f"roll {tuple(roll.shape)} and features {tuple(feats.shape)} must both be (B, 88, T)")
        roll = np.asarray(roll, F32)
        feats = np.asarray(feats, F32)
        h = self.audio(feats)
        if self.midi is not None:
            h = np.concatenate([self.midi(roll), h], axis=-1)
        if self.rnn is not None:
            h = self.rnn(h)
        b_, t_, _ = h.shape
        flat = h.reshape(b_ * t_, -1)
        out = np.empty((b_, self.n_outputs, N_KEYS, t_), F32)
        frames = (flat @ self.head_w + self.head_b).reshape(b_, t_, N_KEYS)
        planes = [roll, feats] if self.midi is not None else [feats]
        if self.local is not None:
            frames += self.local(planes)
        out[:, 0] = frames.transpose(0, 2, 1)
        if self.onset_local is not None:
            rise = np.maximum(np.diff(feats, axis=-1, prepend=feats[..., :1]), 0)
            onset = (flat @ self.onset_w + self.onset_b).reshape(b_, t_, N_KEYS)
            onset += self.onset_local(planes + [rise])
            out[:, 1] = onset.transpose(0, 2, 1)
        return out


# ---------------------------------------------------------------- loading

@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint ready for inference: the numpy network, its configs and the file's SHA-256."""

    model: CRNN
    model_cfg: ModelConfig
    feature_cfg: FeatureConfig
    sha256: str


def load_model(path: str | Path | None = None) -> LoadedModel:
    """A checkpoint {format_version, configs, state_dict} as a numpy CRNN; None loads the shipped model.

    Strict: the state_dict must hold exactly parameter_shapes(configs), no key more or less.
    Raises InputError naming the file when it is missing, unreadable, of another format or
    does not match its configs.
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise InputError(f"{path}: model weights not found")
    payload = read_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        found = payload.get("format_version") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(f"{path}: unsupported checkpoint format {found!r} (expected format_version {FORMAT_VERSION})")
    try:
        model_cfg = config_from_dict(ModelConfig, payload["configs"]["model"])
        feature_cfg = config_from_dict(FeatureConfig, payload["configs"]["features"])
        state = payload["state_dict"]
        _check_state(state, parameter_shapes(model_cfg))
        model = CRNN(model_cfg, state)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: checkpoint does not match its configs ({' '.join(str(exc).split())[:300]})") from None
    return LoadedModel(model, model_cfg, feature_cfg, file_sha256(path))


def _check_state(state: object, expected: dict[str, tuple[int, ...]]) -> None:
    """ValueError unless state maps exactly the expected keys to numpy arrays of the expected shapes."""
    if not isinstance(state, dict):
        raise ValueError(f"state_dict is a {type(state).__name__}")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"Missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, np.ndarray) or value.shape != shape:
            found = value.shape if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"{key}: shape {found}, expected {shape}")


# ---------------------------------------------------------------- inference

def _window_weight(n: int, fade: int) -> np.ndarray:
    """Flat-top window whose linear fades sum to one where neighbours overlap."""
    w = np.ones(n, dtype=F32)
    if fade > 0:
        ramp = (np.arange(fade, dtype=F32) + 0.5) / fade
        w[:fade] = ramp
        w[n - fade:] = ramp[::-1]
    return w


def predict_probs(model: CRNN, roll: np.ndarray, feats: np.ndarray, *, fps: int, cfg: InferenceConfig,
                  progress: Callable[[float], None] | None = None) -> np.ndarray:
    """Probabilities (C, 88, T) for a whole piece from overlapping windows, cross-faded.

    roll, feats: (88, T) at fps frames per second. C is ``model.n_outputs``: the frame roll,
    then the onset roll if the model has one. Windows are cfg.window_s long, cfg.hop_s apart.

    Batches of up to cfg.batch_size windows run on set_threads() Python threads at once (numpy
    releases the GIL in its matmuls and copies), each with a single-threaded BLAS: on the 4-minute
    benchmark 2 threads took 4.4 s against 6.2 s for 1, and letting OpenBLAS thread the conv matmuls
    itself took 79 s on 2 busy cores (its threads spin-wait on tiny matmuls). The BLAS limit is
    process-wide while this runs. Memory is bounded by that many batches whatever the piece length.
    progress: called with the share of windows done, 0-1, after each group of batches.
    """
    if roll.shape != feats.shape:
        raise ValueError(f"roll {roll.shape} and features {feats.shape} differ")
    total = roll.shape[1]
    win = int(round(cfg.window_s * fps))
    hop = int(round(cfg.hop_s * fps))
    if not 0 < hop <= win:
        raise ValueError("need 0 < hop_s <= window_s")
    if total <= win:
        with threadpool_limits(1, user_api="blas"):
            return _sigmoid_(model(np.asarray(roll, F32)[None], np.asarray(feats, F32)[None])[0])
    starts = list(range(0, total - win, hop)) + [total - win]
    fade = win - hop
    inner = _window_weight(win, fade)
    first, last = inner.copy(), inner.copy()
    first[:fade] = 1.0  # nothing before the first window to fade into
    last[win - fade:] = 1.0
    acc = np.zeros((model.n_outputs, N_KEYS, total), dtype=F32)
    norm = np.zeros(total, dtype=F32)

    def run(batch: list[int]) -> np.ndarray:
        x = np.stack([roll[:, s:s + win] for s in batch]).astype(F32)
        f = np.stack([feats[:, s:s + win] for s in batch]).astype(F32)
        return _sigmoid_(model(x, f))

    threads = _threads()
    # Small batches rather than idle threads on short pieces.
    size = max(1, min(cfg.batch_size, -(-len(starts) // threads)))
    batches = [starts[b:b + size] for b in range(0, len(starts), size)]
    workers = min(threads, len(batches))
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        # One group of batches at a time: memory stays bounded whatever the piece length.
        for group in range(0, len(batches), workers):
            for batch, prob in zip(batches[group:group + workers], pool.map(run, batches[group:group + workers])):
                for s, p in zip(batch, prob):
                    w = first if s == 0 else last if s == total - win else inner
                    acc[..., s:s + win] += p * w
                    norm[s:s + win] += w
            if progress is not None:
                progress(min(group + workers, len(batches)) / len(batches))
    acc /= np.maximum(norm, 1e-6)  # in place: an hour's probabilities are 250 MB
    return acc


_THREADS: int | None = None


def set_threads(n: int | None) -> None:
    """Run predict_probs on n threads (None: one per CPU this process may use); for batch workers."""
    global _THREADS
    _THREADS = None if n is None else max(1, int(n))


def _threads() -> int:
    if _THREADS is not None:
        return _THREADS
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform
        return max(1, os.cpu_count() or 1)
