"""Benchmark aligners over sets of evaluation cases (see cases.py for the case format).

A failing method is scored, not skipped: its case counts as every note missed,
and the failure count and first error message go into the results.
"""
from __future__ import annotations

import json
import logging
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import InputError
from ..io.atomic import atomic_write_text
from ..notes import Notes
from .cases import Case, case_errors, is_case_dir, load_case, missed_errors
from .metrics import TOLERANCES_MS, NoteErrors, score_errors

log = logging.getLogger("midialign")

AlignFn = Callable[[Path, Path, str], Notes]


@dataclass(frozen=True)
class CaseSet:
    name: str
    cases: tuple[Case, ...]


def discover_case_set(path: str | Path) -> CaseSet:
    """A case set is a folder of case folders; a single case folder is a set of one."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: case directory not found")
    if is_case_dir(path):
        return CaseSet(str(path), (load_case(path),))
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    case_dirs = [p for p in subdirs if is_case_dir(p)]
    for p in subdirs:
        if p not in case_dirs and not p.name.startswith("."):
            log.warning("%s: not a case (needs input.mid and reference.tsv); ignored", p)
    if not case_dirs:
        raise InputError(f"{path}: no cases found (a case folder holds audio.*, input.mid, reference.tsv)")
    return CaseSet(str(path), tuple(load_case(p) for p in case_dirs))


def audio_duration_s(case: Case) -> float:
    """Recording length: meta's duration_s when given, else read from the file header."""
    dur = case.meta.get("duration_s")
    if isinstance(dur, (int, float)) and dur > 0:
        return float(dur)
    try:
        import soundfile as sf

        return float(sf.info(str(case.audio)).duration)
    except Exception:  # formats libsndfile cannot read (e.g. m4a): librosa falls back to audioread
        import librosa

        return float(librosa.get_duration(path=str(case.audio)))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _run_one(case: Case, method: str, align_fn: AlignFn) -> tuple[NoteErrors, float, str | None]:
    t0 = time.perf_counter()
    try:
        est = align_fn(case.audio, case.input_midi, method)
        if not isinstance(est, Notes):
            raise TypeError(f"align_fn returned {type(est).__name__}, not Notes")
        errors = case_errors(case, est)
        error = None
    except Exception as exc:  # any failure of a method is scored as all-missed and reported
        log.debug("%s on %s failed:\n%s", method, case.name, traceback.format_exc())
        errors = missed_errors(case)
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return errors, time.perf_counter() - t0, error


def run_bench(
    case_dirs: list[Path],
    *,
    methods: list[str],
    align_fn: AlignFn,
    out_json: Path | None = None,
    out_md: Path | None = None,
) -> dict:
    """Run every method on every case of every case set; print and write the results.

    Returns {"methods": [...], "sets": {set_name: {"n_cases", "audio_minutes",
    "methods": {method: {pooled Scores fields, "runtime_s", "runtime_s_per_audio_min",
    "n_failed", "first_error", "cases": {case_name: {Scores fields, "runtime_s", "error"}}}}}}}.
    """
    if not methods:
        raise InputError("no methods given")
    sets = [discover_case_set(p) for p in case_dirs]
    # Two sets given by different paths ending in the same name stay apart: keys are the paths.
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise InputError(f"a case set is given twice: {names}")
    durations = {(s.name, c.name): audio_duration_s(c) for s in sets for c in s.cases}

    results: dict[str, Any] = {"methods": list(methods), "tolerances_ms": list(TOLERANCES_MS), "sets": {}}
    total = sum(len(s.cases) for s in sets) * len(methods)
    # Route log lines (failure warnings) through tqdm so they do not tear the bar.
    with logging_redirect_tqdm(), tqdm(total=total, desc="bench", unit="run") as bar:
        for cs in sets:
            audio_min = sum(durations[(cs.name, c.name)] for c in cs.cases) / 60.0
            set_out: dict[str, Any] = {"n_cases": len(cs.cases), "audio_minutes": audio_min, "methods": {}}
            for method in methods:
                parts: list[NoteErrors] = []
                per_case: dict[str, Any] = {}
                runtime, failures = 0.0, []
                for case in cs.cases:
                    bar.set_postfix_str(f"{method} {case.name}")
                    errors, secs, error = _run_one(case, method, align_fn)
                    parts.append(errors)
                    runtime += secs
                    if error is not None:
                        failures.append(f"{case.name}: {error}")
                        log.warning("%s failed on %s: %s", method, case.name, error)
                    per_case[case.name] = {**score_errors(errors).to_dict(), "runtime_s": secs, "error": error}
                    bar.update(1)
                pooled = score_errors(NoteErrors.concat(parts)).to_dict()
                set_out["methods"][method] = {
                    **pooled,
                    "runtime_s": runtime,
                    "runtime_s_per_audio_min": runtime / audio_min if audio_min > 0 else None,
                    "n_failed": len(failures),
                    "first_error": failures[0] if failures else None,
                    "cases": per_case,
                }
            results["sets"][cs.name] = set_out

    results = _json_safe(results)
    md = format_markdown(results)
    print(md)
    if out_json is not None:
        atomic_write_text(out_json, json.dumps(results, indent=2, allow_nan=False) + "\n")
    if out_md is not None:
        atomic_write_text(out_md, md + "\n")
    return results


def format_markdown(results: dict) -> str:
    """One table per case set, with a failure list under it when a method failed."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    def num(x: float | None, fmt: str = ".1f") -> str:
        return "-" if x is None else format(x, fmt)

    head = ["method"] + [f"≤{t} ms %" for t in TOLERANCES_MS] + ["mean ms", "median ms", "std ms", "missed", "failed", "s / audio min"]
    blocks = []
    for set_name, s in results["sets"].items():
        lines = [
            f"### {set_name} ({s['n_cases']} cases, {s['audio_minutes']:.2f} audio min)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
        ]
        notes = []
        for method, m in s["methods"].items():
            row = [method] + [pct(m[f"onset_within_{t}ms"]) for t in TOLERANCES_MS]
            row += [num(m["onset_mean_ms"]), num(m["onset_median_ms"]), num(m["onset_std_ms"])]
            row += [f"{m['n_missed']}/{m['n_notes']}", f"{m['n_failed']}/{s['n_cases']}", num(m["runtime_s_per_audio_min"], ".2f")]
            lines.append("| " + " | ".join(row) + " |")
            if m["n_failed"]:
                notes.append(f"- **{method}** failed on {m['n_failed']}/{s['n_cases']} cases (scored as all missed); first error: {m['first_error']}")
        if notes:
            lines += [""] + notes
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
