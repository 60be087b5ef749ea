"""What to do at start-up about a rollout that a killed bot left half done: pure decisions.

A rollout takes minutes, and a pod can be killed in the middle (SIGKILL after its grace
period, a node drain, OOM). The served version and the MLflow `champion` alias may then
disagree, and an approval may sit in state "approved" with no deploy result. `plan` compares
three facts per model and says how to make them agree again:

- what the endpoint serves (`Deployer.served`: the Deployment's pod template, or the local
  server's state file), and whether that rollout settled;
- the `champion` alias;
- the approvals in flight (approved, no deploy result) and the last deploy with a result.

An approved rollout is finished (the approver's decision stands); anything else that serves
something other than the champion is rolled back to the champion. `bot.approvals.recover`
carries the plan out. No I/O here, so every case is a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ganops.bot.ports import Approval, Served

Action = Literal[
    "agree",  # served == champion, nothing in flight: nothing to do
    "adopt",  # the rollout finished before the kill: move the alias, record the result
    "finish",  # the rollout did not finish: deploy the approved version again
    "restore",  # served differs from the champion with no approval behind it: deploy champion
    "report",  # something differs but there is nothing safe to do: tell the channel only
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
    champion: Champion | None = None  # where to go back to (restore; or if finishing fails)


def plan(state: ModelState) -> Plan:
    """The one action that makes served, champion and the audit log agree for one model."""
    live, stale = _split_in_flight(state)
    if live is not None:
        return _plan_in_flight(state, live, stale)
    return _plan_settled(state, stale)


def _split_in_flight(state: ModelState) -> tuple[Approval | None, tuple[Approval, ...]]:
    """The newest in-flight approval, unless a deploy decided after it already has a result
    (then the operator has moved on and replaying it would undo their later choice)."""
    if not state.in_flight:
        return None, ()
    newest, *older = state.in_flight
    last = state.last_deploy
    if last is not None and _decided(last.approval) > _decided(newest):
        return None, state.in_flight
    return newest, tuple(older)


def _plan_in_flight(state: ModelState, a: Approval, stale: tuple[Approval, ...]) -> Plan:
    served = state.served
    was = f"v{a.version} ({a.kind}, approved by {', '.join(a.approvers) or a.decided_by})"
    if served is not None and served.version == a.version and served.settled:
        reason = f"the rollout of {was} had finished when the bot stopped; moving the alias"
        return Plan(state.model, "adopt", reason, a, stale, state.champion)
    now = _serving(served)
    reason = f"the rollout of {was} was cut short ({now}); rolling it out again"
    return Plan(state.model, "finish", reason, a, stale, state.champion)


def _plan_settled(state: ModelState, stale: tuple[Approval, ...]) -> Plan:
    served, champion, last = state.served, state.champion, state.last_deploy
    if served is None and state.serves_other:
        return Plan(state.model, "agree", "the endpoint serves another model", stale=stale)
    if champion is None:
        if served is None:
            return Plan(state.model, "agree", "nothing served and no champion", stale=stale)
        reason = f"{_serving(served)} but there is no champion to roll back to"
        return Plan(state.model, "report", reason, stale=stale)
    if served is not None and served.version == champion.version:
        return Plan(
            state.model, "agree", f"v{champion.version} serves and is champion", None, stale
        )
    if (
        served is not None
        and served.settled
        and last is not None
        and last.ok
        and not last.aliases_moved
        and last.approval.version == served.version
    ):
        # The deploy succeeded and was recorded, but the registry was down for the alias.
        reason = f"v{served.version} was deployed but the champion alias never moved; moving it"
        return Plan(state.model, "adopt", reason, last.approval, stale, champion)
    if served is None:
        reason = f"nothing is served; serving the champion v{champion.version} again"
        return Plan(state.model, "restore", reason, None, stale, champion)
    why = f"{_serving(served)}, not the champion, with no approved rollout behind it"
    reason = f"{why}; rolling back to v{champion.version}"
    return Plan(state.model, "restore", reason, None, stale, champion)


def _serving(served: Served | None) -> str:
    if served is None:
        return "nothing is served"
    return f"v{served.version} serves" + ("" if served.settled else " (rollout not settled)")


def _decided(a: Approval) -> float:
    return a.decided_at if a.decided_at is not None else a.created_at
