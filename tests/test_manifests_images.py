"""One image tag per overlay: `images:` sets the trainer's tag once, and the overlay's
`replacements` carry it to the bot's image and to the bot's GANOPS_IMAGE (what the pipeline's
pods run), so the pipeline, the server and the bot can't run different builds.

Rendered with the real `kubectl kustomize`, on the repository's overlays and on copies whose one
tag was changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.kustomize import kustomize

pytestmark = pytest.mark.slow  # renders with kubectl kustomize, runs make

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = ("dev", "production", "kserve")


def render(root: Path, overlay: str) -> list[dict[str, Any]]:
    return kustomize(root / "manifests" / "overlays" / overlay)


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "InferenceService":
        return list(spec["predictor"]["containers"])
    return list(spec.get("template", {}).get("spec", {}).get("containers", []))


def images(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Every container image, keyed by `Kind/name/container`, plus the bot's GANOPS_IMAGE."""
    found = {
        f"{d['kind']}/{d['metadata']['name']}/{c['name']}": c["image"]
        for d in docs
        for c in containers(d)
    }
    [config] = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ganops-bot-config"
    ]
    found["GANOPS_IMAGE"] = config["data"]["GANOPS_IMAGE"]
    found["GANOPS_STEPS_IMAGE"] = config["data"]["GANOPS_STEPS_IMAGE"]
    return found


def serving_image(found: dict[str, str]) -> str:
    [image] = [
        v
        for k, v in found.items()
        if k.endswith("/ganops-serving/server") or k.endswith("/kserve-container")
    ]
    return image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pipeline_serves_and_bots_one_build(overlay: str) -> None:
    found = images(render(REPO, overlay))
    served = serving_image(found)
    assert found["GANOPS_IMAGE"] == served
    tag = served.rsplit(":", 1)[1]
    assert found["Deployment/ganops-bot/bot"] == f"ghcr.io/example/ganops-bot:{tag}"
    assert found["GANOPS_STEPS_IMAGE"] == f"ghcr.io/example/ganops-steps:{tag}"
    # Nothing else runs a ganops image under another tag.
    assert {v.rsplit(":", 1)[1] for v in found.values()} == {tag}


def copy_with(tmp_path: Path, overlay: str, entries: list[dict[str, str]]) -> Path:
    """A copy of manifests/ whose overlay's `images:` is `entries`."""
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    path = tmp_path / "manifests" / "overlays" / overlay / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    assert len(kustomization["images"]) == 1, "the overlay should hold one tag"
    kustomization["images"] = entries
    path.write_text(yaml.safe_dump(kustomization))
    return tmp_path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_changing_the_one_tag_changes_every_image(tmp_path: Path, overlay: str) -> None:
    root = copy_with(
        tmp_path, overlay, [{"name": "ghcr.io/example/ganops-trainer", "newTag": "9.9.9-abc1234"}]
    )
    found = images(render(root, overlay))
    assert found["GANOPS_IMAGE"] == "ghcr.io/example/ganops-trainer:9.9.9-abc1234"
    assert found["Deployment/ganops-bot/bot"] == "ghcr.io/example/ganops-bot:9.9.9-abc1234"
    assert found["GANOPS_STEPS_IMAGE"] == "ghcr.io/example/ganops-steps:9.9.9-abc1234"
    assert {v.rsplit(":", 1)[1] for v in found.values()} == {"9.9.9-abc1234"}


def test_a_registry_with_a_port_keeps_the_names_and_one_tag(tmp_path: Path) -> None:
    # The tag is found after the image's name, not after the first ":".
    root = copy_with(
        tmp_path,
        "production",
        [
            {
                "name": "ghcr.io/example/ganops-trainer",
                "newName": "reg:5000/team/ganops-trainer",
                "newTag": "1.2.3-def5678",
            },
            {"name": "ghcr.io/example/ganops-bot", "newName": "reg:5000/team/ganops-bot"},
        ],
    )
    found = images(render(root, "production"))
    assert found["GANOPS_IMAGE"] == "reg:5000/team/ganops-trainer:1.2.3-def5678"
    assert found["Deployment/ganops-serving/server"] == "reg:5000/team/ganops-trainer:1.2.3-def5678"
    assert found["Deployment/ganops-bot/bot"] == "reg:5000/team/ganops-bot:1.2.3-def5678"


def test_a_renamed_trainer_image_fails_the_render_instead_of_splitting_builds(
    tmp_path: Path,
) -> None:
    root = copy_with(
        tmp_path,
        "production",
        [{"name": "ghcr.io/example/ganops-trainer", "newName": "reg/gan", "newTag": "1"}],
    )
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render(root, "production")
    assert "out of bounds for value reg/gan:1" in failed.value.stderr


def test_make_images_tags_with_the_version_and_the_commit() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        [make, "-s", "-n", "images", f"PYTHON={sys.executable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    built = re.findall(r"--target (\S+) -t \S+/ganops-(\S+):(\S+)", out)
    assert {(target, name) for target, name, _ in built} == {
        ("bot", "bot"), ("trainer", "trainer"), ("steps", "steps")
    }  # fmt: skip
    assert {tag for *_, tag in built} == {f"{version}-{commit}"}
