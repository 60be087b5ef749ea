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
    from bot.listeners import approvals, ganops_command, retrain

    retrain.register(app)
    ganops_command.register(app)
    approvals.register(app)
    _register_optional(app, "bot.listeners.alarms")


def _register_optional(app: App, module_name: str) -> None:
    """The drift alarm buttons join when their module has landed."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return
    module.register(app)
