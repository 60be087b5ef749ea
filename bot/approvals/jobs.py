"""Approval cards in Slack follow the store: the expiry job, and the card/result updates that
the buttons, `/ganops`, the CLI and expiry all converge on.

A decision is committed first and shown second. `approval_tick` (every half minute on the
bot's scheduler) rolls out approvals that the CLI only recorded, expires due approvals, records deploys that a dead process never finished,
re-renders every card whose state in Slack lags the store, and posts every deploy result not
yet posted. So a decision made by the CLI, a card update that failed while Slack was down, or
a restart mid-way all end with the right card.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ganops.bot.approvals import table
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.approvals.table import card_state_of
from ganops.bot.blocks.approvals import (
    decided_card,
    decision_text,
    deploy_result_blocks,
    deploy_result_text,
    fallback_card,
)
from ganops.bot.ports import Approval, DecisionOutcome

log = logging.getLogger(__name__)

TICK_S = 30.0  # how often `approval_tick` should run


def approval_tick(book: ApprovalBook, client: WebClient) -> int:
    """Roll out decisions recorded elsewhere (the CLI), expire due approvals, bring lagging
    cards up to date, post pending deploy results. Returns how many Slack updates it made."""
    for a in carry_out_recorded(book):
        log.info("rolled out %s, decided outside the bot (path cli)", a.approval_id)
    expired = book.expire_due()
    if expired:
        log.info("expired %d approval(s): %s", len(expired), [a.approval_id for a in expired])
    for a in book.settle_interrupted():
        log.warning("approval %s was approved but its deploy never finished", a.approval_id)
    done = sum(update_card(book, client, a) for a in book.cards.to_sync())
    return done + sum(post_result(book, client, a) for a in book.cards.results_to_post())


def carry_out_recorded(book: ApprovalBook) -> list[Approval]:
    """Roll out approvals that were decided but that no caller rolls out (the CLI only
    records its decisions). Called by the bot's approvals job, so the rollout runs in the
    bot process, under the same per-model lock as a click; each is claimed first, so it
    runs once. One past its `decision_deadline` is recorded as not rolled out instead."""
    with book.store.connect() as conn:
        rows = table.select(
            conn,
            "state='approved' AND deploy_result IS NULL AND rollout_claimed_at IS NULL",
        )
    handled: list[Approval] = []
    for a in sorted((table.to_approval(r) for r in rows), key=table.decided):  # oldest first
        now = book.clock()
        with book.store.tx() as conn:
            if not table.claim_rollout(conn, a.approval_id, now):
                continue  # another caller got it
        if now >= table.decision_deadline(a, book.ttl_s):
            book.rollout.record_not_rolled_out(a, table.too_old(a, now))
        else:
            book.rollout.deploy(a)
        handled.append(a)
    return handled


def update_card(book: ApprovalBook, client: WebClient, a: Approval) -> bool:
    """Re-render the card of `a` from the blocks as posted, and record what it shows."""
    if a.channel is None or a.message_ts is None:
        return False
    result = book.deploy_result(a.approval_id)
    stored = book.cards.blocks(a.approval_id)
    blocks = decided_card(stored, a, result) if stored else fallback_card(a, result)
    try:
        client.chat_update(
            channel=a.channel, ts=a.message_ts, text=decision_text(a, result), blocks=blocks
        )
    except SlackApiError as exc:  # the tick retries: the store still says the card lags
        log.warning("cannot update the card of %s: %s", a.approval_id, exc.response.get("error"))
        return False
    book.cards.mark(a.approval_id, card_state_of(a, result))
    return True


def post_result(book: ApprovalBook, client: WebClient, a: Approval) -> bool:
    """Post the deploy result in the card's thread, once, whoever gets there first."""
    result = book.deploy_result(a.approval_id)
    if result is None or a.channel is None or a.message_ts is None:
        return False
    if not book.cards.claim_result(a.approval_id):
        return False
    try:
        client.chat_postMessage(
            channel=a.channel,
            thread_ts=a.message_ts,
            text=deploy_result_text(a, result),
            blocks=deploy_result_blocks(a, result),
        )
    except SlackApiError as exc:
        book.cards.claim_result(a.approval_id, claim=False)  # give it back to the next tick
        log.warning("cannot post the deploy result of %s: %s", a.approval_id, exc)
        return False
    return True


def show_decision(book: ApprovalBook, client: WebClient, outcome: DecisionOutcome) -> None:
    """After `decide` returned: bring the card up to date and post the deploy result. For
    every path that has a Slack client at hand (buttons, `/ganops approve|reject`)."""
    if outcome.approval is None or outcome.status == "refused":
        return  # a refusal leaves the card as it is
    a = book.get(outcome.approval.approval_id) or outcome.approval
    wanted = card_state_of(a, book.deploy_result(a.approval_id))
    if outcome.status == "recorded" or wanted != book.cards.shown(a.approval_id):
        update_card(book, client, a)
    post_result(book, client, a)
