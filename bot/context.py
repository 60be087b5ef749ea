"""What listeners find in the Bolt context: the services and settings that `bot.app.create_app`
puts there. A leaf, so listener modules need not import their own package."""

from __future__ import annotations

from typing import Any, cast

from bot.services import Services
from bot.settings import Settings


def services_of(context: Any) -> Services:
    return cast(Services, context["services"])


def settings_of(context: Any) -> Settings:
    return cast(Settings, context["settings"])


__all__ = ["services_of", "settings_of"]
