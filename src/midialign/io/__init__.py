"""Reading and writing files: audio, MIDI, note tables, scores and the aligner's outputs."""
