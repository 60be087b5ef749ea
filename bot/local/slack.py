"""A small Slack Web API on loopback: the shell adapter's Slack, and the fake Slack of tests.

It implements the methods the bot calls (chat.*, the three steps of `files_upload_v2`,
conversations.history/replies/info/open, views.open/publish, users.info,
usergroups.users.list, auth.test) with Slack's request and response shapes, keeps every
message and file in memory, records every call, and tells a listener about each change. Tests
can make it misbehave like slack.com (`bot.local.slack_faults`): 429s with Retry-After, 5xx,
archived channels, deleted messages. The real `WebClient` talks to it through `base_url`, so
the bot runs the same code path as against slack.com.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from ganops.bot.local.slack_api import (
    BOT_USER,
    METHODS,
    Call,
    Change,
    Message,
    SlackApi,
    SlackState,
)
from ganops.bot.local.slack_faults import Faults

__all__ = ["BOT_USER", "METHODS", "Call", "Change", "LocalSlack", "Message"]


class LocalSlack(SlackApi):
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
        self.faults = Faults()
        self._server: ThreadingHTTPServer | None = None
        # Socket Mode: apps.connections.open (with the app-level token) hands out this URL.
        self.app_token: str | None = None
        self.socket_url: str | None = None

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

    def home(self, user: str) -> dict[str, Any] | None:
        """The App Home view last published for `user`."""
        with self._cond:
            view = self.state.homes.get(user)
            return None if view is None else dict(view)

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

    # --- faults, as slack.com has them (see ganops.bot.local.slack_faults) ------------------------

    def rate_limit(self, every: int, retry_after_s: int = 0) -> None:
        """Answer every `every`th write with HTTP 429 and `Retry-After: retry_after_s`."""
        with self._cond:
            self.faults.rate_limit_every = every
            self.faults.retry_after_s = retry_after_s

    def rate_limit_method(self, method: str, retry_after_s: int, times: int = 1) -> None:
        """Answer the next `times` calls of `method` (any method) with HTTP 429."""
        with self._cond:
            self.faults.limited.setdefault(method, []).extend([retry_after_s] * times)

    def server_error(self, method: str, *statuses: int) -> None:
        """Answer the next calls of `method` with these HTTP statuses (e.g. 503, 500)."""
        with self._cond:
            self.faults.server_errors.setdefault(method, []).extend(statuses)

    def fail_always(self, method: str, error: str | None) -> None:
        """Every call of `method` answers `error` until called again with None."""
        with self._cond:
            if error is None:
                self.faults.sticky.pop(method, None)
            else:
                self.faults.sticky[method] = error

    def channel_state(
        self, channel: str, *, archived: bool = False, member: bool = True, exists: bool = True
    ) -> None:
        """Archive a channel, take the bot out of it, or make it disappear."""
        with self._cond:
            for flag, names in (
                (archived, self.faults.archived),
                (not member, self.faults.not_member),
                (not exists, self.faults.gone),
            ):
                if flag:
                    names.add(channel)
                else:
                    names.discard(channel)

    def delete_message(self, channel: str, ts: str) -> None:
        """Someone deleted the message: later updates of it get message_not_found."""
        with self._cond:
            message = self._find(channel, ts)
            if message is not None:
                self.state.messages.remove(message)
            self._cond.notify_all()

    def refused(self) -> list[tuple[str, int]]:
        """(method, HTTP status) of every call answered by an HTTP fault."""
        with self._cond:
            return list(self.faults.refused)

    def http_fault(self, method: str) -> tuple[int, dict[str, str], bytes] | None:
        with self._cond:
            fault = self.faults.http(method)
            self._cond.notify_all()
        return None if fault is None else (fault.status, fault.headers, fault.body)

    # --- the API --------------------------------------------------------------------------

    def handle(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        changes: list[Change] = []
        with self._cond:
            self.state.calls.append(Call(method, args, token))
            failure = self._failures.pop(method, None) or self.faults.api_error(method, args)
            if failure is not None:
                result: dict[str, Any] = {"ok": False, "error": failure}
            elif method == "apps.connections.open":
                result = self._open_socket(token)
            elif self.token is not None and token != self.token:
                result = {"ok": False, "error": "invalid_auth"}
            else:
                api = METHODS.get(method)
                result = (
                    {"ok": False, "error": "unknown_method"}
                    if api is None
                    else api(self, args, changes)
                )
            self._cond.notify_all()
        self._notify(changes)
        return result

    def _open_socket(self, token: str | None) -> dict[str, Any]:
        if self.socket_url is None or token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": self.socket_url}

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
        method = url.path.removeprefix("/api/")
        fault = self.slack.http_fault(method)
        if fault is not None:
            status, headers, data = fault
            self._reply(status, data, "application/json; charset=utf-8", headers)
            return
        result = self.slack.handle(method, args, token)
        self._reply(200, json.dumps(result).encode(), "application/json; charset=utf-8")

    def _reply(
        self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
