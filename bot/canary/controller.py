"""The canary of an approved deploy, step by step: judged live, promoted or rolled back.

`Rollout.deploy` starts a canary (the first step's share) instead of a full rollout when
`GANOPS_CANARY_STEPS` has more than one step, and records its row here. From then on this
controller moves it, on the leader's `canary` job and on approvers' clicks:
- every tick, the analysis compares the canary with the stable version over the step so far;
  an error rate over its limit rolls back at once (the stable version takes all the
  traffic, the `champion` alias stays where it was, the channel is told why);
- at the end of a step, the whole step is judged: any failure (latency, drift, outputs too)
  rolls back the same way, a pass moves to the next share; the last share (100) is the
  promotion, and only then does the `champion` alias move;
- a step that ends without enough traffic for a verdict is held (told once) and judged again
  at the end of each further step, until the traffic comes or an approver decides;
- *Promote now* / *Roll back* in the thread do the same at once.

Every move runs under the model's rollout lock (the same one as deploys, on every replica)
and is one compare-and-set on the row, so the job, two replicas and a click move a step once.
The row is the whole state: a restarted bot resumes at the same step with the same clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from ganops.bot.approvals import table as approvals_table
from ganops.bot.approvals.rollout import SYSTEM, Rollout
from ganops.bot.blocks.canary import CanaryView, Moment
from ganops.bot.canary import table
from ganops.bot.canary.table import Canary, CanaryState
from ganops.bot.ports import Approval, DeployError, DeployResult
from ganops.bot.store import Store
from ganops.pipeline.db import Conn

log = logging.getLogger(__name__)

# The analysis of a canary over the last `window_s` seconds: a JSON-able mapping with
# `outcome` (pass | fail | inconclusive), `reasons` (lines) and `rows` (the compared metrics).
Analyse = Callable[[Canary, float], Mapping[str, Any]]


class Notifier(Protocol):
    def tell(self, canary: Canary, view: CanaryView, *, channel_too: bool) -> None: ...


def no_analysis(reason: str) -> Analyse:
    """Without Prometheus nothing can be judged: every step is inconclusive (held)."""

    def analyse(canary: Canary, window_s: float) -> Mapping[str, Any]:
        return {"outcome": "inconclusive", "reasons": [reason], "rows": []}

    return analyse


class CanaryController:
    def __init__(
        self,
        *,
        store: Store,
        rollout: Rollout,
        analyse: Analyse,
        step_s: float,
        notifier: Notifier | None = None,
        thresholds: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rollout = rollout
        self.analyse = analyse
        self.step_s = step_s
        self.notifier = notifier
        self.thresholds = thresholds
        self.clock = clock
        table.migrate(store)

    # --- reading -------------------------------------------------------------------------

    def get(self, canary_id: str) -> Canary | None:
        with self.store.connect() as conn:
            return table.fetch(conn, canary_id)

    def running(self, model: str | None = None) -> list[Canary]:
        with self.store.connect() as conn:
            return table.running(conn, model)

    # --- the job -------------------------------------------------------------------------

    def tick(self) -> int:
        """Judge every running canary; returns how many moved (a step, an end)."""
        moved = 0
        for c in self.running():
            try:
                moved += self._tick_one(c.canary_id, c.model)
            except Exception:  # one canary's trouble must not stop the others being judged
                log.exception("canary %s: tick failed", c.canary_id)
        return moved

    def _tick_one(self, canary_id: str, model: str) -> bool:
        with self.rollout.model_lock(model):
            c = self.get(canary_id)  # again, under the lock: a click may have ended it
            if c is None or c.state != "running":
                return False
            now = self.clock()
            self._keep_serving(c)
            judgement = dict(self.analyse(c, max(now - c.step_started_at, 1.0)))
            with self.store.connect() as conn:
                table.save_judgement(conn, c.canary_id, judgement)
            ended = now - c.step_started_at >= self.step_s
            if judgement.get("outcome") == "fail" and (ended or _fails_hard(judgement)):
                reason = "; ".join(judgement.get("reasons") or []) or "the analysis failed"
                return self._roll_back(c, by=None, reason=reason, judgement=judgement)
            if not ended:
                return False
            if judgement.get("outcome") == "pass":
                return self._advance(c, judgement, now)
            with self.store.connect() as conn:
                first = table.hold(conn, c.canary_id, c.step, now)
            if first:
                self._tell(c, "held", judgement=judgement)
            return False

    def _keep_serving(self, c: Canary) -> None:
        """After a restart, or if something removed the canary behind the bot's back, put
        it back at its share (the row is the truth; `set_canary` is idempotent)."""
        try:
            served = self.rollout.deployer.canary(c.model)
        except DeployError as exc:
            log.warning("canary %s: cannot read the endpoint: %s", c.canary_id, exc)
            return
        if served is not None and served.version == c.version and served.percent == c.percent:
            return
        log.warning("canary %s: the endpoint shows %s; setting %d%% again", c.canary_id,
                    served, c.percent)  # fmt: skip
        self._set(c, c.percent)

    def _advance(self, c: Canary, judgement: Mapping[str, Any], now: float) -> bool:
        nxt = c.step + 1
        if c.steps[nxt] >= 100:
            return self._promote(c, by=None, judgement=judgement)
        result = self._set(c, c.steps[nxt])
        if not result.ok:
            return self._roll_back(c, by=None, reason=result.message, judgement=judgement)
        with self.store.tx() as conn:
            if not table.advance(conn, c.canary_id, c.step, now):
                return False
            self.store.audit(SYSTEM, "canary", c.canary_id, "step",
                             {"percent": c.steps[nxt], "version": c.version}, conn=conn,
                             path="job")  # fmt: skip
        moved = replace(c, step=nxt, step_started_at=now, held=False)
        self._tell(moved, "step", judgement=judgement)
        return True

    # --- the buttons (and the CLI) --------------------------------------------------------

    def promote_now(self, canary_id: str, user: str) -> str:
        """An approver's *Promote now*. Returns the line to tell them."""
        return self._clicked(
            canary_id, lambda c: self._promote(c, by=user, judgement=c.judgement or {})
        )

    def roll_back(self, canary_id: str, user: str) -> str:
        """An approver's *Roll back*. Returns the line to tell them."""
        return self._clicked(canary_id, lambda c: self._roll_back(
            c, by=user, reason=f"rolled back by <@{user}>", judgement=c.judgement or {}))  # fmt: skip

    def _clicked(self, canary_id: str, act: Callable[[Canary], bool]) -> str:
        """`act` on a running canary under its model's lock; what happened, in a line."""
        with self.rollout.model_lock(self._model_of(canary_id)):
            c = self.get(canary_id)
            if c is None:
                return "That canary is not known here."
            if c.state != "running":
                return f"That canary has ended already ({c.state.replace('_', ' ')})."
            act(c)
            ended = self.get(canary_id) or c
        return f"Canary {ended.model} v{ended.version}: {ended.state.replace('_', ' ')}."

    # --- the ends ---------------------------------------------------------------------------

    def _promote(self, c: Canary, *, by: str | None, judgement: Mapping[str, Any]) -> bool:
        result = self._set(c, 100)
        if not result.ok:
            return self._roll_back(c, by=None, reason=result.message, judgement=judgement)
        a = self._approval(c)
        with self.store.tx() as conn:
            if not table.end(conn, c.canary_id, "promoted", by=by or SYSTEM,
                             reason="promoted", now=self.clock()):  # fmt: skip
                return False
        moved = a is not None and self.rollout.move_aliases(a)
        final = replace(result, message=f"canary promoted to 100% ({result.message})")
        if a is not None:
            self.rollout.record(a, final, moved)
        self._audit_end(c, "promoted", by, {"aliases_moved": moved})
        self._tell(c, "promoted", judgement=judgement, by=by)
        return True

    def _roll_back(
        self, c: Canary, *, by: str | None, reason: str, judgement: Mapping[str, Any]
    ) -> bool:
        with self.store.tx() as conn:
            if not table.end(conn, c.canary_id, "rolled_back", by=by or SYSTEM, reason=reason,
                             now=self.clock()):  # fmt: skip
                return False
        try:
            removed = self.rollout.deployer.abort_canary(c.model)
        except DeployError as exc:  # the row says rolled back; the next tick cannot redo it
            removed = DeployResult(False, "", c.stable_version or "", None, False, 0.0, str(exc))
            log.error("canary %s: could not remove the canary: %s", c.canary_id, exc)
        a = self._approval(c)
        if a is not None:
            final = DeployResult(
                ok=False,
                model_uri=removed.model_uri,
                version=c.version,
                previous_version=c.stable_version,
                rolled_back=True,
                seconds=self.clock() - c.started_at,
                message=f"canary rolled back at {c.percent}%: {reason}",
            )
            self.rollout.record(a, final, False)
        self._audit_end(c, "rolled_back", by, {"reason": reason, "removed": removed.ok})
        self._tell(c, "rolled_back", judgement=judgement, by=by, reason=reason)
        return True

    def supersede(self, model: str, by_version: str) -> None:
        """A newer deploy or a rollback of `model` replaces its running canary (called by
        `Rollout` under the model's lock, before it acts)."""
        for c in self.running(model):
            reason = f"a deploy of v{by_version} replaced it"
            with self.store.tx() as conn:
                if not table.end(conn, c.canary_id, "superseded", by=SYSTEM, reason=reason,
                                 now=self.clock()):  # fmt: skip
                    continue
            a = self._approval(c)
            if a is not None:
                result = DeployResult(False, "", c.version, c.stable_version, False, 0.0,
                                      f"canary stopped at {c.percent}%: {reason}")  # fmt: skip
                self.rollout.record(a, result, False)
            self._audit_end(c, "superseded", None, {"reason": reason})
            self._tell(c, "superseded", reason=reason)

    # --- steps ----------------------------------------------------------------------------

    def _set(self, c: Canary, percent: int) -> DeployResult:
        started = time.monotonic()
        try:
            return self.rollout.deployer.set_canary(c.model, c.version, c.model_uri, percent)
        except DeployError as exc:
            return DeployResult(False, "", c.version, c.stable_version, True,
                                time.monotonic() - started, str(exc))  # fmt: skip
        except Exception as exc:  # a crash must end as a rollback on record, not a stuck row
            log.exception("canary %s: set_canary(%d) crashed", c.canary_id, percent)
            return DeployResult(False, "", c.version, c.stable_version, True,
                                time.monotonic() - started, f"the deployer crashed: {exc!r}")  # fmt: skip

    def _approval(self, c: Canary) -> Approval | None:
        with self.store.connect() as conn:
            row = approvals_table.fetch(conn, c.canary_id)
        return approvals_table.to_approval(row) if row is not None else None

    def _model_of(self, canary_id: str) -> str:
        c = self.get(canary_id)
        return c.model if c is not None else "?"

    def _audit_end(
        self, c: Canary, outcome: CanaryState, by: str | None, detail: dict[str, Any]
    ) -> None:
        self.store.audit(by or SYSTEM, "canary", c.canary_id, outcome,
                         {"version": c.version, "percent": c.percent, **detail},
                         path="button" if by else "job")  # fmt: skip

    def _tell(
        self,
        c: Canary,
        moment: Moment,
        *,
        judgement: Mapping[str, Any] | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> None:
        if self.notifier is None:
            return
        view = CanaryView(
            canary_id=c.canary_id,
            model=c.model,
            version=c.version,
            stable_version=c.stable_version,
            steps=c.steps,
            step=c.step,
            moment=moment,
            judgement=judgement,
            next_at=c.step_started_at + self.step_s if moment == "step" else None,
            by=by,
            reason=reason,
            thresholds=self.thresholds,
        )
        try:
            self.notifier.tell(c, view, channel_too=moment == "rolled_back")
        except Exception:  # Slack down: the state is on record; the post is what is lost
            log.exception("canary %s: could not post the %s", c.canary_id, moment)

    # --- what Rollout asks (bot.approvals.rollout.CanaryHook) ------------------------------

    def begin(self, a: Approval, *, stable: str | None, conn: Conn) -> None:
        steps = self.rollout.canary_steps
        table.insert(conn, start_row(a, steps=steps, stable=stable, now=self.clock()))

    def told_begin(self, a: Approval) -> None:
        c = self.get(a.approval_id)
        if c is not None and c.state == "running":
            self._tell(c, "step")

    def running_for(self, model: str) -> bool:
        return bool(self.running(model))


# Failing these rolls back at the tick that sees it: errors are users' requests failing now.
# The other checks (latency, drift, outputs) are judged on the whole step: a p95 or a mean
# over the first seconds of a cold canary is noise, not a verdict.
HARD_CHECKS = frozenset({"GANOPS_CANARY_MAX_ERROR_RATE"})


def _fails_hard(judgement: Mapping[str, Any]) -> bool:
    rows = judgement.get("rows") or []
    return any(r.get("ok") is False and r.get("setting") in HARD_CHECKS for r in rows)


def start_row(a: Approval, *, steps: tuple[int, ...], stable: str | None, now: float) -> Canary:
    """The row of a canary that `Rollout` just started at `steps[0]`."""
    return Canary(
        canary_id=a.approval_id,
        model=a.model,
        version=a.version,
        model_uri=a.model_uri,
        stable_version=stable,
        steps=steps,
        step=0,
        state="running",
        started_at=now,
        step_started_at=now,
        held=False,
        judgement=None,
        ended_at=None,
        ended_by=None,
        reason=None,
        channel=a.channel,
        thread_ts=a.message_ts,
    )
