"""midialign: move every note of a roughly matching MIDI to where it is played in a piano recording.

    from midialign import Aligner
    result = Aligner().align("performance.wav", "score.mid")
    midialign.write_midi(result.notes, "aligned.mid")

Layers, each importing only those below it: cli -> aligner -> core -> io -> config, errors,
notes, alignment. training/ and evaluation/ build on core and io; nothing in the align path
imports them.
"""
__version__ = "0.1.0"

__all__ = ["Aligner", "Alignment", "InputError", "Notes", "align", "read_notes", "write_midi", "write_note_table"]

# Resolved lazily so `import midialign` (and `midialign --help`) does not load torch or librosa.
_EXPORTS = {
    "Aligner": "midialign.aligner",
    "align": "midialign.aligner",
    "Alignment": "midialign.alignment",
    "InputError": "midialign.errors",
    "Notes": "midialign.notes",
    "read_notes": "midialign.io.reader",
    "write_midi": "midialign.io.midi",
    "write_note_table": "midialign.io.table",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'midialign' has no attribute {name!r}")
