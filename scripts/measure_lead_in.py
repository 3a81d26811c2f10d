"""Measure every training timbre's lead-in (note-on to attack) over pitch and velocity into
src/midialign/training/lead_in.json, which render_timbre uses to put attacks on the labels.

    python scripts/measure_lead_in.py [TIMBRE ...]   # default: all installed training timbres

Timbres not named keep their stored table. Takes about a minute per timbre on an idle core.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from midialign.io.atomic import atomic_write_text
from midialign.training import render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("timbres", nargs="*", help="default: every installed training timbre")
    args = ap.parse_args()
    names = args.timbres or list(render.training_timbres())
    doc = json.loads(render.LEAD_IN_TABLE.read_text()) if render.LEAD_IN_TABLE.is_file() else {}
    doc.setdefault("timbres", {})
    doc["about"] = ("Lead-in (ms) from note-on to attack (first sample at 10 % of the note's peak) of isolated notes, "
                    "rendered at 44.1 kHz; rows are MIDI pitches 21-108, columns the velocities. Written by scripts/measure_lead_in.py.")
    for name in names:
        t0 = time.time()
        lead = render.measure_lead_in(name)
        doc["timbres"][name] = {"velocities": list(render.LEAD_IN_VELOCITIES), "lead_in_ms": np.round(lead * 1000, 1).tolist()}
        ms = lead * 1000
        print(f"{name}: median {np.median(ms):.2f} ms, p10 {np.percentile(ms, 10):.2f}, p90 {np.percentile(ms, 90):.2f}, "
              f"min {ms.min():.2f}, max {ms.max():.2f} ({time.time() - t0:.0f} s)", flush=True)
        atomic_write_text(render.LEAD_IN_TABLE, json.dumps(doc, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
