"""Generate examples/prelude/: a short rendered performance and its rough score MIDI.

The music is the opening of Bach's Prelude in C (BWV 846, public domain),
written out here. The "performance" is the score with rubato, a late start
and chord spread, rendered with FluidSynth and pretty_midi's bundled
TimGM6mb soundfont (so it is not a training timbre). The example is a case
folder: `midialign evaluate` can score an alignment of it.

    python scripts/make_example.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from midialign.training.augment import warp_by_knots as warp_times
from midialign.io.midi import write_midi
from midialign.io.table import write_note_table
from midialign.notes import Notes
from midialign.training.render import apply_effects, available_soundfonts, draw_effects, render_notes

OUT = Path(__file__).resolve().parent.parent / "examples" / "prelude"
SEED = 846
# Bars 1-6: the five pitches of each bar's broken chord.
BARS = [
    (60, 64, 67, 72, 76),
    (60, 62, 69, 74, 77),
    (59, 62, 67, 74, 77),
    (60, 64, 67, 72, 76),
    (60, 64, 69, 76, 81),
    (60, 62, 66, 69, 74),
]
SIXTEENTH_S = 0.2  # 75 bpm


def score_notes() -> Notes:
    rows = []
    for bar, (p1, p2, p3, p4, p5) in enumerate(BARS):
        for half in range(2):
            t0 = (bar * 16 + half * 8) * SIXTEENTH_S
            rows.append((t0, t0 + 8 * SIXTEENTH_S, p1))
            rows.append((t0 + SIXTEENTH_S, t0 + 8 * SIXTEENTH_S, p2))
            for k, p in enumerate((p3, p4, p5, p3, p4, p5)):
                on = t0 + (2 + k) * SIXTEENTH_S
                rows.append((on, on + SIXTEENTH_S * 0.9, p))
    arr = np.array(rows)
    return Notes(arr[:, :2], arr[:, 2], np.full(len(arr), 70)).sorted()


def perform(score: Notes, rng: np.random.Generator) -> Notes:
    """Rubato (a smooth warp), a slower tempo, a 1.2 s late start and small per-note timing noise."""
    dur = score.end_time
    knots_t = np.linspace(0, dur, 7)
    knots_dt = rng.uniform(-0.25, 0.25, 7)
    iv = np.stack([warp_times(score.onsets, knots_t, knots_dt), warp_times(score.offsets, knots_t, knots_dt)], 1)
    iv = iv * 1.1 + 1.2
    iv[:, 0] += rng.normal(0, 0.008, len(iv))
    iv[:, 1] = np.maximum(iv[:, 1], iv[:, 0] + 0.05)
    velocities = np.clip(rng.normal(72, 10, len(iv)), 35, 110)
    # Pedal down through each half bar, changed at its start.
    pedal = []
    for k in range(len(BARS) * 2):
        t = warp_times(np.array([k * 8 * SIXTEENTH_S]), knots_t, knots_dt)[0] * 1.1 + 1.2
        pedal += [(t + 0.02, 0), (t + 0.08, 100)]
    return Notes(iv, score.pitches, velocities, pedal=np.array(pedal))


def main() -> None:
    rng = np.random.default_rng(SEED)
    score = score_notes()
    performance = perform(score, rng)
    y = render_notes(performance, available_soundfonts()["timgm6mb"], sample_rate=16000)
    effects = draw_effects(rng, mild=True)
    y = apply_effects(y, 16000, effects)
    OUT.mkdir(parents=True, exist_ok=True)
    sf.write(OUT / "audio.flac", y, 16000, subtype="PCM_16")
    write_midi(score, OUT / "input.mid")
    # Row i of the reference is input note i: the score is already in canonical order.
    write_note_table(Notes(performance.intervals, score.pitches, performance.velocities), OUT / "reference.tsv")
    meta = {"source": "Bach BWV 846 bars 1-6, written out in scripts/make_example.py", "seed": SEED,
            "soundfont": "TimGM6mb (pretty_midi)", "effects": effects.to_json(),
            "input": "score at 75 bpm from 0 s; the performance is slower, rubato, starts at 1.2 s"}
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {OUT}: {len(score)} notes, {len(y) / 16000:.1f} s")


if __name__ == "__main__":
    main()
