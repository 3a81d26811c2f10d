"""Running a long job from the CLI: Ctrl-C acts at once, library warnings stay out of the user's way."""
from __future__ import annotations

import contextlib
import logging
import threading
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
