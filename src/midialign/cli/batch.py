"""`midialign batch`: align many (audio, MIDI) pairs, resumably, in parallel.

Per pair it writes OUT/<name>.json (summary) and then OUT/<name>.mid; the
MIDI is written last and atomically, so its presence marks a finished pair
and a rerun skips it. A failing pair is logged and recorded; the rest go on.
Each worker process (or Ray actor) loads the model once.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Literal

from ..config import AUDIO_SUFFIXES, DEFAULT_METHOD, METHODS, MIDI_SUFFIXES, PARENT_POLL_S
from ..errors import InputError
from ..io.atomic import atomic_write_text, remove_temporaries

log = logging.getLogger("midialign")

SUMMARY_NAME = "batch_summary.csv"
Status = Literal["done", "skipped", "failed", "interrupted"]


@dataclass(frozen=True)
class Pair:
    name: str
    audio: Path
    midi: Path


@dataclass(frozen=True)
class BatchConfig:
    out_dir: Path
    method: str = DEFAULT_METHOD
    weights: Path | None = None
    jobs: int = 1
    executor: Literal["local", "ray"] = "local"
    progress: bool = True


@dataclass(frozen=True)
class PairResult:
    name: str
    status: Status
    notes: int | None = None
    seconds: float = 0.0
    error: str = ""
    audio: str = ""
    midi: str = ""


# ---------------------------------------------------------------- finding pairs

def safe_name(name: str) -> str:
    """A file-name-safe name: the outputs are OUT/<name>.mid and .json."""
    cleaned = re.sub(r"[^\w.\-]+", "_", name.strip()).strip("._")
    return cleaned or "pair"


def find_pairs(source: str | Path) -> list[Pair]:
    """Pairs from a CSV (columns audio, midi[, name]) or a folder scanned for audio + same-stem MIDI."""
    source = Path(source)
    if source.is_dir():
        pairs = _scan_dir(source)
    elif source.is_file():
        pairs = _read_pairs_csv(source)
    else:
        raise InputError(f"{source}: file not found")
    if not pairs:
        raise InputError(f"{source}: no (audio, MIDI) pairs found")
    seen: dict[str, Pair] = {}
    for p in pairs:
        if p.name in seen:
            raise InputError(f"{source}: two pairs are named {p.name!r} ({seen[p.name].audio} and {p.audio}); give them distinct names")
        seen[p.name] = p
    return pairs


def _read_pairs_csv(path: Path) -> list[Pair]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    if "audio" not in cols or "midi" not in cols:
        raise InputError(f"{path}: pairs CSV needs columns audio,midi[,name] (got {list(cols) or 'no header'})")
    pairs = []
    for row in reader:
        audio, midi = (row.get(cols["audio"]) or "").strip(), (row.get(cols["midi"]) or "").strip()
        if not audio and not midi:
            continue
        if not audio or not midi:
            raise InputError(f"{path}: line {reader.line_num}: both audio and midi are needed")
        name = (row.get(cols["name"]) or "").strip() if "name" in cols else ""
        # Relative paths are relative to the CSV, so a CSV travels with its data.
        a, m = (path.parent / audio), (path.parent / midi)
        pairs.append(Pair(safe_name(name or Path(audio).stem), a, m))
    return pairs


def _scan_dir(root: Path) -> list[Pair]:
    pairs, unmatched = [], []
    for audio in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
        midi = next((m for m in sorted(audio.parent.iterdir()) if m.stem == audio.stem and m.suffix.lower() in MIDI_SUFFIXES and m.is_file()), None)
        if midi is None:
            unmatched.append(audio)
            continue
        rel = audio.relative_to(root).with_suffix("")
        pairs.append(Pair(safe_name("__".join(rel.parts)), audio, midi))
    if unmatched:
        log.warning("%s: %d audio file(s) without a same-stem MIDI skipped (e.g. %s)", root, len(unmatched), unmatched[0].name)
    return pairs


# ---------------------------------------------------------------- one pair (runs in workers)

_ALIGNERS: dict[str, object] = {}
# With --jobs 1 pairs are aligned in a daemon thread that outlives a Ctrl-C (cli.running.run_interruptibly):
# once _STOPPED is set it writes nothing more, and the summary re-checks the outputs under _WRITING.
_WRITING = threading.Lock()
_STOPPED = threading.Event()


def _worker_aligner(weights: Path | None):
    """This process's Aligner for these weights: the model loads once per worker."""
    from ..aligner import Aligner

    key = str(weights) if weights is not None else ""
    if key not in _ALIGNERS:
        _ALIGNERS[key] = Aligner(weights)
    return _ALIGNERS[key]


def _init_worker(threads: int) -> None:
    # N workers x all cores would oversubscribe the CPU.
    from ..core.network import set_threads

    set_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def _init_pool_worker(threads: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the main process stops the workers itself, at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(threads)


def die_with_parent(parent_pid: int) -> None:
    """End this process as soon as parent_pid stops being its parent (the parent died, even by SIGKILL).

    Linux: the kernel sends SIGKILL (PR_SET_PDEATHSIG; strictly, when the parent's thread that
    started the pool ends, which is the thread running the batch). Everywhere, and for a parent that
    died before that was set: a daemon thread polls the parent pid every PARENT_POLL_S seconds.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # the polling thread still applies

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="midialign-parent-watch", daemon=True).start()


def pair_outputs(out_dir: Path, pair: Pair) -> tuple[Path, Path]:
    """(MIDI, JSON) output paths of a pair."""
    return out_dir / f"{pair.name}.mid", out_dir / f"{pair.name}.json"


def align_pair(pair: Pair, *, out_dir: Path, method: str, weights: Path | None) -> PairResult:
    """Align one pair and write its outputs; never raises for a bad pair."""
    t0 = time.perf_counter()
    base = PairResult(pair.name, "failed", audio=str(pair.audio), midi=str(pair.midi))
    try:
        from ..io.atomic import atomic_write_bytes
        from ..io.writers import json_text, output_midi
        from .running import library_warnings_to_debug

        with library_warnings_to_debug():
            result = _worker_aligner(weights).align(pair.audio, pair.midi, method=method)
        mid, js = pair_outputs(out_dir, pair)
        midi = output_midi(result, pair.midi).data  # the input's tracks and meta events, at the aligned times
        with _WRITING:
            if _STOPPED.is_set():
                raise KeyboardInterrupt
            atomic_write_text(js, json_text(result, audio=pair.audio, notes=pair.midi))
            atomic_write_bytes(mid, midi)  # last: its existence means "finished"
        return replace(base, status="done", notes=len(result.notes), seconds=time.perf_counter() - t0)
    except Exception as exc:  # a bad pair must not stop the batch
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return replace(base, seconds=time.perf_counter() - t0, error=msg)


# ---------------------------------------------------------------- the runner

def _check_config(pairs: list[Pair], cfg: BatchConfig) -> None:
    if cfg.method not in METHODS:
        raise InputError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if cfg.jobs < 1:
        raise InputError(f"--jobs {cfg.jobs}: need at least 1")
    if cfg.executor not in ("local", "ray"):
        raise InputError(f"unknown executor {cfg.executor!r}; choose local or ray")
    if "crnn" in cfg.method:
        from ..core.checkpoint import default_weights_path

        weights = cfg.weights or default_weights_path()
        if not Path(weights).is_file():
            raise InputError(f"{weights}: model weights not found (method {cfg.method} needs them; pass --weights)")
    inputs = {p.audio.resolve() for p in pairs} | {p.midi.resolve() for p in pairs}
    for p in pairs:
        for out in pair_outputs(cfg.out_dir, p):
            if out.resolve() in inputs:
                raise InputError(f"{out}: --out {cfg.out_dir} would overwrite an input file; choose another --out")


def run_batch(pairs: list[Pair], cfg: BatchConfig) -> list[PairResult]:
    """Run all unfinished pairs; return one result per pair (input order) and write the summary CSV."""
    _check_config(pairs, cfg)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    _STOPPED.clear()
    results: dict[str, PairResult] = {}
    todo = []
    for p in pairs:
        mid, js = pair_outputs(cfg.out_dir, p)
        if mid.is_file():
            results[p.name] = PairResult(p.name, "skipped", _notes_from_summary(js), 0.0, "", str(p.audio), str(p.midi))
        else:
            todo.append(p)
    if results:
        log.info("%d of %d pairs already aligned in %s: skipped", len(results), len(pairs), cfg.out_dir)
    try:
        for res in _progress(_execute(todo, cfg), len(todo), cfg.progress):
            results[res.name] = res
            if res.status == "failed":
                log.error("%s: failed: %s", res.name, res.error)
    except KeyboardInterrupt:
        # A pair may have finished after its last report: its outputs, not the reports, say it is done.
        _STOPPED.set()
        with _WRITING:
            for p in todo:
                mid, js = pair_outputs(cfg.out_dir, p)
                for out in (mid, js):
                    remove_temporaries(out)  # a stopped worker may have been writing
                if p.name not in results:
                    done = mid.is_file()
                    results[p.name] = PairResult(p.name, "done" if done else "interrupted", _notes_from_summary(js) if done else None,
                                                 audio=str(p.audio), midi=str(p.midi))
        write_summary_csv([results[p.name] for p in pairs], cfg.out_dir / SUMMARY_NAME)
        raise
    ordered = [results[p.name] for p in pairs]
    write_summary_csv(ordered, cfg.out_dir / SUMMARY_NAME)
    return ordered


def _notes_from_summary(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["n_notes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _progress(results: Iterator[PairResult], total: int, enabled: bool) -> Iterator[PairResult]:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    # Log lines go through tqdm.write so they don't tear the bar.
    with logging_redirect_tqdm(loggers=[logging.root]), tqdm(total=total, unit="pair", desc="aligning", disable=not enabled or total == 0) as bar:
        for res in results:
            bar.set_postfix_str(res.name, refresh=False)
            bar.update(1)
            yield res


def _execute(todo: list[Pair], cfg: BatchConfig) -> Iterator[PairResult]:
    if not todo:
        return
    if cfg.executor == "ray":
        yield from _execute_ray(todo, cfg)
    elif cfg.jobs == 1 or len(todo) == 1:
        from .running import run_interruptibly

        for p in todo:
            yield run_interruptibly(lambda: align_pair(p, out_dir=cfg.out_dir, method=cfg.method, weights=cfg.weights))
    else:
        yield from _execute_processes(todo, cfg)


def _execute_processes(todo: list[Pair], cfg: BatchConfig) -> Iterator[PairResult]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = min(cfg.jobs, len(todo))
    # spawn, not fork: forking a process that may hold torch/OpenMP threads can deadlock.
    ex = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_pool_worker,
                             initargs=((os.cpu_count() or 1) // jobs, os.getpid()))
    try:
        futures = {ex.submit(align_pair, p, out_dir=cfg.out_dir, method=cfg.method, weights=cfg.weights): p for p in todo}
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # a worker died (e.g. out of memory): record it, go on
                yield PairResult(p.name, "failed", error=f"worker failed: {type(exc).__name__}: {exc}", audio=str(p.audio), midi=str(p.midi))
    except BaseException:  # Ctrl-C (or the consumer stopped): don't wait for the pairs in flight
        _stop_workers(ex)
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _stop_workers(ex) -> None:
    """Terminate a ProcessPoolExecutor's workers now (its public terminate_workers() arrives in Python 3.14)."""
    if hasattr(ex, "terminate_workers"):
        ex.terminate_workers()
        return
    procs = list((getattr(ex, "_processes", None) or {}).values())
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=1.0)


def _execute_ray(todo: list[Pair], cfg: BatchConfig) -> Iterator[PairResult]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise InputError("--executor ray needs Ray (pip install 'ray[default]'), or use --executor local") from None
    started = False
    if not ray.is_initialized():
        # A local instance unless RAY_ADDRESS points at a cluster.
        ray.init(num_cpus=cfg.jobs if "RAY_ADDRESS" not in os.environ else None, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        worker_cls = ray.remote(num_cpus=1)(_RayWorker)
        actors = [worker_cls.remote(cfg.out_dir, cfg.method, cfg.weights) for _ in range(min(cfg.jobs, len(todo)))]
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda actor, pair: actor.run.remote(pair), todo)
    finally:
        if started:
            ray.shutdown()


class _RayWorker:
    """One Ray actor = one model load, then many pairs."""

    def __init__(self, out_dir: Path, method: str, weights: Path | None) -> None:
        _init_worker(1)
        self.out_dir, self.method, self.weights = out_dir, method, weights

    def run(self, pair: Pair) -> PairResult:
        return align_pair(pair, out_dir=self.out_dir, method=self.method, weights=self.weights)


# ---------------------------------------------------------------- summary

SUMMARY_COLUMNS = ("name", "status", "notes", "seconds", "error")


def write_summary_csv(results: list[PairResult], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS + ("audio", "midi"))
    for r in results:
        w.writerow([r.name, r.status, "" if r.notes is None else r.notes, f"{r.seconds:.2f}", r.error, r.audio, r.midi])
    atomic_write_text(path, buf.getvalue())


def format_table(results: list[PairResult], max_error: int = 70) -> str:
    rows = [SUMMARY_COLUMNS] + [
        (r.name, r.status, "" if r.notes is None else str(r.notes), f"{r.seconds:.1f}", r.error if len(r.error) <= max_error else r.error[: max_error - 1] + "…")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(SUMMARY_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed", "interrupted")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)
