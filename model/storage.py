"""Durable storage behind a few functions: any fsspec URL (`s3://`, `gs://`, a local or PVC path).

Training checkpoints must outlive the pod that wrote them: a retried pod starts with an empty
local folder. Everything that touches fsspec lives here, so the training loop deals in URLs and
local paths only, and the protocol packages (s3fs, gcsfs) are needed only when such a URL is
used. Object stores have no rename: `mv` is a server-side copy then a delete, and the copy
appears whole, so readers never see a torn object either way.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class StorageError(Exception):
    """A durable URL cannot be read or written (one-line message)."""


def join(base: str, *parts: str) -> str:
    """`base/part/...`; each part is made safe as one key segment (no slashes, no `..`)."""
    safe = [_UNSAFE.sub("_", p).strip(".") or "_" for p in parts]
    return "/".join([base.rstrip("/"), *safe])


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise StorageError(
            f"{url}: the {exc.name or 'fsspec backend'} package is missing"
        ) from None
    except ValueError as exc:
        raise StorageError(f"{url}: {exc}") from None


def exists(url: str) -> bool:
    fs, path = _fs(url)
    fs.invalidate_cache()  # another pod may have written it since this process last looked
    return bool(fs.exists(path))


def download(url: str, local: Path) -> bool:
    """Copy `url` to `local` (atomically on this machine); False when `url` does not exist."""
    fs, path = _fs(url)
    fs.invalidate_cache()
    if not fs.exists(path):
        return False
    local.parent.mkdir(parents=True, exist_ok=True)
    # Per process: ranks sharing a folder must never write one staging file at once.
    tmp = local.with_name(f".{local.name}.{os.getpid()}.download")
    try:
        fs.get_file(path, str(tmp))
        tmp.replace(local)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def upload(local: Path, url: str) -> None:
    """Copy `local` to `url` through a temporary key, so a kill mid-copy never leaves a torn
    object at `url`: the previous one stays until the new one is whole."""
    fs, path = _fs(url)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.{time.time_ns()}.tmp"
    fs.put_file(str(local), tmp)
    try:
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm_file(tmp)


def read_text(url: str) -> str | None:
    """The text at `url`, or None when there is none."""
    fs, path = _fs(url)
    fs.invalidate_cache()
    try:
        with fs.open(path, "r") as handle:
            return str(handle.read())
    except FileNotFoundError:
        return None


def write_text(url: str, text: str, *, scratch: Path) -> None:
    """Write `text` to `url` atomically (staged in the local file `scratch`)."""
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.write_text(text)
    upload(scratch, url)


def upload_dir(local: Path, url: str) -> None:
    """Every file under `local` to the same relative keys under `url` (each one atomically)."""
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        upload(path, f"{url.rstrip('/')}/{path.relative_to(local).as_posix()}")


def folder_ages(url: str) -> dict[str, float]:
    """Each folder directly under `url` -> the unix time its newest object was written."""
    fs, path = _fs(url)
    fs.invalidate_cache()
    root = path.rstrip("/")
    if not fs.exists(root):
        return {}
    newest: dict[str, float] = {}
    for key, info in fs.find(root, detail=True).items():
        rel = str(key)[len(root) :].lstrip("/")
        if "/" not in rel:
            continue  # a file beside the folders
        folder = rel.split("/", 1)[0]
        newest[folder] = max(newest.get(folder, 0.0), _mtime(info))
    return newest


def _mtime(info: dict[str, Any]) -> float:
    """An object's modification time from fsspec's info, whatever the backend calls it
    (local: mtime; s3fs: LastModified; gcsfs: updated)."""
    from datetime import datetime

    for key in ("mtime", "LastModified", "updated", "last_modified"):
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return time.time()  # unknown: treat as fresh, never delete what cannot be dated


def remove_tree(url: str) -> None:
    fs, path = _fs(url)
    fs.rm(path, recursive=True)


def download_dir(url: str, local: Path) -> None:
    """Every object under `url` into `local`, keeping the relative paths."""
    fs, path = _fs(url)
    fs.invalidate_cache()
    root = path.rstrip("/")
    for key in fs.find(root):
        rel = str(key)[len(root) :].lstrip("/")
        if rel and not rel.endswith(".tmp"):
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(key, str(target))
