"""Who may do what: the ONE policy behind every path (button, slash command, modal, CLI, job).

Facts in (who asks, for what, the bounds from settings), a `Verdict` out. Nothing here talks
to Slack: whether a user is an approver is asked of an injected function (the approval book's,
which also knows approver groups), and a failing lookup counts as "not an approver", never as
yes. Callers answer a refusal ephemerally and audit it with `audit_refusal`; the README's
Security table is `WHO`, and a test keeps the two the same.
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
AuditPath = Literal["button", "slash", "modal", "cli", "policy", "job"]
Action = Literal[
    "retrain",
    "auto_deploy",
    "approve",
    "reject",
    "rollback",
    "cancel",
    "snooze",
    "ignore",
    "alarm_retrain",
]

# The policy table, as the README's Security section states it (action -> who).
WHO: Mapping[str, str] = {
    "`/retrain` within the bounds": "any channel member",
    "`/retrain` past a bound (`GANOPS_MAX_GPUS`, `GANOPS_MAX_STEPS`, `GANOPS_MAX_EPOCHS`, "
    "`GANOPS_DATA_ALLOW`)": "an approver",
    "`/retrain auto_deploy=true` (counts as the requester's approval)": "an approver",
    "Approve / Reject (button, `/ganops approve|reject`, CLI)": (
        "an approver who did not request it (unless `GANOPS_ALLOW_SELF_APPROVAL`); "
        "each user counts once"
    ),
    "Rollback (`/ganops rollback`)": "an approver",
    "Snooze, Ignore, Retrain now on a drift alarm": "an approver",
    "Cancel a run (button, `/ganops cancel`)": "the run's requester or an approver",
}

_APPROVER_ONLY: Mapping[str, str] = {
    "auto_deploy": "`auto_deploy=true` is for approvers only (it counts as your approval)",
    "approve": "You are not an approver.",
    "reject": "You are not an approver.",
    "rollback": "Only approvers may roll back a model.",
    "snooze": "Only approvers may snooze a drift alarm.",
    "ignore": "Only approvers may ignore a drift alarm.",
    "alarm_retrain": "Only approvers may retrain from a drift alarm.",
}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    bound: str | None = None  # the bound or key a refusal names (auto_deploy, GANOPS_MAX_GPUS…)

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

    @classmethod
    def of(cls, settings: Any) -> Bounds:
        """From `bot.settings.Settings` (typed loosely: this module imports no settings)."""
        return cls(
            settings.max_gpus, settings.max_steps, tuple(settings.data_allow), settings.max_epochs
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
        """May `user` do `action`? `requester`: who started the run (for cancel)."""
        if action == "cancel":
            if user == requester or self.approver(user):
                return ALLOWED
            return Verdict(
                False, "Only the run's requester or an approver may cancel it.", "cancel"
            )
        if action in _APPROVER_ONLY:
            if self.approver(user):
                return ALLOWED
            return Verdict(False, _APPROVER_ONLY[action], action)
        raise ValueError(f"no rule for {action!r}")  # retrain goes through may_retrain

    def may_retrain(self, params: RunParams, user: str) -> Verdict:
        """`/retrain`: auto_deploy and anything past a bound need an approver."""
        if params.auto_deploy and not self.approver(user):
            return Verdict(False, _APPROVER_ONLY["auto_deploy"] + ".", "auto_deploy")
        crossed = bounds_crossed(params, self.bounds)
        if crossed and not self.approver(user):
            bound, why = crossed[0]
            return Verdict(False, f"{why}; past a bound, an approver must ask for it.", bound)
        return ALLOWED


def bounds_crossed(params: RunParams, bounds: Bounds) -> list[tuple[str, str]]:
    """(setting, why) for every bound the request goes past, in a fixed order."""
    crossed: list[tuple[str, str]] = []
    if params.gpus > bounds.max_gpus:
        why = f"gpus={params.gpus} is over GANOPS_MAX_GPUS={bounds.max_gpus}"
        crossed.append(("GANOPS_MAX_GPUS", why))
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
