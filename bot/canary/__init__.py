"""Approved deploys as canaries, judged live against the stable version (issue 25).

`make_canaries` builds the controller for the bot process and hooks it into the approvals'
rollouts; `bot.listeners.canary` holds the thread's buttons, `bot.blocks.canary` the posts.
"""

from __future__ import annotations

from slack_sdk import WebClient

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.canary.controller import Analyse, CanaryController, no_analysis
from ganops.bot.canary.notify import SlackNotifier
from ganops.bot.canary.table import Canary
from ganops.bot.settings import Settings

__all__ = ["Analyse", "Canary", "CanaryController", "make_canaries", "no_analysis"]


def make_canaries(
    settings: Settings, book: ApprovalBook, client: WebClient, analyse: Analyse | None = None
) -> CanaryController | None:
    """The controller, hooked into `book`'s rollouts; None when GANOPS_CANARY_STEPS is 100
    alone (approved deploys go to 100% at once)."""
    if settings.canary_steps[0] >= 100:
        return None
    controller = CanaryController(
        store=book.store,
        rollout=book.rollout,
        analyse=analyse or no_analysis("no analysis is configured"),
        step_s=settings.canary_step_s,
        notifier=SlackNotifier(client, settings.channel),
    )
    book.rollout.canary = controller
    return controller
