"""Errors that mean "the input is wrong", as opposed to a bug."""
from __future__ import annotations


class InputError(ValueError):
    """A bad user input; the CLI prints it as one line naming the file."""


class ReservedPieceError(ValueError):
    """A piece held back for final evaluation was about to enter training data."""
