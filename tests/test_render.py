"""Rendering MIDI with FluidSynth (training data and the asap_score cases). Skipped without libfluidsynth3."""
import json
from pathlib import Path

import numpy as np
import pytest

from midialign.notes import Notes

SR = 16000


def random_notes(rng: np.random.Generator, n: int, duration: float) -> Notes:
    on = np.sort(rng.uniform(0.0, duration - 0.5, n))
    off = on + rng.uniform(0.05, 0.5, n)
    return Notes(np.stack([on, off], 1), rng.integers(40, 90, n), rng.integers(30, 110, n))


# pyfluidsynth raises ImportError (not ModuleNotFoundError) when libfluidsynth3 is missing.
fluidsynth = pytest.importorskip("fluidsynth", reason="rendering needs pyfluidsynth and Debian's libfluidsynth3", exc_type=ImportError)

from midialign.training import render  # noqa: E402

FONTS = ["timgm6mb", "fluidr3mono", "musescore_lite", "csound_gm"]


def _font(name: str) -> Path:
    fonts = render.available_soundfonts()
    if name not in fonts:
        if name == "timgm6mb":
            pytest.fail("pretty_midi's TimGM6mb.sf2 must be available")
        pytest.skip(f"soundfont {name} not installed")
    return fonts[name]


def test_render_honours_pedal() -> None:
    sf = _font("timgm6mb")
    note = (np.array([[0.2, 0.35]]), np.array([60]), np.array([90]))
    dry = render.render_notes(Notes(*note), sf, sample_rate=SR, duration_s=2.0)
    ped = render.render_notes(Notes(*note, pedal=np.array([[0.0, 127.0], [1.8, 0.0]])), sf, sample_rate=SR, duration_s=2.0)
    rms = lambda y: float(np.sqrt(np.mean(y[int(0.9 * SR):int(1.5 * SR)] ** 2)))  # noqa: E731
    # Outputs are peak-normalised alike (same attack), so the tails compare directly.
    assert rms(ped) > 10 * rms(dry)


@pytest.mark.parametrize("name", FONTS)
def test_attack_within_5ms(name: str) -> None:
    sf = _font(name)
    onsets = [0.3, 1.1, 1.9, 2.7]
    for pitch, on in zip((48, 60, 72, 84), onsets):
        y = render.render_notes(Notes(np.array([[on, on + 0.3]]), np.array([pitch]), np.array([80])), sf, sample_rate=SR, duration_s=on + 0.6)
        err = render.detect_attack(y, SR) - on
        assert abs(err) <= 0.005, f"{name} pitch {pitch}: attack {err * 1000:.1f} ms off"


def test_render_and_effects_deterministic() -> None:
    sf = _font("timgm6mb")
    notes = random_notes(np.random.default_rng(4), 20, 4.0)
    a = render.render_notes(notes, sf, sample_rate=SR)
    b = render.render_notes(notes, sf, sample_rate=SR)
    assert np.array_equal(a, b)
    fx = render.draw_effects(np.random.default_rng(5))
    assert fx == render.draw_effects(np.random.default_rng(5))
    assert render.EffectParams.from_json(json.loads(fx.dumps())) == fx
    ya, yb = render.apply_effects(a, SR, fx), render.apply_effects(a, SR, fx)
    assert np.array_equal(ya, yb) and ya.dtype == np.float32 and len(ya) == len(a)


