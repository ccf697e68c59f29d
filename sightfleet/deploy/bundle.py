"""The code bundle: the repository as a tar.gz that instances of a stock image install at boot.

Built byte for byte the same from the same files (sorted, no times, no owners), so its name, a
hash of its bytes, changes only when the code does, and an unchanged second deploy changes nothing.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Not needed on an instance (install.sh leaves tests out as well); the local stack and its test kit run on one machine.
_LEFT_OUT = ("tests/", "benchmarks/", "devstack/", "testkit/", ".git", ".venv", ".run/")


def bundle_files(root: Path = REPO) -> list[str]:
    """The code to ship: the files git tracks (as they are in the working tree), else a walk without dotfiles.

    Never untracked files: an operator's .env or key file beside the code must not reach S3 and every instance.
    """
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"],
                                check=True, capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()
                  and not any(part.startswith(".") for part in path.relative_to(root).parts)]
    return sorted(name for name in set(listed)
                  if name and not name.startswith(_LEFT_OUT) and "__pycache__" not in name
                  and (root / name).is_file())


def build_bundle(root: Path = REPO) -> bytes:
    """The tar.gz of bundle_files, deterministic."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in bundle_files(root):
            path = root / name
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def bundle_key(data: bytes) -> str:
    """Where the bundle lives in the artefacts bucket: named by its SHA-256, which an instance checks at boot."""
    return f"bundles/sightfleet-{hashlib.sha256(data).hexdigest()}.tar.gz"


def bundle_digest(uri: str) -> str | None:
    """The SHA-256 a bundle's name (bundle_key) promises; None when the name promises none."""
    match = re.search(r"/sightfleet-([0-9a-f]{64})\.tar\.gz$", uri)
    return match.group(1) if match else None
