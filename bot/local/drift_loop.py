"""The closed drift loop, driven through the shell adapter: what `ganops demo` narrates and
`bench/drift_loop.py` times.

Drift-free traffic → brighter, flatter inputs until the alarm → more of them until enough are
captured → dave clicks Retrain now (the champion's data plus the captured inputs) → the card,
judged on held-out captured inputs → carol approves → the local rollout → the new version
serves the same drifted inputs until its score has stayed under 1 → the alarm reads Resolved.
A gate that keeps the champion is an outcome, narrated like the others.
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ganops.bot.drift.alarms import AlarmBook
from ganops.bot.local.shell import Shell
from ganops.bot.local.traffic import canary_told
from ganops.model.registry import CHAMPION

MODEL = "cut"
T = TypeVar("T")


class LoopError(Exception):
    """A stage did not reach its expected outcome; the message says which and why."""


@dataclass(frozen=True)
class LoopTimeouts:
    alarm_s: float = 150.0
    run_s: float = 420.0
    resolve_s: float = 180.0


@dataclass
class LoopResult:
    outcome: str = "no alarm"  # resolved | gate kept the champion | retrain failed | ...
    version_before: str | None = None
    version_after: str | None = None
    onset_at: float = 0.0
    alarm_at: float | None = None
    resolved_at: float | None = None
    score_before: float | None = None  # the drifting version's score on the drifted inputs
    score_after: float | None = None  # the retrained version's score on the same kind
    captured: int = 0

    def to_dict(self) -> dict[str, object]:
        def since(t: float | None) -> float | None:
            return round(t - self.onset_at, 1) if t is not None else None

        return {
            "outcome": self.outcome,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "onset_to_alarm_s": since(self.alarm_at),
            "onset_to_resolved_s": since(self.resolved_at),
            "score_before": self.score_before,
            "score_after": self.score_after,
            "captured_at_retrain": self.captured,
        }


class DriftLoop:
    def __init__(
        self,
        shell: Shell,
        say: Callable[[str], None],
        *,
        calm_requests: int = 96,
        timeouts: LoopTimeouts = LoopTimeouts(),
    ) -> None:
        self.shell, self.say, self.calm_requests = shell, say, calm_requests
        self.services, self.settings = shell.services, shell.settings
        self.timeouts = timeouts
        self.book = AlarmBook(self.services.store)
        self._seed = 100
        self._drifted = True  # which kind of inputs `_shift_until` sends

    def run(self) -> LoopResult:
        result = LoopResult()
        champion = self.services.registry.get_alias(MODEL, CHAMPION)
        result.version_before = champion.version if champion else None
        known = {v.episode_id for v in self.book.open_episodes()}
        # A champion from an earlier loop learnt the bright, flat inputs: for it those are
        # the drift-free ones, and the drift is the old camera coming back.
        self._drifted = not (
            champion and json.loads(champion.tags.get("params") or "{}").get("captured")
        )
        self.say(f"sending {self.calm_requests} drift-free requests")
        self._traffic(self.calm_requests, shift=not self._drifted)
        time.sleep(4)  # a few scrapes and rule evaluations
        fresh = [v for v in self.book.open_episodes() if v.episode_id not in known]
        self.say(f"drift-free traffic: {len(fresh)} alarm(s) (expected none)")
        if self._drifted:
            self.say("now the inputs get brighter and lose contrast (a new camera, say)…")
        else:
            self.say("now the old camera is back: darker, contrasted inputs…")
        result.onset_at = time.time()
        episode = self._shift_until(lambda: self._new_alarm(known), self.timeouts.alarm_s)
        if episode is None:
            raise LoopError(f"no drift alarm within {self.timeouts.alarm_s:.0f} s of drift")
        result.alarm_at = time.time()
        view = self.book.get(episode)
        result.score_before = round(view.score, 3) if view else None
        self.say(f"the bot posted the drift alarm {episode} (score {result.score_before})")
        need = self.settings.drift_min_captured
        self.say(f"serving more drifted inputs until {need} are captured since the alarm…")
        if self._shift_until(lambda: self._captured(episode) >= need, self.timeouts.alarm_s):
            result.captured = self._captured(episode)
        self.say(f"{self._captured(episode)} inputs captured; dave (on call) clicks Retrain now")
        self.shell.handle("/user dave")
        self.shell.handle("Retrain now")
        view = self.book.get(episode)
        if view is None or view.retrain_run_id is None:
            result.outcome = "retrain not started"
            return result
        run_id = view.retrain_run_id
        self.say(f"retrain {run_id}: the champion's data plus the captured inputs as domain A")
        state = self._wait_run(run_id)
        if state in ("queued", "running"):
            result.outcome = "retrain still running at the timeout"
            self.say(f"retrain {run_id} is still {state} after {self.timeouts.run_s:.0f} s")
            return result
        if state != "awaiting_approval":
            result.outcome = {"gated": "gate kept the champion"}.get(state, f"retrain {state}")
            self.say(
                f"retrain {run_id} ended '{state}': the alarm card says so and its buttons are "
                "back (a legitimate outcome: the champion stays)"
            )
            return result
        self.say("the card compares both models on held-out captured inputs; carol approves")
        self.shell.handle("/user carol")
        self.shell.handle("Approve")
        self.shell.wait_idle(self.timeouts.run_s)
        self._canary_ends(view.retrain_run_id)
        after = self.services.registry.get_alias(MODEL, CHAMPION)
        if after is None or after.version == result.version_before:
            result.outcome = "not deployed"
            return result
        result.version_after = after.version
        self.say(f"v{after.version} serves; the drifted inputs keep coming…")
        resolved = self._shift_until(lambda: self._resolved(episode), self.timeouts.resolve_s)
        if not resolved:
            result.outcome = "deployed, not resolved in time"
            return result
        result.resolved_at = time.time()
        result.outcome = "resolved"
        final = self.book.get(episode)
        self.say(final.outcome if final and final.outcome else "the alarm resolved")
        history = self.services.metrics.score_history(MODEL, after.version, 0.1)  # type: ignore[union-attr]
        result.score_after = round(history[-1][1], 3) if history else None
        return result

    # --- helpers ---------------------------------------------------------------------

    def _canary_ends(self, run_id: str) -> None:
        """The approved retrain goes out as a canary: the drifted inputs keep coming, through
        the split, until it is promoted or rolled back."""
        canaries, book = self.services.canaries, self.services.approvals
        if canaries is None or book is None:
            return
        mine = [a for a in book.recent(10) if a.run_id == run_id]
        if not mine or canaries.get(mine[0].approval_id) is None:
            return
        self.say("the approved version goes out as a canary on the same drifted traffic…")
        canary_id = mine[0].approval_id

        def ended() -> bool:
            c = canaries.get(canary_id)
            return c is None or c.state != "running"

        self._shift_until(ended, self.timeouts.resolve_s)
        c = canaries.get(canary_id)
        if c is not None:
            ended_c = c
            self._shift_until(lambda: canary_told(self.shell.slack, ended_c), 30.0)
            self.say(
                f"canary {c.state.replace('_', ' ')}"
                + (f": {c.reason}" if c.reason and c.state != "promoted" else "")
            )

    def _wait_run(self, run_id: str) -> str:
        """The run's state once it has settled (its card posted), or as it is at the timeout."""
        deadline = time.monotonic() + self.timeouts.run_s
        while True:
            self.shell.wait_idle(max(1.0, deadline - time.monotonic()))
            row = self.services.runbook.get(run_id)
            if row is None or row.settled or time.monotonic() > deadline:
                return row.state if row is not None else "unknown"

    def _new_alarm(self, known: set[str]) -> str | None:
        for view in self.book.open_episodes():
            if view.episode_id not in known and self.book.row_meta(view.episode_id)[1]:
                return view.episode_id
        return None

    def _captured(self, episode: str) -> int:
        from ganops.model.serving.capture import list_captured

        view = self.book.get(episode)
        uri = self.settings.capture_uri
        if view is None or not uri:
            return 0
        return len(list_captured(uri, model=view.model, version=view.version, since=view.opened_at))

    def _resolved(self, episode: str) -> bool:
        view = self.book.get(episode)
        return view is not None and view.state == "resolved"

    def _shift_until(self, done: Callable[[], T], timeout_s: float) -> T:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = done()
            if found:
                return found
            self._traffic(16, shift=self._drifted)
            time.sleep(0.5)
        return done()

    def _traffic(self, n: int, *, shift: bool) -> None:
        # Through the local split when there is one: a canary must see its share of it.
        url = getattr(self.services.deployer, "endpoint", lambda: None)()
        record = getattr(self.services.deployer, "serving", lambda: None)()
        if url is None and record is not None:
            url = record.url
        if url is None:
            raise LoopError("no local model server is running")
        self._seed += 1
        send_traffic(str(url), n, shift=shift, seed=self._seed)


def send_traffic(url: str, n: int, *, shift: bool, seed: int) -> None:
    """POST n synthetic domain-A images, optionally brighter and flatter, one per request."""
    from ganops.model.synthetic import DriftKnobs, apply_knobs, random_scene, render, to_pil

    rng = np.random.default_rng(seed)
    knobs = DriftKnobs(brightness=0.25, contrast=0.6) if shift else DriftKnobs()
    for _ in range(n):
        image = render(random_scene(rng), "A", 32)
        if shift:
            image = apply_knobs(image, knobs, rng)
        buf = io.BytesIO()
        to_pil(image).save(buf, format="PNG")
        req = urllib.request.Request(
            f"{url}/v1/stylize", data=buf.getvalue(), headers={"Content-Type": "image/png"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
        except urllib.error.URLError as exc:
            raise LoopError(f"the model server at {url} did not answer: {exc}") from exc
