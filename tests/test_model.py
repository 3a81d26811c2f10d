"""The torch CRNN, windowed inference, post-processing and a training smoke run (tests/test_network.py: the numpy CRNN)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from midialign.config import FeatureConfig, InferenceConfig, ModelConfig, config_to_dict
from midialign.errors import InputError
from midialign.core.checkpoint import read_checkpoint
from midialign.core.network import load_model, predict_probs
from midialign.io.table import write_note_table
from midialign.notes import Notes
from midialign.core.decode import detect_onsets, match_pitch, refine_notes
from midialign.core.roll import notes_to_roll, onset_roll
from midialign.training.model import CRNN, save_checkpoint

TINY = ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16)


@pytest.mark.parametrize("rnn", ["lstm", "gru", "none"])
@pytest.mark.parametrize("midi_input", [True, False])
def test_shapes_for_every_variant(rnn, midi_input):
    torch.manual_seed(0)
    model = CRNN(ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16, rnn=rnn, midi_input=midi_input))
    x = torch.rand(2, 88, 37)
    assert model(x, x).shape == (2, 1, 88, 37)
    with pytest.raises(ValueError):
        model(torch.rand(2, 88, 37), torch.rand(2, 88, 36))


@pytest.mark.parametrize("midi_input", [True, False])
def test_onset_head_adds_an_output_channel(midi_input):
    torch.manual_seed(0)
    model = CRNN(ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16, midi_input=midi_input, onset_head=True))
    x = torch.rand(2, 88, 37)
    out = model(x, x)
    assert out.shape == (2, 2, 88, 37) and model.n_outputs == 2
    assert not torch.equal(out[:, 0], out[:, 1])


def test_blind_model_ignores_the_midi():
    torch.manual_seed(0)
    model = CRNN(ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16, midi_input=False)).eval()
    f = torch.rand(1, 88, 20)
    assert torch.equal(model(torch.zeros(1, 88, 20), f), model(torch.ones(1, 88, 20), f))


def test_masked_loss_ignores_padding():
    from midialign.training.train import masked_bce

    logits = torch.zeros(1, 88, 10)
    target = torch.zeros(1, 88, 10)
    mask = torch.ones(1, 10)
    mask[:, 5:] = 0
    base = masked_bce(logits, target, mask)
    target[:, :, 5:] = 1.0  # garbage in the padded part
    assert torch.isclose(masked_bce(logits, target, mask), base)


def _numpy_twin(model: CRNN, tmp_path: Path):
    """The numpy CRNN (core.network) with the torch model's weights, through a checkpoint file."""
    save_checkpoint(tmp_path / "twin.pt", model, feature_cfg=FeatureConfig())
    return load_model(tmp_path / "twin.pt").model


def test_windowed_inference_equals_single_pass_on_short_input(tmp_path):
    torch.manual_seed(0)
    model = CRNN(TINY).eval()
    rng = np.random.default_rng(0)
    roll = (rng.random((88, 300)) > 0.9).astype(np.float32)
    feats = rng.random((88, 300)).astype(np.float32)
    single = torch.sigmoid(model(torch.from_numpy(roll[None]), torch.from_numpy(feats[None])))[0].detach().numpy()
    windowed = predict_probs(_numpy_twin(model, tmp_path), roll, feats, fps=100, cfg=InferenceConfig(window_s=4.0, hop_s=2.0))
    np.testing.assert_allclose(windowed, single, atol=1e-5)


def test_windowed_inference_has_no_seams(tmp_path):
    """A frame-local model (no RNN) must give the single-pass answer away from the piece edges."""
    torch.manual_seed(0)
    model = CRNN(ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn="none")).eval()
    rng = np.random.default_rng(1)
    roll = (rng.random((88, 1000)) > 0.9).astype(np.float32)
    feats = rng.random((88, 1000)).astype(np.float32)
    single = torch.sigmoid(model(torch.from_numpy(roll[None]), torch.from_numpy(feats[None])))[0].detach().numpy()
    windowed = predict_probs(_numpy_twin(model, tmp_path), roll, feats, fps=100, cfg=InferenceConfig(window_s=2.0, hop_s=1.0, batch_size=3))
    assert windowed.shape == single.shape
    assert np.abs(windowed - single).max() < 0.05


def _prob_roll(segments, n=300, fps=100):
    prob = np.zeros((88, n), np.float32)
    for pitch, on, off, p in segments:
        prob[pitch - 21, int(round(on * fps)):int(round(off * fps))] = p
    return prob


def test_postprocessing_moves_notes_to_their_detections():
    notes = Notes([[0.50, 0.90], [1.00, 1.40], [1.05, 1.50]], [60, 60, 64], [64] * 3)
    prob = _prob_roll([(60, 0.53, 0.95, 0.9), (60, 1.02, 1.42, 0.9), (64, 1.10, 1.60, 0.8)])
    out = refine_notes(notes, prob, fps=100, cfg=InferenceConfig())
    np.testing.assert_allclose(out.notes.onsets, [0.53, 1.02, 1.10], atol=0.006)
    np.testing.assert_allclose(out.notes.offsets, [0.95, 1.42, 1.60], atol=0.006)
    assert out.moved.all() and (out.confidence > 0.5).all()
    with pytest.raises(ValueError, match="probabilities"):
        refine_notes(notes, np.stack([prob] * 3), fps=100, cfg=InferenceConfig())


def test_onset_peaks_give_sub_frame_onsets():
    """The soft onset target, read back by peak interpolation, keeps the onset to within a millisecond."""
    true = Notes([[0.503, 0.9], [0.7271, 0.9], [1.0, 1.3], [1.1166, 1.5]], [60, 60, 64, 72], [64] * 4)
    onsets = onset_roll(true, 100, 200)
    assert onsets.max() == pytest.approx(1.0, abs=0.01) and onsets.min() == 0.0
    frames = notes_to_roll(true, 100, 200)
    dets = sorted(detect_onsets(onsets, frames, fps=100, cfg=InferenceConfig()), key=lambda d: (d.onset, d.pitch))
    assert [d.pitch for d in dets] == [60, 60, 64, 72]
    np.testing.assert_allclose([d.onset for d in dets], true.onsets, atol=0.001)
    np.testing.assert_allclose([d.offset for d in dets], [0.72, 0.9, 1.3, 1.5], atol=0.011)


def test_postprocessing_with_an_onset_roll():
    """Two strikes of one key merged in the frame roll: the onset roll still separates them."""
    notes = Notes([[0.50, 0.70], [0.74, 1.00], [0.55, 1.0]], [60, 60, 67], [64] * 3)
    true = Notes([[0.523, 0.75], [0.768, 1.02], [0.50, 1.0]], [60, 60, 67], [64] * 3)
    probs = np.stack([_prob_roll([(60, 0.52, 1.02, 0.95), (67, 0.5, 1.0, 0.9)]), 0.9 * onset_roll(true, 100, 300)])
    probs[1, 67 - 21] = 0.0  # 67 has no onset peak: it follows its neighbours
    out = refine_notes(notes, probs, fps=100, cfg=InferenceConfig())
    assert out.moved.tolist() == [True, True, False]
    np.testing.assert_allclose(out.notes.onsets[:2], [0.523, 0.768], atol=0.0015)
    assert out.confidence[0] > 0.5


def test_postprocessing_with_a_missing_detection_follows_neighbours():
    notes = Notes([[0.50, 0.90], [0.52, 0.90], [2.0, 2.5]], [60, 67, 72], [64] * 3)
    prob = _prob_roll([(60, 0.55, 0.95, 0.9)])  # 67 and 72 not detected
    out = refine_notes(notes, prob, fps=100, cfg=InferenceConfig())
    assert out.moved.tolist() == [True, False, False]
    assert abs(out.notes.onsets[1] - 0.57) < 0.006  # takes its neighbour's +50 ms shift
    assert out.notes.onsets[2] == 2.0  # nobody near: keeps its input time
    assert out.confidence[2] == 0.0
    plain = refine_notes(notes, prob, fps=100, cfg=InferenceConfig(), follow_neighbours=False)
    assert plain.notes.onsets[1] == 0.52


@pytest.mark.parametrize("weak_at, expected_onset, moved", [(0.60, 0.60, True), (0.75, 0.57, False)])
def test_a_note_without_detection_takes_a_weak_peak_near_its_neighbours_shift(weak_at, expected_onset, moved):
    """67 has only a peak below the detection threshold: it takes it when it lies within
    weak_window_s of where the neighbours' shift put the note, and ignores it otherwise."""
    notes = Notes([[0.50, 0.90], [0.52, 0.90]], [60, 67], [64] * 2)
    true = Notes([[0.55, 0.90], [weak_at, 0.90]], [60, 67], [64] * 2)
    onsets = onset_roll(true, 100, 300)
    onsets[67 - 21] *= 0.1  # peak 0.1: under onset_threshold, over weak_onset_threshold
    probs = np.stack([_prob_roll([(60, 0.55, 0.95, 0.9)]), onsets])
    out = refine_notes(notes, probs, fps=100, cfg=InferenceConfig())
    assert out.moved.tolist() == [True, moved]
    assert abs(out.notes.onsets[1] - expected_onset) < 0.0015
    assert out.confidence[1] == pytest.approx(0.25)  # the neighbours' level either way
    # A weak peak is not offered where a matched note of the same pitch already sits.
    notes = Notes([[0.50, 0.90], [0.52, 0.90], [0.57, 0.9]], [60, 67, 67], [64] * 3)
    onsets[67 - 21] = 0.0
    onsets[67 - 21, 57:60] = [0.5, 1.0, 0.5]  # the strong 67 detection is at 0.58
    probs = np.stack([_prob_roll([(60, 0.55, 0.95, 0.9)]), onsets])
    out = refine_notes(notes, probs, fps=100, cfg=InferenceConfig())
    assert out.moved.tolist() == [True, False, True]


def test_unconfident_notes_restart_from_their_anchors_shift():
    from midialign.core.refiner import recentre

    start = Notes([[0.0, 0.3], [0.5, 0.8], [1.0, 1.3], [5.0, 5.3]], [60, 62, 64, 65], [64] * 4)
    current = start.with_times(start.intervals + np.array([[0.03], [0.05], [0.2], [0.1]]))
    out = recentre(start, current, anchors=np.array([True, True, False, False]), window_s=1.0)
    np.testing.assert_allclose(out.onsets, [0.03, 0.55, 1.04, 5.1])  # 1.0 + median(0.03, 0.05); 5.0 has no anchor near
    np.testing.assert_allclose(out.offsets - out.onsets, 0.3)


def test_postprocessing_splits_a_merged_repeated_note():
    """The network merged two strikes of 60 into one segment with a dip: both notes still find their onset."""
    notes = Notes([[0.50, 0.70], [0.74, 1.00]], [60, 60], [64, 64])
    prob = _prob_roll([(60, 0.52, 1.02, 0.95)])
    prob[60 - 21, 76] = 0.6  # a shallow dip, still above threshold
    out = refine_notes(notes, prob, fps=100, cfg=InferenceConfig())
    assert out.moved.all()
    assert abs(out.notes.onsets[0] - 0.52) < 0.006
    assert abs(out.notes.onsets[1] - 0.77) < 0.006


@pytest.mark.parametrize("frame_end, expected_offset", [(0.80, 0.80), (2.50, 0.72)])
def test_offsets_come_from_the_frame_roll_only_near_the_input_end(frame_end, expected_offset):
    """A frame roll that rings on (pedal) far past the input's end leaves the input duration."""
    notes = Notes([[0.50, 0.70]], [60], [64])
    true = Notes([[0.52, 0.72]], [60], [64])
    probs = np.stack([_prob_roll([(60, 0.52, frame_end, 0.95)]), onset_roll(true, 100, 300)])
    out = refine_notes(notes, probs, fps=100, cfg=InferenceConfig())
    assert abs(out.notes.onsets[0] - 0.52) < 0.0015
    assert abs(out.notes.offsets[0] - expected_offset) < 0.006


def test_input_offsets_are_kept_when_asked():
    """offsets="input": the onset moves, the offset stays where the input had it (but after the onset)."""
    notes = Notes([[0.50, 0.70], [1.00, 1.01]], [60, 62], [64, 64])
    true = Notes([[0.52, 0.72], [1.04, 1.20]], [60, 62], [64, 64])
    probs = np.stack([_prob_roll([(60, 0.52, 0.80, 0.95), (62, 1.04, 1.20, 0.95)]), onset_roll(true, 100, 300)])
    out = refine_notes(notes, probs, fps=100, cfg=InferenceConfig(offsets="input"))
    np.testing.assert_allclose(out.notes.onsets, [0.52, 1.04], atol=0.0015)
    assert out.notes.offsets[0] == 0.70
    assert abs(out.notes.offsets[1] - 1.05) < 0.0015  # 1.01 would end before its onset: duration kept
    with pytest.raises(ValueError, match="offsets"):
        InferenceConfig(offsets="frames")  # type: ignore[arg-type]


def test_matching_never_takes_the_neighbours_detection():
    # Two notes, one detection right between them but nearer the second: only the second takes it.
    choice = match_pitch(np.array([1.0, 1.2]), np.array([1.15]), max_shift=0.25)
    assert choice.tolist() == [-1, 0]
    # Order is preserved even when a naive nearest match would cross.
    choice = match_pitch(np.array([1.0, 1.1]), np.array([1.08, 1.12]), max_shift=0.25)
    assert choice.tolist() == [0, 1]


def test_matching_prefers_the_taller_of_two_nearby_peaks():
    # A weak peak where the input is (the network half-copying it), a strong one 40 ms later.
    onsets, peaks, heights = np.array([1.0]), np.array([1.005, 1.045]), np.array([0.25, 0.9])
    assert match_pitch(onsets, peaks, max_shift=0.25).tolist() == [0]  # distance only
    assert match_pitch(onsets, peaks, max_shift=0.25, det_strength=heights, height_weight=0.3).tolist() == [1]
    # A tall peak 150 ms away does not beat a weak one 5 ms away.
    far = np.array([1.005, 1.15])
    assert match_pitch(onsets, far, max_shift=0.25, det_strength=heights, height_weight=0.3).tolist() == [0]


def test_checkpoint_round_trip_strict(tmp_path):
    torch.manual_seed(0)
    model = CRNN(TINY)
    save_checkpoint(tmp_path / "m.pt", model, feature_cfg=FeatureConfig())
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(payload) >= {"format_version", "configs", "state_dict"}
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.model_cfg == TINY and len(loaded.sha256) == 64
    payload["state_dict"]["unexpected"] = torch.zeros(1)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="bad.pt: checkpoint does not match its configs.*[Uu]nexpected"):
        load_model(tmp_path / "bad.pt")


def _tiny_cache(root: Path, n: int = 2) -> Path:
    """A feature cache of random features and a few notes, as build_cache writes it."""
    cache = root / "cache"
    cache.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        np.save(cache / f"r{i}.npy", rng.random((88, 500)).astype(np.float16))
        notes = Notes([[0.5, 1.0], [1.5, 2.5], [3.0, 3.5]], [60, 64, 67], [64] * 3)
        write_note_table(notes, cache / f"r{i}.tsv")
        rows.append({"stem": f"r{i}", "features": f"r{i}.npy", "annotation": str(cache / f"r{i}.tsv"), "n_frames": 500})
    (cache / "manifest.json").write_text(json.dumps({"features": config_to_dict(FeatureConfig()), "recordings": rows}))
    return cache


def test_two_training_steps_lower_the_loss(tmp_path):
    from midialign.training.train import model_loss, RECIPES, sample_batch
    from midialign.training.data import load_cache

    torch.manual_seed(0)
    recipe = RECIPES["tiny"]
    recs = load_cache(_tiny_cache(tmp_path))
    batch = sample_batch(recs, np.array([0.5, 0.5]), recipe, np.random.default_rng(0))
    model = CRNN(recipe.model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = model_loss(model(batch[0], batch[1]), *batch[2:], recipe.train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[2] < losses[0]


def test_feature_augmentation_is_seeded_and_adds_a_room_tail():
    from midialign.training.train import augment_features

    feats = np.zeros((88, 100), np.float32)
    feats[40, 10:30] = 0.9  # one note, silence after frame 30
    a = augment_features(feats, np.random.default_rng(3), room=True, p_reverb=1.0)
    assert np.array_equal(a, augment_features(feats, np.random.default_rng(3), room=True, p_reverb=1.0))
    assert a.shape == feats.shape and a.dtype == np.float32 and a.min() >= 0.0
    dry = augment_features(feats, np.random.default_rng(3), room=True, p_reverb=0.0)
    assert a[40, 32:45].mean() > dry[40, 32:45].mean() + 0.1  # the tail rings on after the note
    assert abs(a[40, 12:28].mean() - dry[40, 12:28].mean()) < 0.2  # the note itself stays put


def test_fine_tuning_may_add_only_an_onset_head(tmp_path):
    from midialign.training.train import load_init

    save_checkpoint(tmp_path / "frames.pt", CRNN(TINY), feature_cfg=FeatureConfig())
    with_onsets = CRNN(ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16, onset_head=True))
    load_init(with_onsets, tmp_path / "frames.pt", torch.device("cpu"))
    assert torch.equal(with_onsets.head.weight, torch.load(tmp_path / "frames.pt", weights_only=True)["state_dict"]["head.weight"])
    with pytest.raises(ValueError, match="do not fit"):
        load_init(CRNN(ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=16, rnn="gru")), tmp_path / "frames.pt", torch.device("cpu"))


def test_train_command_is_resumable_and_deterministic(tmp_path):
    from midialign.cli import main

    cache = _tiny_cache(tmp_path)
    args = ["train", "--recipe", "tiny", "--cache", str(cache), "--val-cache", str(cache)]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    a = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_lines = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert len(log_lines) == 2  # header + one epoch
    e1 = read_checkpoint(tmp_path / "a" / "epoch1.pt")["state_dict"]  # one epoch: also the best
    assert all(np.array_equal(e1[k], a[k].numpy()) for k in a)
    # Resuming a finished run trains nothing more.
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert len((tmp_path / "a" / "log.csv").read_text().splitlines()) == 2
