"""Validation cases: audio + loose input MIDI + the true time of every input note.

A case folder holds
  audio.flac      16 kHz mono
  input.mid       written with io.midi.write_midi
  reference.tsv   row i = true onset/offset/pitch/velocity of input note i, input
                  notes in the canonical order that io.midi.read_midi gives back;
                  onset/offset nan for a note that is not played in the audio
  meta.json       source, seeds, augmentation parameters (written last: a case
                  with meta.json is finished, so builds resume)

Sets: maps_am_jitter50, maps_am_jitter100, maps_am_tempo (real ENSTDkAm
recordings, MAPS val) and asap_score (score -> rendered (n)ASAP performance,
held-out soundfont).
"""
from __future__ import annotations

import json
import logging
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import MIN_NOTE_S
from ..io.atomic import atomic_write_text
from ..io.midi import read_midi, write_midi
from ..io.table import read_note_table, write_note_table
from ..notes import Notes

log = logging.getLogger("midialign")

SETS = ("maps_am_jitter50", "maps_am_jitter100", "maps_am_tempo", "asap_score")
SAMPLE_RATE = 16000
SAME_KEY_GAP_S = 0.002  # a repeated key is released this long before it is struck again
ROUND_TRIP_TOL_S = 0.001  # MIDI ticks are 0.26 ms; anything more is a bug

# asap_score
ASAP_COUNT = 30
ASAP_MAX_S = 180.0  # longer performances are cropped ...
ASAP_CROP_S = 120.0  # ... to about this much
ASAP_TAIL_S = 1.0
ASAP_MIN_MATCHED = 0.9  # fraction of score notes matched, else the performance is skipped
ASAP_GRACE_S = 0.05  # input duration of zero-length (grace) score notes


@dataclass(frozen=True)
class MapsSetSpec:
    jitter_s: float
    tempo_range: float  # factor drawn from U(1 - r, 1 + r); 0 = none


MAPS_SETS: dict[str, MapsSetSpec] = {
    "maps_am_jitter50": MapsSetSpec(0.05, 0.0),
    "maps_am_jitter100": MapsSetSpec(0.10, 0.0),
    "maps_am_tempo": MapsSetSpec(0.05, 0.15),
}


def case_seed(seed: int, set_name: str, case_name: str) -> int:
    """Stable per-case seed (independent of build order and of Python's hash salt)."""
    ss = np.random.SeedSequence([seed, zlib.crc32(set_name.encode()), zlib.crc32(case_name.encode())])
    return int(ss.generate_state(1)[0])


def is_finished(case_dir: Path) -> bool:
    return (case_dir / "meta.json").is_file()


# ---------------------------------------------------------------- writing one case

def midi_safe(intervals: np.ndarray, pitches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make notes survive a MIDI round trip: (kept mask, new intervals).

    Onsets are clamped at 0. A repeated key is released SAME_KEY_GAP_S before
    it is struck again (overlapping same-pitch notes would be re-paired by a
    MIDI reader); a note struck again within 12 ms of the previous one on the
    same key cannot be represented and is dropped.
    """
    iv = np.array(intervals, dtype=np.float64)
    iv[:, 0] = np.maximum(iv[:, 0], 0.0)
    iv[:, 1] = np.maximum(iv[:, 1], iv[:, 0] + MIN_NOTE_S)
    keep = np.ones(len(iv), dtype=bool)
    for p in np.unique(pitches):
        idx = np.flatnonzero(pitches == p)
        idx = idx[np.argsort(iv[idx, 0], kind="stable")]
        prev = -1
        for i in idx:
            if prev >= 0:
                if iv[i, 0] - iv[prev, 0] < MIN_NOTE_S + SAME_KEY_GAP_S:
                    keep[i] = False
                    continue
                iv[prev, 1] = min(iv[prev, 1], iv[i, 0] - SAME_KEY_GAP_S)
            prev = i
    return keep, iv


def write_case_notes(case_dir: Path, inp: Notes, *, ref_intervals: np.ndarray, ref_velocities: np.ndarray) -> dict:
    """Write input.mid and reference.tsv; reference row i belongs to input note i (any order).

    Reads input.mid back and pairs read-back notes with the written ones (per
    pitch, in onset order), so the reference follows notes.read_midi's order.
    """
    keep, iv = midi_safe(inp.intervals, inp.pitches)
    pitches, vels = inp.pitches[keep], inp.velocities[keep]
    iv = iv[keep]
    ref_iv, ref_v = np.asarray(ref_intervals, dtype=np.float64)[keep], np.asarray(ref_velocities)[keep]
    write_midi(Notes(iv, pitches, vels), case_dir / "input.mid")
    back = read_midi(case_dir / "input.mid")
    if len(back) != len(pitches):
        raise ValueError(f"{case_dir}: input.mid reads back {len(back)} notes, wrote {len(pitches)}")
    src = np.full(len(back), -1, dtype=np.int64)
    for p in np.unique(pitches):
        a = np.flatnonzero(pitches == p)
        a = a[np.argsort(iv[a, 0], kind="stable")]
        b = np.flatnonzero(back.pitches == p)
        b = b[np.argsort(back.onsets[b], kind="stable")]
        if len(a) != len(b):
            raise ValueError(f"{case_dir}: pitch {p}: {len(b)} notes read back, {len(a)} written")
        src[b] = a
    err = np.abs(back.intervals - iv[src]).max() if len(src) else 0.0
    if err > ROUND_TRIP_TOL_S or np.any(back.velocities != vels[src]):
        raise ValueError(f"{case_dir}: MIDI round trip moved a note by {err * 1000:.2f} ms")
    write_note_table(Notes(ref_iv[src], pitches[src], ref_v[src]), case_dir / "reference.tsv")
    return {"n_input": int(len(back)), "n_dropped_unrepresentable": int((~keep).sum()),
            "n_unplayed": int(np.isnan(ref_iv[:, 0]).sum()), "round_trip_max_err_s": float(err)}


def _write_audio(path: Path, y: np.ndarray, sr: int) -> None:
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), y, sr, format="FLAC", subtype="PCM_16")
    tmp.replace(path)


def _finish(case_dir: Path, meta: dict) -> None:
    atomic_write_text(case_dir / "meta.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- MAPS sets

def build_maps_case(piece, set_name: str, *, out_dir: Path, seed: int) -> dict:
    """One MAPS val recording with a jittered (and optionally tempo-scaled) input."""
    from ..training.augment import apply_jitter, draw_jitter

    spec = MAPS_SETS[set_name]
    name = Path(piece.audio).stem
    case_dir = out_dir / set_name / name
    if is_finished(case_dir):
        return json.loads((case_dir / "meta.json").read_text())
    case_dir.mkdir(parents=True, exist_ok=True)
    truth = read_note_table(piece.annotation)
    cs = case_seed(seed, set_name, name)
    rng = np.random.default_rng(cs)
    on_j, off_j = draw_jitter(len(truth), spec.jitter_s, rng)
    loose = apply_jitter(truth, on_j, off_j)
    tempo = float(rng.uniform(1 - spec.tempo_range, 1 + spec.tempo_range)) if spec.tempo_range > 0 else 1.0
    loose = loose.with_times(loose.intervals * tempo)
    stats = write_case_notes(case_dir, loose, ref_intervals=truth.intervals, ref_velocities=truth.velocities)
    audio = case_dir / f"audio{Path(piece.audio).suffix}"
    tmp = audio.with_name(f".{audio.name}.tmp")
    shutil.copyfile(piece.audio, tmp)
    tmp.replace(audio)
    import soundfile as sf

    info = sf.info(str(audio))
    meta = {
        "set": set_name, "case": name, "source": piece.source, "piece": piece.piece_id,
        "audio_source": str(piece.audio), "annotation_source": str(piece.annotation),
        "seed": seed, "case_seed": cs, "jitter_s": spec.jitter_s, "tempo_factor": tempo,
        "min_duration_s": MIN_NOTE_S, "duration_s": info.frames / info.samplerate,
        "n_notes": stats["n_input"], **stats,
    }
    _finish(case_dir, meta)
    return meta


# ---------------------------------------------------------------- asap_score

@dataclass(frozen=True)
class AsapPlan:
    """What one asap_score case uses: included score notes, cropping, tempo."""

    include: np.ndarray  # (n_score,) bool
    perf_end_s: float  # performance notes with onset before this are rendered
    duration_s: float
    sec_per_quarter: float
    cropped: bool


def plan_asap_case(stp, *, max_s: float = ASAP_MAX_S, crop_s: float = ASAP_CROP_S) -> AsapPlan:
    """Crop by score position so that audio and reference cover the same music."""
    from ..training.asap import piano_range

    score, idx, pn = stp.score, stp.perf_index, stp.perf
    in_range = piano_range(score.pitch)
    matched = (idx >= 0) & in_range
    if matched.sum() < 10:
        raise ValueError("fewer than 10 matched score notes")
    t = np.full(len(idx), np.nan)
    t[matched] = pn[idx[matched], 0]
    perf_last = float(pn[:, 0].max())
    cropped = perf_last > max_s and bool((matched & (t > crop_s)).any())
    if cropped:
        late = matched & (t > crop_s)
        q_cut = float(score.onset_q[late].min())
        include = in_range & (score.onset_q < q_cut)
        after = matched & (score.onset_q >= q_cut)
        perf_end = float(np.nanmin(t[after]))
        last_in = float(np.nanmax(t[include & matched]))
        perf_end = max(perf_end, last_in + 0.05)
    else:
        include = in_range.copy()
        perf_end = perf_last + 1e-3
    m = include & matched
    q, tm = score.onset_q[m], t[m]
    q0, q1 = q.min(), q.max()
    if q1 - q0 <= 0:
        raise ValueError("matched notes span no score time")
    # Mean tempo: performed time between the first and last matched score positions.
    spq = (float(np.median(tm[q == q1])) - float(np.median(tm[q == q0]))) / (q1 - q0)
    if not spq > 0:
        raise ValueError("non-positive mean tempo")
    return AsapPlan(include, perf_end, perf_end + ASAP_TAIL_S, spq, cropped)


def select_asap(asap_root: Path, count: int, seed: int) -> list:
    """Deterministic choice: one performance per piece, composers in round robin."""
    from ..training.asap import list_performances

    rng = np.random.default_rng(seed)
    perfs = [p for p in list_performances(asap_root) if p.robust and p.xml_score is not None and p.alignment is not None
             and p.xml_score.is_file() and p.alignment.is_file()]
    by_comp: dict[str, list[list]] = {}
    for comp in sorted({p.composer for p in perfs}):
        titles = sorted({p.title for p in perfs if p.composer == comp})
        order = rng.permutation(len(titles))
        by_comp[comp] = [sorted([p for p in perfs if p.composer == comp and p.title == titles[i]], key=lambda p: p.key) for i in order]
    queue = []
    while any(by_comp.values()):
        for comp in sorted(by_comp):
            if by_comp[comp]:
                group = by_comp[comp].pop(0)
                queue.append(group[int(rng.integers(len(group)))])
    return queue


def _asap_case_name(perf) -> str:
    return perf.key[:-4].replace("/", "__")


def build_asap_case(perf, stp, *, out_dir: Path, seed: int, soundfont: Path, soundfont_name: str) -> dict:
    from ..training.render import apply_effects, draw_effects, render_notes

    name = _asap_case_name(perf)
    case_dir = out_dir / "asap_score" / name
    if is_finished(case_dir):
        return json.loads((case_dir / "meta.json").read_text())
    case_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_asap_case(stp)
    score, idx, pn = stp.score, stp.perf_index, stp.perf
    inc = np.flatnonzero(plan.include)
    # Played notes first, so that when two voices share a key at one time
    # (unrepresentable in MIDI) the one the alignment matched is kept.
    inc = inc[np.lexsort((idx[inc] < 0, score.pitch[inc], score.onset_q[inc]))]
    q0 = float(score.onset_q[inc].min())
    on = (score.onset_q[inc] - q0) * plan.sec_per_quarter
    dur = np.where(score.duration_q[inc] > 0, score.duration_q[inc] * plan.sec_per_quarter, ASAP_GRACE_S)
    inp = Notes(np.stack([on, on + np.maximum(dur, MIN_NOTE_S)], 1), score.pitch[inc], np.full(len(inc), 64))
    k = idx[inc]
    played = k >= 0
    ref = np.full((len(inc), 2), np.nan)
    ref[played] = pn[k[played], :2]
    ref[played, 1] = np.minimum(ref[played, 1], plan.duration_s)
    ref_v = np.full(len(inc), 64)
    ref_v[played] = pn[k[played], 3].astype(np.int64)
    stats = write_case_notes(case_dir, inp, ref_intervals=ref, ref_velocities=ref_v)

    # Audio: every performed note (insertions included) that starts before the cut.
    from ..training.asap import load_performance, piano_range

    pedal = load_performance(perf).pedal
    sel = (pn[:, 0] < plan.perf_end_s) & piano_range(pn[:, 2])
    perf_notes = Notes(pn[sel, :2], pn[sel, 2], pn[sel, 3], pedal[pedal[:, 0] < plan.duration_s] if len(pedal) else pedal)
    cs = case_seed(seed, "asap_score", name)
    fx = draw_effects(np.random.default_rng(cs), mild=True)
    y = render_notes(perf_notes, soundfont, sample_rate=SAMPLE_RATE, duration_s=plan.duration_s)
    n_fade = int(0.05 * SAMPLE_RATE)  # avoid a click where a crop cuts sounding notes
    y[-n_fade:] *= np.linspace(1, 0, n_fade, dtype=np.float32)
    y = apply_effects(y, SAMPLE_RATE, fx)
    _write_audio(case_dir / "audio.flac", y, SAMPLE_RATE)
    meta = {
        "set": "asap_score", "case": name, "source": "asap", "performance": perf.key, "composer": perf.composer,
        "title": perf.title, "folder": perf.folder, "xml_score": str(perf.xml_score), "alignment": str(perf.alignment),
        "seed": seed, "case_seed": cs, "soundfont": soundfont_name, "soundfont_path": str(soundfont),
        "soundfont_held_out": True, "effects": fx.to_json(), "sec_per_quarter": float(plan.sec_per_quarter),
        "tempo_qpm": float(60.0 / plan.sec_per_quarter), "cropped": plan.cropped, "perf_end_s": plan.perf_end_s,
        "duration_s": plan.duration_s, "n_notes": stats["n_input"], "n_rendered_notes": int(sel.sum()),
        "n_alignment_ids_missing": stp.n_alignment_ids_missing, "n_pitch_mismatch": stp.n_pitch_mismatch,
        "input_velocity": 64, **stats,
    }
    _finish(case_dir, meta)
    return meta


def _asap_selection(asap_root: Path, out_dir: Path, seed: int, count: int) -> list:
    """Choose (or reuse) the performances; writes used_performances.txt before any case is built."""
    from ..training.asap import list_performances, score_to_performance

    set_dir = out_dir / "asap_score"
    sel_path = set_dir / "selection.json"
    by_key = {p.key: p for p in list_performances(asap_root)}
    if sel_path.is_file():
        saved = json.loads(sel_path.read_text())
        if saved.get("seed") == seed and saved.get("count") == count:
            return [by_key[k] for k in saved["performances"]]
    chosen, titles = [], set()
    for perf in select_asap(asap_root, count * 3, seed):
        if len(chosen) >= count:
            break
        if (perf.composer, perf.title) in titles:
            continue
        try:
            stp = score_to_performance(perf)
            plan = plan_asap_case(stp)
        except (ValueError, KeyError, IndexError) as exc:
            log.info("skip %s: %s", perf.key, exc)
            continue
        inc = plan.include
        frac = float(((stp.perf_index >= 0) & inc).sum() / max(inc.sum(), 1))
        if frac < ASAP_MIN_MATCHED or stp.n_pitch_mismatch:
            log.info("skip %s: %.0f%% of score notes matched, %d pitch mismatches", perf.key, 100 * frac, stp.n_pitch_mismatch)
            continue
        chosen.append(perf)
        titles.add((perf.composer, perf.title))
    set_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(set_dir / "used_performances.txt",
                      "# (n)ASAP performances used by the asap_score validation cases: never train on these\n"
                      + "".join(f"{p.key}\n" for p in chosen))
    atomic_write_text(sel_path, json.dumps({"seed": seed, "count": count, "performances": [p.key for p in chosen]}, indent=1))
    return chosen


# ---------------------------------------------------------------- driver

def make_cases(out_dir: Path, *, maps_root: Path | None = None, asap_root: Path | None = None, sets: tuple[str, ...] = SETS,
               seed: int = 0, asap_count: int = ASAP_COUNT, soundfont: str | None = None) -> dict[str, list[dict]]:
    """Build (or resume) the case sets; returns the meta of every case per set."""
    from tqdm import tqdm

    unknown = set(sets) - set(SETS)
    if unknown:
        raise ValueError(f"unknown case sets {sorted(unknown)}; known: {', '.join(SETS)}")
    out_dir = Path(out_dir)
    jobs: list[tuple[str, object]] = []
    maps_sets = [s for s in sets if s in MAPS_SETS]
    if maps_sets:
        if maps_root is None:
            raise ValueError(f"sets {maps_sets} need --maps")
        from ..training.data import maps_pieces

        pieces = maps_pieces(maps_root, "val")
        if not pieces:
            raise ValueError(f"{maps_root}: no MAPS val recordings in manifest.csv")
        jobs += [(s, p) for s in maps_sets for p in pieces]
    sf_path = sf_name = None
    if "asap_score" in sets:
        if asap_root is None:
            raise ValueError("set asap_score needs --asap")
        from ..training.render import HELD_OUT_SOUNDFONT, available_soundfonts

        fonts = available_soundfonts()
        sf_name = soundfont or HELD_OUT_SOUNDFONT
        if sf_name not in fonts:
            raise ValueError(f"soundfont {sf_name!r} is not installed (have: {', '.join(fonts) or 'none'}); "
                             "apt-get install csound-soundfont")
        sf_path = fonts[sf_name]
        jobs += [("asap_score", p) for p in _asap_selection(Path(asap_root), out_dir, seed, asap_count)]
    out: dict[str, list[dict]] = {s: [] for s in sets}
    for set_name, item in tqdm(jobs, desc="cases", unit="case"):
        if set_name == "asap_score":
            case_dir = out_dir / "asap_score" / _asap_case_name(item)
            if is_finished(case_dir):
                meta = json.loads((case_dir / "meta.json").read_text())
            else:
                from ..training.asap import score_to_performance

                meta = build_asap_case(item, score_to_performance(item), out_dir=out_dir, seed=seed, soundfont=sf_path, soundfont_name=sf_name)
        else:
            meta = build_maps_case(item, set_name, out_dir=out_dir, seed=seed)
        out[set_name].append(meta)
    return out


def summarize(result: dict[str, list[dict]]) -> str:
    lines = []
    for s, metas in result.items():
        hours = sum(m.get("duration_s", 0.0) for m in metas) / 3600
        notes = sum(m.get("n_notes", 0) for m in metas)
        unplayed = sum(m.get("n_unplayed", 0) for m in metas)
        lines.append(f"{s}: {len(metas)} cases, {notes} notes ({unplayed} unplayed), {hours:.2f} h of audio")
    return "\n".join(lines)

