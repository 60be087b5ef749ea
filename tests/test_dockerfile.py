"""The trainer image carries what the trainer's defaults need: a C compiler for torch.compile.

No Docker daemon here, so the Dockerfile is read as Docker reads it: stages split at `FROM`,
continuation lines joined, and the trainer stage's `RUN` instructions inspected.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"
C_COMPILER_PACKAGES = {"gcc", "clang", "build-essential"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with `\\` continuations joined and comments dropped."""
    joined, out = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not joined and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            joined += line[:-1] + " "
            continue
        joined += line
        word, _, rest = joined.partition(" ")
        out.append((word.upper(), rest.strip()))
        joined = ""
    return out


def stage(text: str, name: str) -> list[tuple[str, str]]:
    """The instructions of the stage `FROM ... AS name`."""
    found: list[tuple[str, str]] | None = None
    for word, rest in instructions(text):
        if word == "FROM":
            if found is not None:
                return found
            if re.search(rf"\bAS\s+{re.escape(name)}\s*$", rest, re.IGNORECASE):
                found = []
            continue
        if found is not None:
            found.append((word, rest))
    if found is None:
        raise AssertionError(f"the Dockerfile has no stage named {name!r}")
    return found


def apt_installs(commands: list[str]) -> list[list[str]]:
    """The argument lists of every `apt-get install` in `commands` (RUN lines)."""
    installs = []
    for command in commands:
        for part in re.split(r"&&|;", command):
            words = shlex.split(part)
            if words[:1] == ["apt-get"] and "install" in words:
                installs.append(words[words.index("install") + 1 :])
    return installs


def compiler_problems(text: str) -> list[str]:
    runs = [rest for word, rest in stage(text, "trainer") if word == "RUN"]
    installs = apt_installs(runs)
    packages = {w for args in installs for w in args if not w.startswith("-")}
    problems = []
    if not packages & C_COMPILER_PACKAGES:
        problems.append("the trainer stage installs no C compiler (gcc, clang or build-essential)")
    if packages & {"gcc", "g++"} and "libc6-dev" not in packages:
        problems.append("gcc without recommends needs libc6-dev for the C library headers")
    if any("--no-install-recommends" not in args for args in installs):
        problems.append("apt-get install without --no-install-recommends")
    if installs and not any("rm -rf /var/lib/apt/lists" in r for r in runs):
        problems.append("the apt lists are left in the image")
    return problems


def test_the_trainer_stage_installs_a_c_compiler_lean() -> None:
    assert compiler_problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("gcc g++ libc6-dev", "curl"), "installs no C compiler"),
        (lambda t: t.replace(" libc6-dev", ""), "libc6-dev"),
        (lambda t: t.replace("--no-install-recommends ", ""), "--no-install-recommends"),
        (lambda t: t.replace("&& rm -rf /var/lib/apt/lists/*", ""), "apt lists"),
    ],
)
def test_the_check_fails_on_a_trainer_stage_without_it(edit, problem) -> None:  # type: ignore[no-untyped-def]
    text = edit(DOCKERFILE.read_text())
    assert text != DOCKERFILE.read_text(), "the edit must change the Dockerfile"
    assert any(problem in p for p in compiler_problems(text))


def test_a_compiler_in_another_stage_does_not_count() -> None:
    text = DOCKERFILE.read_text()
    block = re.search(r"RUN apt-get update.*?lists/\*\n", text, re.DOTALL)
    assert block is not None
    moved = text.replace(block.group(0), "")
    moved = moved.replace(
        "FROM ${PYTHON_IMAGE} AS bot\n", f"FROM ${{PYTHON_IMAGE}} AS bot\n{block.group(0)}"
    )
    assert any("installs no C compiler" in p for p in compiler_problems(moved))
