"""The ingest step's sources: synthetic, a folder, an archive, and URIs it cannot read."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

from ganops.pipeline.events import fold, read_events
from ganops.pipeline.steps.data import IngestError, ingest
from ganops.pipeline.steps.fetchguard import DataRules

# An approver's run: no prefix to stay under (the address and symlink rules still hold).
OPEN = DataRules(anywhere=True)


def test_synthetic_then_folder_then_archive_give_one_digest(tmp_path: Path) -> None:
    events = str(tmp_path / "events")
    digest = ingest(
        source="synthetic",
        out_dir=str(tmp_path / "a"),
        image_size=32,
        seed=0,
        synthetic_n=8,
        events_dir=events,
        rules=OPEN,
    )
    assert digest.startswith("sha256:")
    assert len(list((tmp_path / "a" / "trainA").iterdir())) == 8
    assert (
        ingest(
            source=str(tmp_path / "a"),
            out_dir=str(tmp_path / "b"),
            image_size=32,
            seed=0,
            synthetic_n=0,
            events_dir="",
            rules=OPEN,
        )
        == digest
    )
    archive = shutil.make_archive(str(tmp_path / "set"), "zip", tmp_path / "a")
    assert (
        ingest(
            source=f"file://{archive}",
            out_dir=str(tmp_path / "c"),
            image_size=32,
            seed=0,
            synthetic_n=0,
            events_dir="",
            rules=OPEN,
        )
        == digest
    )
    assert fold(read_events(events)).facts["ingest"]["data_digest"] == digest


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("s3://bucket/horses", "needs the 's3fs' package in the trainer image"),
        ("gs://bucket/horses", "needs the 'gcsfs' package in the trainer image"),
    ],
)
def test_a_uri_without_its_client_says_what_to_install(
    tmp_path: Path, source: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `fsspec.registry` the attribute is a mapping proxy; the module holds the mutable dict.
    registry = importlib.import_module("fsspec.registry")._registry
    # The dev install has s3fs and gcsfs (the trainer extra): hide them, as a slim image would.
    for scheme, package in (("s3", "s3fs"), ("gs", "gcsfs")):
        monkeypatch.setitem(sys.modules, package, None)
        monkeypatch.delitem(registry, scheme, raising=False)
    events = str(tmp_path / "events")
    with pytest.raises(IngestError, match=message):
        ingest(
            source=source,
            out_dir=str(tmp_path / "out"),
            image_size=32,
            seed=0,
            synthetic_n=0,
            events_dir=events,
            rules=OPEN,
        )
    progress = fold(read_events(events))
    assert progress.failed_step == "ingest"
    assert progress.error is not None
    assert message in progress.error


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="/no/such/set is not a folder or an archive"):
        ingest(
            source="/no/such/set",
            out_dir=str(tmp_path / "out"),
            image_size=32,
            seed=0,
            synthetic_n=0,
            events_dir="",
            rules=OPEN,
        )
