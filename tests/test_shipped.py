"""The shipped weights: integrity, strict loading, and a golden regression on the bundled example."""
import json
from pathlib import Path

import numpy as np

from midialign.core.checkpoint import default_weights_path, file_sha256
from midialign.core.network import load_model
from midialign.io.table import read_note_table

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "prelude"
GOLDEN = Path(__file__).parent / "golden" / "prelude_dtw+crnn.tsv"


def test_shipped_weights_match_their_recorded_sha256():
    card = json.loads((default_weights_path().parent / "default.json").read_text())
    assert file_sha256(default_weights_path()) == card["sha256"]


def test_shipped_weights_load_strictly():
    loaded = load_model()  # exactly the keys and shapes of its configs
    assert loaded.feature_cfg.fps == 100 and loaded.feature_cfg.sample_rate == 16000
    assert 100_000 < loaded.model.n_parameters < 2_000_000


def test_golden_regression_on_the_bundled_example():
    """Regenerate with: python tests/test_shipped.py (only when the shipped model changes on purpose)."""
    from midialign.aligner import align

    result = align(EXAMPLE / "audio.flac", EXAMPLE / "input.mid")
    golden = read_note_table(GOLDEN, keep_order=True)
    assert np.array_equal(result.notes.pitches, golden.pitches)
    np.testing.assert_allclose(result.notes.intervals, golden.intervals, atol=0.002)


if __name__ == "__main__":
    from midialign.io.table import write_note_table
    from midialign.aligner import align

    write_note_table(align(EXAMPLE / "audio.flac", EXAMPLE / "input.mid").notes, GOLDEN)
    print(f"wrote {GOLDEN}")
