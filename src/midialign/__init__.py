"""midialign: move every note of a roughly matching MIDI to where it is played in a piano recording.

    import midialign
    result = midialign.align("performance.wav", "score.mid")
    midialign.write_midi(result.notes, "aligned.mid")
"""
__version__ = "0.1.0"

__all__ = ["Alignment", "Notes", "align", "load_model", "read_notes", "write_midi", "write_note_table"]

# Resolved lazily so `import midialign` (and `midialign --help`) does not load torch or librosa.
_EXPORTS = {
    "Alignment": "midialign.pipeline",
    "align": "midialign.pipeline",
    "Notes": "midialign.notes",
    "read_notes": "midialign.notes",
    "write_midi": "midialign.notes",
    "write_note_table": "midialign.notes",
    "load_model": "midialign.model",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'midialign' has no attribute {name!r}")
