"""The bench runner with a stub aligner on two tiny cases."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import notes_from_rows, write_case
from midialign.evaluation.bench import run_bench
from midialign.io.midi import read_midi
from midialign.notes import Notes


@pytest.fixture()
def case_set(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    inp = notes_from_rows([(0.0, 0.4, 60), (0.5, 0.9, 62), (1.0, 1.4, 64)])
    # Reference = input shifted by 20 ms (case a) / 60 ms (case b); case b's last note not played.
    write_case(root, inp, inp.shifted(0.02), name="a")
    ref_b = inp.shifted(0.06).intervals.copy()
    ref_b[2] = np.nan
    write_case(root, inp, inp.with_times(ref_b), name="b")
    (root / "notes.txt").write_text("not a case")  # stray files are ignored
    return root


def stub_align(audio: Path, midi: Path, method: str) -> Notes:
    notes = read_midi(midi)
    if method == "none":
        return notes
    if method == "shift":  # moves every note 20 ms later: exact on case a, 40 ms off on b
        return notes.shifted(0.02)
    raise RuntimeError(f"model for {method} exploded\nsecond line")


def test_run_bench_scores_methods_and_reports_failures(case_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_md = tmp_path / "r" / "results.json", tmp_path / "r" / "results.md"
    res = run_bench([case_set], methods=["none", "shift", "broken"], align_fn=stub_align, out_json=out_json, out_md=out_md)

    s = res["sets"][str(case_set)]
    assert s["n_cases"] == 2
    assert s["audio_minutes"] == pytest.approx(2 / 60)  # two 1 s wavs

    # Pooled over 3 + 2 scored notes.
    none = s["methods"]["none"]
    assert none["n_notes"] == 5 and none["n_missed"] == 0 and none["n_failed"] == 0
    assert none["onset_within_25ms"] == pytest.approx(3 / 5)  # case a's 20 ms errors
    assert none["onset_within_100ms"] == pytest.approx(1.0)
    assert none["onset_mean_ms"] == pytest.approx((3 * 20 + 2 * 60) / 5, abs=0.5)

    shift = s["methods"]["shift"]
    assert shift["onset_within_10ms"] == pytest.approx(3 / 5)
    assert shift["onset_within_50ms"] == pytest.approx(1.0)
    assert shift["runtime_s"] > 0 and shift["runtime_s_per_audio_min"] == pytest.approx(shift["runtime_s"] / (2 / 60))

    broken = s["methods"]["broken"]
    assert broken["n_failed"] == 2 and broken["n_missed"] == 5
    assert broken["onset_within_100ms"] == 0.0 and broken["onset_mean_ms"] is None
    assert broken["first_error"] == "a: RuntimeError: model for broken exploded"
    assert broken["cases"]["b"]["error"].startswith("RuntimeError")

    printed = capsys.readouterr().out
    assert printed.count("| broken |") == 1 and "failed on 2/2 cases" in printed
    assert json.loads(out_json.read_text()) == res
    assert "| shift | 60.0 |" in out_md.read_text()


def test_run_bench_accepts_a_single_case_dir(case_set: Path) -> None:
    res = run_bench([case_set / "a"], methods=["none"], align_fn=stub_align)
    (s,) = res["sets"].values()
    assert s["n_cases"] == 1 and s["methods"]["none"]["onset_within_25ms"] == 1.0


def test_bench_cli_with_unknown_method_fails_cleanly(case_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from midialign.cli import main

    assert main(["bench", str(case_set), "--methods", "none,bogus", "--out", str(tmp_path / "r.json")]) == 1
    assert "bogus" in capsys.readouterr().err
