"""Typed, frozen configuration shared by inference and training.

Time convention: frame k of every roll and feature matrix is centred on
time k / fps seconds (librosa's ``center=True``), so a note with onset t
starts at frame round(t * fps).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

PITCH_MIN = 21  # A0
PITCH_MAX = 108  # C8
N_KEYS = PITCH_MAX - PITCH_MIN + 1  # 88
A0_HZ = 27.5
# Shortest note any stage writes: an offset stays at least this far after its onset.
MIN_NOTE_S = 0.01
# features.normalise compresses magnitudes x (peak 1) to log1p(LOG_GAIN x) / log1p(LOG_GAIN).
LOG_GAIN = 100.0

METHODS = ("none", "dtw", "crnn", "dtw+crnn")
DEFAULT_METHOD = "dtw+crnn"
# The shipped model, a file in the package's weights/ folder.
DEFAULT_WEIGHTS = "default.pt"

# A batch worker checks this often whether its parent process is still alive.
PARENT_POLL_S = 0.5

# File types, by lower-case suffix.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm")
MIDI_SUFFIXES = (".mid", ".midi", ".kar")
TABLE_SUFFIXES = (".tsv", ".csv", ".txt")
# Scores are read by partitura; gzipped MusicXML is unpacked first (partitura reads .mxl itself).
SCORE_SUFFIXES = (".musicxml", ".xml", ".mxl", ".musicxml.gz", ".xml.gz", ".mei", ".krn", ".kern")


@dataclass(frozen=True)
class FeatureConfig:
    """Audio front end. 16 kHz matches MAPS; 100 fps gives 10 ms frames."""

    sample_rate: int = 16000
    fps: int = 100
    kind: Literal["cqt", "mel"] = "cqt"
    log: bool = True
    n_bins: int = N_KEYS
    bins_per_octave: int = 12
    fmin_hz: float = A0_HZ
    mel_n_fft: int = 2048

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps:
            raise ValueError(f"sample_rate {self.sample_rate} must be a multiple of fps {self.fps}")
        if self.kind not in ("cqt", "mel"):
            raise ValueError(f"unknown feature kind {self.kind!r}")

    @property
    def hop_length(self) -> int:
        return self.sample_rate // self.fps


@dataclass(frozen=True)
class ModelConfig:
    """The paper's CRNN; variants are switched here, not by subclassing."""

    conv_channels: tuple[int, int, int] = (16, 16, 32)
    embed_size: int = 128
    rnn: Literal["lstm", "gru", "none"] = "lstm"
    rnn_hidden: int = 128
    dropout: float = 0.5
    midi_input: bool = True
    # Beyond the paper: a pitch-local conv path over [roll, features] added to the
    # output logits. It keeps full pitch resolution, which the pooled strands lose,
    # and makes "the input note, moved to its audio onset" easy to learn.
    local_head: bool = True
    local_channels: int = 8
    # Beyond the paper: a second output, the onset roll (a soft peak at each true
    # onset). A frame roll trained with BCE mostly copies its input roll; a peak
    # in the onset roll places each onset on the audio, at sub-frame precision.
    onset_head: bool = False
    onset_channels: int = 16

    def __post_init__(self) -> None:
        if self.rnn not in ("lstm", "gru", "none"):
            raise ValueError(f"unknown rnn {self.rnn!r}")


@dataclass(frozen=True)
class InferenceConfig:
    """Windowed full-piece inference and post-processing."""

    window_s: float = 10.0
    # Windows overlap by window_s - hop_s, cross-faded. 0.5 s gives the same scores as 2 s on
    # asap_score and maps_am_jitter50 (to 0.1 point at every window) for 17 % less network time.
    hop_s: float = 9.5
    batch_size: int = 8
    threshold: float = 0.5
    # Smallest onset-roll peak taken as a detection (models with an onset head).
    onset_threshold: float = 0.2
    # A detection further than this from its input note is not taken.
    max_shift_s: float = 0.25
    # Matching cost is squared distance minus height_weight * max_shift_s**2 * peak height: where
    # the network leaves a peak at the input's time and a taller one at the sound, the taller one
    # wins (+0.7, +0.3 and +0.2 points within 25 ms on asap_score, maps_am_tempo, maps_am_jitter50).
    height_weight: float = 0.3
    # With dtw+crnn, notes whose confidence falls below this keep the time they had before the
    # pass: DTW's, or after recentring DTW's plus their anchors' shift.
    min_confidence: float = 0.15
    # Rounds of refinement; each starts from the previous round's notes. One round: with the
    # 100 fps DTW a second moves asap_score by -0.2 and maps_am_jitter50 by -1.0 points within
    # 25 ms (maps_am_tempo +0.6), for twice the network time.
    passes: int = 1
    # Between rounds, notes below anchor_confidence restart from their input time plus the median
    # shift of the anchors (notes at or above it) within ±anchor_window_s: errors of the input
    # (e.g. DTW's) are shared by neighbours, and the network finds a note best when it starts close.
    anchor_confidence: float = 0.5
    anchor_window_s: float = 1.0
    # Second chance for notes without a detection (onset head only): after following their
    # neighbours' shift, such a note takes an onset peak down to this height within this window.
    weak_onset_threshold: float = 0.05
    weak_window_s: float = 0.06
    # Where offsets come from: "roll", the frame roll where it ends within max_shift_s of the
    # input offset moved with its onset (else that moved offset); "input", the input's offsets.
    offsets: Literal["roll", "input"] = "roll"

    def __post_init__(self) -> None:
        if self.passes < 1:
            raise ValueError(f"passes must be at least 1, got {self.passes}")
        if self.offsets not in ("roll", "input"):
            raise ValueError(f"offsets must be 'roll' or 'input', got {self.offsets!r}")


@dataclass(frozen=True)
class DTWConfig:
    """Knobs of the global DTW stage. Defaults start from synctoolbox's audio-score examples; the
    comments say where they depart from them and what that measured."""

    # 10 ms frames: at 50 the finest DTW level moves onsets in 20 ms steps (asap_score: 77 % vs 81 %
    # within 50 ms, alpha and onset shift as before).
    feature_rate: int = 100
    audio_features: Literal["cqt", "synctoolbox"] = "cqt"
    # Diagonal steps cost 2.0 vs 1.5+1.5 for the detour, so mild diagonal preference.
    step_weights: tuple[float, float, float] = (1.5, 1.5, 2.0)
    # Max cells of one DTW sub-rectangle; bounds memory (float64: 8 MB) for any piece length.
    threshold_rec: int = 10**6
    # Coarse levels at 1, 2 and 10 frames/s, then the input rate.
    win_len_smooth: tuple[int, ...] = (201, 101, 21, 1)
    downsamp_smooth: tuple[int, ...] = (100, 50, 10, 1)
    # The finest level aligns only within this many seconds of the previous (10 frames/s) level's
    # path, inside synctoolbox's rectangles (about +-7 s at 1e6 cells). Without it, the
    # best path in those rectangles can drift seconds off where the onset cost is flat.
    tube_s: float | None = 1.0
    # Weight of chroma vs DLNCO onset cost at the finest level (synctoolbox uses 0.5). Onsets fix
    # the timing, chroma keeps the path on the right notes: 0.3 puts 1.1 % of asap_score notes
    # more than 250 ms off, vs 2.3 % at 0.15 and 1.2 % at 0.5.
    alpha: float = 0.3
    # Silence added to both sequences at both ends, so a late-starting recording
    # matches silence against silence instead of stretching the first note.
    pad_s: float = 1.0
    # The MIDI's final sonority (notes sounding at its last onset) rings this much longer in its
    # chroma. A recording rings on after the written end; without this, DTW may stretch the
    # chord before the last note over that tail and put the last note ~1 s late.
    final_ring_s: float = 1.0
    # "cqt" front end: onset peak picking on the per-pitch log-CQT flux.
    onset_threshold: float = 0.1  # minimum flux (log-CQT units, 0-1 scale)
    onset_rel_threshold: float = 0.4  # fraction of the pitch's local (2 s) max flux
    # Added to flux-peak times. 0: on the synthetic MAPS training audio the peaks sit on the
    # annotated onsets (median -0.5 ms), the convention the refiner is trained to. (The real
    # ENSTDkAm recordings sound 17 ms after their annotations; see docs/results.md "Timing convention".)
    onset_shift_s: float = 0.0
    # "synctoolbox" front end.
    reference_sample_rate: int = 22050
    # Constant correction added to warped times.
    bias_s: float = 0.0

    def __post_init__(self) -> None:
        if self.audio_features not in ("cqt", "synctoolbox"):
            raise ValueError(f"unknown audio_features {self.audio_features!r}")
        if self.feature_rate <= 0:
            raise ValueError("feature_rate must be positive")
        if len(self.win_len_smooth) != len(self.downsamp_smooth):
            raise ValueError("win_len_smooth and downsamp_smooth differ in length")
        if self.downsamp_smooth[-1] != 1 or self.win_len_smooth[-1] != 1:
            raise ValueError("the last DTW level must run at the input feature rate (1, 1)")


@dataclass(frozen=True)
class EvidenceConfig:
    """The match score (core.evidence): is this the recording of these notes, at this pitch?

    Levels are the normalised log CQT (0-1) at a note's pitch in window_s after its aligned onset;
    the score is their median. Margins come from 52 right and 20 wrong-piece validation pairs and
    transposed copies of 10 of them (docs/robustness.md).
    """

    window_s: float = 0.06
    # Set on DTW times (right pairs 0.67-0.90, wrong pieces 0.31-0.52); with the default method all
    # 99 validation cases scored 0.70-0.90 and 20 wrong-piece pairs 0.35-0.58.
    min_score: float = 0.6
    # A transposed MIDI: the level an octave away beats the notes' own by this much. Right pairs:
    # an octave below -0.28 or less (no subharmonics), an octave above +0.03 or less (the second
    # harmonic). Transposed copies: above, +0.29 or more; below, -0.03 (bass-heavy Liszt, whose
    # second harmonics outsound the fundamentals) to +0.26.
    octave_below_margin: float = -0.15
    octave_above_margin: float = 0.15
    # Transposed by a semitone, notes still land on the neighbour's onsets; found at the aligned
    # times with a margin that right pairs never reached (-0.04 or less; transposed: -0.02 to +0.08),
    # then confirmed by aligning the shifted notes: +0.08 to +0.22 over the notes' own for
    # transposed copies.
    semitone_margin: float = -0.03
    semitone_confirm_gain: float = 0.04


@dataclass(frozen=True)
class AugmentConfig:
    """How training inputs are made loose. All parameters are drawn from a seeded rng."""

    jitter_s: float = 0.05
    tempo_range: float = 0.0
    warp_max_s: float = 0.05
    warp_knots_per_10s: float = 2.0
    chord_spread_s: float = 0.02
    p_drop: float = 0.03
    p_extra: float = 0.03


@dataclass(frozen=True)
class TrainConfig:
    segment_s: float = 10.0
    batch_size: int = 8
    lr: float = 1e-3
    max_epochs: int = 30
    steps_per_epoch: int = 200
    patience: int = 4
    seed: int = 0
    max_minutes: float = 80.0
    # Extra loss weight on frames where the input roll and the target differ.
    # Off: at 4.0 it made onsets ~15 ms late and halved the share within 25 ms.
    shift_weight: float = 0.0
    # Weight of the onset-roll BCE next to the frame-roll BCE (models with an onset head).
    onset_weight: float = 1.0
    # Random EQ and reverberation of the features (train.augment_features).
    room_augment: bool = True


@dataclass(frozen=True)
class MidiOutputConfig:
    """The aligned MIDI file: the input's structure at the aligned times, plain or with a tempo map."""

    # Plain output: one tempo, 1920 ticks per beat at 120 bpm, so a tick is 0.26 ms.
    ticks_per_beat: int = 1920
    tempo_us: int = 500_000
    # --tempo-map: a note keeps its input tick when the tempo map plays that tick this close to its
    # aligned time; otherwise it moves by ticks. With the plain output's 0.13 ms rounding and
    # max_tick_s, every note then plays within 1 ms of the plain output.
    grid_tolerance_s: float = 0.0008
    # Ticks are multiplied by the smallest integer that makes a tick last at most this long.
    max_tick_s: float = 0.0004
    # A recording that starts later than this after the score's first tick gets a slow lead-in of a
    # fraction of a beat (no extra bar); an earlier start plays the first notes late by ticks.
    lead_in_after_s: float = 0.05
    # Tempo events at least this many beats apart (at most two per beat) ...
    min_tempo_spacing_beats: float = 0.5
    # ... and none that changes the tempo by less than this fraction.
    steady_tempo: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.grid_tolerance_s < 0.001 or not 0 < self.max_tick_s <= 0.002:
            raise ValueError("grid_tolerance_s must lie in (0, 1 ms) and max_tick_s in (0, 2 ms]")
        if self.min_tempo_spacing_beats <= 0 or self.steady_tempo < 0:
            raise ValueError("min_tempo_spacing_beats must be positive and steady_tempo non-negative")


@dataclass(frozen=True)
class AcousticsConfig:
    """Ranges of the waveform chain that makes rendered pianos sound recorded (training/acoustics.py).

    Every (low, high) pair is drawn uniformly from a seeded Generator; the draws go into the manifest.
    """

    p_room: float = 0.9  # share of renders put in a simulated room (the rest stay dry)
    rt60_s: tuple[float, float] = (0.2, 1.5)
    room_m: tuple[tuple[float, float, float], tuple[float, float, float]] = ((4.0, 3.0, 2.5), (20.0, 15.0, 8.0))
    p_ambient: float = 0.5  # share of ambient (vs close) microphones
    close_mic_m: tuple[float, float] = (0.3, 1.0)
    ambient_mic_m: tuple[float, float] = (1.0, 5.0)
    eq_db: float = 6.0  # microphone/EQ colouring: a smooth curve through eq_knots log-spaced gains in ±eq_db
    eq_knots: int = 6
    highpass_hz: tuple[float, float] = (20.0, 150.0)
    snr_db: tuple[float, float] = (20.0, 60.0)
    noise_colour: tuple[float, float] = (0.0, 1.0)  # 0 white, 1 pink
    level_db: tuple[float, float] = (-24.0, -1.0)  # peak level
    codecs: tuple[str, ...] = ("none", "opus", "mp3")
    codec_p: tuple[float, ...] = (0.4, 0.3, 0.3)
    codec_kbps: tuple[float, float] = (32.0, 128.0)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a frozen config from a dict, refusing unknown keys."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
    return cls(**values)
