"""Start-up reconciliation: read the facts, carry out `reconcile.plan`, record it, tell people.

Runs once per bot process, before the first approvals tick (so `settle_interrupted` never
races it), on the bot's scheduler so that start-up itself is not held up by a redeploy.
Every action lands in the audit log as `reconcile` on the model; every change, and every
disagreement it leaves alone (an alias moved by hand, a rollout too old to finish), is
posted to the channel, and in the thread of the approval card it concerns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ganops.bot.approvals import table
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.approvals.reconcile import Champion, LastDeploy, ModelState, Plan, plan
from ganops.bot.approvals.rollout import SYSTEM
from ganops.bot.blocks.reconcile import reconcile_blocks, reconcile_text
from ganops.bot.ports import Approval, Deployer, DeployError, DeployResult, ModelRegistry
from ganops.model.registry import CHAMPION
from ganops.pipeline.db import Row
from ganops.pipeline.params import MODELS

log = logging.getLogger(__name__)

# An approved rollout with no result and no lock holder this long after its decision has lost
# its replica (a live one takes the model's lock within moments of the decision).
ORPHAN_AGE_S = 20.0


@dataclass(frozen=True)
class Reconciled:
    """What start-up reconciliation did for one model, and where it ended."""

    plan: Plan
    deploy: DeployResult | None = None  # the finishing deploy, or the restore
    restore: DeployResult | None = None  # the champion put back after a failed finish
    served: str | None = None  # the version served afterwards
    champion: str | None = None  # the champion afterwards

    @property
    def agree(self) -> bool:
        return self.served == self.champion


Notify = Callable[[Reconciled], None]


class Reconciler:
    def __init__(
        self,
        book: ApprovalBook,
        deployer: Deployer,
        registry: ModelRegistry,
        *,
        notify: Notify | None = None,
        models: Sequence[str] = MODELS,
    ) -> None:
        self.book = book
        self.deployer = deployer
        self.registry = registry
        self.notify = notify
        self.models = tuple(models)
        self._done = False
        self._once = threading.Lock()
        # Rollouts claimed after this process started are this process's own (a click in
        # the first second): they are running, not left behind, so they are not replayed.
        self.started = book.clock()

    def once(self) -> list[Reconciled]:
        """`run` the first time only; later calls return at once."""
        with self._once:
            if self._done:
                return []
            self._done = True
        return self.run()

    def orphans(self, older_than_s: float = ORPHAN_AGE_S) -> list[Reconciled]:
        """Rollouts whose replica died mid-way while the others kept running: approved a
        while ago, no result, and nobody holds the model's rollout lock. Reconciled like at
        start-up (the leader calls this on every approvals tick)."""
        cutoff = self.book.clock() - older_than_s
        with self.book.store.connect() as conn:
            rows = table.select(
                conn, "state='approved' AND deploy_result IS NULL AND decided_at<?", (cutoff,)
            )
        models = sorted({r["model"] for r in rows})
        lost = [m for m in models if not self.book.rollout.in_flight_anywhere(m)]
        if lost:
            log.warning("rollouts of %s were cut short by a replica that died", lost)
        # Their claims may postdate this process's start: they are another replica's, whose
        # lock is gone with it, so the start-up filter for this process's own clicks is off.
        return self.run(lost, orphaned=True) if lost else []

    def run(self, only: Sequence[str] | None = None, *, orphaned: bool = False) -> list[Reconciled]:
        """Reconcile every model (start-up), or carry out the plans of `only` those
        (`orphaned`: rollouts a dead replica claimed, whenever it claimed them)."""
        states: list[ModelState] = []
        for model in self.models:
            if self.book.rollout.in_flight_anywhere(model):
                # A live rollout (this process or another replica) records its own result;
                # a plan read now would be stale by the time it ran. If its replica dies, the
                # orphan pass picks it up.
                log.info("reconcile: a rollout of %s is in flight; left to it", model)
                continue
            canary = self.book.rollout.canary
            if canary is not None and canary.running_for(model):
                # The stable version serves and the alias has not moved, by design: the
                # canary controller resumes it from its row and moves the alias at 100%.
                log.info("reconcile: %s has a canary running; left to it", model)
                continue
            try:
                since = None if orphaned else self.started
                states.append(self.state(model, claimed_before=since))
            except Exception as exc:  # MLflow or the cluster is down: decide nothing blind
                log.warning("cannot reconcile %s at start-up: %s", model, exc)
                self.book.store.audit(SYSTEM, "reconcile", model, "failed", {"error": str(exc)})
        served = {s.model for s in states if s.served is not None}
        return [
            self.carry_out(plan(replace(s, serves_other=bool(served - {s.model}))))
            for s in states
            if only is None or s.model in only
        ]

    def state(self, model: str, *, claimed_before: float | None = None) -> ModelState:
        """`claimed_before`: leave out rollouts claimed since then (this process's own)."""
        served = self.deployer.served(model)
        info = self.registry.get_alias(model, CHAMPION)
        champion = Champion(info.version, info.uri) if info is not None else None
        with self.book.store.connect() as conn:
            where = "model=? AND state='approved' AND deploy_result IS NULL"
            args: tuple[object, ...] = (model,)
            if claimed_before is not None:
                where += " AND (rollout_claimed_at IS NULL OR rollout_claimed_at<?)"
                args = (model, claimed_before)
            flying = table.select(conn, where, args)
            last = table.select(conn, "model=? AND deploy_result IS NOT NULL", (model,), 1)
            ok = table.select(conn, "model=? AND deploy_ok=1", (model,), 1)
        in_flight = sorted((table.to_approval(r) for r in flying), key=table.decided, reverse=True)
        return ModelState(
            model,
            served,
            champion,
            tuple(in_flight),
            self._last(last),
            self._last(ok),
            now=self.book.clock(),
            ttl_s=self.book.ttl_s,
        )

    def carry_out(self, p: Plan) -> Reconciled:
        rollout = self.book.rollout
        for a in p.stale:
            rollout.record_interrupted(a)
        now = self.book.clock()
        for a in p.too_old:
            rollout.record_not_rolled_out(a, table.too_old(a, now))
        deploy = restore = None
        if p.action == "adopt" and p.approval is not None:
            if self.book.deploy_result(p.approval.approval_id) is not None:
                rollout.move_aliases(p.approval)  # the deploy is on record; the alias lagged
            else:
                rollout.adopt(p.approval, p.approval.model_uri, f"at start-up: {p.reason}")
        elif p.action == "finish" and p.approval is not None:
            deploy = rollout.deploy(p.approval)
            if not deploy.ok:
                restore = self._restore_if_needed(p)
        elif p.action == "restore" and p.champion is not None:
            deploy = rollout.deploy_version(p.model, p.champion.version, p.champion.model_uri)
        done = self._ended(p, deploy, restore)
        self._audit(done)
        if p.action != "agree" or p.stale or p.too_old:
            self._tell(done)
        return done

    # --- steps ------------------------------------------------------------------------------

    def _last(self, rows: list[Row]) -> LastDeploy | None:
        if not rows:
            return None
        a = table.to_approval(rows[0])
        result = self.book.deploy_result(a.approval_id)
        moved = any(
            r.action == "deploy" and r.detail.get("aliases_moved")
            for r in self.book.store.list_audit(limit=50, obj=a.approval_id)
        )
        return LastDeploy(a, bool(result and result.ok), moved)

    def _restore_if_needed(self, p: Plan) -> DeployResult | None:
        """A finish that failed may leave the half-rolled version (the deployer rolls back to
        what it found, which was the half-done rollout): put the last approved deploy back
        (never the alias: it may have been moved by hand)."""
        if p.champion is None:
            return None
        served = self._served_version(p.model)
        if served == p.champion.version:
            return None
        return self.book.rollout.deploy_version(p.model, p.champion.version, p.champion.model_uri)

    def _ended(
        self, p: Plan, deploy: DeployResult | None, restore: DeployResult | None
    ) -> Reconciled:
        try:
            info = self.registry.get_alias(p.model, CHAMPION)
        except Exception as exc:
            log.warning("cannot read the champion of %s after reconciling: %s", p.model, exc)
            info = None
        champion = info.version if info is not None else None
        return Reconciled(p, deploy, restore, self._served_version(p.model), champion)

    def _served_version(self, model: str) -> str | None:
        try:
            served = self.deployer.served(model)
        except DeployError as exc:
            log.warning("cannot read what serves %s: %s", model, exc)
            return None
        return served.version if served is not None else None

    def _audit(self, done: Reconciled) -> None:
        p = done.plan
        outcome = "noop" if p.action == "agree" else ("ok" if done.agree else "disagree")
        detail = {
            "action": p.action,
            "reason": p.reason,
            "approval": p.approval.approval_id if p.approval else None,
            "stale": [a.approval_id for a in p.stale],
            "too_old": [a.approval_id for a in p.too_old],
            "deploy": done.deploy.message if done.deploy else None,
            "restore": done.restore.message if done.restore else None,
            "served": done.served,
            "champion": done.champion,
        }
        self.book.store.audit(SYSTEM, "reconcile", p.model, outcome, detail)

    def _tell(self, done: Reconciled) -> None:
        if self.notify is None:
            return
        try:
            self.notify(done)
        except Exception:  # telling people must never undo or repeat what was done
            log.exception("cannot tell the channel about reconciling %s", done.plan.model)


def slack_notifier(client: WebClient, channel: str) -> Notify:
    """Post to the channel, and in the thread of each approval card concerned."""

    def notify(done: Reconciled) -> None:
        results = tuple(r.message for r in (done.deploy, done.restore) if r is not None)
        text = reconcile_text(model=done.plan.model, served=done.served, champion=done.champion)
        blocks = reconcile_blocks(
            model=done.plan.model,
            reason=done.plan.reason,
            served=done.served,
            champion=done.champion,
            results=results,
        )
        where = [(channel, None)] + [
            (a.channel, a.message_ts) for a in _approvals_of(done) if a.channel and a.message_ts
        ]
        for to, thread in where:
            try:
                client.chat_postMessage(channel=to, thread_ts=thread, text=text, blocks=blocks)
            except SlackApiError as exc:  # one failed post must not hide the others
                log.warning("cannot post the reconciliation to %s: %s", to, exc)

    return notify


def _approvals_of(done: Reconciled) -> list[Approval]:
    plan = done.plan
    return [a for a in (plan.approval, *plan.stale, *plan.too_old) if a is not None]
