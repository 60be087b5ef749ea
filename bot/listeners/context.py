"""What listeners find in the Bolt context: the services and settings that `bot.app.create_app`
puts there. A leaf, so listener modules need not import their own package."""

from __future__ import annotations

from typing import Any, cast

from ganops.bot.gate import EntryPoint, Gate
from ganops.bot.policy import Bounds, Policy
from ganops.bot.services import Services
from ganops.bot.settings import Settings


def services_of(context: Any) -> Services:
    return cast(Services, context["services"])


def settings_of(context: Any) -> Settings:
    return cast(Settings, context["settings"])


def gate_of(context: Any) -> Gate:
    """The one gate (`bot.gate.Gate`): every entry point's `authorize`."""
    return cast(Gate, context["gate"])


def entry_of(context: Any) -> EntryPoint:
    """The entry point this request came by (set by `bot.listeners.gated.GateMiddleware`)."""
    return cast(EntryPoint, context["entry"])


def policy_of(context: Any) -> Policy:
    """The one policy, with the approval book's notion of an approver (users and groups)."""
    return make_policy(services_of(context), settings_of(context))


def make_policy(services: Services, settings: Settings) -> Policy:
    book = services.approvals

    def is_approver(user: str) -> bool:
        return book is not None and book.is_approver(user)

    return Policy(is_approver=is_approver, bounds=Bounds.of(settings))


__all__ = ["entry_of", "gate_of", "make_policy", "policy_of", "services_of", "settings_of"]
