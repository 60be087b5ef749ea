"""The end of a drift episode: the retrain it started, and the deploy that fixed it.

The drifting version's alert stops firing when that version stops serving, which says nothing
about whether the inputs are handled now. So once another version is deployed for the model, the
episode stays open until the *new* version's score has stayed under 1 for `resolve_after_s`
(the `keep_firing_for` window); then the card reads "Resolved: v4 deployed at 15:02 after
retrain on 240 captured inputs; score 0.41", the episode is closed and the audit log has it.
A retrain that ends without a challenger to deploy (the gate kept the champion, or a step
failed) is noted on the card, whose buttons come back for another try.
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ganops.bot.blocks.alarms import AlarmView
from ganops.bot.drift.alarms import AlarmBook
from ganops.bot.ports import MetricsSource, ModelRegistry, UpstreamError
from ganops.bot.runs.record import RunBook
from ganops.model.registry import CHAMPION

log = logging.getLogger(__name__)

# Run states after which a retrain brings nothing to deploy.
_TURNED_DOWN = {
    "gated": "the gate kept the champion (the challenger did not beat it)",
    "failed": "the run failed",
    "cancelled": "the run was cancelled",
}


@dataclass(frozen=True)
class Deployed:
    version: str
    at: float | None  # when it was approved for deploy, when known


def champion_of(registry: ModelRegistry) -> Callable[[str], Deployed | None]:
    """The deployed version of a model: the `champion` alias, which only a rollout moves."""

    def deployed(model: str) -> Deployed | None:
        try:
            info = registry.get_alias(model, CHAMPION)
        except (UpstreamError, ConnectionError) as exc:
            log.warning("cannot read the champion of %s: %s", model, exc)
            return None
        if info is None:
            return None
        return Deployed(info.version, _epoch(info.tags.get("approved_at")))

    return deployed


class EpisodeCloser:
    """Called by the watcher for each open episode, before its usual update."""

    def __init__(
        self,
        book: AlarmBook,
        metrics: MetricsSource,
        deployed: Callable[[str], Deployed | None],
        *,
        resolve_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book, self.metrics, self.deployed = book, metrics, deployed
        self.resolve_after_s = resolve_after_s
        self.clock = clock

    def check(self, view: AlarmView) -> Deployed | None:
        """Note a turned-down retrain; returns the deploy that replaced the drifting version
        (the watcher then leaves the episode to `settle`), or None."""
        if view.retrain_run_id:
            row = RunBook(self.book.store).get(view.retrain_run_id)
            why = _TURNED_DOWN.get(row.state) if row is not None else None
            if why is not None:
                note = f"Retrain `{view.retrain_run_id}` brought no new model: {why}. "
                note += "Retry, snooze or ignore below."
                self.book.retrain_turned_down(view.episode_id, view.retrain_run_id, note)
        deployed = self.deployed(view.model)
        if deployed is None or deployed.version == view.version:
            return None
        return deployed

    def settle(self, view: AlarmView, deployed: Deployed) -> bool:
        """Resolve the episode once the new version has scored under 1 for the window; until
        then the card says what it waits for. Returns True when it resolved."""
        now = self.clock()
        try:
            history = self.metrics.score_history(
                view.model, deployed.version, hours=2 * self.resolve_after_s / 3600.0
            )
        except UpstreamError as exc:
            log.warning("no score for %s v%s yet: %s", view.model, deployed.version, exc)
            history = []
        window = [v for t, v in history if t >= now - self.resolve_after_s]
        # The range query's step is span / 240: the first sample may come one step late.
        slack = 2 * self.resolve_after_s / 240 + 1.0
        covered = bool(history) and history[0][0] <= now - self.resolve_after_s + slack
        at = f" at {_hhmm(deployed.at)}" if deployed.at else ""
        if covered and window and max(window) < 1.0:
            how = f" after retrain on {view.captured} captured inputs" if view.captured else ""
            note = (
                f"Resolved: v{deployed.version} deployed{at}{how}; score {window[-1]:.2f}"
                f" (under 1 for {_span(self.resolve_after_s)})."
            )
            details = {"deployed_version": deployed.version, "score": window[-1]}
            return self.book.resolve(view.episode_id, note, details)
        now_score = f" (now {history[-1][1]:.2f})" if history else " (no score yet)"
        self.book.note_outcome(
            view.episode_id,
            f"v{deployed.version} deployed{at}; resolves once its score stays under 1 for "
            f"{_span(self.resolve_after_s)}{now_score}.",
        )
        return False


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
