"""A small Slack Web API on loopback: the shell adapter's Slack, and the fake Slack of tests.

It implements the methods the bot calls (chat.*, the three steps of `files_upload_v2`,
conversations.history/replies, users.info, usergroups.users.list, auth.test) with Slack's
request and response shapes, keeps every message and file in memory, records every call, and
tells a listener about each change. The real `WebClient` talks to it through `base_url`, so
the bot runs the same code path as against slack.com.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

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
    calls: list[Call] = field(default_factory=list)


class LocalSlack:
    """Start with `start()`; `url` is the base URL for `WebClient(base_url=...)`."""

    def __init__(
        self,
        token: str | None = None,
        users: dict[str, str] | None = None,
        groups: dict[str, list[str]] | None = None,
        on_change: Callable[[Change], None] | None = None,
    ) -> None:
        self.token = token  # when set, calls with another token get invalid_auth
        self.users = dict(users or {})  # user id -> name
        self.groups = dict(groups or {})  # user group id -> member ids
        self.on_change = on_change
        self.state = SlackState()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._failures: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalSlack:
        handler = type("Handler", (_Handler,), {"slack": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    # --- what tests look at ---------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._cond:
            return [c for c in self.state.calls if method is None or c.method == method]

    def messages(self, channel: str | None = None) -> list[Message]:
        with self._cond:
            return [dict(m) for m in self.state.messages if channel in (None, m["channel"])]

    def ephemerals(self, user: str | None = None) -> list[Message]:
        with self._cond:
            return [dict(m) for m in self.state.ephemerals if user in (None, m["user"])]

    def file_bytes(self, file_id: str) -> bytes:
        with self._cond:
            return bytes(self.state.files[file_id]["data"])

    def wait_for(self, predicate: Callable[[LocalSlack], Any], timeout: float = 10.0) -> Any:
        """Wait until `predicate(self)` is truthy and return its value; raise on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the local Slack never saw what was expected")
                self._cond.wait(min(left, 0.2))

    def fail_next(self, method: str, error: str) -> None:
        """Make the next call of `method` answer `{"ok": false, "error": error}`."""
        with self._cond:
            self._failures[method] = error

    # --- the API --------------------------------------------------------------------------

    def handle(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        changes: list[Change] = []
        with self._cond:
            self.state.calls.append(Call(method, args, token))
            failure = self._failures.pop(method, None)
            if failure is not None:
                result: dict[str, Any] = {"ok": False, "error": failure}
            elif self.token is not None and token != self.token:
                result = {"ok": False, "error": "invalid_auth"}
            else:
                api = _METHODS.get(method)
                result = (
                    {"ok": False, "error": "unknown_method"}
                    if api is None
                    else api(self, args, changes)
                )
            self._cond.notify_all()
        self._notify(changes)
        return result

    def _notify(self, changes: list[Change]) -> None:
        for change in changes:
            if self.on_change is not None:
                self.on_change(change)

    def response_url(self, channel: str, user: str, message_ts: str | None = None) -> str:
        """A `response_url` for a payload: what Bolt's `respond()` posts to."""
        return f"{self.url.removesuffix('api/')}respond/{channel}/{message_ts or '-'}/{user}"

    def respond(self, channel: str, ts: str, user: str, payload: dict[str, Any]) -> None:
        """Slack's response_url semantics: replace or delete the original, or post anew."""
        changes: list[Change] = []
        with self._cond:
            self.state.calls.append(Call("response_url", dict(payload), None))
            original = self._find(channel, ts)
            if payload.get("delete_original") and original is not None:
                self.state.messages.remove(original)
            elif payload.get("replace_original") and original is not None:
                self.chat_update({"channel": channel, "ts": ts} | payload, changes)
            elif payload.get("response_type") == "in_channel":
                self._append({"channel": channel} | payload, changes)
            else:
                self.chat_ephemeral({"channel": channel, "user": user} | payload, changes)
            self._cond.notify_all()
        self._notify(changes)

    def upload(self, file_id: str, data: bytes) -> bool:
        with self._cond:
            if file_id not in self.state.files:
                return False
            self.state.files[file_id]["data"] = data
            self._cond.notify_all()
        return True

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


_METHODS: dict[str, Callable[[LocalSlack, dict[str, Any], list[Change]], dict[str, Any]]] = {
    "chat.postMessage": LocalSlack.chat_post,
    "chat.update": LocalSlack.chat_update,
    "chat.postEphemeral": LocalSlack.chat_ephemeral,
    "files.getUploadURLExternal": LocalSlack.upload_url,
    "files.completeUploadExternal": LocalSlack.complete_upload,
    "conversations.history": LocalSlack.history,
    "conversations.replies": LocalSlack.replies,
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


class _Handler(BaseHTTPRequestHandler):
    slack: LocalSlack

    def log_message(self, format: str, *args: Any) -> None:  # keep the terminal clean
        return

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length))

    def _serve(self, body: bytes) -> None:
        url = urlparse(self.path)
        if url.path.startswith("/respond/"):
            channel, ts, user = url.path.split("/")[2:5]
            self.slack.respond(channel, ts, user, json.loads(body or b"{}"))
            self._reply(200, b"ok", "text/plain")
            return
        if url.path.startswith("/upload/"):
            ok = self.slack.upload(url.path.rsplit("/", 1)[-1], body)
            self._reply(200 if ok else 404, f"OK - {len(body)}".encode(), "text/plain")
            return
        if not url.path.startswith("/api/"):
            self._reply(404, b"not found", "text/plain")
            return
        args: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
        ctype = self.headers.get("Content-Type", "")
        if body and ctype.startswith("application/json"):
            args |= json.loads(body)
        elif body:
            args |= {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or args.pop("token", None)
        result = self.slack.handle(url.path.removeprefix("/api/"), args, token)
        self._reply(200, json.dumps(result).encode(), "application/json; charset=utf-8")

    def _reply(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
