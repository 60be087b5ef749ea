"""One namespace: the distribution installs `ganops` only, and the import rules of the design hold."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ganops

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # fresh processes
def test_the_three_packages_import_under_ganops() -> None:
    code = "import ganops.bot, ganops.pipeline, ganops.model; print('ok')"
    # From a folder outside the checkout, so the source tree is not on the path by accident.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True
    )
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bot", "pipeline", "model"])
def test_no_top_level_bot_pipeline_or_model_is_installed(name: str) -> None:
    code = f"import importlib.util; print(importlib.util.find_spec({name!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True
    )
    assert out.stdout.strip() == "None"


@pytest.mark.slow
def test_the_wheel_holds_ganops_alone(tmp_path: Path) -> None:
    # The wheel is what an image or a user's environment installs.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("ganops-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"ganops", f"ganops-{ganops.__version__}.dist-info"}
    for module in ("ganops/bot/cli.py", "ganops/pipeline/ct_pipeline.py", "ganops/model/train.py"):
        assert module in names


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _package_imports(folder: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): _imports(p) for p in (ROOT / folder).rglob("*.py")}


def test_no_source_imports_the_old_top_level_names() -> None:
    old = {"bot", "pipeline", "model"}
    bad = {
        f: sorted(m for m in mods if m.split(".")[0] in old)
        for folder in ("bot", "pipeline", "model", "tests", "bench", "scripts")
        for f, mods in _package_imports(folder).items()
    }
    assert {f: m for f, m in bad.items() if m} == {}


def test_model_imports_nothing_of_ours_outside_model() -> None:
    bad = {
        f: sorted(m for m in mods if m.startswith(("ganops.bot", "ganops.pipeline")))
        for f, mods in _package_imports("model").items()
    }
    assert {f: m for f, m in bad.items() if m} == {}


def test_bot_never_imports_torch() -> None:
    bad = {
        f: sorted(m for m in mods if m.split(".")[0] in {"torch", "torchvision"})
        for f, mods in _package_imports("bot").items()
    }
    assert {f: m for f, m in bad.items() if m} == {}


def test_ganops_links_to_the_three_folders() -> None:
    for name in ("bot", "pipeline", "model"):
        spec = importlib.util.find_spec(f"ganops.{name}")
        assert spec is not None
        assert spec.origin is not None
        assert Path(spec.origin).resolve() == (ROOT / name / "__init__.py").resolve()
