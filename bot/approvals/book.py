"""Approvals: a deploy happens only when an allowed person says so, exactly once, on record.

`ApprovalBook.decide` is the one decision function behind the Approve/Reject buttons,
`/ganops approve|reject` and `ganops approvals decide`. Every fact lives in the store, so a
restarted bot honours the buttons of cards it posted before; a button carries only the
opaque approval id. The first decision wins through a compare-and-set inside one IMMEDIATE
transaction; the deploy runs after the commit, outside the write lock, and is recorded too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ganops.bot.approvals import table
from ganops.bot.approvals.expect import new_approval_id, stale_message, stale_reason
from ganops.bot.approvals.rollout import SYSTEM, Rollout
from ganops.bot.blocks.approvals import label, who_decided
from ganops.bot.policy import AuditPath
from ganops.bot.ports import (
    Approval,
    ApprovalKind,
    DecisionOutcome,
    DecisionStatus,
    Deployer,
    DeployResult,
    ModelRegistry,
    ModelVersionInfo,
)
from ganops.bot.store import Store
from ganops.model.registry import CHAMPION, PREVIOUS_CHAMPION

log = logging.getLogger(__name__)
_ALREADY_VOTED = "Your approval is already recorded; a second approver is needed."

_VERBS = {"approve": "approve", "approved": "approve", "yes": "approve"}
_VERBS |= {"reject": "reject", "rejected": "reject", "no": "reject"}


class NothingToRollBack(Exception):
    """No previous champion (or no such version) to roll back to; the message says which."""


class ApprovalBook:
    """The `approvals` table and its policy. Implements `bot.ports.ApprovalService`.

    `approvers` are Slack user ids; members of `approver_groups` (user group ids) count too,
    looked up through `group_members` at every decision, on the server side.
    """

    def __init__(
        self,
        store: Store,
        registry: ModelRegistry,
        deployer: Deployer,
        *,
        approvers: frozenset[str],
        approver_groups: frozenset[str] = frozenset(),
        group_members: Callable[[str], set[str]] | None = None,
        allow_self: bool = False,
        required: int = 1,
        ttl_s: float = 86400,
        canary_steps: tuple[int, ...] = (100,),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if required not in (1, 2):
            raise ValueError(f"required approvals must be 1 or 2, not {required}")
        self.store = store
        self.registry = registry
        self.approvers = approvers
        self.approver_groups = approver_groups
        self.group_members = group_members
        self.allow_self = allow_self
        self.required = required
        self.ttl_s = ttl_s
        self.clock = clock
        self.rollout = Rollout(store, registry, deployer, canary_steps=canary_steps)
        self.cards = table.CardLedger(store)
        table.migrate(store)

    # --- opening ------------------------------------------------------------------------

    def request(
        self,
        *,
        model: str,
        version: str,
        model_uri: str,
        requested_by: str,
        run_id: str | None = None,
        kind: ApprovalKind = "deploy",
        channel: str | None = None,
        expected_champion: str | None = None,
    ) -> Approval:
        """Open a pending approval. A new deploy supersedes the model's older pending deploys
        that nobody has voted on yet (a first yes under the two-person rule stays, so the
        second approver can still finish it); a rollback supersedes nothing (asking for one
        must not cancel a pending decision)."""
        now = self.clock()
        new = Approval(
            approval_id=new_approval_id(),
            run_id=run_id,
            model=model,
            version=str(version),
            model_uri=model_uri,
            kind=kind,
            requested_by=requested_by,
            state="pending",
            created_at=now,
            expires_at=now + self.ttl_s,
            channel=channel,
            expected_champion=expected_champion,
        )
        with self.store.tx() as conn:
            if kind == "deploy":
                where = "state='pending' AND model=? AND kind='deploy' AND approvers='[]'"
                self._supersede(conn, table.select(conn, where, (model,)), new, now)
            table.insert(conn, new)
            detail = {"model": model, "version": new.version, "kind": kind, "run_id": run_id}
            if expected_champion is not None:
                detail["expected_champion"] = expected_champion
            self.store.audit(requested_by, "request", new.approval_id, "pending", detail, conn=conn)
        return new

    def _supersede(self, conn: table.Conn, rows: list[Any], new: Approval, now: float) -> None:
        for row in rows:
            old = row["approval_id"]
            if table.finish(conn, old, "superseded", None, now, superseded_by=new.approval_id):
                detail = {"by": new.approval_id, "version": row["version"]}
                self.store.audit(SYSTEM, "supersede", old, "superseded", detail, conn=conn)

    def request_rollback(
        self, model: str, requested_by: str, version: str | None = None, channel: str | None = None
    ) -> Approval:
        """A rollback approval: to `version`, or to the previous champion. It carries the
        champion it replaces, and goes stale if that is no longer the champion when decided.

        Raises:
            NothingToRollBack: no previous champion, or no such version.
        """
        target = self.rollback_target(model, version)
        champion = self.registry.get_alias(model, CHAMPION)
        return self.request(
            model=model,
            version=target.version,
            model_uri=target.uri,
            requested_by=requested_by,
            kind="rollback",
            channel=channel,
            expected_champion=champion.version if champion is not None else None,
        )

    def rollback_target(self, model: str, version: str | None) -> ModelVersionInfo:
        """The version a rollback would serve.

        Raises:
            NothingToRollBack: no previous champion, or no such version.
        """
        target: ModelVersionInfo | None
        if version is None:
            target = self.registry.get_alias(model, PREVIOUS_CHAMPION)
            if target is None:
                raise NothingToRollBack(f"{model} has no previous champion to roll back to")
        else:
            target = self.registry.get_version(model, version)
            if target is None:
                raise NothingToRollBack(f"{model} has no version {version}")
        return target

    def attach_message(
        self,
        approval_id: str,
        channel: str,
        message_ts: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """Remember where the card is, and its blocks if given, to re-render it later."""
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE approvals SET channel=?, message_ts=?, card_state='pending' "
                "WHERE approval_id=?",
                (channel, message_ts, approval_id),
            )
        if blocks is not None:
            self.cards.save_blocks(approval_id, blocks)

    # --- reading ------------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval | None:
        with self.store.connect() as conn:
            row = table.fetch(conn, approval_id)
        return table.to_approval(row) if row is not None else None

    def pending(self) -> list[Approval]:
        return self.recent(state="pending", limit=1000)

    def recent(self, limit: int = 20, state: str | None = None) -> list[Approval]:
        """The newest approvals first, optionally in one state."""
        where, args = ("state=?", (state,)) if state else ("1", ())
        with self.store.connect() as conn:
            rows = table.select(conn, where, args, limit)
        return [table.to_approval(r) for r in rows]

    def deploy_result(self, approval_id: str) -> DeployResult | None:
        with self.store.connect() as conn:
            row = table.fetch(conn, approval_id)
        return table.deploy_result(row) if row is not None else None

    def is_approver(self, user_id: str) -> bool:
        if user_id in self.approvers:
            return True
        if not self.approver_groups or self.group_members is None:
            return False
        return any(user_id in self.group_members(g) for g in sorted(self.approver_groups))

    # --- deciding -----------------------------------------------------------------------

    def decide(
        self,
        approval_id: str,
        user_id: str,
        decision: str,
        on_decided: Callable[[Approval], None] | None = None,
        *,
        path: AuditPath | None = None,
        os_user: str | None = None,
        requester_vote: bool = False,
        carry_out: bool = True,
    ) -> DecisionOutcome:
        """The one decision function. The first decision wins; an approval deploys once.

        `on_decided` runs after the decision commits and before the deploy starts (the
        button path uses it to update the card at once). `path` and `os_user` (the CLI's)
        go into every audit row. `requester_vote`: the requester's own `auto_deploy=true`,
        which counts as their approval (they must be an approver) but never as a second one.
        `carry_out=False` (the CLI) only records the decision: the bot's approvals job rolls
        it out, in the bot process and under the model's lock (`jobs.carry_out_recorded`)."""
        via = _Via(path, os_user)
        verb = _VERBS.get(decision.strip().lower())
        self._audit(via, user_id, "click", approval_id, decision, {"decision": verb})
        with self.store.connect() as conn:
            row = table.fetch(conn, approval_id)
        if row is None:
            msg = f"No approval {approval_id!r}."
            return self._refuse(via, user_id, approval_id, "not_found", msg)
        if verb is None or (requester_vote and verb != "approve"):
            return self._refuse(via, user_id, approval_id, "refused", "Say approve or reject.")
        a = table.to_approval(row)
        refusal = self._refusal(a, user_id, verb, via, requester_vote)
        if refusal is not None:
            return refusal
        champion: str | None = None
        if verb == "approve" and a.expected_champion is not None:
            try:  # MLflow: read before the write transaction, compared inside it
                champion = self._champion(a.model)
            except Exception as exc:  # never approve a rollback blind
                log.warning("cannot read the champion of %s: %s", a.model, exc)
                msg = (
                    f"I could not read the champion of {a.model} to check this rollback; try again."
                )
                return self._refuse(via, user_id, approval_id, "refused", msg)
        outcome = self._transition(approval_id, user_id, verb, via, _Decision(carry_out, champion))
        return self._after_decision(outcome, approval_id, on_decided, carry_out)

    def _champion(self, model: str) -> str | None:
        info = self.registry.get_alias(model, CHAMPION)
        return info.version if info is not None else None

    def _audit(
        self,
        via: _Via,
        actor: str,
        action: str,
        obj: str,
        outcome: str,
        detail: dict[str, Any] | None = None,
        conn: table.Conn | None = None,
    ) -> None:
        detail = dict(detail or {})
        if via.os_user is not None:  # the CLI: who typed it, beside the --user they named
            detail["os_user"] = via.os_user
        self.store.audit(actor, action, obj, outcome, detail, conn=conn, path=via.path)

    def _after_decision(
        self,
        outcome: DecisionOutcome,
        approval_id: str,
        on_decided: Callable[[Approval], None] | None,
        carry_out: bool = True,
    ) -> DecisionOutcome:
        """What follows a committed decision: tags, the card, and for an approval the
        deploy. Only the caller whose compare-and-set won gets here with a decision."""
        decided = outcome.approval
        if outcome.status not in ("approved", "rejected", "stale") or decided is None:
            return outcome
        self.rollout.tag_decision(decided)
        if on_decided is not None:
            try:
                on_decided(decided)
            except Exception:  # showing the decision must never stop the approved deploy
                log.exception("on_decided failed for %s", approval_id)
        if outcome.status != "approved":
            return outcome
        if not carry_out:
            message = f"Approved {label(decided)}; the bot rolls it out on its next approvals tick."
            return DecisionOutcome("approved", message, decided)
        result = self.rollout.deploy(decided)
        if result.ok:
            message = f"Approved {label(decided)}: {result.message}"
        else:
            message = f"Approved {label(decided)}, but the deploy failed: {result.message}"
        return DecisionOutcome("approved", message, decided, result)

    def _refuse(
        self, via: _Via, user_id: str, approval_id: str, status: DecisionStatus, message: str
    ) -> DecisionOutcome:
        self._audit(via, user_id, "decide", approval_id, status, {"reason": message})
        return DecisionOutcome(status, message)

    def _refusal(
        self, a: Approval, user_id: str, verb: str, via: _Via, requester_vote: bool
    ) -> DecisionOutcome | None:
        """Why `user_id` may not decide `a` now, or None when they may. A fast answer only:
        the vote itself is checked again inside the transaction."""
        if a.state != "pending":
            return self._late(a, user_id, via)
        try:
            allowed = self.is_approver(user_id)
        except Exception as exc:  # the group lookup is a Slack call; never approve on error
            log.warning("approver group lookup failed: %s", exc)
            msg = "I could not check the approver group right now; try again in a minute."
            return self._refuse(via, user_id, a.approval_id, "refused", msg)
        if not allowed:
            msg = "You are not an approver."
            return self._refuse(via, user_id, a.approval_id, "refused", msg)
        if requester_vote and user_id != a.requested_by:
            msg = "Only the requester's auto_deploy counts as their vote."
            return self._refuse(via, user_id, a.approval_id, "refused", msg)
        if verb == "approve" and user_id in a.approvers:  # the answer; the tx re-checks
            self._audit(via, user_id, "decide", a.approval_id, "duplicate")
            return DecisionOutcome("recorded", _ALREADY_VOTED, a)
        own = verb == "approve" and user_id == a.requested_by
        if own and not self.allow_self and not requester_vote:
            msg = "You asked for this model; someone else must approve it."
            return self._refuse(via, user_id, a.approval_id, "refused", msg)
        return None

    def _late(self, a: Approval, user_id: str, via: _Via) -> DecisionOutcome:
        status: DecisionStatus = "expired" if a.state == "expired" else "already_decided"
        message = f"Already {who_decided(a)}."
        if a.state == "expired":
            message = f"This approval {who_decided(a)}; ask for a new one."
        self._audit(via, user_id, "decide", a.approval_id, status, {"state": a.state})
        return DecisionOutcome(status, message, a)

    def _transition(
        self, approval_id: str, user_id: str, verb: str, via: _Via, how: _Decision
    ) -> DecisionOutcome:
        """The compare-and-set, in one IMMEDIATE transaction with its audit row."""
        now = self.clock()
        just_expired = False
        with self.store.tx() as conn:
            a = _approval(table.fetch(conn, approval_id))
            if a.state == "pending" and now >= a.expires_at:
                just_expired = table.finish(conn, approval_id, "expired", None, now)
                self.store.audit(SYSTEM, "expire", approval_id, "expired", {}, conn=conn)
                a = _approval(table.fetch(conn, approval_id))
            elif a.state == "pending" and verb == "reject":
                table.finish(conn, approval_id, "rejected", user_id, now)
                self._audit(via, user_id, "decide", approval_id, "rejected", {}, conn=conn)
                rejected = _approval(table.fetch(conn, approval_id))
                return DecisionOutcome("rejected", f"Rejected {label(a)}.", rejected)
            elif a.state == "pending":
                return self._approve_in_tx(conn, a, user_id, now, via, how)
        if just_expired:
            self.rollout.tag_decision(a)
        return self._late(a, user_id, via)

    def _approve_in_tx(
        self, conn: table.Conn, a: Approval, user_id: str, now: float, via: _Via, how: _Decision
    ) -> DecisionOutcome:
        """A yes, counted once per user: `a` was read in this same write transaction, so two
        concurrent yeses by one user (a double click, a button and /ganops) cannot both count."""
        if user_id in a.approvers:
            self._audit(via, user_id, "decide", a.approval_id, "duplicate", {}, conn=conn)
            return DecisionOutcome("recorded", _ALREADY_VOTED, a)
        why = stale_reason(conn, a, how.champion)
        if why is not None:  # the compare-and-set on the champion failed: nothing deploys
            table.finish(conn, a.approval_id, "stale", user_id, now)
            self._audit(via, user_id, "decide", a.approval_id, "stale", {"reason": why}, conn=conn)
            stale = _approval(table.fetch(conn, a.approval_id))
            return DecisionOutcome("stale", stale_message(stale, why), stale)
        votes = (*dict.fromkeys(a.approvers), user_id)
        if len(votes) < self.required:
            table.record_vote(conn, a.approval_id, a.approvers, votes)
            self._audit(via, user_id, "decide", a.approval_id, "recorded", {}, conn=conn)
            more = self.required - len(votes)
            msg = f"Your approval of {label(a)} is recorded; {more} more approver needed."
            return DecisionOutcome("recorded", msg, _approval(table.fetch(conn, a.approval_id)))
        table.finish(conn, a.approval_id, "approved", user_id, now, approvers=votes)
        if how.carry_out:  # this caller rolls it out; the approvals job leaves it alone
            table.claim_rollout(conn, a.approval_id, now)
        detail: dict[str, Any] = {"approvers": list(votes), "carried_out_by": via.carrier(how)}
        self._audit(via, user_id, "decide", a.approval_id, "approved", detail, conn=conn)
        return DecisionOutcome("approved", "", _approval(table.fetch(conn, a.approval_id)))

    # --- expiry and recovery ----------------------------------------------------------------

    def settle_interrupted(self, older_than_s: float = 3600.0) -> list[Approval]:
        """Approved long ago but with no deploy result: the process died mid-deploy. Record
        that (the deployers give up long before), so the card and the audit say so."""
        cutoff = self.clock() - older_than_s
        with self.store.connect() as conn:
            rows = table.select(
                conn, "state='approved' AND deploy_result IS NULL AND decided_at<?", (cutoff,)
            )
        settled = [table.to_approval(r) for r in rows]
        for a in settled:
            self.rollout.record_interrupted(a)
        return settled

    def expire_due(self) -> list[Approval]:
        """Expire pending approvals past their TTL; return those that just expired."""
        now = self.clock()
        expired: list[Approval] = []
        with self.store.tx() as conn:
            for row in table.select(conn, "state='pending' AND expires_at<=?", (now,)):
                if table.finish(conn, row["approval_id"], "expired", None, now):
                    approval_id = row["approval_id"]
                    self.store.audit(
                        SYSTEM, "expire", approval_id, "expired", {}, conn=conn, path="job"
                    )
                    expired.append(_approval(table.fetch(conn, row["approval_id"])))
        for a in expired:
            self.rollout.tag_decision(a)
        return expired


@dataclass(frozen=True)
class _Via:
    """How a decision came: its audit path, and the OS user for the CLI."""

    path: AuditPath | None
    os_user: str | None = None

    def carrier(self, how: _Decision) -> str:
        return "this call" if how.carry_out else "the bot's approvals job"


@dataclass(frozen=True)
class _Decision:
    """What a yes needs besides the vote: whether this caller rolls it out, and the champion
    read from the registry just before (a rollback's compare-and-set value)."""

    carry_out: bool = True
    champion: str | None = None


def _approval(row: Any) -> Approval:
    assert row is not None  # approvals are never deleted
    return table.to_approval(row)
