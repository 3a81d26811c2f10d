"""Issue 16: a wrong file, an unwritable place, a killed or interrupted run. Each test reproduces one case."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TinyPair
from midialign.cli import main
from midialign.io.atomic import write_all


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("midialign: error: ")
    return lines[0]


def forbid_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any alignment fails the test: errors must come before the work."""
    import midialign.aligner

    def no_work(*args, **kwargs):
        raise AssertionError("aligned before checking the outputs")

    monkeypatch.setattr(midialign.aligner.Aligner, "align", no_work)


# ---------------------------------------------------------------- 5. corrupt weights

def test_corrupt_weights_give_one_line_naming_the_file(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "garbage.pt"
    weights.write_bytes(b"\x80\x02 this is not a checkpoint" * 50)
    rc = main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(tmp_path / "o.mid"), "--method", "crnn", "--weights", str(weights)])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 1
    assert str(weights) in line and "not a midialign checkpoint" in line
    assert "weights_only" not in line
    assert not (tmp_path / "o.mid").exists()


# ---------------------------------------------------------------- 6. output failures

def test_unwritable_output_folder_fails_before_any_work(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod does not stop writes: a regular file where the folder should be does.
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    out = blocker / "o.mid"
    forbid_alignment(monkeypatch)
    rc = main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(out), "--method", "dtw"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 1
    assert str(out) in line and "cannot write -o" in line
    assert ".tmp" not in line  # the user's path, not a temporary file


def test_unwritable_csv_with_writable_midi_writes_nothing(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    out_dir = tmp_path / "out"
    forbid_alignment(monkeypatch)
    rc = main(["align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(out_dir / "o.mid"), "--csv", str(blocker / "o.csv"), "--method", "dtw"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 1 and str(blocker / "o.csv") in line and "--csv" in line
    assert not (out_dir / "o.mid").exists()


def test_an_output_set_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    """The writability check can be outrun (the place changes during the alignment): the set is still all or nothing."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    good = tmp_path / "out" / "o.mid"
    with pytest.raises(OSError):
        write_all({good: b"midi", blocker / "o.csv": b"csv"})
    assert not good.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # no temporary file left
