"""Whole-process speed: `midialign align` run from the shell, cold and warm, against synctoolbox's own DTW pipeline.

For each length the bundled example (examples/prelude) is tiled to that many
minutes of audio, so the benchmark runs from a clean clone. Then, each as a
separate process:

* cold: the first `midialign align` with nothing cached: PYTHONPYCACHEPREFIX points at
  a fresh folder, so every Python module (numpy's too) is compiled from source, more than a
  first run after `pip install` does; NUMBA_CACHE_DIR is fresh too, for any numba code;
* warm: the median of --warm-runs runs as users run it (the usual __pycache__ folders, the
  numba cache filled);
* synctoolbox: its own pipeline as a user would run it (its imports, its
  filter-bank audio features, pandas MIDI features, MrMsDTW at our settings),
  median of --warm-runs runs, each right after a warm run. Its onset features' numba function has no
  cache=True, so every one of its processes compiles it.

Stage times come from `--json`; "start-up" is the rest of the wall time
(interpreter, parsing, checks, writing). For synctoolbox, imports are its own
and its features column includes reading and resampling the audio. Peak RSS is each child's
own (os.wait4). The align path's imports are timed in a process of their own.

    python benchmarks/speed.py --minutes 1,4 --out results/speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "prelude"
STAGES = ("imports", "load_model", "load", "features", "dtw", "network", "postprocess", "match_check")

ALIGN_IMPORTS = """
import time
t = time.perf_counter()
import midialign.cli.app, midialign.io.writers
from midialign.aligner import import_align_path
import_align_path("dtw+crnn")
print(time.perf_counter() - t)
"""

# synctoolbox's DTW pipeline as its examples run it, at DTWConfig's settings.
SYNCTOOLBOX_PIPELINE = """
import sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd, pretty_midi, soundfile as sf, soxr
from synctoolbox.dtw.mrmsdtw import sync_via_mrmsdtw
from synctoolbox.dtw.utils import make_path_strictly_monotonic
from synctoolbox.feature.chroma import pitch_to_chroma, quantize_chroma
from synctoolbox.feature.csv_tools import df_to_pitch_features, df_to_pitch_onset_features
from synctoolbox.feature.dlnco import pitch_onset_features_to_DLNCO
from synctoolbox.feature.pitch import audio_to_pitch_features
from synctoolbox.feature.pitch_onset import audio_to_pitch_onset_features
from midialign.config import DTWConfig
t_import = time.perf_counter()
cfg, fs = DTWConfig(), 22050
fr = cfg.feature_rate
y, sr = sf.read(sys.argv[1], dtype="float64")
y = soxr.resample(y, sr, fs)
notes = [(n.start, n.end - n.start, n.pitch, n.velocity) for i in pretty_midi.PrettyMIDI(sys.argv[2]).instruments for n in i.notes]
df = pd.DataFrame(notes, columns=["start", "duration", "pitch", "velocity"]).assign(instrument="piano")
f_pitch = audio_to_pitch_features(f_audio=y, Fs=fs, feature_rate=fr, verbose=False)
f_peaks = audio_to_pitch_onset_features(f_audio=y, Fs=fs, verbose=False)
chroma_a = quantize_chroma(pitch_to_chroma(f_pitch))
dlnco_a = pitch_onset_features_to_DLNCO(f_peaks=f_peaks, feature_rate=fr, feature_sequence_length=chroma_a.shape[1])
m_pitch = df_to_pitch_features(df.copy(), feature_rate=fr)
m_peaks = df_to_pitch_onset_features(df.copy())
chroma_m = quantize_chroma(pitch_to_chroma(m_pitch))
dlnco_m = pitch_onset_features_to_DLNCO(f_peaks=m_peaks, feature_rate=fr, feature_sequence_length=chroma_m.shape[1])
t_features = time.perf_counter()
wp = sync_via_mrmsdtw(f_chroma1=chroma_m, f_onset1=dlnco_m, f_chroma2=chroma_a, f_onset2=dlnco_a, input_feature_rate=fr,
                      step_weights=np.asarray(cfg.step_weights), threshold_rec=cfg.threshold_rec, alpha=cfg.alpha,
                      win_len_smooth=np.asarray(cfg.win_len_smooth), downsamp_smooth=np.asarray(cfg.downsamp_smooth))
wp = make_path_strictly_monotonic(wp)
t_dtw = time.perf_counter()
print("TIMINGS", t_import - t0, t_features - t_import, t_dtw - t_features)
"""


def tiled_input(minutes: float, workdir: Path) -> tuple[Path, Path]:
    """The bundled example repeated to `minutes` of audio (FLAC) and its MIDI repeated alongside."""
    import numpy as np
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


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of one child process, CPU and RSS from its own rusage (os.wait4).

    CPU time (user + system) is the steadier number on a machine other processes share."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {err.read().strip()[-2000:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


def align_command(audio: Path, midi: Path, out_dir: Path, method: str) -> list[str]:
    exe = shutil.which("midialign", path=str(Path(sys.executable).parent))
    head = [exe] if exe else [sys.executable, "-m", "midialign.cli.app"]
    return head + ["align", str(audio), str(midi), "-o", str(out_dir / "aligned.mid"), "--json", str(out_dir / "summary.json"),
                   "--method", method, "-q"]


def align_run(audio: Path, midi: Path, work: Path, method: str, env: dict[str, str]) -> dict:
    wall, cpu, rss, _ = run_measured(align_command(audio, midi, work, method), env)
    summary = json.loads((work / "summary.json").read_text())
    stages = summary["timings_s"]
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss, "stages_s": stages, "startup_s": wall - stages["total"], "notes": summary["n_notes"]}


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (odd counts), so its stages add up."""
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def bench_length(minutes: float, args: argparse.Namespace, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        audio, midi = tiled_input(minutes, work)
        row: dict = {"minutes": minutes}
        run_env = dict(env, NUMBA_CACHE_DIR=str(work / "numba_cache"))
        # The cold run compiles every module into a fresh bytecode folder; the warm runs use the usual
        # __pycache__ folders, as users' processes do (a PYTHONPYCACHEPREFIX itself costs about 0.7 s).
        cold_env = dict(run_env, PYTHONPYCACHEPREFIX=str(work / "pycache"))
        if not args.skip_cold:
            row["cold"] = align_run(audio, midi, work, args.method, cold_env)
        else:  # fill the fresh numba cache without reporting the run
            align_run(audio, midi, work, args.method, run_env)
        # Warm runs and synctoolbox runs alternate, so a change in the machine's load touches both alike.
        warm, refs = [], []
        cmd = [sys.executable, "-c", SYNCTOOLBOX_PIPELINE, str(audio), str(midi)]
        for _ in range(args.warm_runs):
            warm.append(align_run(audio, midi, work, args.method, run_env))
            if not args.skip_synctoolbox:
                wall, cpu, rss, out = run_measured(cmd, env)
                imports, features, dtw = map(float, out.split("TIMINGS")[-1].split())
                refs.append({"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss, "stages_s": {"imports": imports, "features": features, "dtw": dtw}})
        row["warm"] = median_run(warm)
        row["warm_walls_s"] = [r["wall_s"] for r in warm]
        if refs:
            row["synctoolbox"] = median_run(refs)
            row["synctoolbox_walls_s"] = [r["wall_s"] for r in refs]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", nargs="+", default=["1,4,10,60"], help="lengths, comma- or space-separated (default 1,4,10,60)")
    parser.add_argument("--method", default="dtw+crnn")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm runs per length; the median is reported (default 3)")
    parser.add_argument("--skip-cold", action="store_true", help="no cold (empty numba cache) run")
    parser.add_argument("--skip-synctoolbox", action="store_true", help="no synctoolbox pipeline runs")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    minutes = [float(m) for arg in args.minutes for m in arg.split(",") if m.strip()]
    load_at_start = os.getloadavg()[0]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))

    imports = [float(run_measured([sys.executable, "-c", ALIGN_IMPORTS], env)[3]) for _ in range(3)]
    rows = []
    for m in minutes:
        rows.append(bench_length(m, args, env))
        print(f"{m:g} min done", file=sys.stderr, flush=True)
    result = {"align_path_imports_s": statistics.median(imports), "method": args.method, "cpus": os.cpu_count(),
              "load_average_1min_start": load_at_start, "load_average_1min": os.getloadavg()[0], "rows": rows}
    print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


def markdown(result: dict) -> str:
    lines = [
        "| audio min | notes | run | wall s | CPU s | start-up s | " + " | ".join(STAGES) + " | peak RSS MiB |",
        "|---:|---:|---|---:|---:|---:|" + "---:|" * len(STAGES) + "---:|",
    ]
    for row in result["rows"]:
        m = row["minutes"]
        for kind in ("cold", "warm"):
            if kind not in row:
                continue
            r = row[kind]
            stages = " | ".join(f"{r['stages_s'].get(k, 0.0):.2f}" for k in STAGES)
            lines.append(f"| {m:g} | {r['notes']} | {kind} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['startup_s']:.2f} | {stages} | {r['peak_rss_mib']:.0f} |")
        if "synctoolbox" in row:
            r = row["synctoolbox"]
            s = r["stages_s"]
            lines.append(f"| {m:g} | | synctoolbox | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | | {s['imports']:.2f} | | | {s['features']:.2f} | {s['dtw']:.2f} | | | | {r['peak_rss_mib']:.0f} |")
    lines.append("")
    summary = [f"Align-path imports: {result['align_path_imports_s']:.2f} s (median of 3 processes)."]
    for row in result["rows"]:
        parts = [f"{row['minutes']:g} min: warm {row['warm']['wall_s']:.2f} s"]
        if "cold" in row:
            parts.append(f"cold/warm {row['cold']['wall_s'] / row['warm']['wall_s']:.2f}x (CPU {row['cold']['cpu_s'] / row['warm']['cpu_s']:.2f}x)")
        if "synctoolbox" in row:
            ref = row["synctoolbox"]
            parts.append(f"warm/synctoolbox {row['warm']['wall_s'] / ref['wall_s']:.2f} (CPU {row['warm']['cpu_s'] / ref['cpu_s']:.2f})")
        summary.append(", ".join(parts) + ".")
    summary.append(f"{result['cpus']} CPUs, 1-minute load average {result['load_average_1min_start']:.1f} at the start and "
                   f"{result['load_average_1min']:.1f} at the end; method {result['method']}.")
    return "\n".join(lines + summary)


if __name__ == "__main__":
    main()
