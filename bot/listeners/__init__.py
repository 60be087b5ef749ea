"""Every listener module exports `register(app)`; `register_listeners` gathers them.

Listeners find their ports in the Bolt context, put there by `bot.app.create_app`:
`services_of(context)` and `settings_of(context)`.
"""

from __future__ import annotations

from typing import Any, cast

from slack_bolt import App

from bot.services import Services
from bot.settings import Settings


def services_of(context: Any) -> Services:
    return cast(Services, context["services"])


def settings_of(context: Any) -> Settings:
    return cast(Settings, context["settings"])


def register_listeners(app: App) -> None:
    from bot.listeners import alarms, approvals, ganops_command, retrain

    retrain.register(app)
    ganops_command.register(app)
    approvals.register(app)
    alarms.register(app)
