"""Copy a trained checkpoint into the package as the shipped model and record its sha256.

    python scripts/ship_weights.py runs/default/best.pt
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from midialign.core.checkpoint import file_sha256, read_checkpoint
from midialign.core.network import load_model

WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "midialign" / "weights"


def main(src: str) -> None:
    load_model(src)  # refuses anything that does not load strictly
    payload = read_checkpoint(src)
    dst = WEIGHTS / "default.pt"
    shutil.copyfile(src, dst)
    info = {
        "file": dst.name,
        "sha256": file_sha256(dst),
        "bytes": dst.stat().st_size,
        "format_version": payload["format_version"],
        "configs": payload["configs"],
        "trained": payload.get("extra", {}),
        "licence": "CC BY-NC-SA 4.0 (non-commercial; follows the training data)",
    }
    (WEIGHTS / "default.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"shipped {dst} ({info['bytes'] / 1e6:.2f} MB, sha256 {info['sha256'][:16]}...)")


if __name__ == "__main__":
    main(sys.argv[1])
