#!/usr/bin/env python3
"""Copy pinned third-party browser libraries out of their npm packages into frontend/static/vendor/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent.parent / "frontend" / "static" / "vendor"

# package name → (pinned version, files and folders to copy from inside the package, destination folder)
PACKAGES = {
    "openseadragon": ("6.1.1", ["build/openseadragon/openseadragon.min.js", "build/openseadragon/openseadragon.min.js.map",
                                "build/openseadragon/images", "LICENSE.txt"], "openseadragon"),
    "tus-js-client": ("4.3.1", ["dist/tus.min.js", "dist/tus.min.js.map", "LICENSE"], "tus-js-client"),
}


def vendor(name: str, version: str, members: list[str], dest_name: str) -> None:
    dest = VENDOR_DIR / dest_name
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", tmp],
                             check=True, capture_output=True, text=True).stdout
        tarball = Path(tmp) / json.loads(out)[0]["filename"]
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        package = Path(tmp) / "package"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for member in members:
            source = package / member
            target = dest / source.name
            shutil.copytree(source, target) if source.is_dir() else shutil.copy2(source, target)
        (dest / "VERSION").write_text(f"{name}@{version} (copied from its npm package by scripts/vendor_frontend.py)\n")
    print(f"vendored {name}@{version} into {dest.relative_to(VENDOR_DIR.parent.parent.parent)}")


def main() -> int:
    for name, (version, members, dest_name) in PACKAGES.items():
        vendor(name, version, members, dest_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
