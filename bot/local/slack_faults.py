"""Faults the local Slack can inject, so tests see what slack.com does on a bad day.

- HTTP-level: a 429 with `Retry-After` on every Nth write, or a 5xx for the next calls of a
  method. The client never sees a JSON answer for these; slack_sdk's retry handlers do.
- API-level: `{"ok": false, "error": ...}` answers: a sticky error for a method, and channel
  states (archived, the bot not a member, the channel gone) that every write into the channel
  hits, as Slack answers `is_archived`, `not_in_channel` and `channel_not_found`.

Everything here runs under `LocalSlack`'s lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The methods that post or change something: what Slack's write tiers rate-limit.
WRITES = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "chat.delete",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
        "conversations.open",
    }
)
# Writes that land in a channel, and the argument that names it.
_CHANNEL_ARG = {
    "chat.postMessage": "channel",
    "chat.update": "channel",
    "chat.postEphemeral": "channel",
    "files.completeUploadExternal": "channel_id",
}


@dataclass(frozen=True)
class HttpFault:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Faults:
    rate_limit_every: int = 0  # > 0: every Nth write answers 429
    retry_after_s: int = 0
    server_errors: dict[str, list[int]] = field(default_factory=dict)  # method -> statuses
    limited: dict[str, list[int]] = field(default_factory=dict)  # method -> Retry-After each
    sticky: dict[str, str] = field(default_factory=dict)  # method -> Slack error
    archived: set[str] = field(default_factory=set)
    not_member: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    refused: list[tuple[str, int]] = field(default_factory=list)  # (method, HTTP status)
    _writes: int = 0

    def http(self, method: str) -> HttpFault | None:
        """A fault to answer instead of the method, or None to run it."""
        queued = self.server_errors.get(method)
        if queued:
            status = queued.pop(0)
            self.refused.append((method, status))
            return HttpFault(status, {}, b"upstream connect error")
        waits = self.limited.get(method)
        if waits:  # a read tier's 429 (usergroups.users.list…), for the next calls only
            self.refused.append((method, 429))
            body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
            return HttpFault(429, {"Retry-After": str(waits.pop(0))}, body)
        if method not in WRITES or self.rate_limit_every <= 0:
            return None
        self._writes += 1
        if self._writes % self.rate_limit_every:
            return None
        self.refused.append((method, 429))
        body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
        return HttpFault(429, {"Retry-After": str(self.retry_after_s)}, body)

    def api_error(self, method: str, args: dict[str, Any]) -> str | None:
        """The Slack error a call gets from a sticky failure or its channel's state."""
        if method in self.sticky:
            return self.sticky[method]
        key = _CHANNEL_ARG.get(method)
        channel = str(args.get(key) or "") if key else ""
        if not channel:
            return None
        if channel in self.gone:
            return "channel_not_found"
        if channel in self.archived:
            return "is_archived"
        if channel in self.not_member:
            return "not_in_channel"
        return None

    def channel_info(self, channel: str) -> dict[str, Any]:
        """conversations.info: what Slack says about a channel and the bot's place in it."""
        if not channel or channel in self.gone:
            return {"ok": False, "error": "channel_not_found"}
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "is_channel": True,
                "is_archived": channel in self.archived,
                # With chat:write.public a bot posts in public channels it is not in; Slack
                # answers not_in_channel in private ones, which is what `not_member` stands for.
                "is_private": channel in self.not_member,
                "is_member": channel not in self.not_member,
            },
        }
