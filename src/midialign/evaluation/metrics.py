"""Note-level alignment metrics.

Errors are absolute differences |estimate - reference| in seconds. A reference
note whose estimate is missing is a *miss*: its error is +inf, so it lies
outside every tolerance window and is left out of mean/median/std.

mir_eval.alignment's metrics compute the same quantities (|est - ref| <= window,
median and mean deviation), but its validation demands non-negative, monotonically
increasing timestamps with no gaps; per-note estimates of a chord are legitimately
non-monotonic and misses have no timestamp, so the arithmetic is done here with
vectorised numpy and the tests check it against mir_eval on data it accepts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..notes import Notes

TOLERANCES_MS: tuple[int, ...] = (10, 25, 50, 100)
# Times are differences of floats read from MIDI/TSV: 1.01 - 1.00 is 0.0100000000000000089,
# which must still count as "within 10 ms".
_TOL_EPS_S = 1e-9
# Stand-in cost for a nan onset in the assignment problem (finite so scipy accepts it).
_NAN_COST_S = 1e6


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class NoteErrors:
    """Absolute errors (s) of the scored notes of one or more cases; +inf marks a miss.

    onset has one entry per reference note with a finite onset; offset one per
    reference note with a finite onset and offset. n_extra counts estimate notes
    that were paired with no input note.
    """

    onset: np.ndarray
    offset: np.ndarray
    n_extra: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "onset", np.asarray(self.onset, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "offset", np.asarray(self.offset, dtype=np.float64).reshape(-1))

    @staticmethod
    def concat(parts: list["NoteErrors"]) -> "NoteErrors":
        """Pool several cases' errors, so shares and statistics weigh every note equally."""
        if not parts:
            return NoteErrors(np.zeros(0), np.zeros(0), 0)
        return NoteErrors(
            np.concatenate([p.onset for p in parts]),
            np.concatenate([p.offset for p in parts]),
            sum(p.n_extra for p in parts),
        )


def absolute_errors(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """|estimate - reference| per entry, for entries whose reference is finite.

    Reference entries that are nan (note not played) are dropped; a nan estimate
    (no estimate for that note) gives +inf, a miss.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    est = np.asarray(estimate, dtype=np.float64).reshape(-1)
    if ref.shape != est.shape:
        raise ValueError(f"reference ({ref.size}) and estimate ({est.size}) differ in length")
    keep = np.isfinite(ref)
    err = np.abs(est[keep] - ref[keep])
    err[~np.isfinite(err)] = np.inf
    return err


def onset_errors(reference: Notes, estimate_intervals: np.ndarray) -> np.ndarray:
    """Onset errors (s) of index-matched estimates; reference rows with nan onset are skipped."""
    est = np.asarray(estimate_intervals, dtype=np.float64).reshape(-1, 2)
    return absolute_errors(reference.onsets, est[:, 0])


def offset_errors(reference: Notes, estimate_intervals: np.ndarray) -> np.ndarray:
    """Offset errors (s); rows whose reference onset or offset is nan are skipped."""
    est = np.asarray(estimate_intervals, dtype=np.float64).reshape(-1, 2)
    ref_off = np.where(np.isfinite(reference.onsets), reference.offsets, np.nan)
    return absolute_errors(ref_off, est[:, 1])


def note_errors(reference: Notes, estimate_intervals: np.ndarray, n_extra: int = 0) -> NoteErrors:
    """Onset and offset errors of (n, 2) estimate intervals index-matched to the reference; nan rows are misses."""
    est = np.asarray(estimate_intervals, dtype=np.float64).reshape(-1, 2)
    if len(est) != len(reference):
        raise ValueError(f"{len(est)} estimate rows for {len(reference)} reference notes")
    return NoteErrors(onset_errors(reference, est), offset_errors(reference, est), n_extra)


def estimate_errors(reference: Notes, est: Notes, *, paired_by: Notes | None = None) -> NoteErrors:
    """Errors of an estimate against a reference whose row i is the true timing of note i.

    An estimate with the reference's pitches index by index (an aligner's own output, in
    input order) is index-matched; anything else (e.g. a MIDI re-read in canonical order,
    or with notes added or lost) is paired with pair_notes against paired_by (the input
    notes, when known; else the reference itself).
    """
    if len(est) == len(reference) and np.array_equal(est.pitches, reference.pitches):
        return note_errors(reference, est.intervals, 0)
    pairing = pair_notes(reference if paired_by is None else paired_by, est)
    n_extra = len(est) - int((pairing >= 0).sum())
    return note_errors(reference, paired_intervals(pairing, est), n_extra)


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class Scores:
    """Summary of onset and offset errors. Shares are in [0, 1]; times in ms.

    n_notes counts scored notes (reference onset not nan), misses included;
    statistics (mean/median/std) cover paired notes only, and are nan when there are none.
    """

    n_notes: int
    n_missed: int
    n_extra: int
    onset_within_10ms: float
    onset_within_25ms: float
    onset_within_50ms: float
    onset_within_100ms: float
    onset_mean_ms: float
    onset_median_ms: float
    onset_std_ms: float
    n_offsets: int
    offset_within_10ms: float
    offset_within_25ms: float
    offset_within_50ms: float
    offset_within_100ms: float
    offset_mean_ms: float
    offset_median_ms: float
    offset_std_ms: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict: nan becomes None."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _summary(err: np.ndarray) -> tuple[list[float], float, float, float]:
    if err.size == 0:
        return [math.nan] * len(TOLERANCES_MS), math.nan, math.nan, math.nan
    tol_s = np.asarray(TOLERANCES_MS, dtype=np.float64) / 1000.0 + _TOL_EPS_S
    within = (err[:, None] <= tol_s[None, :]).mean(axis=0)
    paired = err[np.isfinite(err)] * 1000.0
    if paired.size == 0:
        return [float(w) for w in within], math.nan, math.nan, math.nan
    return [float(w) for w in within], float(paired.mean()), float(np.median(paired)), float(paired.std())


def score_errors(errors: NoteErrors) -> Scores:
    fields: dict = {"n_notes": int(errors.onset.size), "n_missed": int(np.isinf(errors.onset).sum()),
                    "n_extra": int(errors.n_extra), "n_offsets": int(errors.offset.size)}
    for kind, err in (("onset", errors.onset), ("offset", errors.offset)):
        within, mean, median, std = _summary(err)
        fields.update({f"{kind}_within_{tol}ms": share for tol, share in zip(TOLERANCES_MS, within)})
        fields.update({f"{kind}_mean_ms": mean, f"{kind}_median_ms": median, f"{kind}_std_ms": std})
    return Scores(**fields)


def format_scores(scores: Scores) -> str:
    """A small fixed-width table: one row per metric, onset and offset columns."""

    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{100 * x:.1f}%"

    def ms(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.1f}"

    s = scores
    rows = [("metric", "onset", "offset"), ("notes", str(s.n_notes), str(s.n_offsets))]
    for tol in TOLERANCES_MS:
        rows.append((f"within {tol} ms", pct(getattr(s, f"onset_within_{tol}ms")), pct(getattr(s, f"offset_within_{tol}ms"))))
    rows += [
        ("mean error ms", ms(s.onset_mean_ms), ms(s.offset_mean_ms)),
        ("median error ms", ms(s.onset_median_ms), ms(s.offset_median_ms)),
        ("std error ms", ms(s.onset_std_ms), ms(s.offset_std_ms)),
        ("missed notes", str(s.n_missed), ""),
        ("extra estimate notes", str(s.n_extra), ""),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}".rstrip() for r in rows)


# ---------------------------------------------------------------- pairing


def pair_notes(input: Notes, est: Notes) -> np.ndarray:
    """For each input note, the index of its estimate note in est, or -1 when it has none.

    Pitch by pitch: when a pitch has as many estimate notes as input notes, the k-th
    input note of that pitch (by onset) goes with the k-th estimate note (by onset).
    Otherwise notes are paired to minimise the summed onset difference (Hungarian
    method); the surplus on either side stays unpaired.
    """
    from scipy.optimize import linear_sum_assignment

    pairing = np.full(len(input), -1, dtype=np.int64)
    for pitch in np.intersect1d(input.pitches, est.pitches):
        ii = np.flatnonzero(input.pitches == pitch)
        ei = np.flatnonzero(est.pitches == pitch)
        # Stable sorts keep the given order among equal onsets; nan onsets sort last.
        ii = ii[np.argsort(input.onsets[ii], kind="stable")]
        ei = ei[np.argsort(est.onsets[ei], kind="stable")]
        if len(ii) == len(ei):
            pairing[ii] = ei
            continue
        cost = np.abs(input.onsets[ii][:, None] - est.onsets[ei][None, :])
        cost[~np.isfinite(cost)] = _NAN_COST_S
        rows, cols = linear_sum_assignment(cost)
        pairing[ii[rows]] = ei[cols]
    return pairing


def paired_intervals(pairing: np.ndarray, est: Notes) -> np.ndarray:
    """(n, 2) estimate intervals in input order; nan rows where the input note is unpaired."""
    out = np.full((len(pairing), 2), np.nan)
    hit = pairing >= 0
    out[hit] = est.intervals[pairing[hit]]
    return out
