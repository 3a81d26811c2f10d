"""The waveform room/microphone/noise/codec chain keeps attacks in place and replays from its parameters."""
import json

import numpy as np
import pytest

from midialign.config import AcousticsConfig
from midialign.training.acoustics import AcousticParams, apply_acoustics, codec_roundtrip, draw_acoustics
from midialign.training.render import detect_attack

SR = 16000
ONSETS = (1.0, 2.5, 4.0)


def bursts() -> np.ndarray:
    """Decaying noise bursts at ONSETS, 6 s."""
    rng = np.random.default_rng(0)
    y = np.zeros(6 * SR)
    for on in ONSETS:
        s = int(on * SR)
        y[s:s + 4000] = rng.standard_normal(4000) * np.exp(-np.arange(4000) / 1000)
    return y


def attack_errors_ms(y: np.ndarray) -> np.ndarray:
    return np.array([(detect_attack(y[int((on - 0.5) * SR):int((on + 0.5) * SR)], SR) - 0.5) * 1000 for on in ONSETS])


def test_draws_are_seeded_in_range_and_stored() -> None:
    cfg = AcousticsConfig(p_room=0.0)  # no pyroomacoustics needed
    a = draw_acoustics(np.random.default_rng(3), cfg)
    assert a == draw_acoustics(np.random.default_rng(3), cfg)
    assert AcousticParams.from_json(json.loads(json.dumps(a.to_json()))) == a
    draws = [draw_acoustics(np.random.default_rng(s), cfg) for s in range(50)]
    assert all(20 <= d.snr_db <= 60 and -24 <= d.level_db <= -1 for d in draws)
    assert all(d.codec == "none" or 32 <= d.codec_kbps <= 128 for d in draws)
    assert {d.codec for d in draws} == {"none", "opus", "mp3"}


@pytest.mark.parametrize("codec,kbps", [("opus", 32), ("opus", 128), ("mp3", 32), ("mp3", 128)])
def test_codec_keeps_length_and_timing(codec: str, kbps: float) -> None:
    y = 0.3 * bursts()
    z, info = codec_roundtrip(y, SR, codec, kbps)
    assert len(z) == len(y)
    if codec == "mp3":  # constant bitrate; libsndfile's Opus is variable (lower on near-silence)
        assert abs(info["kbps"] - kbps) < 0.25 * kbps
    assert np.all(np.abs(attack_errors_ms(z)) <= 1.0)


def test_room_keeps_attacks() -> None:
    pytest.importorskip("pyroomacoustics", reason="rooms need pyroomacoustics (pip install pyroomacoustics)")
    cfg = AcousticsConfig(p_room=1.0, codec_p=(1.0, 0.0, 0.0))
    for seed in range(4):
        params = draw_acoustics(np.random.default_rng(seed), cfg)
        assert 0.2 <= params.rt60_s <= 1.5 and 0.3 <= params.mic_distance_m <= 5.0 + 1e-6
        z, _ = apply_acoustics(bursts(), SR, params)
        assert z.dtype == np.float32 and len(z) == 6 * SR
        assert np.array_equal(z, apply_acoustics(bursts(), SR, params)[0])
        assert np.all(np.abs(attack_errors_ms(z)) <= 1.0), (seed, params)
        tail = np.sqrt(np.mean(z[int(1.3 * SR):int(1.45 * SR)] ** 2))  # after the 1.0 s burst has decayed
        assert tail > 10 ** (-params.snr_db / 20) * 0.01  # reverberation and noise fill it
