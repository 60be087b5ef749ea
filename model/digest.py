"""The data set's digest: a leaf without torch, so the slim steps image can compute it
(the ingest step); `model.data` re-exports it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def dataset_digest(path: str | Path) -> str:
    """ "sha256:<hex>" over every non-hidden file's relative name and bytes, in sorted order."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    for file in files:
        name = file.relative_to(root).as_posix().encode()
        data = file.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big"))
        digest.update(data)
    return "sha256:" + digest.hexdigest()


__all__ = ["dataset_digest"]
