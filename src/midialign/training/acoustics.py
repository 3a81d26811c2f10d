"""Room, microphone, noise, level and codec: what a real recording adds to a rendered piano.

Parameters are drawn from a seeded numpy Generator (draw_acoustics) and applied
deterministically (apply_acoustics), so the manifest can store and replay them.
Nothing here moves an attack: the room's impulse response starts at its direct
path, EQ is zero-phase, and decoded audio is realigned to the encoder's input
(the lag found is reported: 0 for libsndfile's Opus, and for its MP3 from about
40 kbit/s up; 1,105 samples for MP3 at the lowest rates).

The room is a pyroomacoustics shoebox (image source method), RT60 set with
Sabine's formula; pyroomacoustics is needed only when a room is drawn.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

from ..config import AcousticsConfig

# libsndfile 1.2.2 at 16 kHz mono: compression_level -> measured kbit/s (10 s of noise bursts over
# a noise floor). MP3 is written at a constant bitrate; libsndfile's Opus refuses bitrate_mode and
# is variable (sparse audio comes out below the nominal rate), so the manifest keeps the real rate.
_CODEC_KBPS = {
    "opus": ((0.0, 258.9), (0.2, 208.7), (0.4, 158.4), (0.6, 108.3), (0.7, 82.7), (0.8, 57.8), (0.9, 31.9)),
    "mp3": ((0.0, 161.9), (0.2, 129.5), (0.4, 97.1), (0.5, 80.9), (0.6, 64.7), (0.7, 56.6), (0.8, 40.5), (0.9, 24.2)),
}
_CODEC_FORMAT = {"opus": ("OGG", "OPUS", None), "mp3": ("MP3", "MPEG_LAYER_III", "CONSTANT")}
_MAX_LAG = 4096  # samples searched when realigning decoded audio


@dataclass(frozen=True)
class AcousticParams:
    """One draw of the chain. room_m, source_m, mic_m in metres; None fields are switched off."""

    rt60_s: float | None
    room_m: tuple[float, float, float] | None
    source_m: tuple[float, float, float] | None
    mic_m: tuple[float, float, float] | None
    mic_distance_m: float | None
    placement: str  # "dry", "close" or "ambient"
    eq_db: tuple[float, ...]  # gains at log-spaced knots from 50 Hz to Nyquist
    highpass_hz: float
    snr_db: float
    noise_colour: float
    level_db: float
    codec: str  # "none", "opus", "mp3"
    codec_kbps: float | None
    seed: int  # noise samples

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "AcousticParams":
        tup = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
        return AcousticParams(**{k: tup(d[k]) for k in AcousticParams.__dataclass_fields__})


def draw_acoustics(rng: np.random.Generator, cfg: AcousticsConfig = AcousticsConfig()) -> AcousticParams:
    """Draw every parameter of the chain from rng."""
    u = lambda lo_hi: float(rng.uniform(*lo_hi))  # noqa: E731
    room = source = mic = rt60 = dist = None
    placement = "dry"
    if rng.random() < cfg.p_room:
        rt60 = u(cfg.rt60_s)
        room = tuple(float(x) for x in rng.uniform(cfg.room_m[0], cfg.room_m[1]))
        placement = "ambient" if rng.random() < cfg.p_ambient else "close"
        dist = u(cfg.ambient_mic_m if placement == "ambient" else cfg.close_mic_m)
        room, source, mic, dist = _place(np.array(room), dist, rng)
    eq = tuple(float(x) for x in rng.uniform(-cfg.eq_db, cfg.eq_db, cfg.eq_knots))
    hp, snr, colour, level = u(cfg.highpass_hz), u(cfg.snr_db), u(cfg.noise_colour), u(cfg.level_db)
    codec = str(rng.choice(cfg.codecs, p=cfg.codec_p))
    kbps = u(cfg.codec_kbps) if codec != "none" else None
    return AcousticParams(rt60, room, source, mic, dist, placement, eq, hp, snr, colour, level, codec, kbps,
                          seed=int(rng.integers(0, 2**31 - 1)))


def _place(room: np.ndarray, dist: float, rng: np.random.Generator):
    """A piano 1 m up, at least 1 m from the walls, and a microphone dist away, 0.2 m from the walls.

    The room grows until the microphone fits; a stored distance is the one used.
    """
    while np.any(room[:2] < 2.0 + 2 * dist) or room[2] < 2.5:
        room = room * 1.1
    src = np.array([rng.uniform(1.0, room[0] - 1.0), rng.uniform(1.0, room[1] - 1.0), 1.0])
    for _ in range(64):
        direction = rng.normal(size=3)
        direction[2] = abs(direction[2]) * 0.5  # from above, mostly
        mic = src + dist * direction / np.linalg.norm(direction)
        if np.all(mic > 0.2) and np.all(mic < room - 0.2):
            break
    else:  # straight up, which always fits in a room at least dist + 1.2 m high
        room[2] = max(room[2], src[2] + dist + 0.2)
        mic = src + np.array([0.0, 0.0, dist])
    as_t = lambda a: tuple(round(float(x), 4) for x in a)  # noqa: E731
    return as_t(room), as_t(src), as_t(mic), float(np.linalg.norm(mic - src))


def room_impulse_response(params: AcousticParams, sr: int) -> np.ndarray:
    """(n,) impulse response whose sample 0 is the direct path, at amplitude 1."""
    import pyroomacoustics as pra

    dims = np.array(params.room_m)
    while True:  # Sabine cannot reach a short RT60 in a large room: shrink it
        try:
            absorption, max_order = pra.inverse_sabine(params.rt60_s, dims)
            break
        except ValueError:
            dims = dims * 0.9
    room = pra.ShoeBox(dims, fs=sr, materials=pra.Material(absorption), max_order=min(max_order, 40))
    room.add_source(list(np.minimum(params.source_m, dims - 0.1)))
    room.add_microphone(np.minimum(params.mic_m, dims - 0.1)[:, None])
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    dist = float(np.linalg.norm(np.minimum(params.mic_m, dims - 0.1) - np.minimum(params.source_m, dims - 0.1)))
    expected = int(round(dist / room.c * sr)) + pra.constants.get("frac_delay_length") // 2
    direct = expected - 2 + int(np.argmax(np.abs(rir[expected - 2:expected + 3])))
    rir = rir[direct:]
    return rir / abs(rir[0])


def _zero_phase_eq(y: np.ndarray, sr: int, eq_db: tuple[float, ...], highpass_hz: float) -> np.ndarray:
    spec = np.fft.rfft(y)
    f = np.fft.rfftfreq(len(y), 1 / sr)
    knots = np.geomspace(50.0, sr / 2, len(eq_db))
    gain_db = np.interp(np.log(np.clip(f, 50.0, sr / 2)), np.log(knots), eq_db)
    hp = 1.0 / np.sqrt(1.0 + (highpass_hz / np.maximum(f, 1e-3)) ** 4)  # 2nd-order high-pass magnitude
    return np.fft.irfft(spec * 10 ** (gain_db / 20) * hp, n=len(y))


def _noise(n: int, colour: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (colour / 2), n=n)


def codec_roundtrip(y: np.ndarray, sr: int, codec: str, kbps: float) -> tuple[np.ndarray, dict]:
    """Encode and decode in memory; realign and trim to len(y). Returns (audio, {kbps, lag_samples})."""
    import soundfile as sf

    table = np.array(_CODEC_KBPS[codec])
    level = float(np.interp(-kbps, -table[:, 1], table[:, 0]))  # kbit/s falls as the level rises
    fmt, subtype, mode = _CODEC_FORMAT[codec]
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype, compression_level=level, bitrate_mode=mode)
    size = len(buf.getvalue())
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float64")
    lag = _lag(z, y)
    z = np.roll(np.pad(z, (0, max(len(y) - len(z), 0) + _MAX_LAG)), -lag)[: len(y)]
    return z, {"kbps": round(size * 8 / (len(y) / sr) / 1000, 1), "lag_samples": lag}


def _lag(z: np.ndarray, y: np.ndarray) -> int:
    """Delay of z against y in samples, within ±_MAX_LAG (FFT cross-correlation)."""
    n = min(len(z), len(y))
    if n == 0:
        return 0
    m = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(z[:n], m) * np.conj(np.fft.rfft(y[:n], m)), m)
    k = min(_MAX_LAG, n - 1)
    window = np.concatenate([xc[-k:], xc[:k + 1]])
    return int(np.argmax(window)) - k


def apply_acoustics(y: np.ndarray, sr: int, params: AcousticParams) -> tuple[np.ndarray, dict]:
    """(audio float32 in [-1, 1] of len(y), measured codec facts). Deterministic given params."""
    from scipy.signal import fftconvolve

    y = np.asarray(y, dtype=np.float64)
    info: dict = {}
    if len(y) == 0:
        return y.astype(np.float32), info
    if params.rt60_s is not None:
        y = fftconvolve(y, room_impulse_response(params, sr))[: len(y)]
    y = _zero_phase_eq(y, sr, params.eq_db, params.highpass_hz)
    power = float(np.mean(y**2))
    if power > 0:
        noise = _noise(len(y), params.noise_colour, np.random.default_rng(params.seed))
        y = y + noise * np.sqrt(power / 10 ** (params.snr_db / 10) / max(float(np.mean(noise**2)), 1e-20))
    peak = float(np.max(np.abs(y)))
    if peak > 0:
        y = y * (10 ** (params.level_db / 20) / peak)
    if params.codec != "none":
        y, info = codec_roundtrip(y, sr, params.codec, params.codec_kbps)
    return np.clip(y, -1.0, 1.0).astype(np.float32), info
