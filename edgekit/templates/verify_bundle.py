"""Check this unpacked bundle against its manifest.json (sha256 of every file) before running it.

    python3 apps/python/verify_bundle.py      # exit 0: all files match; exit 1: the first mismatch

Standard library only, so it runs on a bare board.
"""

import hashlib
import json
import sys
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[2]


def main() -> int:
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    for name, entry in sorted(manifest["files"].items()):
        path = BUNDLE / name
        if not path.is_file():
            print(f"{name} is missing", file=sys.stderr)
            return 1
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            print(f"{name} does not match its sha256", file=sys.stderr)
            return 1
    print(f"all {len(manifest['files'])} files match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
