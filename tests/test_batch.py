"""The batch runner: three tiny pairs (one broken), resuming, one model load per worker, executors."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pretty_midi
import pytest

import midialign.cli.batch as batch
from conftest import write_pair
from midialign.cli.batch import BatchConfig, find_pairs, run_batch
from midialign.cli import main


@pytest.fixture()
def pair_dir(tmp_path: Path) -> Path:
    """a and b are fine; c's audio is not audio; d.wav has no MIDI (ignored with a warning)."""
    root = tmp_path / "in"
    write_pair(root, "a", n=8, seed=1)
    write_pair(root, "b", n=10, seed=2)
    write_pair(root, "c", n=6, seed=3)
    (root / "c.wav").write_text("broken")
    (root / "d.wav").write_bytes((root / "a.wav").read_bytes())
    return root


def summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "batch_summary.csv", keep_default_na=False).set_index("name")


def test_batch_cli_runs_logs_failures_and_resumes(pair_dir: Path, tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import midialign.core.network as network

    loads = []
    real_load = network.load_model
    monkeypatch.setattr(network, "load_model", lambda path=None: loads.append(path) or real_load(path))
    monkeypatch.setattr(batch, "_ALIGNERS", {})
    out = tmp_path / "out"
    args = ["batch", str(pair_dir), "--out", str(out), "--method", "crnn", "--weights", str(tiny_weights)]

    assert main(args) == 1  # one pair failed
    cap = capsys.readouterr()
    assert len(loads) == 1  # one model load for the whole (single-worker) run
    s = summary(out)
    assert s.loc[["a", "b", "c"], "status"].tolist() == ["done", "done", "failed"]
    assert "d" not in s.index and "without a same-stem MIDI" in cap.err
    assert str(pair_dir / "c.wav") in s.loc["c", "error"] and "not a readable audio file" in s.loc["c", "error"]
    assert "c: failed:" in cap.err
    # The printed table has a row per pair.
    assert all(name in cap.out for name in ("a", "b", "c")) and "2 done, 1 failed" in cap.out
    # Outputs are read back by consumers.
    assert len(pretty_midi.PrettyMIDI(str(out / "a.mid")).instruments[0].notes) == 8
    assert json.loads((out / "b.json").read_text())["n_notes"] == 10 == int(s.loc["b", "notes"])

    # Interrupted run: one output lost. Only that pair is redone.
    b_mtime = (out / "b.mid").stat().st_mtime_ns
    (out / "a.mid").unlink()
    assert main(args) == 1
    s = summary(out)
    assert s.loc[["a", "b", "c"], "status"].tolist() == ["done", "skipped", "failed"]
    assert int(s.loc["b", "notes"]) == 10  # known from b.json
    assert (out / "a.mid").is_file() and (out / "b.mid").stat().st_mtime_ns == b_mtime


def test_keyboard_interrupt_keeps_finished_pairs(pair_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = batch.align_pair
    calls = []

    def interrupted_on_second(pair, *, out_dir, method, weights):
        calls.append(pair.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(pair, out_dir=out_dir, method=method, weights=weights)

    monkeypatch.setattr(batch, "align_pair", interrupted_on_second)
    out = tmp_path / "out"
    cfg = BatchConfig(out_dir=out, method="none", progress=False)
    pairs = [p for p in find_pairs(pair_dir) if p.name != "c"]
    with pytest.raises(KeyboardInterrupt):
        run_batch(pairs, cfg)
    assert summary(out)["status"].tolist() == ["done", "interrupted"]
    assert (out / "a.mid").is_file() and not (out / "b.mid").exists()

    monkeypatch.setattr(batch, "align_pair", real)
    res = run_batch(pairs, cfg)
    assert [r.status for r in res] == ["skipped", "done"]


def test_pairs_csv_with_names_and_relative_paths(pair_dir: Path, tmp_path: Path) -> None:
    csv_path = pair_dir / "pairs.csv"
    csv_path.write_text("audio,midi,name\na.wav,a.mid,first piece\n\nb.wav,b.mid,\n")
    pairs = find_pairs(csv_path)
    assert [(p.name, p.audio.name) for p in pairs] == [("first_piece", "a.wav"), ("b", "b.wav")]
    assert pairs[0].audio == pair_dir / "a.wav"


def test_duplicate_names_are_refused(pair_dir: Path) -> None:
    csv_path = pair_dir / "pairs.csv"
    csv_path.write_text("audio,midi,name\na.wav,a.mid,x\nb.wav,b.mid,x\n")
    with pytest.raises(ValueError, match="two pairs are named 'x'"):
        find_pairs(csv_path)


def test_out_dir_over_inputs_is_refused(pair_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (pair_dir / "a.mid").read_bytes()
    assert main(["batch", str(pair_dir), "--out", str(pair_dir), "--method", "none"]) == 1
    assert "would overwrite an input file" in capsys.readouterr().err
    assert (pair_dir / "a.mid").read_bytes() == before


def test_process_pool_jobs_2(pair_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_batch(find_pairs(pair_dir), BatchConfig(out_dir=out, method="none", jobs=2, progress=False))
    assert {r.name: r.status for r in res} == {"a": "done", "b": "done", "c": "failed"}
    assert (out / "a.mid").is_file() and (out / "b.mid").is_file()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (optional extra)")
def test_ray_executor(pair_dir: Path, tmp_path: Path, tiny_weights: Path) -> None:
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "out"
        res = run_batch(find_pairs(pair_dir), BatchConfig(out_dir=out, method="crnn", weights=tiny_weights, jobs=1, executor="ray", progress=False))
    finally:
        ray.shutdown()
    assert {r.name: r.status for r in res} == {"a": "done", "b": "done", "c": "failed"}
    assert len(pretty_midi.PrettyMIDI(str(out / "b.mid")).instruments[0].notes) == 10
