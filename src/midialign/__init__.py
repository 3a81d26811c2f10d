"""midialign: move every note of a roughly matching MIDI to where it is played in a piano recording."""
__version__ = "0.1.0"
