"""The steps that load no network run on the slim `steps` image (GANOPS_STEPS_IMAGE, the
Dockerfile's `steps` target, no torch): the compiled pipeline names it for exactly those
tasks, and what their bodies import and run works with torch made unimportable."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from ganops.pipeline import captured, components
from ganops.pipeline.ct_pipeline import compile_pipeline
from ganops.pipeline.placement import Placement
from ganops.pipeline.steps import data as steps_data

pytestmark = pytest.mark.slow  # compiles the pipeline

IMAGE, STEPS = "reg/ganops-trainer:1", "reg/ganops-steps:1"
EXECUTOR = {
    name: "exec-" + name.replace("_", "-") for name in components.Components.__annotations__
}


def _images(tmp_path: Path, placement: Placement) -> dict[str, str]:
    spec = next(
        yaml.safe_load_all(compile_pipeline(tmp_path / "ct.yaml", IMAGE, placement).read_text())
    )
    executors: dict[str, Any] = spec["deploymentSpec"]["executors"]
    return {name: executors[EXECUTOR[name]]["container"]["image"] for name in EXECUTOR}


def test_the_slim_image_runs_exactly_the_steps_that_load_no_network(tmp_path: Path) -> None:
    images = _images(tmp_path, Placement(steps_image=STEPS))
    assert {n for n, image in images.items() if image == STEPS} == {
        "ingest", "validate", "gate_pass", "gate_reject", "finalize"
    }  # fmt: skip
    assert {n for n, image in images.items() if image == IMAGE} == {"train", "evaluate", "register"}


def test_without_a_steps_image_every_step_runs_the_trainer_image(tmp_path: Path) -> None:
    assert set(_images(tmp_path, Placement()).values()) == {IMAGE}


def _body_imports(func: Any) -> list[str]:
    """The modules a component's body (or a module, with its functions') imports."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


# Run with torch unimportable: the slim steps' imports, then ingest and validate for real.
NO_TORCH = """
import importlib, json, sys
for absent in ("torch", "torchvision", "scipy"):  # the [trainer] extra, not in the slim image
    sys.modules[absent] = None  # an import of it now raises ImportError
modules, out = json.loads(sys.argv[1]), sys.argv[2]
for name in modules:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        parent, _, attr = name.rpartition(".")
        getattr(importlib.import_module(parent), attr)  # `from pkg import name`: an attribute
from ganops.pipeline.steps import data
from ganops.pipeline.steps.fetchguard import DataRules
digest = data.ingest(rules=DataRules(), source="synthetic", out_dir=out + "/ds", image_size=32,
                     seed=0, synthetic_n=8, captured="", events_dir="")
data.validate(data_dir=out + "/ds", image_size=32, report_path=out + "/report.md", events_dir="")
print(digest, "torch" in sys.modules and sys.modules["torch"] is not None)
"""


def test_the_slim_steps_import_and_run_without_torch(tmp_path: Path) -> None:
    bodies = [getattr(components, name) for name in components.SLIM_STEPS]
    # ...and what ingest imports when it runs: the data step's and a drift retrain's helpers.
    bodies += [steps_data, captured]
    modules = sorted({m for body in bodies for m in _body_imports(body)})
    assert "ganops.pipeline.steps.data" in modules
    assert "ganops.pipeline.steps.finish" in modules
    done = subprocess.run([sys.executable, "-c", NO_TORCH, json.dumps(modules), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    digest, torch_loaded = done.stdout.splitlines()[-1].split()
    assert digest.startswith("sha256:")
    assert torch_loaded == "False"
    assert (tmp_path / "report.md").is_file()


def test_the_check_catches_a_step_that_needs_torch(tmp_path: Path) -> None:
    # The same harness on a module that imports torch fails: the test above can fail.
    done = subprocess.run([sys.executable, "-c", NO_TORCH, json.dumps(["ganops.model.data"]), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "torch" in done.stderr


def test_the_steps_target_installs_no_torch() -> None:
    import tomllib

    from tests.test_dockerfile import DOCKERFILE, stage

    root = DOCKERFILE.parent
    runs = [rest for word, rest in stage(DOCKERFILE.read_text(), "steps") if word == "RUN"]
    [install] = [run for run in runs if "pip install" in run]
    assert "[steps]" in install
    assert "[trainer]" not in install
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["steps"]
    assert not [r for r in wanted if r.split("[")[0].startswith(("torch", "scipy"))]
