"""The Slack app manifest declares what the bot really uses: its commands and scopes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ganops.bot.local.slack import METHODS

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "slack" / "app-manifest.yaml"
# Web API method -> the bot scope it needs (https://api.slack.com/methods).
SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "usergroups.users.list": "usergroups:read",
    "conversations.info": "channels:read",
    "conversations.open": "im:write",
    "chat.delete": "chat:write",
}
# auth.test and users.info are served for completeness (never called); views.* need no scope.
NO_SCOPE = {"auth.test", "users.info", "views.open", "views.publish"}


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def test_commands_interactivity_and_socket_mode() -> None:
    m = manifest()
    commands = {c["command"] for c in m["features"]["slash_commands"]}
    assert commands == {"/retrain", "/ganops"}
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert m["settings"]["socket_mode_enabled"] is True


def test_the_home_tab_and_its_event() -> None:
    m = manifest()
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in m["settings"]["event_subscriptions"]["bot_events"]


def test_every_web_api_method_the_bot_calls_has_its_scope() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    for method in METHODS:
        assert method in SCOPE_OF or method in NO_SCOPE, f"no scope known for {method}"
        if method in SCOPE_OF:
            assert SCOPE_OF[method] in scopes, method
    assert "commands" in scopes
    # nothing beyond what the calls need (plus their private-channel twins and public posting)
    private = {"groups:history", "groups:read"}
    assert scopes <= {*SCOPE_OF.values(), *private, "commands", "chat:write.public"}
