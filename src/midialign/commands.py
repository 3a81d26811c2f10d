"""Subcommands of the `midialign` CLI. Keep module-level imports light (no torch/librosa)."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("midialign")


def register_cli(sub: argparse._SubParsersAction) -> None:
    _register_align(sub)
    # -- other subcommands register below (one function each) --


# ---------------------------------------------------------------- align

def _register_align(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="align a MIDI (or score / note table) to a piano recording")
    p.add_argument("audio", help="recording: wav, flac, ogg, mp3, ...")
    p.add_argument("midi", help="MIDI, note table (.tsv/.csv) or score (.musicxml/.mei/.krn)")
    p.add_argument("-o", "--output", required=True, help="aligned MIDI to write")
    p.add_argument("--method", default="dtw+crnn", choices=["none", "dtw", "crnn", "dtw+crnn"], help="default: dtw+crnn")
    p.add_argument("--csv", help="also write a per-note CSV table")
    p.add_argument("--weights", help="model checkpoint (default: the shipped model)")
    p.set_defaults(func=_run_align)


def _run_align(args: argparse.Namespace) -> int:
    from .pipeline import align_cli

    return align_cli(args)
