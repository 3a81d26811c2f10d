"""The numpy CRNN (core.network) against the torch one (training.model), and the torch-free checkpoint reader."""
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from midialign.config import FeatureConfig, InferenceConfig, ModelConfig
from midialign.core.checkpoint import read_checkpoint
from midialign.core.network import load_model, parameter_shapes, predict_probs, set_threads
from midialign.errors import InputError
from midialign.training.model import CRNN, load_torch_model, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = [  # (rnn, midi_input, local_head, onset_head)
    ("lstm", True, True, True),
    ("lstm", True, True, False),
    ("lstm", False, False, True),
    ("gru", True, False, False),
    ("gru", False, True, True),
    ("none", True, True, True),
    ("none", False, False, False),
]


def random_model(rnn: str, midi_input: bool, local_head: bool, onset_head: bool, seed: int = 0) -> CRNN:
    """A small torch CRNN in eval mode with random weights and BatchNorm statistics away from (0, 1)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(conv_channels=(4, 4, 8), embed_size=16, rnn_hidden=12, rnn=rnn, midi_input=midi_input,
                      local_head=local_head, local_channels=3, onset_head=onset_head, onset_channels=5)
    model = CRNN(cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def inputs(batch: int, frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random (roll, features) pair, each (batch, 88, frames) float32."""
    rng = np.random.default_rng(seed)
    return (rng.random((batch, 88, frames)) > 0.9).astype(np.float32), rng.random((batch, 88, frames)).astype(np.float32)


def torch_probs(model: CRNN, roll: np.ndarray, feats: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(model(torch.from_numpy(roll), torch.from_numpy(feats))).numpy()


@pytest.mark.parametrize("variant", VARIANTS, ids=["-".join(map(str, v)) for v in VARIANTS])
def test_numpy_forward_equals_torch(variant, tmp_path):
    model = random_model(*variant)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == parameter_shapes(model.cfg)
    save_checkpoint(tmp_path / "m.pt", model, feature_cfg=FeatureConfig())
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.model_cfg == model.cfg and loaded.model.n_outputs == model.n_outputs
    assert loaded.model.n_parameters == sum(p.numel() for p in model.parameters())
    roll, feats = inputs(2, 45)
    logits = loaded.model(roll, feats)
    assert logits.dtype == np.float32 and logits.shape == (2, model.n_outputs, 88, 45)
    assert np.abs(1 / (1 + np.exp(-logits)) - torch_probs(model, roll, feats)).max() < 1e-4
    with pytest.raises(ValueError, match="must both be"):
        loaded.model(roll, feats[..., :-1])


def reference_windowing(model: CRNN, roll: np.ndarray, feats: np.ndarray, *, win: int, hop: int) -> np.ndarray:
    """The former torch predict_probs, one window at a time: linear cross-fades over the overlaps."""
    total = roll.shape[1]
    starts = list(range(0, total - win, hop)) + [total - win]
    acc = np.zeros((model.n_outputs, 88, total))
    norm = np.zeros(total)
    for s in starts:
        w = np.ones(win)
        fade = win - hop
        ramp = (np.arange(fade) + 0.5) / fade
        if s > 0:
            w[:fade] = ramp
        if s < total - win:
            w[win - fade:] = ramp[::-1]
        acc[..., s:s + win] += torch_probs(model, roll[None, :, s:s + win], feats[None, :, s:s + win])[0] * w
        norm[s:s + win] += w
    return acc / norm


def test_predict_probs_equals_the_torch_windowing(tmp_path):
    model = random_model("lstm", True, True, True, seed=1)
    save_checkpoint(tmp_path / "m.pt", model, feature_cfg=FeatureConfig())
    net = load_model(tmp_path / "m.pt").model
    roll, feats = inputs(1, 730, seed=2)
    cfg = InferenceConfig(window_s=2.0, hop_s=1.5, batch_size=2)  # 6 windows, the last one shifted back
    expected = reference_windowing(model, roll[0], feats[0], win=200, hop=150)
    try:
        for threads in (1, 3):
            set_threads(threads)
            got = predict_probs(net, roll[0], feats[0], fps=100, cfg=cfg)
            assert got.shape == (2, 88, 730) and got.dtype == np.float32
            assert np.abs(got - expected).max() < 1e-4
    finally:
        set_threads(None)
    short = predict_probs(net, roll[0, :, :150], feats[0, :, :150], fps=100, cfg=cfg)  # one window
    assert np.abs(short - torch_probs(model, roll[:, :, :150], feats[:, :, :150])[0]).max() < 1e-4


def test_checkpoint_reader_gives_numpy_arrays_and_torch_loads_the_same_file(tmp_path):
    model = random_model("gru", True, True, False)
    save_checkpoint(tmp_path / "m.pt", model, feature_cfg=FeatureConfig(), extra={"epoch": 3, "val_loss": 0.5})
    payload = read_checkpoint(tmp_path / "m.pt")
    assert payload["extra"] == {"epoch": 3, "val_loss": 0.5}
    for key, value in model.state_dict().items():
        got = payload["state_dict"][key]
        assert got.dtype == value.numpy().dtype and np.array_equal(got, value.numpy()), key
    again = load_torch_model(tmp_path / "m.pt")  # torch.load(weights_only=True), strict
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_non_contiguous_tensor_is_rebuilt_from_its_strides(tmp_path):
    t = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    torch.save({"a": t.T, "b": t[1:, ::2], "c": torch.zeros(0, 3)}, tmp_path / "t.pt")
    got = read_checkpoint(tmp_path / "t.pt")
    assert np.array_equal(got["a"], t.T.numpy()) and np.array_equal(got["b"], t[1:, ::2].numpy())
    assert got["a"].flags.c_contiguous and got["c"].shape == (0, 3)


def _zip_with_pickle(path: Path, obj: object) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        z.writestr("archive/byteorder", "little")
    return path


def test_unreadable_and_foreign_checkpoints_raise_input_error(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, random_model("none", True, False, False), feature_cfg=FeatureConfig())
    (tmp_path / "junk.pt").write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="junk.pt: not a midialign checkpoint"):
        load_model(tmp_path / "junk.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(InputError, match="cut.pt: not a midialign checkpoint"):
        load_model(tmp_path / "cut.pt")
    evil = _zip_with_pickle(tmp_path / "evil.pt", {"format_version": 1, "configs": {}, "state_dict": {"x": os.system}})
    with pytest.raises(InputError, match=r"evil.pt: not a midialign checkpoint \(global posix.system refused\)"):
        load_model(evil)
    with pytest.raises(InputError, match="missing.pt: model weights not found"):
        load_model(tmp_path / "missing.pt")
    old = _zip_with_pickle(tmp_path / "old.pt", {"format_version": 0})
    with pytest.raises(InputError, match="old.pt: unsupported checkpoint format 0"):
        load_model(old)


def test_a_tensor_outside_its_storage_is_refused(tmp_path):
    torch.save({"a": torch.zeros(4)}, tmp_path / "t.pt")
    with zipfile.ZipFile(tmp_path / "t.pt") as z:
        files = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in files if n.endswith("/data.pkl"))
    files[pkl] = files[pkl].replace(b"K\x04\x85", b"K\x09\x85")  # size (4,) -> (9,) on a 4-element storage
    with zipfile.ZipFile(tmp_path / "bad.pt", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(InputError, match=r"bad.pt: not a midialign checkpoint \(tensor outside its storage\)"):
        read_checkpoint(tmp_path / "bad.pt")


def test_weights_that_do_not_fit_their_configs_raise_input_error(tmp_path):
    model = random_model("lstm", True, True, False)
    save_checkpoint(tmp_path / "m.pt", model, feature_cfg=FeatureConfig())
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["configs"]["model"]["rnn_hidden"] = 13
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(InputError, match=r"shape.pt: checkpoint does not match its configs \(rnn.weight_ih_l0: shape \(48, 32\), expected \(52, 32\)"):
        load_model(tmp_path / "shape.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["state_dict"]["head.bias"]
    torch.save(payload, tmp_path / "missing_key.pt")
    with pytest.raises(InputError, match=r"missing_key.pt: checkpoint does not match its configs \(Missing keys \['head.bias'\]"):
        load_model(tmp_path / "missing_key.pt")


PREDICT_WITHOUT_TORCH = """
import sys
import numpy as np
from midialign.config import InferenceConfig
from midialign.core.network import load_model, predict_probs
loaded = load_model()
rng = np.random.default_rng(0)
prob = predict_probs(loaded.model, (rng.random((88, 1500)) > 0.95).astype(np.float32),
                     rng.random((88, 1500)).astype(np.float32), fps=100, cfg=InferenceConfig())
print(prob.shape, "torch" in sys.modules)
"""


def test_the_shipped_model_predicts_without_importing_torch():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PREDICT_WITHOUT_TORCH], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "(2, 88, 1500) False"
