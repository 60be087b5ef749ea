"""What the demo needs around a canary: steady traffic through the local split, and a
deliberately broken challenger registered in MLflow (by a subprocess: the bot never imports
torch)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType

import numpy as np

from ganops.bot.canary.table import Canary
from ganops.bot.local.slack import LocalSlack


class TrafficPump:
    """Synthetic domain-A images POSTed one after another to `url()` (read again for each
    request: the split's address is stable, but a plain deploy moves the server) on a
    background thread, until the `with` block ends. Failed answers are counted, not raised:
    a broken canary's 500s are what the analysis is meant to see."""

    def __init__(self, url: Callable[[], str], *, seed: int = 7, pause_s: float = 0.05) -> None:
        self.url = url
        self.seed = seed
        self.pause_s = pause_s
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def __enter__(self) -> TrafficPump:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        from ganops.model.synthetic import random_scene, render, to_pil

        rng = np.random.default_rng(self.seed)
        while not self._stop.is_set():
            buf = io.BytesIO()
            to_pil(render(random_scene(rng), "A", 32)).save(buf, format="PNG")
            request = urllib.request.Request(f"{self.url()}/v1/stylize", data=buf.getvalue(),
                                             headers={"Content-Type": "image/png"})  # fmt: skip
            self.sent += 1
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError):
                self.failed += 1
            self._stop.wait(self.pause_s)


def canary_told(slack: LocalSlack, canary: Canary) -> bool:
    """Whether the post of `canary`'s end is in the channel: its row ends first, then the
    alias moves (a promotion) and the post follows, so a narrator waits for the post."""
    told = f"Canary {canary.model} v{canary.version} {canary.state.replace('_', ' ')}"
    return any(str(m.get("text", "")).startswith(told) for m in slack.messages())


def register_broken(mlflow_uri: str, model: str) -> str:
    """Register a copy of `model`'s champion whose every output is NaN; returns its version.

    Raises:
        RuntimeError: the subprocess failed (its last line says why).
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    done = subprocess.run([sys.executable, "-m", "ganops.model.broken", "--model", model],
                          capture_output=True, text=True, env=env, timeout=300, check=False)  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].isdigit():
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not register a broken copy of {model}: {why}")
    return lines[-1]
