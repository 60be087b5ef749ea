from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ganops.model.bundle import BundleError, load_bundle, parse_models_uri, save_bundle, unwrap
from ganops.model.config import NetConfig, preset
from ganops.model.networks import build_generator

NET = preset("tiny", ngf=8, n_blocks=1)
DRIFT = {"threshold": 1.5, "features": ["brightness"]}


@pytest.fixture
def generator() -> nn.Module:
    return build_generator(NET, generator=torch.Generator().manual_seed(0))


def _same_outputs(a: nn.Module, b: nn.Module) -> bool:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x))


def test_bundle_folder_round_trip(tmp_path: Path, generator: nn.Module) -> None:
    meta = {"data_digest": "sha256:abc", "train": {"steps": 10}}
    out = save_bundle(tmp_path / "b", generator, NET, meta, drift_reference=DRIFT)
    doc = json.loads((out / "bundle.json").read_text())
    assert NetConfig.from_dict(doc["net"]) == NET
    assert doc["model"] == "cut"
    bundle = load_bundle(out)
    assert bundle.net == NET
    assert bundle.meta == {"model": "cut", **meta}
    assert bundle.drift_reference == DRIFT
    assert bundle.source_uri == str(out)
    assert not bundle.generator.training
    assert _same_outputs(bundle.generator, generator)
    # Saving again without a drift reference removes the stale one.
    save_bundle(out, generator, NET, meta)
    assert load_bundle(out).drift_reference is None


def test_checkpoint_file_loads(tmp_path: Path, generator: nn.Module) -> None:
    path = tmp_path / "last.pt"
    state = {"net": NET.to_dict(), "generator": generator.state_dict(), "step": 7, "opt": {}}
    torch.save(state, path)
    bundle = load_bundle(path)
    assert bundle.meta["step"] == 7
    assert bundle.version is None
    assert _same_outputs(bundle.generator, generator)


class Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.module = inner


def test_wrapped_generators_are_saved_plain(tmp_path: Path, generator: nn.Module) -> None:
    assert unwrap(Wrapper(Wrapper(generator))) is generator
    out = save_bundle(tmp_path / "w", Wrapper(generator), NET, {})
    assert _same_outputs(load_bundle(out).generator, generator)


def _error(uri: str | Path) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(uri)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_sources_give_one_line_errors(tmp_path: Path, generator: nn.Module) -> None:
    assert "no model at" in _error(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "bundle.json is missing" in _error(tmp_path / "empty")
    good = save_bundle(tmp_path / "good", generator, NET, {})
    (good / "generator.pt").write_bytes(b"\x00not torch")
    assert "not a readable weights file" in _error(good)
    good = save_bundle(tmp_path / "json", generator, NET, {})
    (good / "bundle.json").write_text("{oops")
    assert "unreadable JSON" in _error(good)
    other = dataclasses.replace(NET, ngf=16)
    mismatched = save_bundle(tmp_path / "mismatch", generator, NET, {})
    (mismatched / "bundle.json").write_text(json.dumps({"net": other.to_dict()}))
    assert "weights do not match the network config" in _error(mismatched)
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    assert "not a ganops checkpoint" in _error(tmp_path / "foreign.pt")
    torch.save({"generator": {}, "net": {"model": "pix2pix"}}, tmp_path / "unknown.pt")
    assert "unknown model" in _error(tmp_path / "unknown.pt")
    assert "bad model URI" in _error("models:/no-alias-or-version")


def test_parse_models_uri() -> None:
    assert parse_models_uri("models:/ganops-cut@champion") == ("ganops-cut", "champion", None)
    assert parse_models_uri("models:/ganops-cut/12") == ("ganops-cut", None, "12")
    with pytest.raises(BundleError):
        parse_models_uri("models:/ganops-cut/latest")
    assert NetConfig.from_dict(NET.to_dict()) == NET
