"""The drift loop's upstream for the bot's slow tests: a real `ganops serve` with a drift
reference, scraped every second by a real Prometheus with the alert rules' `for:` cut to a
few seconds, and the traffic that makes it calm or drifted.

Building one takes a torch import and two processes, so the modules that use it share one
(`shared_stack`, behind each module's `drift_stack` fixture); tests move it between calm and
drifted with `calm()` and `drift()`, which wait until Prometheus has seen the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ganops.model.synthetic import DriftKnobs, apply_knobs
from tests.fakes.prometheus import (
    RULES,
    PrometheusServer,
    prometheus_binary,
    rules_with_for,
    start_prometheus,
)
from tests.fakes.serving import ServerProcess, make_bundle, scenes, start_server, stylize_batch

MODEL, VERSION = "cut", "7"
WINDOW = 32  # the drift window: this many images replace it completely
FOR_S = 2  # GanInputDrift's `for:` here (production: 2m)
SELECTOR = f'model="{MODEL}",version="{VERSION}"'
SCORE = f"gan_input_drift_score{{{SELECTOR}}}"
ALERT = 'ALERTS{alertname="GanInputDrift"}'
SHIFT = DriftKnobs(brightness=0.15, contrast=1.3)


@dataclass
class DriftStack:
    server: ServerProcess
    prometheus: PrometheusServer

    def stop(self) -> None:
        self.prometheus.stop()
        self.server.stop()

    def score(self) -> float | None:
        """The drift score Prometheus holds now (None before the first scrape)."""
        result = self.prometheus.query(SCORE)
        return float(result[0]["value"][1]) if result else None

    def send(self, images: np.ndarray, batch: int = 16) -> None:
        for start in range(0, len(images), batch):
            stylize_batch(self.server.url, images[start : start + batch])


def start_stack(workdir: Path) -> DriftStack:
    """Bundle (version 7, window 32), server, Prometheus; returns after the first scrape."""
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (make prometheus, or apt-get install prometheus)")
    bundle = make_bundle(workdir / "bundle", version=VERSION, window=WINDOW)
    server = start_server(bundle)
    try:
        server.wait_ready()
        rules = rules_with_for(RULES, workdir / "rules.yaml", f"{FOR_S}s")
        targets = [f"127.0.0.1:{server.port}"]
        prometheus = start_prometheus(workdir / "prometheus", targets=targets, rule_files=[rules])
    except BaseException:
        server.stop()
        raise
    stack = DriftStack(server, prometheus)
    prometheus.wait_for(f"gan_model_info{{{SELECTOR}}}", bool, timeout=60)
    return stack


_SHARED = pytest.StashKey[dict[str, Any]]()


def shared_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DriftStack]:
    """The body of a module-scoped fixture named `drift_stack`: one stack for all the modules
    of the session that use it, stopped when the last of them is done."""
    shared = request.config.stash.setdefault(_SHARED, {})
    if "stack" not in shared:
        users = {
            item.nodeid.split("::")[0]
            for item in request.session.items
            if "drift_stack" in getattr(item, "fixturenames", ())
        }
        shared["users"] = users
        shared["stack"] = start_stack(tmp_path_factory.mktemp("drift-stack"))
        request.config.add_cleanup(shared["stack"].stop)  # after -x or a failed module too
    stack: DriftStack = shared["stack"]
    yield stack
    shared["users"].discard(request.node.nodeid.split("::")[0])
    if not shared["users"]:
        shared.pop("stack").stop()


def calm(stack: DriftStack, seed: int) -> None:
    """Fill the window twice with drift-free scenes (unseen by the reference: seed != 0) and
    wait until Prometheus holds a score under 1 and no drift alert is pending or firing."""
    stack.send(scenes(2 * WINDOW, seed=seed))
    stack.prometheus.wait_for(SCORE, lambda r: bool(r) and float(r[0]["value"][1]) < 1.0)
    stack.prometheus.wait_for(ALERT, lambda r: r == [])


def drift(stack: DriftStack, seed: int, knobs: DriftKnobs = SHIFT) -> None:
    """Fill the window with shifted scenes; wait until Prometheus holds a score over 1."""
    rng = np.random.default_rng(seed)
    stack.send(np.stack([apply_knobs(im, knobs, rng) for im in scenes(WINDOW, seed=seed)]))
    stack.prometheus.wait_for(SCORE, lambda r: bool(r) and float(r[0]["value"][1]) > 1.0)


def card_text(message: dict[str, Any]) -> str:
    """An alarm card's blocks as text, for `in` checks."""
    return str(message["blocks"])


def action_ids(message: dict[str, Any]) -> list[str]:
    """The action ids of a message's buttons, in order."""
    return [
        e["action_id"]
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b.get("elements", [])
    ]
