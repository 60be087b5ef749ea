"""Where a run's posts can go when Slack says no: Slack's permanent answers, the check before
a launch, and the fallbacks of the run watcher (a new message, or a DM to the requester).

A Slack error answer is either permanent for this message or channel (it was deleted, the
channel is archived, the bot was removed) or worth another try at the next tick (a 429 that
outlived the client's retries, a 5xx). Only the permanent ones move a run's posts elsewhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ganops.pipeline.ports import UpstreamError

log = logging.getLogger("ganops.bot")

# The run message (or the thread it anchors) is gone; the channel itself still works.
MESSAGE_GONE = frozenset(
    {"message_not_found", "cant_update_message", "thread_not_found", "invalid_thread_ts"}
)
# Nothing can be posted in the channel.
CHANNEL_GONE = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "restricted_action",
        "team_access_not_granted",
    }
)

# Faults that pass by themselves. (Auth and scope errors are neither these nor permanent:
# they are the operator's to fix, and runs wait for them.)
_PASSING = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

_REASONS = {
    "channel_not_found": "I cannot see this channel (a private channel I was not invited to?)",
    "is_archived": "this channel is archived",
    "not_in_channel": "I am not a member of this channel",
}


class ChannelUnusableError(UpstreamError):
    """The bot cannot post in `channel`; `reason` is a sentence for the person who asked."""

    def __init__(self, channel: str, error: str) -> None:
        self.channel = channel
        self.error = error
        self.reason = _REASONS.get(error, f"Slack refuses my posts here ({error})")
        super().__init__(f"cannot post in {channel}: {error}")


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code of a failed call ("ratelimited" for a 429 past the retries)."""
    response = exc.response
    try:
        return str(response.get("error") or "")
    except AttributeError:  # a non-JSON answer (a 5xx page) has no fields
        return ""


def is_permanent(exc: SlackApiError) -> bool:
    """The message or channel is gone for good: post elsewhere instead of trying again."""
    return slack_error(exc) in MESSAGE_GONE | CHANNEL_GONE


def is_transient(exc: SlackApiError) -> bool:
    """A fault that passes (a 429 past the client's retries, a 5xx): try again next tick."""
    status = getattr(exc.response, "status_code", 200)
    return status == 429 or status >= 500 or slack_error(exc) in _PASSING


def check_channel(client: WebClient, channel: str) -> None:
    """Raise ChannelUnusableError when Slack says the bot cannot post in `channel`.

    Asked before a launch, so that nothing starts where nobody would hear of it. Only a
    definite answer refuses: a public channel takes posts from a non-member (chat:write.public),
    a private one the bot is not in is `channel_not_found` to it; any other failure (no
    `channels:read` scope, a 5xx) lets the launch go on, and the watcher's fallbacks cover it.
    """
    try:
        info = client.conversations_info(channel=channel)
    except SlackApiError as exc:
        error = slack_error(exc)
        if error in CHANNEL_GONE:
            raise ChannelUnusableError(channel, error) from None
        log.warning("cannot check channel %s before a launch: %s", channel, error or exc)
        return
    about = info.get("channel") or {}
    if about.get("is_archived"):
        raise ChannelUnusableError(channel, "is_archived")
    if about.get("is_private") and about.get("is_member") is False:
        raise ChannelUnusableError(channel, "not_in_channel")


@dataclass(frozen=True)
class Destination:
    """Where a run's outcome goes: the channel, and the thread that new top-level posts (the
    card, a replacement run message) go in: the run's own thread, or None in a DM."""

    channel: str
    thread_ts: str | None
    fallback: str | None = None  # why not under the run message (Slack's error), or None
    direct: bool = False  # a DM to the requester


def direct_channel(client: WebClient, user: str) -> str:
    """The DM channel with `user` (conversations.open)."""
    resp = client.conversations_open(users=user)
    return str((resp.get("channel") or {})["id"])
