"""Speed benchmark: each pipeline stage on 1, 5 and 10 minutes of audio, with synctoolbox's own DTW alongside.

The input is the bundled example (examples/prelude) tiled to the wanted
length, so the benchmark runs from a clean clone. Each length runs in a
fresh process so peak memory (max RSS) is per length. A short warm-up run
(imports, numba compilation, model load) is excluded from the stage times
and reported as one-off start-up cost.

    python benchmarks/speed.py --minutes 1 5 10 --out results/speed.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "prelude"
STAGES = ("load", "features", "dtw", "network", "postprocess", "write")


def tiled_input(minutes: float, workdir: Path) -> tuple[Path, Path]:
    import soundfile as sf

    from midialign.io.midi import read_midi, write_midi

    from midialign.notes import Notes

    y, sr = sf.read(EXAMPLE / "audio.flac", dtype="float32")
    score = read_midi(EXAMPLE / "input.mid")
    reps = int(np.ceil(minutes * 60 * sr / len(y)))
    period_audio = len(y) / sr
    period_score = score.end_time + 1.0
    audio = np.tile(y, reps)[: int(minutes * 60 * sr)]
    iv = np.concatenate([score.intervals + k * period_score for k in range(reps)])
    keep = iv[:, 0] < minutes * 60 * period_score / period_audio
    notes = Notes(iv[keep], np.tile(score.pitches, reps)[keep], np.tile(score.velocities, reps)[keep]).sorted()
    sf.write(workdir / "audio.flac", audio, sr)
    write_midi(notes, workdir / "input.mid")
    return workdir / "audio.flac", workdir / "input.mid"


def run_one(minutes: float, method: str) -> dict:
    from midialign.config import DTWConfig
    from midialign.core.dtw import dtw_path
    from midialign.io.audio import load_audio
    from midialign.core.network import load_model
    from midialign.io.midi import read_midi, write_midi
    from midialign.aligner import align

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        model = load_model()
        warm_audio, warm_midi = tiled_input(0.4, Path(tmp))
        align(warm_audio, warm_midi, method=method, model=model)
        startup = time.perf_counter() - t
        audio, midi = tiled_input(minutes, Path(tmp))
        result = align(audio, midi, method=method, model=model)
        t = time.perf_counter()
        write_midi(result.notes, Path(tmp) / "aligned.mid")
        stages = dict(result.timings)
        stages["write"] = time.perf_counter() - t
        # synctoolbox's own pipeline (its filter-bank audio features + MrMsDTW) on the same input.
        y = load_audio(audio, 22050)
        notes = read_midi(midi)
        t = time.perf_counter()
        dtw_path(y, 22050, notes, DTWConfig(audio_features="synctoolbox"))
        reference = time.perf_counter() - t
        n_notes = len(notes)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"minutes": minutes, "method": method, "notes": n_notes, "stages_s": stages, "startup_s": startup,
            "synctoolbox_dtw_s": reference, "peak_rss_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--method", default="dtw+crnn")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.method)))
        return
    rows = []
    for m in args.minutes:
        out = subprocess.run([sys.executable, __file__, "--one", str(m), "--method", args.method], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(markdown(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


def markdown(rows: list[dict]) -> str:
    head = "| audio min | notes | " + " | ".join(STAGES) + " | total s/min | synctoolbox DTW s/min | ours / synctoolbox | peak RSS MB |"
    lines = [head, "|" + "---:|" * (len(STAGES) + 6)]
    for r in rows:
        m, s = r["minutes"], r["stages_s"]
        total = sum(s.get(k, 0.0) for k in STAGES)
        per = [f"{s.get(k, 0.0) / m:.2f}" for k in STAGES]
        ref = r["synctoolbox_dtw_s"] / m
        lines.append(f"| {m:g} | {r['notes']} | " + " | ".join(per) + f" | {total / m:.2f} | {ref:.2f} | {total / m / ref:.2f} | {r['peak_rss_mb']:.0f} |")
    lines.append("")
    lines.append(f"Stage columns are seconds per minute of audio. One-off start-up (imports, numba compilation, model load, warm-up): {rows[0]['startup_s']:.1f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
