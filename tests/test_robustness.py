"""Issue 16: a wrong file, an unwritable place, a killed or interrupted run. Each test reproduces one case."""
from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import midialign
import midialign.cli.batch as batch
from conftest import TinyPair, write_pair
from midialign.cli import main
from midialign.cli.batch import BatchConfig, find_pairs, run_batch
from midialign.io.atomic import write_all
from midialign.io.midi import read_midi


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

def cli_process(*args: str, stderr=subprocess.PIPE, setup: str = "") -> subprocess.Popen:
    """`midialign ARGS` in a new process, importing this checkout's midialign, after running setup (Python code)."""
    src = str(Path(midialign.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    code = f"import sys\n{setup}\nfrom midialign.cli import main\nsys.exit(main())"
    # A test run started in the background inherits an ignored SIGINT, which Python would keep: restore it.
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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
    workers: list[int] = []
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
        for w in workers:  # leave nothing behind, pass or fail
            if alive(w):
                os.kill(w, signal.SIGKILL)
    assert survivors == [], f"workers {survivors} outlived their killed parent by 5 s"


@needs_proc
def test_ctrl_c_stops_a_batch_within_a_second_and_keeps_a_true_summary(tmp_path: Path) -> None:
    pairs = batch_pairs(tmp_path / "in", 40)  # a pair takes a tenth of a second: enough to be stopped midway
    out = tmp_path / "out"
    main_proc = cli_process("batch", str(pairs), "--out", str(out), "--jobs", "2", "--method", "dtw", "-q")
    workers = wait_for(lambda: len(live_workers(main_proc.pid)) >= 2 and live_workers(main_proc.pid), 60, "two workers")
    time.sleep(0.3)  # the workers are busy starting up or aligning
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


def test_a_pair_abandoned_at_ctrl_c_writes_nothing_afterwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--jobs 1 aligns in a thread that outlives the interrupt: it must not write behind the summary's back."""
    import _thread
    import threading

    import midialign.aligner

    real_align = midialign.aligner.Aligner.align

    def slow_align(self, *args, **kwargs):
        time.sleep(1.0)
        return real_align(self, *args, **kwargs)

    monkeypatch.setattr(midialign.aligner.Aligner, "align", slow_align)
    out = tmp_path / "out"
    # As in a terminal, even when pytest runs in the background (which ignores SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, _thread.interrupt_main).start()  # Ctrl-C while the first pair is aligning
        with pytest.raises(KeyboardInterrupt):
            run_batch(find_pairs(batch_pairs(tmp_path / "in", 2)), BatchConfig(out_dir=out, method="none", progress=False))
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(1.5)  # the abandoned thread has finished its alignment by now
    assert not list(out.glob("*.mid")) and not list(out.glob("*.json"))
    rows = list(csv.DictReader((out / "batch_summary.csv").open()))
    assert [r["status"] for r in rows] == ["interrupted", "interrupted"]


# ---------------------------------------------------------------- 9. Ctrl-C mid-stage, -v noise

# A feature stage that spends seconds inside one C call, where Python cannot deliver Ctrl-C.
SLOW_STAGE = """
import numpy as np
import midialign.core.features as features
def stuck_in_c(*args, **kwargs):
    open(STARTED, "w").close()
    np.linalg.eigvals(np.random.default_rng(0).random((1500, 1500)))  # about 6 s on one core
    raise AssertionError("not interrupted")
features.compute_features = stuck_in_c
"""


def test_ctrl_c_stops_align_within_a_second_even_inside_c_code(tiny_pair: TinyPair, tmp_path: Path) -> None:
    started = tmp_path / "started"
    proc = cli_process("align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(tmp_path / "o.mid"), "--method", "dtw",
                       setup=f"STARTED = {str(started)!r}\n{SLOW_STAGE}")
    try:
        wait_for(started.exists, 60, "the slow stage")
        time.sleep(0.3)  # well inside the C call
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        rc = proc.wait(timeout=20)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert rc == 130 and "interrupted" in err, err
    assert "Traceback" not in err
    assert took < 1.0, f"SIGINT took {took:.2f} s"
    assert not (tmp_path / "o.mid").exists()


def test_verbose_shows_our_debug_lines_but_not_other_libraries(tiny_pair: TinyPair, tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    import warnings

    import midialign.core.features as features

    real = features.compute_features

    def noisy_features(*args, **kwargs):
        for name in ("numba.core.ssa", "matplotlib.font_manager", "urllib3.connectionpool", "partitura"):
            logging.getLogger(name).debug("library chatter from %s", name)
        warnings.warn("invalid value encountered in divide", RuntimeWarning)  # as scipy and librosa do
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "compute_features", noisy_features)
    align = ["align", str(tiny_pair.audio), str(tiny_pair.midi), "-o", str(tmp_path / "o.mid"), "--method", "crnn", "--weights", str(tiny_weights)]
    assert main(["-v", *align]) == 0
    err = capsys.readouterr().err
    assert "library chatter" not in err
    debug = [line for line in err.splitlines() if line.startswith("DEBUG: ")]
    assert any("wrote -o" in line for line in debug), err  # ours are shown
    assert any("RuntimeWarning: invalid value" in line for line in debug), err  # library warnings only as debug

    assert main(align) == 0
    err = capsys.readouterr().err
    assert "RuntimeWarning" not in err and "DEBUG" not in err and "library chatter" not in err


# ---------------------------------------------------------------- 7. a score much longer than the audio

@pytest.mark.parametrize("method", ["none", "dtw", "dtw+crnn"])
def test_times_are_clipped_into_the_audio_with_one_warning(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str], method: str) -> None:
    import numpy as np
    import pandas as pd
    import soundfile as sf

    from conftest import SR, make_notes, synth
    from midialign.io.midi import write_midi
    from midialign.notes import Notes

    played = make_notes(12, 0)
    audio = tmp_path / "a.wav"
    sf.write(audio, synth(played, played.end_time + 0.5), SR)
    duration = sf.info(audio).duration
    n = 120  # 30 s of score for 3.6 s of audio
    on = -0.5 + 0.25 * np.arange(n)  # and it starts before 0 s
    score = Notes(np.stack([on, on + 0.15], 1), np.random.default_rng(1).choice([48, 60, 64, 67, 72], n), np.full(n, 80))
    midi = tmp_path / "long.mid"
    write_midi(score.shifted(0.5), midi)
    csv_path = tmp_path / "o.csv"
    args = ["align", str(audio), str(midi), "-o", str(tmp_path / "o.mid"), "--csv", str(csv_path), "--json", str(tmp_path / "o.json"), "--method", method]
    assert main([*args, "--weights", str(tiny_weights)] if "crnn" in method else args) == 0
    err = capsys.readouterr().err
    df = pd.read_csv(csv_path)
    assert df["onset"].min() >= 0.0 and df["offset"].max() <= duration + 1e-6
    assert (df["offset"] > df["onset"]).all()
    clipped = [line for line in err.splitlines() if "clipped into it" in line]
    assert len(clipped) == 1 and clipped[0].startswith("WARNING: ")
    count = int(clipped[0].split()[1])
    assert 0 < count <= n
    assert "clipped into it" in (tmp_path / "o.json").read_text()
    assert "Warning" not in err.replace("WARNING", "")  # no library warnings


# ---------------------------------------------------------------- 10. small gaps

KERN = "**kern\n*M4/4\n=1\n4c\n4e\n4g\n4cc\n=2\n2d\n2B\n==\n*-\n"
MEI = """<?xml version="1.0" encoding="UTF-8"?>
<mei xmlns="http://www.music-encoding.org/ns/mei" meiversion="4.0.1">
  <meiHead><fileDesc><titleStmt><title>t</title></titleStmt><pubStmt/></fileDesc></meiHead>
  <music><body><mdiv><score>
    <scoreDef meter.count="4" meter.unit="4"><staffGrp><staffDef n="1" lines="5" clef.shape="G" clef.line="2"/></staffGrp></scoreDef>
    <section>
      <measure n="1"><staff n="1"><layer n="1">
        <note xml:id="n1" pname="c" oct="4" dur="4"/><note xml:id="n2" pname="e" oct="4" dur="4"/>
        <note xml:id="n3" pname="g" oct="4" dur="4"/><note xml:id="n4" pname="c" oct="5" dur="4"/>
      </layer></staff></measure>
      <measure n="2"><staff n="1"><layer n="1">
        <note xml:id="n5" pname="d" oct="4" dur="2"/><note xml:id="n6" pname="b" oct="3" dur="2"/>
      </layer></staff></measure>
    </section>
  </score></mdiv></body></music>
</mei>
"""
MELODY_XML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1">
  <part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>
  <part id="P1">
    <measure number="1">
      <attributes><divisions>1</divisions><time><beats>4</beats><beat-type>4</beat-type></time><clef><sign>G</sign><line>2</line></clef></attributes>
      <note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>E</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>G</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>C</step><octave>5</octave></pitch><duration>1</duration><type>quarter</type></note>
    </measure>
    <measure number="2">
      <note><pitch><step>D</step><octave>4</octave></pitch><duration>2</duration><type>half</type></note>
      <note><pitch><step>B</step><octave>3</octave></pitch><duration>2</duration><type>half</type></note>
    </measure>
  </part>
</score-partwise>
"""
MXL_CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container><rootfiles><rootfile full-path="score.musicxml" media-type="application/vnd.recordare.musicxml+xml"/></rootfiles></container>
"""


def write_score(path: Path) -> Path:
    """The same six-note melody (C4 E4 G4 C5 | D4 B3) in the format path's suffix names."""
    import gzip
    import zipfile

    name = path.name.lower()
    if name.endswith(".musicxml.gz"):
        path.write_bytes(gzip.compress(MELODY_XML.encode()))
    elif name.endswith(".mxl"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("META-INF/container.xml", MXL_CONTAINER)
            z.writestr("score.musicxml", MELODY_XML)
    elif name.endswith(".krn"):
        path.write_text(KERN)
    elif name.endswith(".mei"):
        path.write_text(MEI)
    else:
        path.write_text(MELODY_XML)
    return path


# Not importorskip: a plain `import partitura` may try to download a soundfont (io.score.import_partitura avoids it).
needs_partitura = pytest.mark.skipif(importlib.util.find_spec("partitura") is None, reason="scores need partitura (optional extra)")


@needs_partitura
@pytest.mark.parametrize("name", ["s.musicxml", "s.musicxml.gz", "s.mxl", "s.mei", "s.krn"])
def test_score_formats_partitura_reads(tmp_path: Path, name: str) -> None:
    from midialign.io.reader import read_notes
    from midialign.io.score import is_score

    path = write_score(tmp_path / name)
    assert is_score(path)
    notes = read_notes(path)
    assert notes.pitches.tolist() == [60, 64, 67, 72, 62, 59]
    assert np.allclose(notes.onsets, [0.0, 0.6, 1.2, 1.8, 2.4, 3.6])


@needs_partitura
def test_gzipped_score_aligns_through_the_cli(tiny_pair: TinyPair, tmp_path: Path) -> None:
    score = write_score(tmp_path / "s.musicxml.gz")
    assert main(["align", str(tiny_pair.audio), str(score), "-o", str(tmp_path / "o.mid"), "--method", "none"]) == 0
    assert len(read_midi(tmp_path / "o.mid")) == 6


def test_csv_input_index_maps_notes_to_their_rows_when_some_are_dropped(tiny_pair: TinyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    # Two tracks; the second starts earlier. Rows 1 and 2 are out of the piano's range.
    for track in ([(60, 1.0), (10, 1.2)], [(120, 0.1), (64, 0.2), (67, 0.6)]):
        inst = pretty_midi.Instrument(program=0)
        inst.notes += [pretty_midi.Note(80, pitch, start, start + 0.15) for pitch, start in track]
        pm.instruments.append(inst)
    midi = tmp_path / "mixed.mid"
    pm.write(str(midi))
    rows = [n.pitch for inst in pretty_midi.PrettyMIDI(str(midi)).instruments for n in inst.notes]
    assert rows == [60, 10, 120, 64, 67]  # the file's rows, as pretty_midi reads them

    rc = main(["align", str(tiny_pair.audio), str(midi), "-o", str(tmp_path / "o.mid"), "--csv", str(tmp_path / "o.csv"), "--method", "none"])
    err = capsys.readouterr().err
    assert rc == 0 and "dropped 2 notes outside the piano range" in err
    df = pd.read_csv(tmp_path / "o.csv")
    assert df["pitch"].tolist() == [64, 67, 60]  # sorted by onset
    assert df["input_index"].tolist() == [3, 4, 0]


def test_input_index_of_a_note_table_is_its_data_row(tmp_path: Path) -> None:
    from midialign.io.reader import read_notes_indexed

    table = tmp_path / "in.tsv"
    table.write_text("onset\toffset\tpitch\tvelocity\n1.0\t1.2\t60\t80\n\n0.2\t0.4\t64\t80\n0.6\t0.7\t67\t80\n")
    notes, rows = read_notes_indexed(table)
    assert notes.pitches.tolist() == [64, 67, 60] and rows.tolist() == [1, 2, 0]


def test_evaluate_against_a_plain_reference_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from conftest import notes_from_rows
    from midialign.io.midi import write_midi
    from midialign.io.table import write_note_table

    reference = notes_from_rows([(0.5, 0.9, 60), (1.0, 1.4, 64), (1.5, 1.9, 67), (2.0, 2.4, 72)])
    ref = tmp_path / "ref.tsv"
    write_note_table(reference, ref)
    # 0 and 40 ms off; the third note lost; an extra note.
    estimate = notes_from_rows([(0.5, 0.9, 60), (1.04, 1.4, 64), (2.0, 2.4, 72), (2.5, 2.6, 50)])
    est = tmp_path / "est.mid"
    write_midi(estimate, est)
    out_json = tmp_path / "scores.json"
    assert main(["evaluate", "--reference", str(ref), str(est), "--json", str(out_json)]) == 0
    assert f"reference {ref}" in capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    assert doc["reference"] == str(ref)
    scores = doc["scores"]
    within = {k: v for k, v in scores.items() if "25" in k and "onset" in k}
    assert within and all(abs(v - 0.5) < 1e-6 for v in within.values()), scores  # 2 of 4 within 25 ms


def test_evaluate_needs_a_case_or_a_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["evaluate", str(tmp_path / "est.mid")])
    assert rc == 1 and "either a case folder or --reference" in capsys.readouterr().err


def test_gitignore_has_venv() -> None:
    gitignore = Path(__file__).resolve().parents[1] / ".gitignore"
    assert ".venv/" in gitignore.read_text().splitlines()


def test_long_audio_is_read_block_by_block_with_the_same_samples(tmp_path: Path) -> None:
    import soundfile as sf

    from midialign.io.audio import load_audio, prepare_audio

    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((44100 * 5 + 123, 2))).astype(np.float32)  # several blocks, a ragged end
    sf.write(tmp_path / "a.wav", stereo, 44100, subtype="FLOAT")
    got = load_audio(tmp_path / "a.wav", 16000)
    want = prepare_audio(stereo, 44100, 16000)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_align_reports_each_stage_from_start_to_end(tiny_pair: TinyPair, tiny_weights: Path) -> None:
    calls: list[tuple[str, float]] = []
    midialign.Aligner(tiny_weights).align(tiny_pair.audio, tiny_pair.midi, method="dtw+crnn", progress=lambda s, d: calls.append((s, d)))
    stages = list(dict.fromkeys(s for s, _ in calls))
    assert stages == ["read", "features", "dtw", "network", "check"]
    for stage in stages:
        done = [d for s, d in calls if s == stage]
        assert done[0] == 0.0 and done[-1] == 1.0 and done == sorted(done)


def test_an_hour_long_midi_is_written_readable_and_read_back(tmp_path: Path) -> None:
    import pretty_midi

    from midialign.io.midi import write_midi
    from midialign.notes import Notes

    on = np.array([1.0, 1800.0, 3599.0])
    notes = Notes(np.stack([on, on + 0.5], 1), np.array([60, 64, 67]), np.array([80, 80, 80]))
    write_midi(notes, tmp_path / "hour.mid")
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "hour.mid"))  # other tools' pretty_midi: under its 1e7-tick limit
    np.testing.assert_allclose([n.start for n in pm.instruments[0].notes], on, atol=1e-3)
    np.testing.assert_allclose(read_midi(tmp_path / "hour.mid").onsets, on, atol=1e-3)
