"""Running a long job from the CLI: Ctrl-C acts at once, library warnings stay out of the user's way."""
from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import warnings
from typing import Callable, Iterator, TypeVar

log = logging.getLogger("midialign")
T = TypeVar("T")


def run_interruptibly(work: Callable[[], T]) -> T:
    """work() in a daemon thread, while the main thread waits in short steps.

    Python delivers Ctrl-C to the main thread only between bytecodes, so a long call inside C
    code (numba DTW, torch, librosa) would hold it back for seconds; a waiting main thread takes
    it at once and raises KeyboardInterrupt, and the abandoned daemon thread ends with the process.
    Whatever work() raises is raised here.
    """
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the main thread, KeyboardInterrupt included
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="midialign-work", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


@contextlib.contextmanager
def library_warnings_to_debug() -> Iterator[None]:
    """Turn warnings raised by libraries (scipy, librosa RuntimeWarnings...) into midialign debug
    messages: -v shows them, a normal run does not. midialign's own warnings go through logging."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                log.debug("%s:%d: %s: %s", w.filename, w.lineno, w.category.__name__, w.message)


class StageBar:
    """Progress of Aligner.align's stages on stderr: a live bar on a terminal, debug lines elsewhere.

    Call it as Aligner.align's progress(stage, share done); close() clears the bar.
    """

    WIDTH = 24

    def __init__(self, *, enabled: bool) -> None:
        self.live = enabled and sys.stderr.isatty()
        self.stage = ""
        self.started = time.perf_counter()

    def __call__(self, stage: str, done: float) -> None:
        if stage != self.stage:
            self.stage, self.started = stage, time.perf_counter()
            log.debug("%s...", stage)
        if self.live:
            filled = int(round(self.WIDTH * min(max(done, 0.0), 1.0)))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            # A finished stage leaves a clean line, for a warning that may follow.
            line = "" if done >= 1.0 else f"{stage:9s} [{bar}] {done:4.0%}  {time.perf_counter() - self.started:5.1f} s"
            sys.stderr.write(f"\r\033[K{line}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
