"""What to do at start-up about a rollout that a killed bot left half done: pure decisions.

A rollout takes minutes, and a pod can be killed in the middle (SIGKILL after its grace
period, a node drain, OOM). The served version and the MLflow `champion` alias may then
disagree, and an approval may sit in state "approved" with no deploy result. `plan` compares
four facts per model and says how to make them agree again:

- what the endpoint serves (`Deployer.served`: the Deployment's pod template, or the local
  server's state file), and whether that rollout settled;
- the `champion` alias (MLflow: anyone who can write to it can move it, so it is a claim);
- the approvals in flight (approved, no deploy result);
- the last deploy with a result, and the last approved deploy that succeeded: the bot's own
  record of what people approved, which a restart trusts over the alias.

Restarts never deploy what no one approved:
- an approved rollout in flight is finished (or adopted) only while it is younger than its
  `table.decision_deadline`; an older one is recorded as not rolled out, and reported;
- a failed finish, or a recorded rollout that failed and was not rolled back, is reverted to
  the last approved deploy, and to nothing else;
- when the champion alias and the last approved deploy disagree (someone moved the alias), or
  the server serves something no approval explains, the plan is to report: the server is left
  as it is, the channel is told, the audit log says so.
`bot.approvals.recover` carries the plan out. No I/O here, so every case is a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ganops.bot.approvals.table import decided, decision_deadline
from ganops.bot.ports import Approval, Served

Action = Literal[
    "agree",  # served == champion, nothing in flight: nothing to do
    "adopt",  # the rollout finished before the kill: move the alias, record the result
    "finish",  # the rollout did not finish: deploy the approved version again
    "restore",  # nothing served, or a recorded rollout failed: the last approved deploy again
    "report",  # something differs but no approval covers a change: tell the channel only
]


@dataclass(frozen=True)
class Champion:
    version: str
    model_uri: str


@dataclass(frozen=True)
class LastDeploy:
    """The newest approval of the model whose deploy result is recorded."""

    approval: Approval
    ok: bool
    aliases_moved: bool


@dataclass(frozen=True)
class ModelState:
    model: str
    served: Served | None
    champion: Champion | None
    in_flight: tuple[Approval, ...] = ()  # approved, no deploy result; newest decision first
    last_deploy: LastDeploy | None = None
    last_ok: LastDeploy | None = None  # the newest approval whose deploy succeeded
    now: float = 0.0  # when the plan is made, against each in-flight decision's deadline
    ttl_s: float = 0.0  # GANOPS_APPROVAL_TTL
    # The endpoint serves one model at a time (one Deployment, one local server): when it
    # serves another model, "nothing served" for this one is how it should be.
    serves_other: bool = False


@dataclass(frozen=True)
class Plan:
    model: str
    action: Action
    reason: str  # one human line for the channel and the audit log
    approval: Approval | None = None  # the approval to adopt or finish
    stale: tuple[Approval, ...] = ()  # in-flight approvals overtaken by a later decision
    champion: Champion | None = None  # the last approved deploy: where restore goes back to
    too_old: tuple[Approval, ...] = ()  # in flight, but past their deadline: not rolled out


def plan(state: ModelState) -> Plan:
    """The one action that makes served, champion and the audit log agree for one model."""
    young = tuple(a for a in state.in_flight if state.now < decision_deadline(a, state.ttl_s))
    old = tuple(a for a in state.in_flight if a not in young)
    live, stale = _split_in_flight(young, state.last_deploy)
    p = _plan_in_flight(state, live, stale) if live is not None else _plan_settled(state, stale)
    if not old:
        return p
    versions = ", ".join(f"v{a.version}" for a in old)
    why = f"the approved rollout of {versions} is past its expiry, so it is not rolled out"
    if p.action == "agree":
        return replace(p, action="report", reason=f"{why}; {p.reason}", too_old=old)
    return replace(p, reason=f"{p.reason}; {why}", too_old=old)


def _split_in_flight(
    young: tuple[Approval, ...], last: LastDeploy | None
) -> tuple[Approval | None, tuple[Approval, ...]]:
    """The newest in-flight approval, unless a deploy decided after it already has a result
    (then the operator has moved on and replaying it would undo their later choice)."""
    if not young:
        return None, ()
    newest, *older = young
    if last is not None and decided(last.approval) > decided(newest):
        return None, young
    return newest, tuple(older)


def _trusted(state: ModelState) -> Champion | None:
    """The last approved deploy that succeeded, from the approvals table."""
    ok = state.last_ok
    return Champion(ok.approval.version, ok.approval.model_uri) if ok is not None else None


def _plan_in_flight(state: ModelState, a: Approval, stale: tuple[Approval, ...]) -> Plan:
    served, back = state.served, _trusted(state)
    was = f"v{a.version} ({a.kind}, approved by {', '.join(a.approvers) or a.decided_by})"
    if served is not None and served.version == a.version and served.settled:
        reason = f"the rollout of {was} had finished when the bot stopped; moving the alias"
        return Plan(state.model, "adopt", reason, a, stale, back)
    now = _serving(served)
    reason = f"the rollout of {was} was cut short ({now}); rolling it out again"
    return Plan(state.model, "finish", reason, a, stale, back)


def _plan_settled(state: ModelState, stale: tuple[Approval, ...]) -> Plan:
    served, alias, trusted = state.served, state.champion, _trusted(state)
    if served is None and state.serves_other:
        return Plan(state.model, "agree", "the endpoint serves another model", stale=stale)
    if trusted is None:
        return _without_record(state, stale)
    if alias is None or alias.version != trusted.version:
        return _alias_moved(state, stale, trusted)
    if served is not None and served.version == trusted.version:
        return Plan(state.model, "agree", f"v{trusted.version} serves and is champion", None, stale)
    if served is None:
        reason = f"nothing is served; serving the last approved deploy v{trusted.version} again"
        return Plan(state.model, "restore", reason, None, stale, trusted)
    last = state.last_deploy
    if (
        last is not None
        and not last.ok
        and last.approval.version == served.version
        and state.now < decision_deadline(last.approval, state.ttl_s)
    ):
        reason = (
            f"the recorded rollout of v{served.version} failed and was not rolled back; "
            f"reverting to the last approved deploy v{trusted.version}"
        )
        return Plan(state.model, "restore", reason, None, stale, trusted)
    reason = (
        f"{_serving(served)}, but the last approved deploy is v{trusted.version} and no "
        "approved rollout explains it; leaving the server as it is"
    )
    return Plan(state.model, "report", reason, None, stale, trusted)


def _without_record(state: ModelState, stale: tuple[Approval, ...]) -> Plan:
    """No approved deploy on record (a fresh install, a champion set by hand): nothing to
    go back to, so nothing is deployed."""
    served, alias = state.served, state.champion
    if served is None and alias is None:
        return Plan(state.model, "agree", "nothing served and no champion", stale=stale)
    if served is not None and alias is not None and served.version == alias.version:
        return Plan(state.model, "agree", f"v{alias.version} serves and is champion", stale=stale)
    boss = f"v{alias.version}" if alias is not None else "none"
    reason = (
        f"{_serving(served)} and the champion alias is {boss}, but no approved deploy is on "
        "record to go back to; leaving the server as it is"
    )
    return Plan(state.model, "report", reason, stale=stale)


def _alias_moved(state: ModelState, stale: tuple[Approval, ...], trusted: Champion) -> Plan:
    served, alias, ok = state.served, state.champion, state.last_ok
    if (
        ok is not None
        and state.last_deploy is not None
        and state.last_deploy.approval.approval_id == ok.approval.approval_id
        and not ok.aliases_moved
        and served is not None
        and served.settled
        and served.version == trusted.version
    ):
        # The deploy succeeded and was recorded, but the registry was down for the alias.
        reason = f"v{served.version} was deployed but the champion alias never moved; moving it"
        return Plan(state.model, "adopt", reason, ok.approval, stale, trusted)
    boss = f"v{alias.version}" if alias is not None else "no version"
    reason = (
        f"the champion alias names {boss} but the last approved deploy is v{trusted.version} "
        f"(the alias was moved outside the bot; {_serving(served)}); leaving the server as it is"
    )
    return Plan(state.model, "report", reason, None, stale, trusted)


def _serving(served: Served | None) -> str:
    if served is None:
        return "nothing is served"
    return f"v{served.version} serves" + ("" if served.settled else " (rollout not settled)")
