"""All-or-nothing file writes: temporary files beside the targets, renamed into place only when all are ready."""
from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write data to path through a temporary file beside it and a rename."""
    write_all({Path(path): data})


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_all(files: dict[Path, bytes]) -> None:
    """Write a set of files: every one is written to a temporary file first, and none is
    renamed into place until all are ready. On failure, no temporary file is left."""
    staged: list[tuple[str, Path]] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # mkstemp makes 0600 files; give outputs the usual umask-based mode.
            os.chmod(tmp, 0o666 & ~umask)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def remove_temporaries(path: Path) -> None:
    """Remove temporary files that an interrupted write of path left beside it."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def check_writable(path: Path, option: str) -> None:
    """Raise InputError naming path and option unless a file can be written at path.

    Probes by creating (and removing) a temporary file in the target folder, so a read-only
    folder or file system is caught before any work, whoever runs it.
    """
    from ..errors import InputError

    if path.is_dir():
        raise InputError(f"{path}: is a directory ({option} needs a file name)")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"{path}: cannot write {option} here ({exc.strerror or type(exc).__name__})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{path}: cannot write {option}: the file is read-only")
