"""Every listener module exports `register(app)`; `register_listeners` gathers them.

Listeners find their ports in the Bolt context, put there by `bot.app.create_app`:
`bot.context.services_of(context)` and `settings_of(context)`.
"""

from __future__ import annotations

from slack_bolt import App

from bot.listeners import alarms, approvals, data_watch, ganops_command, retrain


def register_listeners(app: App) -> None:
    retrain.register(app)
    ganops_command.register(app)
    approvals.register(app)
    alarms.register(app)
    data_watch.register(app)


__all__ = ["register_listeners"]
