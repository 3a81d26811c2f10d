"""The end-to-end pipeline: default method, DTW fallback for unsure notes, the Python API."""
import inspect

import numpy as np
import pytest

import midialign
from midialign.cli import build_parser
from midialign.config import FeatureConfig, InferenceConfig, ModelConfig
from midialign.aligner import Aligner, align
from midialign.core.network import LoadedModel
from midialign.core.refiner import refine
from midialign.notes import Notes


class FixedRoll:
    """Stands in for core.network.CRNN: returns a fixed probability roll whatever it is given."""

    n_outputs = 1

    def __init__(self, prob: np.ndarray) -> None:
        self.prob = np.clip(prob, 1e-4, 1 - 1e-4).astype(np.float32)

    def __call__(self, roll: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """Logits (B, 1, 88, T) for roll (B, 88, T)."""
        p = self.prob[:, : roll.shape[-1]]
        return np.broadcast_to(np.log(p / (1 - p)), (roll.shape[0], 1, *p.shape)).copy()


def _loaded(prob: np.ndarray) -> LoadedModel:
    return LoadedModel(FixedRoll(prob), ModelConfig(), FeatureConfig(), "0" * 64)


def test_default_method_is_dtw_then_crnn():
    assert inspect.signature(align).parameters["method"].default == "dtw+crnn"
    args = build_parser().parse_args(["align", "a.wav", "b.mid", "-o", "c.mid"])
    assert args.method == "dtw+crnn"


def test_unconfident_notes_keep_their_dtw_time():
    """...corrected by the shift of confident notes within anchor_window_s, where there are any."""
    notes = Notes([[1.00, 1.40], [2.00, 2.40], [3.50, 3.90]], [60, 64, 64], [64] * 3)
    prob = np.zeros((88, 500), np.float32)
    prob[60 - 21, 103:140] = 0.95  # confident detection 30 ms late
    prob[64 - 21, 224:260] = 0.5  # just at threshold and 240 ms away: low confidence
    prob[64 - 21, 374:400] = 0.5  # the same, with no confident note within 1 s
    cfg = InferenceConfig(min_confidence=0.3, passes=2)  # recentring happens between passes
    r = refine(notes, np.zeros((88, 500), np.float32), model=_loaded(prob), inference=cfg, keep_low_confidence=True)
    out, moved, conf = r.notes, r.moved, r.confidence
    assert moved.tolist() == [True, False, False]
    assert abs(out.onsets[0] - 1.03) < 0.006
    assert abs(out.onsets[1] - 2.03) < 0.006 and conf[1] < cfg.min_confidence
    assert out.onsets[2] == 3.50 and conf[2] < cfg.min_confidence


def test_a_second_pass_starts_from_the_first():
    """A network that always answers "60 at 1.03 s" moves the note once; the second pass finds it in place."""
    notes = Notes([[1.00, 1.40]], [60], [64])
    prob = np.zeros((88, 400), np.float32)
    prob[60 - 21, 103:140] = 0.95
    r = refine(notes, np.zeros((88, 400), np.float32), model=_loaded(prob), inference=InferenceConfig(passes=2), keep_low_confidence=True)
    out, moved, conf = r.notes, r.moved, r.confidence
    assert moved.tolist() == [True] and abs(out.onsets[0] - 1.03) < 0.006
    assert conf[0] > 0.9  # the last pass found it without moving it
    with pytest.raises(ValueError, match="passes"):
        InferenceConfig(passes=0)


def test_dtw_plus_crnn_equals_dtw_where_the_network_finds_nothing(tiny_pair):
    silent_net = _loaded(np.zeros((88, 2000), np.float32))
    dtw = align(tiny_pair.audio, tiny_pair.midi, method="dtw")
    both = Aligner(model=silent_net).align(tiny_pair.audio, tiny_pair.midi, method="dtw+crnn")
    np.testing.assert_array_equal(both.notes.intervals, dtw.notes.intervals)
    assert not both.moved.any()
    assert both.path is not None and both.path.shape[1] == 2
    assert {"load", "features", "dtw", "network", "postprocess"} <= set(both.timings)


def test_api_accepts_arrays_and_note_lists(tiny_pair):
    import soundfile as sf

    y, sr = sf.read(tiny_pair.audio, dtype="float32")
    stereo_44k = np.repeat(np.interp(np.arange(int(len(y) * 44100 / sr)) * sr / 44100, np.arange(len(y)), y)[:, None], 2, axis=1)
    result = midialign.align((stereo_44k, 44100), tiny_pair.notes, method="dtw")
    assert len(result.notes) == len(tiny_pair.notes)
    assert np.array_equal(result.notes.pitches, tiny_pair.notes.pitches)
    assert np.abs(result.notes.onsets - tiny_pair.notes.onsets).max() < 0.1


def test_the_low_confidence_threshold_is_the_one_used(tiny_pair):
    result = align(tiny_pair.audio, tiny_pair.midi, method="dtw", inference=InferenceConfig(min_confidence=0.6))
    summary = result.summary()
    assert summary["low_confidence_threshold"] == 0.6
    assert summary["n_low_confidence"] == len(tiny_pair.notes)  # DTW-only notes carry confidence 0.5
