"""Check --tempo-map output on (n)ASAP scores played as the (n)ASAP performances play them.

For each performance (the asap_score selection: one per piece, seeded), the
MusicXML score is the input and the performance's note onsets (from the
note alignment; unmatched notes follow their neighbours) are the "aligned"
times. Prints, per piece and in total: notes, tempo events per beat, the
share of notes on their score ticks, the largest timing error of the file
against the aligned onsets, and its bar count against the score's (the
score's own MIDI, io.score.score_midi).

    python scripts/tempo_map_check.py /work/shared/data/asap --count 12
"""
from __future__ import annotations

import argparse
import gzip
import io
import tempfile
import time
import warnings
from pathlib import Path

import mido
import numpy as np

from midialign.alignment import Alignment
from midialign.evaluation.make_cases import select_asap
from midialign.io.midi_structure import match_notes, onset_time_map, read_structure
from midialign.io.score import read_score, score_midi, score_note_ids
from midialign.io.writers import output_midi
from midialign.notes import Notes
from midialign.training.asap import score_to_performance


def bars(mf: mido.MidiFile) -> int:
    """Bars up to the last note under the file's time signatures."""
    sigs, end = [], 0
    for trk in mf.tracks:
        now = 0
        for msg in trk:
            now += msg.time
            if msg.type == "time_signature":
                sigs.append((now, msg.numerator * 4 * mf.ticks_per_beat // msg.denominator))
            elif msg.type == "note_on" and msg.velocity:
                end = max(end, now + 1)
    sigs.sort()
    count, t = 0, 0
    while t < end:
        t += [length for at, length in sigs if at <= t][-1]
        count += 1
    return count


def performed(notes: Notes, ids: np.ndarray, perf) -> Notes:
    """The score notes at their performed onsets (unplayed ones follow the onset map)."""
    stp = score_to_performance(perf)
    played = {i: float(stp.perf[k, 0]) for i, k in zip(stp.score.ids, stp.perf_index) if k >= 0}
    onset = np.array([played.get(str(i), np.nan) for i in ids])
    known = np.isfinite(onset)
    warp = onset_time_map(notes.onsets[known], onset[known])
    onset[~known] = warp(notes.onsets[~known])
    offset = np.maximum(warp(notes.offsets), onset + 0.01)
    return notes.with_times(np.stack([onset, offset], 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("asap", type=Path)
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for perf in select_asap(args.asap, args.count, args.seed)[:args.count]:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xml = Path(tmp) / "score.musicxml"
            xml.write_bytes(gzip.decompress(perf.xml_score.read_bytes()))
            notes = read_score(xml)
            _, ids, _ = score_note_ids(xml)
            aligned = performed(notes, ids, perf)
            result = Alignment(notes, aligned, np.zeros(len(notes), bool), np.zeros(len(notes)), "none", aligned.end_time)
            out = output_midi(result, xml, tempo_map=True)
            score_bars = bars(score_midi(xml))
        mf = mido.MidiFile(file=io.BytesIO(out.data))
        back = read_structure(mf, name=perf.key)
        index = match_notes(back.notes, aligned, name=perf.key, same_clock=False)
        err_ms = 1000 * np.abs(back.notes.onsets - aligned.onsets[index]).max()
        tempo_ticks = [t for trk in mf.tracks for t, m in zip(np.cumsum([m.time for m in trk]), trk) if m.type == "set_tempo"]
        per_beat = np.bincount(np.array(tempo_ticks) // mf.ticks_per_beat).max()
        r = out.report
        lead_in = int(r["lead_in_beats"] > 0)
        rows.append((len(notes), r["n_off_grid"], bars(mf) == score_bars, lead_in, per_beat <= 2, err_ms < 1.0))
        print(f"{perf.key[:60]:60s} notes {len(notes):5d}  on grid {r['share_on_grid']:.3f}  tempo events {r['n_tempo_events']:4d} "
              f"(max {per_beat}/beat)  max err {err_ms:.3f} ms  bars {bars(mf)} (score {score_bars}; lead-in {r['lead_in_beats']} beats)  "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    n, off, bars_kept, lead_ins, sparse, exact = np.array(rows).sum(0)
    print(f"total: {len(rows)} scores, {n} notes, {1 - off / n:.3f} on their score ticks; bars kept in {bars_kept} "
          f"({lead_ins} with a lead-in); at most 2 tempo events per beat in {sparse}; every note within 1 ms in {exact}")


if __name__ == "__main__":
    main()
