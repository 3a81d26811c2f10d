"""The --plot picture: a piano roll of the input and aligned notes over the recording's CQT and,
under it, the local tempo of the tempo map (matplotlib)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .alignment import Alignment
from .config import PITCH_MAX, PITCH_MIN, FeatureConfig
from .errors import InputError

DEFAULT_PLOT_SPAN_S = 20.0


def import_matplotlib():
    """matplotlib.pyplot on the file-only Agg backend; InputError when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plot needs matplotlib (pip install 'midialign[plot]')") from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def check_plot_range(start: float, end: float) -> tuple[float, float]:
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start:
        raise InputError(f"--plot-range {start} {end}: need 0 <= START < END (seconds)")
    return float(start), float(end)


def plot_png(result: Alignment, audio: str | Path | tuple[np.ndarray, int], *, start: float = 0.0, end: float = DEFAULT_PLOT_SPAN_S,
             feature_cfg: FeatureConfig = FeatureConfig(), tempo: np.ndarray | None = None) -> bytes:
    """PNG of a piano roll over [start, end) s: CQT behind, input notes outlined, aligned notes filled.

    Low-confidence notes (network methods only: for none/dtw confidence
    carries no information) are marked with a red x at their aligned onset.
    tempo: (k, 2) [time s, quarter notes per minute] from each tempo event on
    (io.midi_structure.AlignedMidi.tempo); drawn as a second panel when given.
    """
    plt = import_matplotlib()
    from matplotlib.patches import Rectangle

    from .core.features import compute_features
    from .io.audio import read_audio

    start, end = check_plot_range(start, end)
    sr = feature_cfg.sample_rate
    y = read_audio(audio, sr)
    end = min(end, max(len(y) / sr, start + 1.0 / feature_cfg.fps))
    seg = y[int(start * sr):int(np.ceil(end * sr))]
    feats = compute_features(seg, feature_cfg) if len(seg) >= feature_cfg.hop_length else np.zeros((feature_cfg.n_bins, 1), np.float32)

    inp, out = result.input_notes, result.notes
    pitches = out.pitches
    visible = ((inp.offsets > start) & (inp.onsets < end)) | ((out.offsets > start) & (out.onsets < end))
    lo = int(pitches[visible].min()) - 3 if visible.any() else PITCH_MIN
    hi = int(pitches[visible].max()) + 3 if visible.any() else PITCH_MAX
    lo, hi = max(lo, PITCH_MIN), min(hi, PITCH_MAX)

    width = min(4 + 0.6 * (end - start), 24)
    if tempo is None:
        fig, ax = plt.subplots(figsize=(width, 6), dpi=110)
    else:
        fig, (ax, tempo_ax) = plt.subplots(2, 1, figsize=(width, 8), dpi=110, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    try:
        # Feature bin k is MIDI pitch 21 + k (12 bins/octave from A0).
        ax.imshow(feats, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                  extent=(start - 0.5 / feature_cfg.fps, start + (feats.shape[1] - 0.5) / feature_cfg.fps, PITCH_MIN - 0.5, PITCH_MIN + feats.shape[0] - 0.5))
        for i in np.flatnonzero(visible):
            p = float(pitches[i])
            ion, ioff = inp.intervals[i]
            aon, aoff = out.intervals[i]
            ax.add_patch(Rectangle((ion, p - 0.4), max(ioff - ion, 0.01), 0.8, fill=False, edgecolor="tab:blue", linewidth=0.9))
            ax.add_patch(Rectangle((aon, p - 0.3), max(aoff - aon, 0.01), 0.6, facecolor="tab:orange", alpha=0.65, edgecolor="none"))
        low = visible & result.low_confidence if "crnn" in result.method else np.zeros(len(out), bool)
        if low.any():
            ax.plot(out.onsets[low], pitches[low], "x", color="red", markersize=6, label="low confidence")
        ax.plot([], [], "s", markerfacecolor="none", markeredgecolor="tab:blue", label="input")
        ax.plot([], [], "s", color="tab:orange", label=f"aligned ({result.method})")
        ax.set_xlim(start, end)
        ax.set_ylim(lo - 0.5, hi + 0.5)
        if tempo is not None:
            _draw_tempo(tempo_ax, np.asarray(tempo, dtype=np.float64).reshape(-1, 2), end=end)
        (ax if tempo is None else tempo_ax).set_xlabel("time (s)")
        ax.set_ylabel("MIDI pitch")
        ax.set_title(f"{len(out)} notes, {result.share_moved:.0%} moved by the network" if "crnn" in result.method else f"{len(out)} notes ({result.method})")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _draw_tempo(ax, tempo: np.ndarray, *, end: float) -> None:
    """Local tempo as steps: each tempo event holds until the next."""
    times = np.append(tempo[:, 0], max(end, tempo[-1, 0]))
    bpm = np.append(tempo[:, 1], tempo[-1, 1])
    ax.step(times, bpm, where="post", color="tab:green")
    lo, hi = float(bpm.min()), float(bpm.max())
    ax.set_ylim(lo * 0.9 - 1, hi * 1.1 + 1)
    ax.set_ylabel("tempo (quarter notes/min)")
    ax.grid(alpha=0.3)
