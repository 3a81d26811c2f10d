"""Issue 16: a wrong file, an unwritable place, a killed or interrupted run. Each test reproduces one case."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import midialign
import midialign.cli.batch as batch
from conftest import TinyPair, write_pair
from midialign.cli import main
from midialign.cli.batch import BatchConfig, find_pairs, run_batch
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


# ---------------------------------------------------------------- 2. orphaned workers, 9. Ctrl-C in batch

def cli_process(*args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`midialign ARGS` in a new process, importing this checkout's midialign."""
    src = str(Path(midialign.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = "import sys; from midialign.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def live_workers(pid: int) -> list[int]:
    """Pids of the live (not zombie) pool workers whose parent is pid, from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            is_worker = b"spawn_main" in (stat.parent / "cmdline").read_bytes()  # not multiprocessing's resource tracker
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and is_worker:
            kids.append(int(stat.parent.name))
    return kids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, timeout_s: float, what: str):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def batch_pairs(root: Path, count: int) -> Path:
    for i in range(count):
        write_pair(root, f"p{i}", n=8, seed=i)
    return root


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")


@needs_proc
def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    pairs = batch_pairs(tmp_path / "in", 6)
    main_proc = cli_process("batch", str(pairs), "--out", str(tmp_path / "out"), "--jobs", "2", "--method", "dtw", "-q", stderr=subprocess.DEVNULL)
    try:
        workers = wait_for(lambda: len(live_workers(main_proc.pid)) >= 2 and live_workers(main_proc.pid), 60, "two workers")
        assert main_proc.poll() is None, "the batch ended before it could be killed"
        main_proc.send_signal(signal.SIGKILL)
        main_proc.wait()
        killed = time.monotonic()
        while any(alive(w) for w in workers) and time.monotonic() - killed < 5.0:
            time.sleep(0.05)
        survivors = [w for w in workers if alive(w)]
    finally:
        main_proc.kill()
        for w in live_workers(main_proc.pid) + [w for w in locals().get("workers", []) if alive(w)]:
            os.kill(w, signal.SIGKILL)
    assert survivors == [], f"workers {survivors} outlived their killed parent by 5 s"


@needs_proc
def test_ctrl_c_stops_a_batch_within_a_second_and_keeps_a_true_summary(tmp_path: Path) -> None:
    pairs = batch_pairs(tmp_path / "in", 6)
    out = tmp_path / "out"
    main_proc = cli_process("batch", str(pairs), "--out", str(out), "--jobs", "2", "--method", "dtw", "-q")
    workers = wait_for(lambda: len(live_workers(main_proc.pid)) >= 2 and live_workers(main_proc.pid), 60, "two workers")
    time.sleep(1.0)  # the workers are busy starting up or aligning
    main_proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    try:
        rc = main_proc.wait(timeout=10)
    finally:
        main_proc.kill()
    took = time.monotonic() - t0
    assert rc == 130 and "interrupted" in main_proc.stderr.read()
    assert took < 1.0, f"SIGINT took {took:.2f} s"
    assert not any(alive(w) for w in workers)
    rows = list(csv.DictReader((out / "batch_summary.csv").open()))
    assert rows and {r["status"] for r in rows} <= {"done", "interrupted"}
    for r in rows:
        assert (r["status"] == "done") == (out / f"{r['name']}.mid").is_file(), r
    assert not list(out.glob(".*.tmp"))


def test_pairs_finished_but_unreported_at_ctrl_c_count_as_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interrupt lands after a pair's outputs were written but before its report came back."""
    pairs_dir = batch_pairs(tmp_path / "in", 3)
    real = batch.align_pair

    def finish_then_interrupt(pair, *, out_dir, method, weights):
        result = real(pair, out_dir=out_dir, method=method, weights=weights)
        if pair.name == "p1":
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(batch, "align_pair", finish_then_interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(find_pairs(pairs_dir), BatchConfig(out_dir=out, method="none", progress=False))
    rows = {r["name"]: r for r in csv.DictReader((out / "batch_summary.csv").open())}
    assert {n: r["status"] for n, r in rows.items()} == {"p0": "done", "p1": "done", "p2": "interrupted"}
    assert rows["p1"]["notes"] == "8"  # read back from its JSON
