"""The Slack Web API methods of `LocalSlack`, with Slack's request and response shapes.

Each method runs under the server's lock, changes the in-memory state, appends the changes a
listener should hear about, and returns Slack's JSON answer.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ganops.bot.local.slack_faults import Faults

BOT_USER = "U_GANOPS_BOT"
Message = dict[str, Any]


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass(frozen=True)
class Change:
    kind: str  # posted | updated | ephemeral
    message: Message


@dataclass
class SlackState:
    messages: list[Message] = field(default_factory=list)
    ephemerals: list[Message] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # views.open / views.publish: modal views by id, and each user's App Home view.
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    homes: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)


class SlackApi:
    """The method implementations; `LocalSlack` adds the server, the lock and the listener."""

    state: SlackState
    faults: Faults
    users: dict[str, str]
    groups: dict[str, list[str]]
    _ids: itertools.count[int]

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._ids):06d}"

    def _find(self, channel: str, ts: str) -> Message | None:
        return next(
            (m for m in self.state.messages if m["channel"] == channel and m["ts"] == ts), None
        )

    # Each API method below runs under the lock and returns Slack's JSON answer.

    def chat_post(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        if not a.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not a.get("text") and not a.get("blocks"):
            return {"ok": False, "error": "no_text"}
        message = self._append(a, changes)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"], "message": message}

    def _append(
        self, a: dict[str, Any], changes: list[Change], files: list[dict[str, Any]] | None = None
    ) -> Message:
        message = {
            "type": "message",
            "channel": a["channel"],
            "ts": self._ts(),
            "user": BOT_USER,
            "text": a.get("text") or "",
            "blocks": _json_list(a.get("blocks")),
            "thread_ts": a.get("thread_ts") or None,
            "metadata": _json_obj(a.get("metadata")),
            "files": files or [],
        }
        self.state.messages.append(message)
        changes.append(Change("posted", dict(message)))
        return message

    def chat_update(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        message = self._find(a.get("channel", ""), a.get("ts", ""))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message["text"] = a.get("text") or message["text"]
        if "blocks" in a:
            message["blocks"] = _json_list(a.get("blocks"))
        message["edited"] = message.get("edited", 0) + 1
        changes.append(Change("updated", dict(message)))
        return {
            "ok": True,
            "channel": message["channel"],
            "ts": message["ts"],
            "text": message["text"],
        }

    def chat_delete(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        message = self._find(a.get("channel", ""), a.get("ts", ""))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        self.state.messages.remove(message)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def chat_ephemeral(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        if not a.get("channel") or not a.get("user"):
            return {"ok": False, "error": "channel_not_found"}
        message = {
            "channel": a["channel"],
            "user": a["user"],
            "text": a.get("text") or "",
            "blocks": _json_list(a.get("blocks")),
            "ts": self._ts(),
        }
        self.state.ephemerals.append(message)
        changes.append(Change("ephemeral", dict(message)))
        return {"ok": True, "message_ts": message["ts"]}

    def upload_url(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):08d}"
        self.state.files[file_id] = {"id": file_id, "name": a.get("filename"), "data": b""}
        base = self.url.removesuffix("api/")
        return {"ok": True, "file_id": file_id, "upload_url": f"{base}upload/{file_id}"}

    def complete_upload(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        listed = _json_list(a.get("files"))
        if not listed or any(f.get("id") not in self.state.files for f in listed):
            return {"ok": False, "error": "file_not_found"}
        files = []
        for item in listed:
            meta = self.state.files[item["id"]]
            meta["title"] = item.get("title") or meta["name"]
            files.append(
                {k: v for k, v in meta.items() if k != "data"} | {"size": len(meta["data"])}
            )
        channel = a.get("channel_id") or a.get("channels")
        if channel:
            text = a.get("initial_comment") or ""
            self._append(
                {"channel": channel, "text": text, "thread_ts": a.get("thread_ts")}, changes, files
            )
        return {"ok": True, "files": files}

    def history(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        oldest = float(a.get("oldest") or 0)
        channel = a.get("channel")
        found = [
            m
            for m in self.state.messages
            if m["channel"] == channel
            and float(m["ts"]) > oldest
            and m["thread_ts"] in (None, m["ts"])
        ]
        return {"ok": True, "messages": list(reversed(found)), "has_more": False}

    def replies(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        ts, channel = a.get("ts"), a.get("channel")
        found = [
            m
            for m in self.state.messages
            if m["channel"] == channel and (m["ts"] == ts or m["thread_ts"] == ts)
        ]
        return {"ok": True, "messages": found, "has_more": False}

    def views_open(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        if not a.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = _json_obj(a.get("view")) or {}
        if view.get("type") != "modal":
            return {"ok": False, "error": "invalid_arguments"}
        view_id = f"V{next(self._ids):08d}"
        self.state.views[view_id] = view | {"id": view_id}
        return {"ok": True, "view": self.state.views[view_id]}

    def views_publish(self, a: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
        view = _json_obj(a.get("view")) or {}
        if not a.get("user_id") or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        self.state.homes[a["user_id"]] = view | {"id": f"VH_{a['user_id']}"}
        return {"ok": True, "view": self.state.homes[a["user_id"]]}


METHODS: dict[str, Callable[[SlackApi, dict[str, Any], list[Change]], dict[str, Any]]] = {
    "chat.postMessage": SlackApi.chat_post,
    "chat.update": SlackApi.chat_update,
    "chat.postEphemeral": SlackApi.chat_ephemeral,
    "files.getUploadURLExternal": SlackApi.upload_url,
    "files.completeUploadExternal": SlackApi.complete_upload,
    "conversations.history": SlackApi.history,
    "views.open": SlackApi.views_open,
    "views.publish": SlackApi.views_publish,
    "conversations.replies": SlackApi.replies,
    "conversations.info": lambda s, a, c: s.faults.channel_info(a.get("channel") or ""),
    # A DM with a user: its channel id is derived from the user's, so tests can find it.
    "conversations.open": lambda s, a, c: {
        "ok": True,
        "channel": {"id": "D" + str(a.get("users") or "").split(",")[0]},
    },
    "chat.delete": SlackApi.chat_delete,
    "auth.test": lambda s, a, c: {
        "ok": True,
        "user_id": BOT_USER,
        "team_id": "T_LOCAL",
        "bot_id": "B_GANOPS_BOT",
    },
    "users.info": lambda s, a, c: {
        "ok": True,
        "user": {"id": a.get("user"), "name": s.users.get(a.get("user", ""), a.get("user"))},
    },
    "usergroups.users.list": lambda s, a, c: (
        {"ok": True, "users": list(s.groups[a["usergroup"]])}
        if a.get("usergroup") in s.groups
        else {"ok": False, "error": "no_such_subteam"}
    ),
}


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        value = json.loads(value) if value else []
    return list(value or [])


def _json_obj(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = json.loads(value) if value else None
    return dict(value) if value else None
