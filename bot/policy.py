"""Who may do what: the ONE policy behind every path (button, slash command, modal, CLI, job).

Facts in (who asks, for what, the bounds from settings), a `Verdict` out. Nothing here talks
to Slack: whether a user is an approver is asked of an injected function (the approval book's,
which also knows approver groups), and a failing lookup counts as "not an approver", never as
yes. `RULES` is the table enforcement reads: `Policy.may` dispatches on each rule's `check`,
and `bot.gate` renders the Security table (docs/security.md) from it and its entry points.
"""

from __future__ import annotations

import ipaddress
import logging
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ganops.bot.store import Store
from ganops.pipeline.ports import RunParams

log = logging.getLogger(__name__)

# How an action reached the bot; recorded in every audit row it writes.
AuditPath = Literal["button", "slash", "modal", "home", "cli", "policy", "job"]
Action = Literal[
    "read",
    "retrain",
    "auto_deploy",
    "approve",
    "reject",
    "rollback",
    "cancel",
    "snooze",
    "ignore",
    "alarm_retrain",
    "data_retrain",
    "data_dismiss",
    "canary",
    "operator",
    "system",
]
# How a rule is decided:
#   anyone     - nothing to check (read-only answers)
#   approver   - the actor alone decides it: the gate checks it before the listener runs
#   bounds     - needs the request's parameters (`may_retrain`)
#   requester  - needs the object's requester (cancel: the run's requester or an approver)
#   decision   - `ApprovalBook.decide` (approver, not the requester, once per user)
#   operator   - no Slack identity: whoever can run the process on the host or pod
#   system     - the bot's own jobs, acting on decisions already taken
Check = Literal["anyone", "approver", "bounds", "requester", "decision", "operator", "system"]


@dataclass(frozen=True)
class Rule:
    """Who may do an action (`who`, as the Security table says it), how it is checked, and
    what a refusal says."""

    who: str
    check: Check
    refusal: str = ""


_BOUNDS_TEXT = (
    "`GANOPS_MAX_GPUS` for `gpus × nodes`, `GANOPS_MAX_NODES`, `GANOPS_MAX_STEPS`, "
    "`GANOPS_MAX_EPOCHS`, `GANOPS_DATA_ALLOW`"
)
_DECIDER = (
    "an approver who did not request it (unless `GANOPS_ALLOW_SELF_APPROVAL`); "
    "each user counts once"
)
# The policy table: what enforcement reads, and what docs/security.md is rendered from.
RULES: Mapping[Action, Rule] = {
    "read": Rule("any channel member", "anyone"),
    "retrain": Rule(
        f"any channel member within the bounds ({_BOUNDS_TEXT}); past one, an approver",
        "bounds",
    ),
    "auto_deploy": Rule(
        "an approver (counts as the requester's approval)",
        "approver",
        "`auto_deploy=true` is for approvers only (it counts as your approval)",
    ),
    "approve": Rule(_DECIDER, "decision", "You are not an approver."),
    "reject": Rule(_DECIDER, "decision", "You are not an approver."),
    "rollback": Rule("an approver", "approver", "Only approvers may roll back a model."),
    "cancel": Rule(
        "the run's requester or an approver",
        "requester",
        "Only the run's requester or an approver may cancel it.",
    ),
    "snooze": Rule("an approver", "approver", "Only approvers may snooze a drift alarm."),
    "ignore": Rule("an approver", "approver", "Only approvers may ignore a drift alarm."),
    "alarm_retrain": Rule(
        "an approver", "approver", "Only approvers may retrain from a drift alarm."
    ),
    "data_retrain": Rule("an approver", "approver", "Only approvers may act on new-data offers."),
    "data_dismiss": Rule("an approver", "approver", "Only approvers may act on new-data offers."),
    "canary": Rule("an approver", "approver", "Only approvers may promote or roll back a canary."),
    "operator": Rule(
        "whoever may run the command on the host or pod (no Slack identity)", "operator"
    ),
    "system": Rule("the bot itself, carrying out decisions taken on the paths above", "system"),
}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    bound: str | None = None  # the bound or key a refusal names (auto_deploy, GANOPS_MAX_GPUS…)
    key: str | None = None  # the `/retrain` key that crossed it (the form shows the error there)

    @property
    def refused(self) -> bool:
        return not self.allowed


ALLOWED = Verdict(True)


@dataclass(frozen=True)
class Bounds:
    """What any channel member may ask of a run; past any of them, an approver must ask."""

    max_gpus: int = 1
    max_steps: int = 20_000
    data_allow: tuple[str, ...] = ()
    max_epochs: int = 200  # steps win over epochs, so epochs-only runs need their own bound
    max_nodes: int = 1

    @classmethod
    def of(cls, settings: Any) -> Bounds:
        """From `bot.settings.Settings` (typed loosely: this module imports no settings)."""
        return cls(
            settings.max_gpus,
            settings.max_steps,
            tuple(settings.data_allow),
            settings.max_epochs,
            settings.max_nodes,
        )


class Policy:
    """`is_approver(user)` is the only outside fact; the bounds come from settings."""

    def __init__(self, *, is_approver: Callable[[str], bool], bounds: Bounds) -> None:
        self._is_approver = is_approver
        self.bounds = bounds

    def approver(self, user: str) -> bool:
        try:
            return bool(self._is_approver(user))
        except Exception as exc:  # e.g. the user-group lookup failed: never allow on error
            log.warning("approver lookup for %s failed: %s", user, exc)
            return False

    def may(self, action: Action, user: str, *, requester: str | None = None) -> Verdict:
        """May `user` do `action`? `requester`: who started the run (for cancel). The rule's
        `check` decides; `bounds` needs the parameters (`may_retrain`), `decision` the approval
        (`ApprovalBook.decide`), so asking those here is a programming error."""
        rule = RULES[action]
        if rule.check == "anyone":
            return ALLOWED
        if rule.check == "requester":
            if user == requester or self.approver(user):
                return ALLOWED
            return Verdict(False, rule.refusal, action)
        if rule.check in ("approver", "decision"):
            if self.approver(user):
                return ALLOWED
            return Verdict(False, rule.refusal, action)
        raise ValueError(f"{action!r} is not decided by the actor alone ({rule.check})")

    def may_retrain(self, params: RunParams, user: str) -> Verdict:
        """`/retrain`: auto_deploy and anything past a bound need an approver."""
        if params.auto_deploy and not self.approver(user):
            return Verdict(False, RULES["auto_deploy"].refusal + ".", "auto_deploy", "auto_deploy")
        crossed = bounds_crossed(params, self.bounds)
        if crossed and not self.approver(user):
            bound, why = crossed[0]
            reason = f"{why}; past a bound, an approver must run it."
            return Verdict(False, reason, bound, _key_of(bound, params, self.bounds))
        return ALLOWED


_BOUND_KEYS = {
    "GANOPS_MAX_STEPS": "steps",
    "GANOPS_MAX_EPOCHS": "epochs",
    "GANOPS_MAX_NODES": "nodes",
    "GANOPS_DATA_ALLOW": "data",
}


def _key_of(bound: str, params: RunParams, bounds: Bounds) -> str:
    """The field a crossed bound is shown on: GPUs count `gpus × nodes`, so the total is
    blamed on `nodes` only when `gpus` alone is within the bound."""
    if bound == "GANOPS_MAX_GPUS":
        return "gpus" if params.gpus > bounds.max_gpus else "nodes"
    return _BOUND_KEYS[bound]


def bounds_crossed(params: RunParams, bounds: Bounds) -> list[tuple[str, str]]:
    """(setting, why) for every bound the request goes past, in a fixed order."""
    crossed: list[tuple[str, str]] = []
    total = params.gpus * params.nodes  # GPUs are per node
    if total > bounds.max_gpus:
        asked = (
            f"gpus={params.gpus}"
            if params.nodes == 1
            else (f"gpus={params.gpus} × nodes={params.nodes} = {total} GPUs")
        )
        crossed.append(("GANOPS_MAX_GPUS", f"{asked} is over GANOPS_MAX_GPUS={bounds.max_gpus}"))
    if params.nodes > bounds.max_nodes:
        why = f"nodes={params.nodes} is over GANOPS_MAX_NODES={bounds.max_nodes}"
        crossed.append(("GANOPS_MAX_NODES", why))
    if params.steps is not None and params.steps > bounds.max_steps:
        why = f"steps={params.steps} is over GANOPS_MAX_STEPS={bounds.max_steps}"
        crossed.append(("GANOPS_MAX_STEPS", why))
    if params.steps is None and params.epochs is not None and params.epochs > bounds.max_epochs:
        why = f"epochs={params.epochs} is over GANOPS_MAX_EPOCHS={bounds.max_epochs}"
        crossed.append(("GANOPS_MAX_EPOCHS", why))
    outside = data_outside(params.data, bounds.data_allow)
    if outside is not None:
        crossed.append(("GANOPS_DATA_ALLOW", outside))
    return crossed


def data_outside(data: str, allow: tuple[str, ...]) -> str | None:
    """Why `data` is outside the allowlist, or None. `synthetic` is always inside.

    A prefix must name its location (settings refuse a bare scheme), so a URL passes only
    when its host is listed: a private, loopback or link-local address is outside unless a
    prefix names it. `..` never passes, since a trainer or a server may resolve it."""
    if data == "synthetic":
        return None
    if not any(_under(data, prefix) for prefix in allow):
        host = urlsplit(data).hostname if "://" in data else None
        kind = _internal(host) if host else None
        where = f" ({host} is a {kind} address)" if kind else ""
        return f"data={data!r} is outside GANOPS_DATA_ALLOW{where}"
    return None


def _under(data: str, prefix: str) -> bool:
    if ".." in data.split("/"):
        return False
    if "://" not in data:  # a folder: compare normalised paths
        data = posixpath.normpath(data)
    if data == prefix.rstrip("/"):
        return True
    return data.startswith(prefix if prefix.endswith("/") else prefix + "/")


def _internal(host: str) -> str | None:
    """ "loopback", "link-local" or "private" for a literal address (or localhost), else None."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return "loopback"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private"
    return None


def audit_refusal(
    store: Store, *, user: str, action: str, obj: str, verdict: Verdict, path: AuditPath
) -> None:
    """Every refusal is on record, with the path it came by and the bound it names."""
    detail = {"reason": verdict.reason, "bound": verdict.bound}
    store.audit(user, action, obj, "refused", detail, path=path)
