"""The Approve / Reject buttons: ack at once, decide and deploy in a lazy listener.

The button's value is the opaque approval id and nothing else; who may decide, and what,
is looked up on the server side by `ApprovalBook.decide`, the same function as `/ganops
approve|reject` and the CLI. A refusal is told to the clicker alone and leaves the card as it
is. A decision updates the card in place at once ("Approved by @x at 14:02 · deploying…"),
then again with the outcome, and the deploy result goes in the card's thread.

The same buttons show on the App Home tab. A click there has no channel and no message: the
clicker's private answers go to the card's channel, and the tab is published again.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from ganops.bot.approvals.jobs import show_decision, update_card
from ganops.bot.blocks.approvals import DECISION_ACTIONS
from ganops.bot.errors import guarded
from ganops.bot.listeners.context import services_of, settings_of
from ganops.bot.listeners.gated import gated
from ganops.bot.listeners.home import publish_home
from ganops.bot.ports import Approval

# Outcomes the clicker is told about privately; the others show on the card for everyone.
_PRIVATE = ("refused", "not_found", "already_decided", "expired", "recorded", "stale")


def register(app: App) -> None:
    for action_id in DECISION_ACTIONS:
        # The approval book decides who may (bot.policy.RULES["approve"]: check "decision").
        gated(app, f"button:{action_id}")(ack=ack_decision, lazy=[decide_clicked])


def ack_decision(ack: Ack) -> None:
    ack()


@guarded
def decide_clicked(
    body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    services = services_of(context)
    book = services.approvals
    user = body["user"]["id"]
    approval_id = str(action.get("value") or "")
    from_home = (body.get("container") or {}).get("type") == "view"
    channel = _channel(body, context, book.get(approval_id) if book else None)
    if book is None:
        client.chat_postEphemeral(channel=channel, user=user, text="Approvals are not set up.")
        return
    posted = (body.get("message") or {}).get("blocks")
    if posted and book.cards.blocks(approval_id) is None:
        book.cards.save_blocks(approval_id, posted)  # the card as Slack shows it, to re-render

    def on_decided(a: Approval) -> None:
        update_card(book, client, a)  # the decision shows before the (slow) deploy

    outcome = book.decide(
        approval_id, user, action["action_id"], on_decided=on_decided, path="button"
    )
    if outcome.status in _PRIVATE:
        client.chat_postEphemeral(channel=channel, user=user, text=outcome.message)
    show_decision(book, client, outcome)
    if from_home:
        publish_home(client, services, user=user)


def _channel(body: dict[str, Any], context: BoltContext, approval: Approval | None) -> str:
    """Where the clicker's private answers go: the card's channel for a Home tab click."""
    found = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    if found:
        return str(found)
    if approval is not None and approval.channel:
        return approval.channel
    return settings_of(context).channel
