"""`midialign`: parse, run one command, turn input errors into one line. Heavy imports
(torch, librosa) happen inside commands so --help is fast."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

log = logging.getLogger("midialign")
# Packages outside `midialign align`, and the pyproject extra that installs each.
EXTRAS = {"torch": "train", "fluidsynth": "train", "pyroomacoustics": "train", "librosa": "train", "scipy": "eval",
          "mir_eval": "eval", "synctoolbox": "reference", "partitura": "score", "matplotlib": "plot", "ray": "ray"}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="midialign", description="Align a piano MIDI to its recording, note by note.")
    parser.add_argument("--version", action="version", version=f"midialign {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="print debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # commands.py keeps heavy imports inside each command, so building the parser stays fast.
    from .commands import register_cli

    register_cli(sub)
    # Accept -q/-v after the subcommand too; SUPPRESS keeps a top-level flag from being reset.
    for subparser in sub.choices.values():
        group = subparser.add_mutually_exclusive_group()
        group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only print errors")
        group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="print debug messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    # Other libraries (numba, matplotlib, partitura...) stay at WARNING, even with -v.
    logging.basicConfig(level=max(level, logging.WARNING), format="%(levelname)s: %(message)s", force=True)
    log.setLevel(level)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted")
        # Leave at once: interpreter shutdown after an interrupt, with work threads abandoned in
        # C code (torch, numba), can crash with SIGSEGV instead of exiting 130.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    except (ValueError, FileNotFoundError) as exc:  # InputError is a ValueError
        if args.verbose:
            log.exception("failed")
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"midialign: error: {msg}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # a command beyond aligning, without its extra installed
        top = (exc.name or "").partition(".")[0]
        extra = EXTRAS.get(top)
        hint = f": pip install 'midialign[{extra}]'" if extra else ""
        print(f"midialign: error: this needs the {top or exc.name} package{hint}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permission denied while writing: the user's to fix
        print(f"midialign: error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("unexpected error; this is a bug, please report it with this traceback")
        return 1


if __name__ == "__main__":
    sys.exit(main())
