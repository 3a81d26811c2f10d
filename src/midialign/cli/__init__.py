"""The `midialign` command line: argparse, then the Aligner, then the writers."""
from .app import build_parser, main

__all__ = ["build_parser", "main"]
