"""The drift retrain's data: the champion's data set plus inputs the model server captured.

`RunParams.captured` holds a JSON list of `CapturedSpec`s: which captured inputs (store, model,
version, time span) join domain A. The last one is this episode's: part of it is held out as
the whole test set (`testA/`), so challenger and champion are judged on the new distribution;
the rest, and every earlier episode's inputs (a chain of drift retrains keeps what its champion
learnt), join `trainA/`, repeated until they make up half of it so a few hundred inputs are not
drowned by the original set. This episode's training part is also kept in `capturedA/`, from
which the new version's drift reference is fitted (`model.drift.attach_reference`): it is what
the new version will serve.
Domain B is left as it is: CUT and CycleGAN are unpaired, so the inputs need no labels.

Torch-free: the bot builds the spec and counts inputs; the ingest step composes the data.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganops.model.serving.capture import Captured

HELD_OUT_FRACTION = 0.25
MIN_HELD_OUT = 8


@dataclass(frozen=True)
class CapturedSpec:
    uri: str  # the capture store (GANOPS_CAPTURE_URI)
    model: str
    version: str  # the version that served them
    since: float  # epoch seconds
    until: float


def dump_specs(specs: list[CapturedSpec]) -> str:
    return json.dumps([asdict(s) for s in specs], sort_keys=True) if specs else ""


def load_specs(text: str) -> list[CapturedSpec]:
    """Parse `RunParams.captured`. Raises ValueError naming what is wrong."""
    if not text.strip():
        return []
    try:
        items = json.loads(text)
        specs = [CapturedSpec(**item) for item in items]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"captured={text[:80]!r} is not a list of captured-input specs") from exc
    for spec in specs:
        if not (spec.uri and spec.model and spec.version) or spec.since > spec.until:
            raise ValueError(f"captured: incomplete spec {asdict(spec)}")
    return specs


def held_out_count(n: int) -> int:
    """How many of an episode's n captured inputs are held out for evaluation."""
    return min(n // 2, max(MIN_HELD_OUT, round(HELD_OUT_FRACTION * n)))


def add_captured(out: Path, specs: list[CapturedSpec], *, seed: int) -> dict[str, int]:
    """Compose the drift retrain's data set in `out` (already holding the champion's data).

    Returns counts: captured (this episode), held_out, trained (all episodes), copies.

    Raises:
        ValueError: this episode's store has fewer than 2 * MIN_HELD_OUT inputs.
    """
    import numpy as np

    from ganops.model.serving.capture import CAPTURED_DIR, list_captured

    found = [
        [(s, c) for c in list_captured(s.uri, model=s.model, version=s.version)] for s in specs
    ]
    found = [[(s, c) for s, c in items if s.since <= c.time <= s.until] for items in found]
    latest = found[-1]
    if len(latest) < 2 * MIN_HELD_OUT:
        raise ValueError(f"only {len(latest)} captured inputs in this episode's span")
    order = np.random.default_rng(seed).permutation(len(latest))
    n_held = held_out_count(len(latest))
    held = [latest[i] for i in order[:n_held]]
    current = [latest[i] for i in order[n_held:]]
    train = current + [x for items in found[:-1] for x in items]
    # The test set is the new distribution alone, with no ground truth for it.
    for folder in ("testA", "testB_gt"):
        shutil.rmtree(out / folder, ignore_errors=True)
    _write(out / "testA", held)
    _write(out / CAPTURED_DIR, current)  # the reference: what the new version will serve
    n_original = sum(1 for p in (out / "trainA").iterdir() if p.is_file())
    copies = max(1, math.ceil(n_original / len(train)))
    for k in range(copies):
        _write(out / "trainA", train, prefix=f"captured{k}_")
    return {
        "captured": len(latest),
        "held_out": n_held,
        "trained": len(train),
        "copies": copies,
    }


def _write(folder: Path, items: list[tuple[CapturedSpec, Captured]], prefix: str = "") -> None:
    from ganops.model.serving.capture import read_captured

    folder.mkdir(parents=True, exist_ok=True)
    for spec, item in items:
        name = f"{prefix}{spec.version}_{Path(item.path).name}"
        (folder / name).write_bytes(read_captured(spec.uri, item))
