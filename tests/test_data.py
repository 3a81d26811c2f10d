"""Data, augmentation and case tests on tiny synthetic data (never ../shared)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from midialign.config import MIN_NOTE_S, AugmentConfig
from midialign.io.midi import read_midi
from midialign.io.table import read_note_table
from midialign.notes import Notes
from midialign.training.augment import apply_jitter, apply_timing, clip_notes, draw_jitter, draw_timing, draw_warp, warp_by_knots

SR = 16000


def random_notes(rng: np.random.Generator, n: int = 200, duration: float = 30.0) -> Notes:
    on = np.sort(rng.uniform(0.2, duration - 1.0, n))
    off = on + rng.uniform(0.02, 1.0, n)
    return Notes(np.stack([on, off], 1), rng.integers(21, 109, n), rng.integers(20, 120, n)).sorted()


# ---------------------------------------------------------------- augmentation

@pytest.mark.parametrize("jitter", [0.05, 0.1])
def test_jitter_within_bounds_and_offset_rule(jitter: float) -> None:
    rng = np.random.default_rng(0)
    notes = random_notes(rng)
    on_j, off_j = draw_jitter(len(notes), jitter, rng)
    loose = apply_jitter(notes, on_j, off_j)
    assert np.all(np.abs(loose.onsets - notes.onsets) <= jitter + 1e-12)
    assert np.all(loose.offsets >= loose.onsets + MIN_NOTE_S - 1e-12)
    # An offset moves by at most J unless the offset rule pushed it later.
    moved = loose.offsets - notes.offsets
    pushed = np.isclose(loose.offsets, loose.onsets + MIN_NOTE_S)
    assert np.all((np.abs(moved) <= jitter + 1e-12) | pushed)


def test_warp_is_monotone() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        kt, kdt = draw_warp(60.0, 0.2, 4.0, rng)
        t = np.linspace(-1.0, 61.0, 20001)
        w = warp_by_knots(t, kt, kdt)
        assert np.all(np.diff(w) > 0)
        assert np.all(np.abs(w - t) <= 0.2 + 1e-9)


def test_segments_clip_input_and_target_consistently() -> None:
    rng = np.random.default_rng(2)
    notes = random_notes(rng, 300, 60.0)
    duration = 60.0
    bounds = [(s, s + 10.0) for s in np.arange(0.0, duration, 10.0)]
    cfg = AugmentConfig(p_extra=0.0)
    total = 0.0
    for start, end in bounds:
        seg = clip_notes(notes, start, end)
        loose, target = apply_timing(seg, draw_timing(seg, cfg, rng))
        # Without extra notes, input note i and target note i are the same note.
        assert len(loose) == len(target)
        assert np.array_equal(loose.pitches, target.pitches)
        assert np.array_equal(loose.velocities, target.velocities)
        assert np.all(target.intervals >= 0) and np.all(target.intervals <= end - start + 1e-9)
        total += float(np.sum(seg.offsets - seg.onsets))
    # A note crossing a cut is split into pieces whose lengths add up: nothing lost or doubled.
    assert total == pytest.approx(float(np.sum(notes.offsets - notes.onsets)), abs=1e-6)


def test_same_seed_same_augmentation() -> None:
    notes = random_notes(np.random.default_rng(3))
    cfg = AugmentConfig(tempo_range=0.1)
    a = apply_timing(notes, draw_timing(notes, cfg, np.random.default_rng(7)))[0]
    b = apply_timing(notes, draw_timing(notes, cfg, np.random.default_rng(7)))[0]
    c = apply_timing(notes, draw_timing(notes, cfg, np.random.default_rng(8)))[0]
    assert np.array_equal(a.intervals, b.intervals) and np.array_equal(a.pitches, b.pitches)
    assert len(a) != len(c) or not np.array_equal(a.intervals, c.intervals)


# ---------------------------------------------------------------- held-out rule

def _fake_maps(root: Path, train_pieces: list[str], reserved: list[str]) -> None:
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    (root / "reserved_pieces.txt").write_text("".join(f"{p}\n" for p in reserved))
    rows = ["split,audio,annotation,piece,piano,duration_s,n_notes"]
    rng = np.random.default_rng(0)
    for split, piano, pieces in (("train", "AkPnBcht", train_pieces), ("val", "ENSTDkAm", reserved)):
        (root / split).mkdir(exist_ok=True)
        for piece in pieces:
            stem = f"MAPS_MUS-{piece}_{piano}"
            y = (0.01 * rng.standard_normal(SR * 2)).astype(np.float32)
            sf.write(str(root / split / f"{stem}.flac"), y, SR)
            lines = ["onset\toffset\tnote\tvelocity"] + [f"{0.1 + 0.2 * i:.6f}\t{0.3 + 0.2 * i:.6f}\t{60 + i % 5}\t{70 + i}" for i in range(8)]
            (root / split / f"{stem}.tsv").write_text("\n".join(lines) + "\n")
            rows.append(f"{split},{split}/{stem}.flac,{split}/{stem}.tsv,{piece},{piano},2.0,8")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def test_reserved_maps_pieces_refused(tmp_path: Path) -> None:
    from midialign.errors import ReservedPieceError
    from midialign.training.data import maps_pieces

    ok = tmp_path / "ok"
    _fake_maps(ok, ["bach_846"], ["chpn-p14"])
    assert [p.piece_id for p in maps_pieces(ok, "train")] == ["bach_846"]
    assert [p.piece_id for p in maps_pieces(ok, "val")] == ["chpn-p14"]
    bad = tmp_path / "bad"
    _fake_maps(bad, ["bach_846", "chpn-p14"], ["chpn-p14"])
    with pytest.raises(ReservedPieceError):
        maps_pieces(bad, "train")
    alias = tmp_path / "alias"
    _fake_maps(alias, ["chpn_op10_e01"], ["chpn-e01"])
    with pytest.raises(ReservedPieceError):
        maps_pieces(alias, "train")


def test_excluded_asap_folders_refused(tmp_path: Path) -> None:
    from midialign.training import asap
    from midialign.errors import ReservedPieceError

    for folder in ("Mozart/Piano_Sonatas/11-3", "Beethoven/Piano_Sonatas/21-1_no_repeat", "Schumann/Kreisleriana/3_no_repeat",
                   "Liszt/Gran_Etudes_de_Paganini/6_Theme_and_Variations_repeat", "Chopin/Etudes_op_10/1"):
        with pytest.raises(ReservedPieceError):
            asap.check_folder(folder)
    for folder in ("Beethoven/Piano_Sonatas/21-2", "Chopin/Etudes_op_10/12", "Schumann/Kreisleriana/2", "Beethoven/Piano_Sonatas/8-10"):
        asap.check_folder(folder)
    header = "composer,title,folder,xml_score,midi_score,midi_performance,robust_note_alignment,note_alignments\n"
    (tmp_path / "metadata.csv").write_text(header + "Mozart,S,Mozart/Piano_Sonatas/12-1,,Mozart/Piano_Sonatas/12-1/midi_score.mid,"
                                           "Mozart/Piano_Sonatas/12-1/X.mid,1,\n")
    with pytest.raises(ReservedPieceError):
        asap.list_performances(tmp_path)


# ---------------------------------------------------------------- (n)ASAP reader

def test_asap_indexing_and_alignment(tmp_path: Path) -> None:
    import mido

    from midialign.training import asap

    mf = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mf.tracks.append(tr)
    # File order: E4 then C4 at the same time; C4 repeated before its release (FIFO pairing).
    tr += [mido.Message("note_on", note=64, velocity=50, time=0), mido.Message("note_on", note=60, velocity=60, time=0),
           mido.Message("control_change", control=64, value=100, time=240),
           mido.Message("note_on", note=60, velocity=70, time=240), mido.Message("note_off", note=60, time=240),
           mido.Message("note_off", note=64, time=0), mido.Message("note_on", note=60, velocity=0, time=240)]
    path = tmp_path / "p.mid"
    mf.save(str(path))
    pn = asap.indexed_performance_notes(path)
    # 120 bpm: 480 ticks = 0.5 s. Sorted by (onset, pitch): C4@0, E4@0, C4@0.5.
    assert pn[:, 2].tolist() == [60, 64, 60]
    assert np.allclose(pn[:, 0], [0.0, 0.0, 0.5]) and np.allclose(pn[:, 1], [0.75, 0.75, 1.0])
    assert pn[:, 3].tolist() == [60, 50, 70]
    rows = ["xml_id\tmidi_id\ttrack\tchannel\tpitch\tonset", "n1-1\tn0\t0\t0\t60\t0.0", "n2-1\tn1\t0\t0\t64\t0.0",
            "n2-1\tn2\t0\t0\t60\t0.5", "n3-1\tdeletion", "insertion\tn2\t0\t0\t60\t0.5"]
    al_path = tmp_path / "note_alignment.tsv.gz"
    al_path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    al = asap.read_alignment(al_path)
    assert al.matches == {"n1-1": 0, "n2-1": 1} and al.n_duplicates == 1
    assert al.deletions == {"n3-1"} and al.insertions == {2}


# ---------------------------------------------------------------- cases

def test_midi_round_trip_keeps_reference_rows(tmp_path: Path) -> None:
    from midialign.evaluation.make_cases import write_case_notes

    rng = np.random.default_rng(6)
    n = 300
    on = rng.uniform(0, 20, n)
    on[:20] = np.round(on[:20], 1)  # ties in onset
    iv = np.stack([on, on + rng.uniform(0.0, 2.0, n)], 1)  # many overlapping same-key notes
    pitches = rng.integers(55, 67, n)
    inp = Notes(iv, pitches, rng.integers(1, 128, n))
    ref = iv + 1000.0 + np.arange(n)[:, None] * 1e-3  # encodes the input index
    ref[::7] = np.nan
    stats = write_case_notes(tmp_path, inp, ref_intervals=ref, ref_velocities=inp.velocities)
    back = read_midi(tmp_path / "input.mid")
    table = read_note_table(tmp_path / "reference.tsv", keep_order=True)
    assert len(back) == len(table) == stats["n_input"] == n - stats["n_dropped_unrepresentable"]
    assert np.array_equal(back.pitches, table.pitches) and np.array_equal(back.velocities, table.velocities)
    played = np.isfinite(table.onsets)
    # Recover each row's input index from the reference and check it is the same key and onset.
    idx = np.array([int(np.nanargmin(np.abs(ref[:, 0] - t))) for t in table.onsets[played]])
    assert np.array_equal(pitches[idx], table.pitches[played])
    assert np.allclose(on[idx], back.onsets[played], atol=1e-3)


def test_same_seed_same_case(tmp_path: Path) -> None:
    from midialign.evaluation.make_cases import build_maps_case
    from midialign.training.data import maps_pieces
    from midialign.evaluation.cases import load_case

    root = tmp_path / "maps"
    _fake_maps(root, ["bach_846"], ["chpn-p14"])
    piece = maps_pieces(root, "val")[0]
    metas = []
    for out in ("a", "b"):
        metas.append(build_maps_case(piece, "maps_am_tempo", out_dir=tmp_path / out, seed=3))
    da, db = (tmp_path / o / "maps_am_tempo" / metas[0]["case"] for o in ("a", "b"))
    for f in ("input.mid", "reference.tsv", "meta.json", "audio.flac"):
        assert (da / f).read_bytes() == (db / f).read_bytes()
    other = build_maps_case(piece, "maps_am_tempo", out_dir=tmp_path / "c", seed=4)
    assert other["tempo_factor"] != metas[0]["tempo_factor"]
    case = load_case(da)
    inp, ref, meta = case.input_notes, case.reference, case.meta
    assert len(inp) == 8 and np.allclose(ref.onsets, 0.1 + 0.2 * np.arange(8))
    assert np.all(np.abs(inp.onsets / meta["tempo_factor"] - ref.onsets) <= 0.05 + 1e-3)
    # Resuming leaves a finished case alone.
    mtime = (da / "input.mid").stat().st_mtime_ns
    build_maps_case(piece, "maps_am_tempo", out_dir=tmp_path / "a", seed=3)
    assert (da / "input.mid").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("jobs", [1, 2])
def test_map_with_progress_keeps_task_order(jobs: int) -> None:
    from midialign.training.data import map_with_progress

    assert map_with_progress(abs, [-3, 1, -2, 5], jobs=jobs, desc="test") == [3, 1, 2, 5]
