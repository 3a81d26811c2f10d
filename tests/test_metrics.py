"""Metrics, pairing, case loading and the `evaluate` command, on tiny synthetic data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import notes_from_rows, write_case
from midialign.evaluation.cases import load_case, score_case
from midialign.evaluation.metrics import absolute_errors, NoteErrors, pair_notes, score_errors
from midialign.errors import InputError
from midialign.io.midi import read_midi, write_midi


# ---------------------------------------------------------------- errors and scores


def test_absolute_errors_skip_nan_reference_and_miss_nan_estimate() -> None:
    err = absolute_errors(np.array([1.0, np.nan, 2.0, 3.0]), np.array([1.005, 7.0, np.nan, 2.96]))
    np.testing.assert_allclose(err, [0.005, np.inf, 0.04])


def test_scores_match_hand_computed_values() -> None:
    # Onset errors 5, 20, 40, 80, 200 ms and one miss; offsets 0 and 30 ms.
    onset = np.array([0.005, 0.020, 0.040, 0.080, 0.200, np.inf])
    s = score_errors(NoteErrors(onset, np.array([0.0, 0.030]), n_extra=2))
    assert (s.n_notes, s.n_missed, s.n_extra, s.n_offsets) == (6, 1, 2, 2)
    assert s.onset_within_10ms == pytest.approx(1 / 6)
    assert s.onset_within_25ms == pytest.approx(2 / 6)
    assert s.onset_within_50ms == pytest.approx(3 / 6)
    assert s.onset_within_100ms == pytest.approx(4 / 6)
    paired = np.array([5, 20, 40, 80, 200], dtype=float)
    assert s.onset_mean_ms == pytest.approx(69.0)
    assert s.onset_median_ms == pytest.approx(40.0)
    assert s.onset_std_ms == pytest.approx(paired.std())
    assert s.offset_within_10ms == pytest.approx(0.5)
    assert s.offset_within_50ms == pytest.approx(1.0)
    assert s.offset_mean_ms == pytest.approx(15.0)


def test_window_edges_are_inclusive_despite_float_rounding() -> None:
    # 1.01 - 1.0 is a hair above 0.01 in binary; it must still count as within 10 ms.
    err = absolute_errors(np.array([1.0, 2.0]), np.array([1.01, 2.1]))
    s = score_errors(NoteErrors(err, err))
    assert err[0] > 0.01 and err[1] > 0.1  # the rounding this test is about
    assert s.onset_within_10ms == 0.5
    assert s.onset_within_100ms == 1.0


def test_scores_agree_with_mir_eval_on_monotonic_data() -> None:
    import mir_eval

    rng = np.random.default_rng(1)
    ref = np.sort(rng.uniform(0, 10, 50))
    est = ref + rng.normal(0, 0.03, 50)
    est = np.sort(np.abs(est))  # mir_eval needs non-negative, increasing estimates
    s = score_errors(NoteErrors(absolute_errors(ref, est), np.zeros(0)))
    mae, aae = mir_eval.alignment.absolute_error(ref, est)
    assert s.onset_median_ms == pytest.approx(1000 * mae)
    assert s.onset_mean_ms == pytest.approx(1000 * aae)
    for tol in (10, 25, 50, 100):
        assert getattr(s, f"onset_within_{tol}ms") == pytest.approx(mir_eval.alignment.percentage_correct(ref, est, tol / 1000))


def test_empty_and_all_missed_scores_are_json_safe() -> None:
    d = score_errors(NoteErrors(np.full(3, np.inf), np.zeros(0))).to_dict()
    assert d["n_missed"] == 3 and d["onset_within_100ms"] == 0.0
    assert d["onset_mean_ms"] is None and d["offset_within_10ms"] is None
    json.dumps(d, allow_nan=False)


# ---------------------------------------------------------------- pairing


def test_pair_notes_equal_counts_pair_by_onset_rank() -> None:
    inp = notes_from_rows([(0.0, 0.5, 60), (0.0, 0.5, 64), (1.0, 1.5, 60)])
    # Estimate listed in another order; the second 60 moved far, but rank pairing still holds.
    est = notes_from_rows([(1.9, 2.2, 60), (0.02, 0.5, 64), (0.01, 0.5, 60)])
    np.testing.assert_array_equal(pair_notes(inp, est), [2, 1, 0])


def test_pair_notes_extra_and_missing_estimates() -> None:
    inp = notes_from_rows([(0.0, 0.5, 60), (1.0, 1.5, 60), (2.0, 2.5, 60), (3.0, 3.5, 62)])
    # Pitch 60: the middle note is missing and an extra note lies near 5 s. Pitch 62: one extra.
    est = notes_from_rows([(0.01, 0.5, 60), (2.02, 2.5, 60), (5.0, 5.5, 60), (3.0, 3.5, 62), (3.5, 3.9, 62)])
    pairing = pair_notes(inp, est)
    # Three input 60s, three estimate 60s: equal counts, so rank pairing (even with the stray one).
    np.testing.assert_array_equal(pairing, [0, 1, 2, 3])

    est2 = notes_from_rows([(0.01, 0.5, 60), (2.02, 2.5, 60), (3.0, 3.5, 62), (3.5, 3.9, 62), (9.0, 9.5, 70)])
    pairing2 = pair_notes(inp, est2)
    # Pitch 60: two estimates for three inputs; Hungarian leaves the 1.0 s note unpaired.
    # Pitch 62: two estimates for one input; the nearer one (3.0 s) is taken.
    np.testing.assert_array_equal(pairing2, [0, -1, 1, 2])


# ---------------------------------------------------------------- cases


@pytest.fixture()
def case_dir(tmp_path: Path) -> Path:
    inp = notes_from_rows([(0.0, 0.4, 60), (0.5, 0.9, 62), (1.0, 1.4, 64), (1.5, 1.9, 60)])
    # Row 2 (pitch 64) was not played: nan onset and offset, excluded from scoring.
    ref = notes_from_rows([(0.01, 0.41, 60), (0.53, 0.93, 62), (np.nan, np.nan, 64), (1.6, 2.0, 60)])
    return write_case(tmp_path, inp, ref)


def test_load_case_reads_in_canonical_input_order(case_dir: Path) -> None:
    case = load_case(case_dir)
    assert case.name == "case" and case.audio.name == "audio.wav" and case.meta == {"source": "synthetic"}
    np.testing.assert_array_equal(case.input_notes.pitches, [60, 62, 64, 60])
    assert np.isnan(case.reference.onsets[2])


def test_score_case_excludes_nan_rows_and_pairs_midi_estimates(case_dir: Path, tmp_path: Path) -> None:
    case = load_case(case_dir)
    # Estimate errors: 10, 30, (unscored), 0 ms, written and re-read as MIDI like the CLI does.
    est = notes_from_rows([(0.0, 0.4, 60), (0.5, 0.9, 62), (1.2, 1.4, 64), (1.6, 2.0, 60)])
    write_midi(est, tmp_path / "est.mid")
    s = score_case(case, read_midi(tmp_path / "est.mid"))
    assert (s.n_notes, s.n_missed, s.n_extra) == (3, 0, 0)
    assert s.onset_within_10ms == pytest.approx(2 / 3)
    assert s.onset_within_50ms == pytest.approx(1.0)
    assert s.onset_mean_ms == pytest.approx(40 / 3, abs=0.1)  # MIDI ticks round times by < 0.3 ms


def test_score_case_with_extra_and_missing_estimate_notes(case_dir: Path) -> None:
    case = load_case(case_dir)
    # No estimate for the first 60 (paired to the 1.6 s one by Hungarian); an extra 70 and an extra 62.
    est = notes_from_rows([(0.5, 0.9, 62), (0.8, 1.0, 62), (1.0, 1.4, 64), (1.62, 2.0, 60), (3.0, 3.5, 70)])
    s = score_case(case, est)
    assert (s.n_notes, s.n_missed, s.n_extra) == (3, 1, 2)
    # Scored: 60@0.01 missed, 62 err 30 ms, 60@1.6 err 20 ms.
    assert s.onset_within_10ms == 0.0
    assert s.onset_within_25ms == pytest.approx(1 / 3)
    assert s.onset_within_100ms == pytest.approx(2 / 3)
    assert s.onset_mean_ms == pytest.approx(25.0)


def test_load_case_rejects_mismatched_reference(tmp_path: Path) -> None:
    inp = notes_from_rows([(0.0, 0.4, 60), (0.5, 0.9, 62)])
    d = write_case(tmp_path, inp, notes_from_rows([(0.0, 0.4, 60)]), name="short")
    with pytest.raises(ValueError, match="1 rows but input.mid has 2 notes"):
        load_case(d)
    d = write_case(tmp_path, inp, notes_from_rows([(0.0, 0.4, 60), (0.5, 0.9, 63)]), name="pitch")
    with pytest.raises(ValueError, match="row 1, reference 63 vs input 62"):
        load_case(d)
    with pytest.raises(InputError, match="not found"):
        load_case(tmp_path / "nope")


# ---------------------------------------------------------------- CLI


def test_evaluate_cli_writes_json(case_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from midialign.cli import main

    est = notes_from_rows([(0.01, 0.41, 60), (0.53, 0.93, 62), (1.0, 1.4, 64), (1.6, 2.0, 60)])
    write_midi(est, tmp_path / "est.mid")
    out = tmp_path / "out" / "scores.json"
    assert main(["evaluate", str(case_dir), str(tmp_path / "est.mid"), "--json", str(out)]) == 0
    assert "within 10 ms" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["case"] == "case"
    assert doc["scores"]["n_notes"] == 3 and doc["scores"]["onset_within_10ms"] == 1.0


def test_evaluate_cli_missing_case_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from midialign.cli import main

    rc = main(["evaluate", str(tmp_path / "missing"), str(tmp_path / "est.mid")])
    err = capsys.readouterr().err
    assert rc != 0
    assert len(err.strip().splitlines()) == 1 and "case directory not found" in err
