"""Aligned MIDI that keeps the input file's structure (mido), plain or with a tempo map.

The aligner works on Notes: notes of every non-drum track merged, sorted,
out-of-range notes dropped. Here each note-on/off pair of the input file is
matched back to its Notes index, so the output keeps the file's tracks,
channels, programs, controllers and meta events and changes only times:

- plain (default): one tempo; matched notes go to their aligned times, every
  other event (pedal and other controllers, meta events, drums) moves with a
  monotone time map through the aligned onsets;
- tempo map: events keep the input's ticks (bars and beats stay the score's)
  and a sparse tempo map makes those ticks play at the aligned times; a note
  the map does not place within MidiOutputConfig.grid_tolerance_s moves by ticks.
"""
from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import PITCH_MAX, PITCH_MIN, MidiOutputConfig
from ..errors import InputError
from ..notes import Notes

if TYPE_CHECKING:
    import mido

    from ..alignment import Alignment

OTHER, NOTE_ON, NOTE_OFF, TEMPO, END = range(5)
DRUM_CHANNEL = 9
MAX_TEMPO_US = 0xFFFFFF  # a set_tempo event holds 24 bits
MAX_TICKS_PER_BEAT = 0x7FFF
# pretty_midi refuses files whose last tick passes 1e7 ("likely corrupt"); the plain output stays below.
READABLE_TICKS = 9_900_000
COMMON_TICKS_PER_BEAT = 480


@dataclass(frozen=True)
class MidiStructure:
    """A MIDI file's events, flattened in file order (E events, P note pairs).

    track, tick, seconds, kind: (E,) track index, absolute tick, input time in s (the
    file's tempo map, read as pretty_midi reads it), OTHER/NOTE_ON/NOTE_OFF/TEMPO/END.
    pairs: (P, 2) [note-on event, note-off event], paired as pretty_midi pairs them.
    pair_note: (P,) index into notes, or -1 (drums, out-of-range pitches).
    notes: the piano notes of the file in Notes order, as io.midi.read_midi reads them.
    """

    file: "mido.MidiFile"
    messages: tuple
    track: np.ndarray
    tick: np.ndarray
    seconds: np.ndarray
    kind: np.ndarray
    pairs: np.ndarray
    pair_note: np.ndarray
    notes: Notes

    @property
    def ticks_per_beat(self) -> int:
        return int(self.file.ticks_per_beat)


@dataclass(frozen=True)
class AlignedMidi:
    """The output MIDI file and what it did.

    tempo: (k, 2) [time s, quarter notes per minute] from each tempo event on; a lead-in (a wait,
    not a tempo; see _tempo_map_midi) is left out.
    report: counts for the JSON summary (tempo events, notes moved off their ticks, ...).
    """

    data: bytes
    tempo: np.ndarray
    report: dict


# ---------------------------------------------------------------- reading

def read_structure(source: "str | Path | mido.MidiFile", *, name: str | None = None) -> MidiStructure:
    """Parse a MIDI file (path or mido.MidiFile) into a MidiStructure; InputError if unreadable."""
    import mido

    label = name or str(source)
    if isinstance(source, mido.MidiFile):
        mf = source
    else:
        try:
            mf = mido.MidiFile(str(source))
        except Exception as exc:  # mido raises many types on corrupt files
            raise InputError(f"{label}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    if mf.type == 2:
        raise InputError(f"{label}: type 2 MIDI files (independent sequences) are not supported")
    messages, track, tick, kind = [], [], [], []
    pairs: list[tuple[int, int]] = []
    for ti, trk in enumerate(mf.tracks):
        now = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for msg in trk:
            now += msg.time
            e = len(messages)
            messages.append(msg)
            track.append(ti)
            tick.append(now)
            if msg.type == "note_on" and msg.velocity > 0:
                kind.append(NOTE_ON)
                open_notes.setdefault((msg.channel, msg.note), []).append((e, now))
            elif msg.type == "note_off" or msg.type == "note_on":
                kind.append(NOTE_OFF)
                # pretty_midi's rule: a note-off closes every open note of its key begun at an earlier tick.
                waiting = open_notes.get((msg.channel, msg.note))
                if waiting is not None:
                    close = [on for on, t in waiting if t != now]
                    keep = [(on, t) for on, t in waiting if t == now]
                    pairs.extend((on, e) for on in close)
                    if close and keep:
                        open_notes[(msg.channel, msg.note)] = keep
                    else:
                        del open_notes[(msg.channel, msg.note)]
            elif msg.type == "set_tempo":
                kind.append(TEMPO)
            elif msg.type == "end_of_track":
                kind.append(END)
            else:
                kind.append(OTHER)
    tick_arr = np.array(tick, dtype=np.int64)
    seconds = _tick_seconds(mf, tick_arr)
    pair_arr = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    pair_note, notes = _piano_notes(messages, seconds, pair_arr)
    return MidiStructure(mf, tuple(messages), np.array(track, dtype=np.int64), tick_arr, seconds,
                         np.array(kind, dtype=np.int64), pair_arr, pair_note, notes)


def _tick_seconds(mf: "mido.MidiFile", ticks: np.ndarray) -> np.ndarray:
    """Seconds of absolute ticks under the tempo events of track 0, as pretty_midi computes them."""
    changes = [(0, 500_000)]
    now = 0
    for msg in mf.tracks[0] if mf.tracks else []:
        now += msg.time
        if msg.type == "set_tempo":
            if now == 0:
                changes = [(0, msg.tempo)]
            elif msg.tempo != changes[-1][1]:
                changes.append((now, msg.tempo))
    at = np.array([c[0] for c in changes], dtype=np.float64)
    sec_per_tick = np.array([c[1] for c in changes], dtype=np.float64) / 1e6 / mf.ticks_per_beat
    start_s = np.concatenate([[0.0], np.cumsum(np.diff(at) * sec_per_tick[:-1])])
    k = np.searchsorted(at, ticks, side="right") - 1
    return start_s[k] + (ticks - at[k]) * sec_per_tick[k]


def _piano_notes(messages: list, seconds: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, Notes]:
    """(pair -> Notes index or -1, the Notes): non-drum pairs in A0-C8, in Notes order."""
    on, off = pairs[:, 0], pairs[:, 1]
    pitch = np.array([messages[e].note for e in on], dtype=np.int64)
    channel = np.array([messages[e].channel for e in on], dtype=np.int64)
    velocity = np.array([messages[e].velocity for e in on], dtype=np.int64)
    piano = np.flatnonzero((channel != DRUM_CHANNEL) & (pitch >= PITCH_MIN) & (pitch <= PITCH_MAX))
    iv = np.stack([seconds[on[piano]], np.maximum(seconds[off[piano]], seconds[on[piano]])], 1)
    notes = Notes(iv, pitch[piano], velocity[piano])
    order = notes.order()
    pair_note = np.full(len(pairs), -1, dtype=np.int64)
    pair_note[piano[order]] = np.arange(len(order))
    return pair_note, Notes(iv[order], pitch[piano][order], velocity[piano][order])


def match_notes(structure_notes: Notes, aligned_input: Notes, *, name: str, same_clock: bool) -> np.ndarray:
    """(n,) index into aligned_input of each structure note: the k-th note of a pitch is the k-th.

    same_clock: both lists are in the same seconds (a MIDI input), so onsets must agree
    within a millisecond; a score's own MIDI export runs on another clock.
    """
    if len(structure_notes) != len(aligned_input) or not np.array_equal(np.sort(structure_notes.pitches), np.sort(aligned_input.pitches)):
        raise InputError(f"{name}: the file's notes do not match the aligned notes ({len(structure_notes)} vs {len(aligned_input)})")
    index = np.empty(len(structure_notes), dtype=np.int64)
    for p in np.unique(structure_notes.pitches):
        mine = np.flatnonzero(structure_notes.pitches == p)
        theirs = np.flatnonzero(aligned_input.pitches == p)
        index[mine[np.argsort(structure_notes.onsets[mine], kind="stable")]] = theirs[np.argsort(aligned_input.onsets[theirs], kind="stable")]
    if same_clock and np.abs(aligned_input.onsets[index] - structure_notes.onsets).max(initial=0.0) > 1e-3:
        raise InputError(f"{name}: the file's note times do not match the aligned input notes")
    return index


# ---------------------------------------------------------------- the aligned file

def aligned_midi(structure: MidiStructure, result: "Alignment", *, name: str, tempo_map: bool = False,
                 same_clock: bool = True, cfg: MidiOutputConfig = MidiOutputConfig()) -> AlignedMidi:
    """The input file at the aligned times: plain (one tempo) or with a tempo map (input ticks kept).

    name: the input's name for messages. same_clock: see match_notes.
    """
    to_result = match_notes(structure.notes, result.input_notes, name=name, same_clock=same_clock)
    matched = structure.pair_note >= 0
    pair_index = np.where(matched, to_result[np.maximum(structure.pair_note, 0)], -1)
    aligned = np.full((len(structure.pairs), 2), np.nan)
    aligned[matched] = np.maximum(result.notes.intervals[pair_index[matched]], 0.0)
    if tempo_map:
        return _tempo_map_midi(structure, aligned, pair_index, cfg)
    return _plain_midi(structure, aligned, cfg)


def _plain_midi(structure: MidiStructure, aligned: np.ndarray, cfg: MidiOutputConfig) -> AlignedMidi:
    """One tempo; notes at their aligned times, everything else moved by the onset time map."""
    matched = np.isfinite(aligned[:, 0])
    src = structure.seconds[structure.pairs[matched, 0]]
    warp = onset_time_map(src, aligned[matched, 0])
    seconds = np.maximum(warp(structure.seconds), 0.0)
    tempo_us = plain_tempo_us(float(max(seconds.max(initial=0.0), np.nanmax(aligned[:, 1], initial=0.0))), cfg)
    per_second = cfg.ticks_per_beat * 1e6 / tempo_us
    ticks = np.round(seconds * per_second).astype(np.int64)
    on_ticks = ticks[structure.pairs[:, 0]]
    off_ticks = ticks[structure.pairs[:, 1]]
    on_ticks[matched] = np.round(aligned[matched, 0] * per_second)
    off_ticks[matched] = np.round(aligned[matched, 1] * per_second)
    data = _write(structure, ticks, on_ticks, off_ticks, ticks_per_beat=cfg.ticks_per_beat, tempo=[(0, tempo_us)])
    report = {"mode": "plain", "ticks_per_beat": cfg.ticks_per_beat, "n_tempo_events": 1, "n_tracks": len(structure.file.tracks)}
    return AlignedMidi(data, np.array([[0.0, 6e7 / tempo_us]]), report)


def plain_tempo_us(end_s: float, cfg: MidiOutputConfig = MidiOutputConfig()) -> int:
    """The plain output's tempo (µs per beat): cfg.tempo_us, or slower for a file so long that its
    last tick would pass READABLE_TICKS (pretty_midi refuses such files as corrupt). A tick then
    lasts end_s / READABLE_TICKS: 0.36 ms for an hour, 1.1 ms for three."""
    return max(cfg.tempo_us, math.ceil(end_s * 1e6 * cfg.ticks_per_beat / READABLE_TICKS))


def onset_time_map(src: np.ndarray, dst: np.ndarray, *, edge_s: float = 2.0):
    """A monotone map of input seconds to aligned seconds through (src, dst) onset pairs.

    Pairs sharing an input time give their median (medians_by_key); the map never runs backwards. Before the
    first and after the last anchor it goes on at the mean rate of the edge_s seconds there.
    """
    if len(src) == 0:
        return lambda t: np.asarray(t, dtype=np.float64)
    keys, medians = medians_by_key(src, dst)
    medians = np.maximum.accumulate(medians)
    first = min(int(np.searchsorted(keys, keys[0] + edge_s)), len(keys) - 1)
    last = max(int(np.searchsorted(keys, keys[-1] - edge_s)) - 1, 0)
    rate = lambda a, b: (medians[b] - medians[a]) / (keys[b] - keys[a]) if keys[b] > keys[a] and medians[b] > medians[a] else 1.0
    head, tail = rate(0, first), rate(last, len(keys) - 1)

    def warp(t):
        t = np.asarray(t, dtype=np.float64)
        out = np.interp(t, keys, medians)
        out = np.where(t < keys[0], medians[0] + head * (t - keys[0]), out)
        return np.where(t > keys[-1], medians[-1] + tail * (t - keys[-1]), out)

    return warp


# ---------------------------------------------------------------- tempo map

def _tempo_map_midi(structure: MidiStructure, aligned: np.ndarray, pair_index: np.ndarray, cfg: MidiOutputConfig) -> AlignedMidi:
    """aligned: (P, 2) aligned [onset, offset] s of each pair (NaN: not a note the aligner saw);
    pair_index: (P,) its index in the Alignment, for the report."""
    tpb = structure.ticks_per_beat
    matched = np.isfinite(aligned[:, 0])
    on_tick = structure.tick[structure.pairs[:, 0]]
    off_tick = structure.tick[structure.pairs[:, 1]]
    beats, times = beat_anchors(on_tick[matched] / tpb, aligned[matched, 0])
    # The first chord's earliest note: a lead-in that ends there lets the chord's notes play at the
    # normal tempo that follows, where a tick is short.
    first_chord = aligned[matched, 0][on_tick[matched] == 0]
    wait = float(first_chord.min()) if len(first_chord) else 0.0
    lead_in = 0.0
    if wait > cfg.lead_in_after_s:
        # Tick 0 plays at 0 s, but the recording starts later. An extra bar would change the score's
        # bar count; instead a slow first sliver of a beat takes up the wait, and the first notes
        # move onto its end (reported as off the grid).
        lead_in = lead_in_beats(wait)
        later = beats > lead_in
        rest = fit_tempo_points(np.concatenate([[0.0], beats[later] - lead_in]),
                                np.concatenate([[0.0], times[later] - wait]), cfg,
                                first_spacing_beats=max(1.0 - lead_in, cfg.min_tempo_spacing_beats))  # 2 events per beat
        if len(rest) == 1:  # one onset position: after the wait, the input's own tempo
            rest = np.array([[0.0, 0.0], [1.0, _tick_seconds(structure.file, np.array([tpb]))[0]]])
        points = np.concatenate([[[0.0, 0.0]], rest + [lead_in, wait]])
    else:
        points = fit_tempo_points(beats, times, cfg)
    tempo_us, point_s = round_tempi(points, cfg)
    # No note plays inside the lead-in, so its slow tempo does not set the tick resolution.
    played = tempo_us[1:] if lead_in else tempo_us
    scale = max(1, math.ceil(played.max(initial=1) / 1e6 / tpb / cfg.max_tick_s))
    # Prefer a resolution DAWs use (a multiple of 480 ticks per beat) when the file allows it.
    step = COMMON_TICKS_PER_BEAT // math.gcd(tpb, COMMON_TICKS_PER_BEAT)
    if tpb * math.ceil(scale / step) * step <= MAX_TICKS_PER_BEAT:
        scale = math.ceil(scale / step) * step
    scale = min(scale, MAX_TICKS_PER_BEAT // tpb)
    tpb_out = tpb * scale
    point_beats = points[:, 0]

    ticks = structure.tick * scale
    on_out = ticks[structure.pairs[:, 0]]
    off_out = ticks[structure.pairs[:, 1]]
    off_grid = np.zeros(len(structure.pairs), bool)
    for col, grid, out in ((0, on_tick, on_out), (1, off_tick, off_out)):
        want = aligned[matched, col]
        grid_s = beats_to_seconds(grid[matched] / tpb, point_beats, point_s, tempo_us)
        moved = np.abs(grid_s - want) > cfg.grid_tolerance_s
        new = np.round(seconds_to_beats(want, point_beats, point_s, tempo_us) * tpb_out).astype(np.int64)
        out[np.flatnonzero(matched)[moved]] = new[moved]
        if col == 0:
            off_grid[np.flatnonzero(matched)[moved]] = True
    tempo_events = [(int(round(b * tpb_out)), int(u)) for b, u in zip(point_beats, tempo_us)]
    data = _write(structure, ticks, on_out, off_out, ticks_per_beat=tpb_out, tempo=tempo_events)
    off_notes = np.sort(pair_index[off_grid])
    n = int(matched.sum())
    report = {
        "mode": "tempo_map",
        "ticks_per_beat": tpb_out,
        "tick_scale": scale,
        "lead_in_beats": lead_in,
        "n_tracks": len(structure.file.tracks),
        "n_tempo_events": len(tempo_events),
        "n_notes": n,
        "n_off_grid": int(off_grid.sum()),
        "share_on_grid": round(float(1.0 - off_grid.sum() / max(n, 1)), 4),
        "off_grid_notes": off_notes[:200].tolist(),
    }
    tempo = np.stack([point_s[:len(tempo_us)], 6e7 / tempo_us], 1)
    return AlignedMidi(data, tempo[1:] if lead_in else tempo, report)


def beat_anchors(beats: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(beats, times) of one robust anchor per onset position: the median aligned time of the
    notes there (medians_by_key), keeping the longest run of positions whose times strictly increase."""
    if len(beats) == 0:
        return np.zeros(0), np.zeros(0)
    keys, medians = medians_by_key(beats, times)
    keep = _longest_increasing(medians)
    return keys[keep], medians[keep]


def medians_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, the median of the values at each key).

    Of an even count, the lower middle value: a time one of the notes has, so that a
    tempo map through it puts that note on its tick.
    """
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    unique, start, count = np.unique(k, return_index=True, return_counts=True)
    return unique, v[start + (count - 1) // 2]


def _longest_increasing(values: np.ndarray) -> np.ndarray:
    """Indices of a longest strictly increasing subsequence (patience sorting)."""
    import bisect

    tails: list[int] = []
    tail_values: list[float] = []
    parent = np.full(len(values), -1)
    for i, v in enumerate(values.tolist()):
        j = bisect.bisect_left(tail_values, v)
        parent[i] = tails[j - 1] if j else -1
        if j == len(tails):
            tails.append(i)
            tail_values.append(v)
        else:
            tails[j] = i
            tail_values[j] = v
    out = []
    i = tails[-1] if tails else -1
    while i >= 0:
        out.append(i)
        i = parent[i]
    return np.array(out[::-1], dtype=np.int64)


def fit_tempo_points(beats: np.ndarray, times: np.ndarray, cfg: MidiOutputConfig = MidiOutputConfig(), *,
                     first_spacing_beats: float | None = None) -> np.ndarray:
    """(k, 2) [beat, s] corners of a piecewise-linear beat-time map, starting at (0, 0).

    Greedy: from each corner, the next is the furthest anchor, at least
    min_tempo_spacing_beats on (first_spacing_beats after the first corner, when given), whose
    straight line keeps every anchor between within grid_tolerance_s; then corners where the
    tempo changes by less than steady_tempo go.
    """
    if len(beats) == 0:
        return np.array([[0.0, 0.0]])
    # Tick 0 always plays at 0 s (the caller adds a lead-in bar when the first anchor is far later).
    if beats[0] > 0:
        beats, times = np.concatenate([[0.0], beats]), np.concatenate([[0.0], times])
    else:
        times = np.concatenate([[0.0], times[1:]])
    corners = [0]
    i = 0
    while i < len(beats) - 1:
        spacing = first_spacing_beats if i == 0 and first_spacing_beats is not None else cfg.min_tempo_spacing_beats
        j = int(np.searchsorted(beats, beats[i] + spacing - 1e-9))
        if j >= len(beats):
            j = len(beats) - 1
        best = j
        for k in range(j + 1, len(beats)):
            slope = (times[k] - times[i]) / (beats[k] - beats[i])
            between = slice(i + 1, k)
            if np.abs(times[i] + slope * (beats[between] - beats[i]) - times[between]).max(initial=0.0) > cfg.grid_tolerance_s:
                break
            best = k
        corners.append(best)
        i = best
    return _drop_steady(np.stack([beats[corners], times[corners]], 1), cfg.steady_tempo)


def _drop_steady(points: np.ndarray, steady: float) -> np.ndarray:
    """Remove inner corners where the tempo changes by less than the fraction steady."""
    keep = list(range(len(points)))
    changed = True
    while changed and len(keep) > 2:
        changed = False
        out = [keep[0], keep[1]]
        for k in keep[2:]:
            a, b = out[-2], out[-1]
            before = (points[b, 1] - points[a, 1]) / (points[b, 0] - points[a, 0])
            after = (points[k, 1] - points[b, 1]) / (points[k, 0] - points[b, 0])
            if before > 0 and abs(after / before - 1.0) < steady:
                out[-1] = k
                changed = True
            else:
                out.append(k)
        keep = out
    return points[keep]


def round_tempi(points: np.ndarray, cfg: MidiOutputConfig = MidiOutputConfig()) -> tuple[np.ndarray, np.ndarray]:
    """((k-1,) whole µs per beat of each segment, (k,) the corners' times as the file plays them).

    Each tempo is rounded against the time the file has reached, so rounding never accumulates.
    """
    tempo_us = np.zeros(max(len(points) - 1, 0), dtype=np.int64)
    played = np.zeros(len(points))
    for k in range(len(points) - 1):
        span = points[k + 1, 0] - points[k, 0]
        tempo_us[k] = int(np.clip(round((points[k + 1, 1] - played[k]) * 1e6 / span), 1, MAX_TEMPO_US))
        played[k + 1] = played[k] + tempo_us[k] * span / 1e6
    if len(tempo_us) == 0:
        tempo_us = np.array([cfg.tempo_us], dtype=np.int64)
    return tempo_us, played


def beats_to_seconds(beats: np.ndarray, point_beats: np.ndarray, point_s: np.ndarray, tempo_us: np.ndarray) -> np.ndarray:
    """Seconds at which the file plays beat positions (the last tempo continues)."""
    k = np.clip(np.searchsorted(point_beats, beats, side="right") - 1, 0, len(tempo_us) - 1)
    return point_s[k] + (beats - point_beats[k]) * tempo_us[k] / 1e6


def seconds_to_beats(seconds: np.ndarray, point_beats: np.ndarray, point_s: np.ndarray, tempo_us: np.ndarray) -> np.ndarray:
    """Inverse of beats_to_seconds (never before beat 0)."""
    k = np.clip(np.searchsorted(point_s[:len(tempo_us)], seconds, side="right") - 1, 0, len(tempo_us) - 1)
    return np.maximum(point_beats[k] + (seconds - point_s[k]) * 1e6 / tempo_us[k], 0.0)


def lead_in_beats(wait_s: float) -> float:
    """Length in beats of the slow first segment that plays a wait of wait_s seconds before the
    score's first notes: the shortest power-of-two fraction of a beat, 1/64 at least, that a MIDI
    tempo (at most 16.8 s per beat) can stretch over the wait. Notation programs quantise a
    1/16-beat offset (waits up to 1 s) away, so the first notes show on the downbeat."""
    beats = 1.0 / 64
    while wait_s * 1e6 / beats > MAX_TEMPO_US:
        beats *= 2
    return beats


# ---------------------------------------------------------------- writing

def _write(structure: MidiStructure, ticks: np.ndarray, on_ticks: np.ndarray, off_ticks: np.ndarray, *,
           ticks_per_beat: int, tempo: list[tuple[int, int]]) -> bytes:
    """The file with every event at its new tick: the input's set_tempo events are replaced by
    tempo, a note's off never precedes its on or outlasts the next note of its key."""
    import mido

    on_ticks = np.maximum(on_ticks, 0)
    off_ticks = _clip_same_key(structure, on_ticks, np.maximum(off_ticks, on_ticks + 1))
    paired = np.zeros(len(structure.messages), bool)
    paired[structure.pairs.ravel()] = True
    # At one tick: note-offs, then everything else, then note-ons (a repeated key is re-struck).
    rows: list[list[tuple[int, int, int, object]]] = [[] for _ in structure.file.tracks]
    for e, msg in enumerate(structure.messages):
        if structure.kind[e] in (TEMPO, END) or paired[e]:
            continue
        rank = {NOTE_ON: 2, NOTE_OFF: 0}.get(int(structure.kind[e]), 1)
        rows[structure.track[e]].append((max(int(ticks[e]), 0), rank, e, msg))
    for p, (on, off) in enumerate(structure.pairs):
        rows[structure.track[on]].append((int(on_ticks[p]), 2, on, structure.messages[on]))
        rows[structure.track[off]].append((int(off_ticks[p]), 0, off, structure.messages[off]))
    if rows:
        rows[0].extend((t, 1, -1, mido.MetaMessage("set_tempo", tempo=u)) for t, u in tempo)
    out = mido.MidiFile(type=structure.file.type, ticks_per_beat=ticks_per_beat)
    for events in rows:
        events.sort(key=lambda r: r[:3])
        trk = mido.MidiTrack()
        now = 0
        for t, _, _, msg in events:
            # A shallow copy with a new delta time: msg.copy() re-validates every field (slow for big files).
            moved = copy.copy(msg)
            moved.__dict__["time"] = t - now
            trk.append(moved)
            now = t
        trk.append(mido.MetaMessage("end_of_track", time=0))
        out.tracks.append(trk)
    buf = io.BytesIO()
    out.save(file=buf)
    return buf.getvalue()


def _clip_same_key(structure: MidiStructure, on_ticks: np.ndarray, off_ticks: np.ndarray) -> np.ndarray:
    """Off ticks that end each note no later than the next note of its track, channel and pitch begins
    (a later note-off would cut that note short); at least one tick after its own start."""
    on_msgs = [structure.messages[e] for e in structure.pairs[:, 0]]
    keys = np.array([(structure.track[e], m.channel, m.note) for e, m in zip(structure.pairs[:, 0], on_msgs)], dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((on_ticks, keys[:, 2], keys[:, 1], keys[:, 0]))
    clipped = off_ticks.copy()
    for a, b in zip(order[:-1], order[1:]):
        if np.array_equal(keys[a], keys[b]) and on_ticks[b] > on_ticks[a]:
            clipped[a] = min(clipped[a], on_ticks[b])
    return clipped
