"""The ingest and validate steps: get the data into the run, then refuse bad data early."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from ganops.pipeline.events import step_scope
from ganops.pipeline.steps import snapshot
from ganops.pipeline.steps.fetchguard import (
    WEB_SCHEMES,
    DataRules,
    Resolver,
    check_local,
    check_object_uri,
    check_url,
    folder_files,
    safe_member,
    system_resolver,
    unpack,
)
from ganops.pipeline.steps.webfetch import fetch_url

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# fsspec protocol -> the package that implements it (not installed in the slim images).
_FS_PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
# Synthetic test images per domain, relative to the training images.
_TEST_FRACTION = 4


class IngestError(Exception):
    """The data source cannot be read (missing folder, missing client package...)."""


class DataValidationError(Exception):
    """The data set failed validation; the message lists every problem by file name."""


def ingest(
    *,
    source: str,
    out_dir: str,
    image_size: int,
    seed: int,
    synthetic_n: int,
    events_dir: str,
    rules: DataRules,
    captured: str = "",
    resolver: Resolver | None = None,
) -> str:
    """Materialise `source` under `out_dir` and return its content digest (the data version).

    `source` is "synthetic", a local or mounted folder (or archive), or an fsspec URI.
    `synthetic_n` is the number of training images per domain (0: the generator's default).
    `captured` (a drift retrain): served inputs that join domain A (`pipeline.captured`).
    `rules`: where data may come from (`fetchguard`), checked here for every run, approvers'
    included; a refusal fails the step with its one-line reason, which the run's card shows.
    `resolver`: host -> addresses (tests inject one; the system's by default).
    """
    with step_scope(events_dir, "ingest") as facts:
        from ganops.model.digest import dataset_digest

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        scheme = source.split("://", 1)[0].lower() if "://" in source else "file"
        if source == "synthetic":
            _synthetic(out, image_size, seed, synthetic_n)
        elif scheme in WEB_SCHEMES:
            _web(source, out, rules, resolver)
        elif scheme != "file":
            _remote(source, out, rules)
        else:
            _local(source.removeprefix("file://"), out, rules)
        if captured:
            _add_captured(out, captured, seed, facts)
        digest = dataset_digest(out)
        snap = snapshot.record(source=source, data_dir=out, digest=digest)
        facts.update(data_digest=digest, source=source, files=snap["files"])
        print(f"ingest: {source} -> {out} ({digest})", flush=True)
        return digest


def validate(
    *, data_dir: str, image_size: int, report_path: str, events_dir: str
) -> dict[str, int]:
    """Check the data set; write a Markdown report; fail naming every bad file.

    Returns the image counts per folder.

    Raises:
        DataValidationError: the data set is unusable.
    """
    with step_scope(events_dir, "validate") as facts:
        # The validator itself, not model.data: this step needs no torch.
        from ganops.model.validation import validate_dataset

        report = validate_dataset(data_dir, image_size=image_size)
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(report.to_markdown())
        for line in report.errors:
            print(f"validate: ERROR {line}", flush=True)
        for line in report.warnings:
            print(f"validate: warning {line}", flush=True)
        facts.update(counts=dict(report.counts), warnings=len(report.warnings))
        if not report.ok:
            problems = "; ".join(report.errors)
            raise DataValidationError(f"bad data, {len(report.errors)} problem(s): {problems}")
        return dict(report.counts)


def _add_captured(out: Path, captured: str, seed: int, facts: dict[str, Any]) -> None:
    from ganops.pipeline.captured import add_captured, load_specs

    try:
        counts = add_captured(out, load_specs(captured), seed=seed)
    except (ValueError, OSError) as exc:
        raise IngestError(f"captured inputs: {exc}") from None
    facts.update(captured=counts)
    print(
        f"ingest: {counts['trained']} captured inputs join trainA (x{counts['copies']}), "
        f"{counts['held_out']} held out as testA",
        flush=True,
    )


def _synthetic(out: Path, image_size: int, seed: int, synthetic_n: int) -> None:
    from ganops.model.synthetic import make_synthetic

    if synthetic_n > 0:
        n_test = max(2, synthetic_n // _TEST_FRACTION)
        make_synthetic(out, n_train=synthetic_n, n_test=n_test, image_size=image_size, seed=seed)
    else:
        make_synthetic(out, image_size=image_size, seed=seed)


def _local(source: str, out: Path, rules: DataRules) -> None:
    real = check_local(source, rules)
    if real.is_dir():
        files = list(folder_files(real))  # every file checked before the first is copied
        for src, rel in files:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    elif real.is_file() and (Path(source).name.endswith(ARCHIVE_SUFFIXES)):
        unpack(real, out, shown=source)
    else:
        raise IngestError(f"data source {source} is not a folder or an archive on this machine")


def _web(url: str, out: Path, rules: DataRules, resolver: Resolver | None) -> None:
    """An archive over http(s): fetched under the address and redirect rules, then unpacked."""
    check_url(url, rules, resolver or system_resolver)  # refusals first, whatever the name
    name = PurePosixPath(urlsplit(url).path).name
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise IngestError(f"{url}: over http(s), data must be a .zip or .tar(.gz) archive")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        fetch_url(url, local, rules=rules, resolver=resolver or system_resolver)
        unpack(local, out, shown=url)


def _remote(uri: str, out: Path, rules: DataRules) -> None:
    """Copy a folder or an archive from an fsspec URI (s3://, gs://...)."""
    uri = check_object_uri(uri, rules)
    scheme = uri.split("://", 1)[0].lower()
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
    except ImportError as exc:
        package = _FS_PACKAGES.get(scheme, exc.name or "an fsspec backend")
        raise IngestError(
            f"reading {scheme}:// data needs the {package!r} package in the trainer image "
            f"(pip install {package})"
        ) from None
    except ValueError as exc:
        raise IngestError(f"cannot read {uri}: {exc}") from None
    if uri.endswith(ARCHIVE_SUFFIXES):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            fs.get(path, str(local))
            unpack(local, out, shown=uri)
        return
    if not fs.isdir(path):
        raise IngestError(f"{uri} is not a folder (or a .zip/.tar.gz archive)")
    root = path.rstrip("/")
    keys = [(key, str(key)[len(root) :].lstrip("/")) for key in fs.find(root)]
    for _, rel in keys:  # a key may hold '..': every one is checked before any is copied
        safe_member(rel, uri)
    for key, rel in keys:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(out / rel))
