"""Every requirement of the install and of each extra has a pin in constraints.txt (the images
install with `-c constraints.txt`), and the pin satisfies the requirement. A requirement with
extras (psycopg[binary,pool]) needs its extras' packages pinned too, read from the installed
distribution's metadata."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not name==version"
            found[canonicalize_name(name)] = version.strip()
    return found


def requirements() -> dict[str, list[Requirement]]:
    """'install' and each extra -> its requirements (the self-reference `ganops[...]` left out)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"install": project["dependencies"], **project["optional-dependencies"]}
    return {
        group: [r for r in map(Requirement, reqs) if canonicalize_name(r.name) != "ganops"]
        for group, reqs in groups.items()
    }


def extras_of(req: Requirement) -> list[Requirement]:
    """The packages `req`'s extras add, from the installed distribution's metadata."""
    if not req.extras:
        return []
    try:
        declared = requires(req.name) or []
    except PackageNotFoundError:
        return []
    added = []
    for text in declared:
        dep = Requirement(text)
        if dep.marker and any(dep.marker.evaluate({"extra": e}) for e in req.extras):
            added.append(Requirement(dep.name))
    return added


def unpinned(pinned: dict[str, str]) -> list[str]:
    problems = []
    for group, reqs in requirements().items():
        for req in reqs + [e for r in reqs for e in extras_of(r)]:
            name = canonicalize_name(req.name)
            if name not in pinned:
                problems.append(f"[{group}] {req} has no pin")
            elif not req.specifier.contains(pinned[name], prereleases=True):
                problems.append(f"[{group}] {req} is not met by the pin {pinned[name]}")
    return problems


def test_every_requirement_of_every_extra_is_pinned() -> None:
    assert unpinned(pins((REPO / "constraints.txt").read_text())) == []


def test_the_check_names_a_missing_pin_and_a_pin_that_breaks_a_bound() -> None:
    pinned = pins((REPO / "constraints.txt").read_text())
    without = {k: v for k, v in pinned.items() if k not in {"s3fs", "psycopg-pool"}}
    problems = unpinned(without)
    assert "[trainer] s3fs>=2024.6 has no pin" in problems
    assert any(p.startswith("[install] psycopg-pool") for p in problems)  # from psycopg[pool]
    assert "[install] kfp==2.17.3 is not met by the pin 2.16.0" in unpinned(
        {**pinned, "kfp": "2.16.0"}
    )
