"""False alarms and detections of the match check (core.evidence) on validation cases.

    python benchmarks/match_check.py /work/cases/asap_score /work/cases/maps_am_tempo ... --out results/match_check.json

Runs `Aligner.align` (default method) on:
* every case as it is (right pairs): a warning is a false alarm;
* wrong-piece pairs, the audio of one case with the input of another from the same set
  (case i with case i + 7 in name order, spread over the first two folders; --wrong pairs in
  all): a match warning is a detection;
* transposed copies (+-1 and +-12 semitones) of the inputs of every --transposed-every'th case:
  a warning that names the transposition is a detection.
Prints a Markdown table and writes every row to --out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from midialign import Aligner
from midialign.config import PITCH_MAX, PITCH_MIN
from midialign.io.midi import read_midi
from midialign.notes import Notes


def cases_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / "input.mid").is_file())


def transposed(notes: Notes, semitones: int) -> Notes:
    return Notes(notes.intervals, np.clip(notes.pitches + semitones, PITCH_MIN, PITCH_MAX), notes.velocities, notes.pedal)


def audio_of(case: Path) -> Path:
    return next(p for p in case.iterdir() if p.stem == "audio")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+", type=Path, help="folders of case folders")
    ap.add_argument("--wrong", type=int, default=20, help="wrong-piece pairs in all (default 20)")
    ap.add_argument("--transposed-every", type=int, default=6, help="transpose the input of every n-th case of the first folder")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    aligner = Aligner()
    sets = {folder.name: cases_in(folder) for folder in args.cases}
    jobs = [("right", folder, c, c, 0) for folder, cs in sets.items() for c in cs]
    # Wrong pairs from the first two folders only: later ones may share their recordings (the
    # maps_am_* sets are the same audio with different inputs).
    wrong_sets = list(sets.items())[:2]
    per_set = -(-args.wrong // len(wrong_sets))
    for folder, cs in wrong_sets:
        picks = list(range(0, len(cs), max(1, len(cs) // per_set)))[:per_set]
        jobs += [("wrong", folder, cs[i], cs[(i + 7) % len(cs)], 0) for i in picks]
    first = next(iter(sets))
    jobs += [("transposed", first, c, c, t) for c in sets[first][::args.transposed_every] for t in (12, -12, 1, -1)]

    rows = []
    for kind, folder, audio_case, notes_case, shift in jobs:
        t0 = time.perf_counter()
        notes = transposed(read_midi(notes_case / "input.mid"), shift)
        result = aligner.align(audio_of(audio_case), notes)
        row = {"kind": kind, "set": folder, "audio": audio_case.name, "notes": notes_case.name, "shift": shift,
               "match_score": result.match_score, "transposition": result.transposition,
               "flagged": aligner.mismatch(result) is not None}
        # A transposed input is recognised when the check names the shift that undoes it.
        row["named"] = result.transposition == -shift if shift else None
        rows.append(row)
        print(f"{kind:10s} {folder:18s} {audio_case.name[:34]:34s} {notes_case.name[:34]:34s} {shift:+3d} "
              f"score {result.match_score:.3f} transposition {result.transposition:+3d} {'FLAGGED' if row['flagged'] else ''} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))

    print("\n| pairs | set | count | flagged | score range |\n|---|---|---:|---:|---|")
    for kind in ("right", "wrong", "transposed"):
        for folder in sets:
            sel = [r for r in rows if r["kind"] == kind and r["set"] == folder]
            if not sel:
                continue
            scores = [r["match_score"] for r in sel]
            flagged = sum(r["flagged"] for r in sel)
            named = f" ({sum(bool(r['named']) for r in sel)} named)" if kind == "transposed" else ""
            print(f"| {kind} | {folder} | {len(sel)} | {flagged}{named} | {min(scores):.2f}-{max(scores):.2f} |")


if __name__ == "__main__":
    main()
