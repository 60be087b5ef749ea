"""The shell adapter: a terminal chat with the bot, with no Slack at all.

It starts `LocalSlack` (a Slack Web API on loopback), builds the real Bolt app with its
WebClient pointed there, and turns what you type into Slack payloads dispatched through
`app.dispatch`, exactly as Socket Mode does. What the bot posts comes back through the local
API and is printed as text; images are saved under the state dir; buttons become numbered
choices. It reads lines from any stream, so scripts can pipe commands in.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TextIO

from slack_bolt import BoltRequest

from ganops.bot.app import create_app
from ganops.bot.local.shell_render import Button
from ganops.bot.local.shell_view import TrackingExecutor, Transcript
from ganops.bot.local.slack import LocalSlack
from ganops.bot.scheduler import build_jobs
from ganops.bot.services import Services, build_services
from ganops.bot.settings import Secret, Settings

LOCAL_TOKEN = "xoxb-ganops-local"
TEAM = "T_LOCAL"
DISPATCH_WAIT_S = 600.0  # a click may deploy: wait for it, within reason
SHELL_HELP = """shell commands:
  /retrain k=v ...   start a training run (try: /retrain epochs=1)
  /ganops help       what the bot can do (status, runs, models, approve, ...)
  1, 2, approve ...  click a button by its number or its label
  /user NAME         type as someone else (to try approvals); /whoami
  /wait [SECONDS]    wait until every run has finished and the bot is idle
  /sleep SECONDS     just wait
  /quit              stop the bot"""


def user_id(name: str) -> str:
    """Stable fake Slack ids: alice -> U_ALICE."""
    return "U_" + re.sub(r"[^A-Z0-9]", "_", name.strip().upper())


class Shell:
    def __init__(
        self,
        settings: Settings,
        out: TextIO,
        user: str = "alice",
        services_factory: Callable[[Settings], Services] = build_services,
    ) -> None:
        self._ids = itertools.count(1)
        self.view = Transcript(out, settings.state_dir / "shell-files")
        self.slack = LocalSlack(token=LOCAL_TOKEN, on_change=self.view.on_change).start()
        self.view.slack = self.slack
        self.settings = replace(
            settings, slack_api_url=self.slack.url, bot_token=Secret(LOCAL_TOKEN)
        )
        self.channel = self.settings.channel
        self.services = services_factory(self.settings)
        self.executor = TrackingExecutor()
        self.app = create_app(self.settings, self.services, listener_executor=self.executor)
        self.jobs = build_jobs(self.settings, self.services)
        self.switch_user(user, quiet=True)

    # --- lifecycle ------------------------------------------------------------------------

    def run(self, lines: Iterable[str], eof_wait_s: float = 1800.0) -> int:
        """Handle each line; at the end of input, wait for the bot to go idle, then stop."""
        self.jobs.start()
        approvers = ", ".join(_name_of(u) for u in self.settings.approvers) or "none"
        self.say(
            f"ganops shell: you are {self.user} ({self.uid}) in #ganops; approvers: {approvers}. "
            "Type /help."
        )
        try:
            for line in lines:
                if not self.handle(line.strip()):
                    return 0
            self.wait_idle(eof_wait_s)
            return 0
        finally:
            self.close()

    def close(self) -> None:
        self.jobs.shutdown(wait=True)
        self.executor.shutdown(wait=True)
        self.slack.stop()

    def say(self, text: str) -> None:
        self.view.say(text)

    # --- input ----------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """One typed line; False means quit."""
        if not line or line.startswith("#"):
            return True
        word, _, rest = line.partition(" ")
        if word in ("/quit", "/exit"):
            return False
        shell_commands: dict[str, Callable[[str], None]] = {
            "/help": lambda _: self.say(SHELL_HELP),
            "/user": lambda arg: self.switch_user(arg),
            "/whoami": lambda _: self.say(f"you are {self.user} ({self.uid})"),
            "/wait": lambda arg: self.wait_idle(float(arg) if arg.strip() else 1800.0),
            "/sleep": lambda arg: time.sleep(float(arg or 1)),
        }
        try:
            if word in shell_commands:
                shell_commands[word](rest.strip())
            elif word in ("/retrain", "/ganops"):
                self.slash(word, rest.strip())
                if word == "/retrain" and not rest.strip():  # the modal has no terminal form
                    self.say("In Slack this opens a form; here, type the fields: /retrain epochs=1")
            elif word.startswith("/"):
                self.say(f"unknown command {word}; type /help")
            else:
                self.click(line)
        except ValueError as exc:
            self.say(f"cannot do that: {exc}")
        return True

    def switch_user(self, name: str, quiet: bool = False) -> None:
        if not name.strip():
            raise ValueError("usage: /user NAME")
        self.user, self.uid = name.strip().lower(), user_id(name)
        self.view.names[self.uid] = self.user
        self.slack.users[self.uid] = self.user
        if not quiet:
            self.say(f"you are now {self.user} ({self.uid})")

    def _settle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.executor.busy and time.monotonic() < deadline:
            time.sleep(0.02)

    def wait_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        time.sleep(0.3)  # let a just-dispatched lazy listener get going
        while self.executor.busy or self.services.runbook.unsettled():
            if time.monotonic() > deadline:
                self.say(f"(stopped waiting after {timeout_s:.0f}s; the bot is still busy)")
                return
            time.sleep(0.2)

    def slash(self, command: str, text: str) -> None:
        payload = {
            "token": "local",
            "team_id": TEAM,
            "team_domain": "local",
            "channel_id": self.channel,
            "channel_name": "ganops",
            "user_id": self.uid,
            "user_name": self.user,
            "command": command,
            "text": text,
            "api_app_id": "A_GANOPS",
            "response_url": self.slack.response_url(self.channel, self.uid),
            "trigger_id": f"shell.{time.time():.6f}.{next(self._ids)}",
        }
        self._dispatch(payload)

    def click(self, choice: str) -> None:
        channel, ts, button = self.view.pick(choice)
        message = next((m for m in self.slack.messages(channel) if m["ts"] == ts), None)
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "local"},
            "user": {"id": self.uid, "username": self.user, "name": self.user, "team_id": TEAM},
            "api_app_id": "A_GANOPS",
            "token": "local",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "trigger_id": f"shell.{time.time():.6f}.{next(self._ids)}",
            "channel": {"id": channel, "name": "ganops"},
            "message": message or {"ts": ts},
            "response_url": self.slack.response_url(channel, self.uid, ts),
            "actions": [_action(button)],
        }
        self.say(f"({self.user} clicked {button.text})")
        self._dispatch(payload)

    def _dispatch(self, payload: dict[str, Any]) -> None:
        """Dispatch like Socket Mode does, then let the lazy work finish before the next line,
        so a script reads in order (bob's refusal before carol's approval)."""
        response = self.app.dispatch(BoltRequest(body=payload, mode="socket_mode"))
        self._settle(DISPATCH_WAIT_S)
        if response.status != 200:
            self.say(f"(the bot answered {response.status}: {response.body})")
            return
        if response.body:
            try:
                body = json.loads(response.body)
            except json.JSONDecodeError:
                body = {"text": response.body}
            self.view.show(
                {"text": body.get("text", ""), "blocks": body.get("blocks") or []}, "ack"
            )


def _name_of(uid: str) -> str:
    """U_CAROL -> carol (the shell's own ids); real Slack ids stay as they are."""
    return uid[2:].lower() if uid.startswith("U_") else uid


def lines_from(stream: TextIO, prompt: Callable[[], str] | None) -> Iterable[str]:
    """Lines typed at a terminal (with a prompt) or piped in (without)."""
    if prompt is None:
        yield from stream
        return
    while True:
        try:
            yield input(prompt())
        except EOFError:
            return


def run_shell(settings: Settings, user: str, stdin: TextIO, stdout: TextIO) -> int:
    shell = Shell(settings, stdout, user=user)
    prompt = (lambda: f"{shell.user}> ") if stdin.isatty() else None
    return shell.run(lines_from(stdin, prompt))


def _action(button: Button) -> dict[str, Any]:
    """The `actions` entry Slack sends for a click on a button or a pick from a menu."""
    text = {"type": "plain_text", "text": button.text}
    action: dict[str, Any] = {
        "type": button.kind,
        "action_id": button.action_id,
        "block_id": button.block_id,
        "action_ts": f"{time.time():.6f}",
    }
    if button.kind == "static_select":
        action["selected_option"] = {"text": text, "value": button.value}
    else:
        action |= {"text": text, "value": button.value}
    return action
