"""The App Home tab: `app_home_opened` -> `views.publish` of the user's home view.

The event is acked at once and the view gathered in a lazy listener: the registry and the
launcher may be remote (MLflow, KFP) and slow. Each source is read on its own; one that fails
(MLflow down, KFP unreachable) becomes a line at the top of the tab, and the rest still shows.
A decision taken from the tab re-publishes it (`publish_home`), so its buttons go at once.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.blocks.home import LIST_LIMIT, HomeView, ModelStanding, home_view
from ganops.bot.blocks.runs import RunView
from ganops.bot.drift.alarms import AlarmBook
from ganops.bot.errors import UpstreamError, guarded
from ganops.bot.listeners.context import services_of
from ganops.bot.listeners.gated import gated
from ganops.bot.runs.start import view_of
from ganops.bot.services import Services
from ganops.model.registry import CHALLENGER, CHAMPION
from ganops.pipeline.params import MODELS

log = logging.getLogger("ganops.bot")

_GOING = ("queued", "running")


def register(app: App) -> None:
    gated(app, "event:app_home_opened")(ack=_ack, lazy=[home_opened])


def _ack(ack: Ack) -> None:
    ack()


@guarded
def home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") != "home":
        return  # the Messages tab: nothing to publish
    publish_home(client, services_of(context), user=str(event["user"]))


def publish_home(client: WebClient, services: Services, *, user: str) -> None:
    client.views_publish(user_id=user, view=home_view(collect_home(services, user=user)))


def collect_home(services: Services, *, user: str) -> HomeView:
    """Everything the tab shows for `user`, each source read on its own."""
    problems: list[str] = []
    runs = _runs(services, problems)
    book = services.approvals
    approvals = book.pending() if book is not None else []
    approver = book is not None and bool(approvals) and book.is_approver(user)
    alarms = AlarmBook(services.store).open_episodes()
    return HomeView(
        user=user,
        runs=runs,
        approvals=approvals,
        approver=approver,
        models=_models(services, problems),
        alarms=sorted(alarms, key=lambda a: a.state != "firing"),  # firing first, then by age
        problems=problems,
    )


def _runs(services: Services, problems: list[str]) -> list[RunView]:
    rows = [r for r in services.runbook.unsettled() if r.state in _GOING][:LIST_LIMIT]
    views: list[RunView] = []
    failed: str | None = None
    for row in rows:
        try:
            status = services.launcher.status(row.run_id)
        except UpstreamError as exc:  # show what the bot last saw; say so once
            failed, status = failed or f"The pipeline backend did not answer: {exc}", None
        if status is not None and status.state not in _GOING:
            continue  # finished since the watcher's last look
        views.append(view_of(row, status))
    if failed:
        problems.append(failed)
    return views


def _models(services: Services, problems: list[str]) -> list[ModelStanding]:
    standings: list[ModelStanding] = []
    for model in MODELS:
        try:
            champion = services.registry.get_alias(model, CHAMPION)
            challenger = services.registry.get_alias(model, CHALLENGER)
        except UpstreamError as exc:
            problems.append(f"Models are not shown: {exc}")
            log.warning("home: %s", exc)
            return []
        standings.append(ModelStanding(model, champion, challenger))
    return standings
