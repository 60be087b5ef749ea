"""Every listener module exports `register(app)`; `register_listeners` gathers them.

Listeners find their ports in the Bolt context, put there by `bot.app.create_app`:
`bot.listeners.context.services_of(context)` and `settings_of(context)`.
"""

from __future__ import annotations

from slack_bolt import App

from ganops.bot.listeners import (
    alarms,
    approvals,
    canary,
    cancel,
    data_watch,
    ganops_command,
    home,
    retrain,
    retrain_modal,
)


def register_listeners(app: App) -> None:
    retrain_modal.register(app)  # first: it takes `/retrain` with no text
    retrain.register(app)
    ganops_command.register(app)
    approvals.register(app)
    alarms.register(app)
    canary.register(app)
    cancel.register(app)
    home.register(app)
    data_watch.register(app)


__all__ = ["register_listeners"]
