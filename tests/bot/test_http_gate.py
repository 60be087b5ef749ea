"""The one gate (issue 21a), tried as a hostile channel member would, through the real Bolt
app over signed HTTP with the local Slack: every listener, CLI sub-command and job declares
its action; GPUs count `gpus × nodes`; commands outside the channel get a pointer; the Home
tab's *Start a retrain* opens the same gated form; approver groups never hold up an ack."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from ganops.bot.approvals.admin import _parser as approvals_parser
from ganops.bot.blocks.home import START_RETRAIN, HomeView, home_view
from ganops.bot.blocks.modal import RETRAIN_MODAL
from ganops.bot.cli import SUBCOMMANDS as CLI_SUBCOMMANDS
from ganops.bot.errors import APOLOGY
from ganops.bot.gate import ENTRY_POINTS, GANOPS_ACTIONS, entry
from ganops.bot.groups import GroupCache, GroupsUnknownError
from ganops.bot.listeners.gated import gate_middleware
from ganops.bot.local.slack import LocalSlack
from ganops.bot.parsing import SUBCOMMANDS as GANOPS_SUBCOMMANDS
from ganops.bot.ports import LaunchResult, RunParams
from ganops.bot.scheduler import build_jobs
from ganops.bot.services import Services, group_members, slack_retry_handlers
from ganops.bot.settings import Settings
from ganops.pipeline.ports import InvalidParamsError
from tests.bot.test_http_retrain_modal import submission
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import (
    ALICE,
    CAROL,
    CHANNEL,
    TOKEN,
    Bot,
    eventually,
    make_services,
    start_bot,
)

ELSEWHERE = "C_ELSEWHERE"
BOLT_KINDS = ("command", "action", "view", "event")


def audit(bot: Bot, actor: str) -> list[tuple[str, str, str | None, Any]]:
    rows = bot.services.store.list_audit(100)
    return [(r.action, r.outcome, r.path, r.detail.get("bound")) for r in rows if r.actor == actor]


# --- the registry: nothing without a declared action --------------------------------------


def undeclared_listeners(app: App) -> list[str]:
    """Every registered Bolt listener without the gate's middleware, by its ack function."""
    return [
        f"{_name(listener.ack_function)} (lazy: {', '.join(map(_name, listener.lazy_functions))})"
        for listener in app._listeners
        if gate_middleware(listener) is None
    ]


def _name(func: Any) -> str:
    func = getattr(func, "__wrapped__", func)  # errors.guarded wraps lazy listeners
    return f"{func.__module__}.{func.__qualname__}"


def test_every_bolt_listener_is_registered_with_its_declared_action(bot: Bot) -> None:
    assert bot.app._listeners, "the app registered no listener"
    assert undeclared_listeners(bot.app) == [], "register listeners with bot.listeners.gated"
    registered = [gate_middleware(listener).point.id for listener in bot.app._listeners]  # type: ignore[union-attr]
    declared = [e.id for e in ENTRY_POINTS if e.kind in BOLT_KINDS]
    assert sorted(registered) == sorted(declared)  # each once, and none declared but missing
    # the table's triggers are the builders' own ids
    assert entry("modal:retrain").trigger == RETRAIN_MODAL
    assert entry("home:home_retrain").trigger == START_RETRAIN


def test_the_registry_test_catches_a_listener_added_without_an_action(bot: Bot) -> None:
    """The check above can fail: a listener registered past `gated` is named."""

    def sneaky(ack: Any) -> None:
        ack()

    bot.app.action("sneaky_button")(sneaky)
    [found] = undeclared_listeners(bot.app)
    assert found.endswith(".<locals>.sneaky (lazy: )")
    bot.app._listeners.pop()


def test_every_cli_subcommand_and_ganops_subcommand_declares_its_action() -> None:
    declared = {e.trigger for e in ENTRY_POINTS if e.kind == "cli"}
    for name in CLI_SUBCOMMANDS:
        subs = {d for d in declared if d.startswith(f"{name} ")}
        assert name in declared or subs, f"ganops {name}: no entry point in bot.gate"
    [sub] = [a for a in approvals_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name in sub.choices:
        assert f"approvals {name}" in declared, f"ganops approvals {name}: not declared"
    assert set(GANOPS_SUBCOMMANDS) == set(GANOPS_ACTIONS)  # every /ganops word has its action


def test_every_scheduled_job_is_declared(bot: Bot) -> None:
    settings = dataclasses.replace(bot.settings, data_watch=str(bot.settings.state_dir))
    services = dataclasses.replace(bot.services, metrics=object())  # type: ignore[arg-type]
    names = build_jobs(settings, services).names()
    assert set(names) == {e.trigger for e in ENTRY_POINTS if e.kind == "job"}


# --- GPUs count gpus × nodes; every refusal names its bound ---------------------------------


class KubeflowOnly(ScriptedLauncher):
    """Refuses what the local launcher refuses: more than one node."""

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        if params.nodes > 1:
            raise InvalidParamsError("nodes > 1 runs on Kubeflow Trainer: set KFP_HOST", "nodes")
        return super().launch(params, request_id)


@pytest.fixture
def launcher() -> ScriptedLauncher:
    return KubeflowOnly(url_base="http://kfp.test")


def test_gpus_times_nodes_from_a_member_is_refused_by_name(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    body = bot.slash("/retrain", "preset=tiny gpus=1 nodes=8").json()
    assert body["response_type"] == "ephemeral"
    assert "gpus=1 × nodes=8 = 8 GPUs is over GANOPS_MAX_GPUS=1" in body["text"]
    assert "an approver must run it" in body["text"]
    eventually(lambda: bot.executor.busy == 0)
    assert launcher.launches == 0
    assert audit(bot, ALICE) == [("retrain", "refused", "slash", "GANOPS_MAX_GPUS")]
    # Several nodes need GPUs (a CPU TrainJob would start a process per core): refused by name
    # before any bound is weighed, never "something went wrong".
    cpu_nodes = bot.slash("/retrain", "gpus=0 nodes=2", trigger_id="t-nodes").json()
    assert "nodes=2 needs gpus=1 or more per node" in cpu_nodes["text"]


def test_an_approvers_run_the_launcher_cannot_do_is_answered_not_apologised_for(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    resp = bot.slash("/retrain", "preset=tiny gpus=1 nodes=8", user=CAROL)
    assert (resp.status_code, resp.text) == (200, "")  # the gate lets an approver past
    [told] = bot.slack.wait_for(lambda s: s.ephemerals(CAROL))
    assert "nodes &gt; 1 runs on Kubeflow Trainer" in told["text"]  # escaped for mrkdwn
    eventually(lambda: bot.executor.busy == 0)
    apology = APOLOGY.split("(")[0]
    assert not [m for m in bot.slack.ephemerals() + bot.slack.messages() if apology in m["text"]]
    assert launcher.launches == 0


# --- channels -----------------------------------------------------------------------------


def typed_elsewhere(bot: Bot, command: str, text: str) -> Any:
    form = bot.slash_form(command, text, ALICE, f"t-{command}-{text}") | {"channel_id": ELSEWHERE}
    resp = bot.send(urlencode(form), "application/x-www-form-urlencoded")
    assert resp.status_code == 200
    return resp.json()


@pytest.mark.parametrize(
    ("command", "text"), [("/retrain", "epochs=2"), ("/retrain", ""), ("/ganops", "status")]
)
def test_commands_outside_the_channel_get_a_pointer_and_do_nothing(
    bot: Bot, launcher: ScriptedLauncher, command: str, text: str
) -> None:
    body = typed_elsewhere(bot, command, text)
    assert body["response_type"] == "ephemeral"
    assert f"`{command}` works in <#{CHANNEL}>" in body["text"]
    bot.settle()  # a (wrong) lazy listener would have run by now
    assert launcher.launches == 0
    assert bot.slack.calls("views.open") == []
    assert bot.slack.ephemerals() == []
    assert bot.slack.messages() == []
    [(action, outcome, path, bound)] = audit(bot, ALICE)
    assert (outcome, path, bound) == ("refused", "slash", "GANOPS_CHANNEL")
    assert action == ("read" if command == "/ganops" else "retrain")


# --- App Home: Start a retrain ----------------------------------------------------------------


def test_the_home_tabs_start_a_retrain_opens_the_gated_form(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    home = home_view(HomeView(user=ALICE)).to_dict()  # what the tab shows everyone
    [button] = [
        e for b in home["blocks"] if b["type"] == "actions" for e in b["elements"]
        if e["action_id"] == START_RETRAIN
    ]  # fmt: skip
    click = {
        "type": "block_actions",
        "team": {"id": "T_TEST", "domain": "test"},
        "user": {"id": ALICE, "username": "alice", "team_id": "T_TEST"},
        "api_app_id": "A_TEST",
        "container": {"type": "view", "view_id": "VH_ALICE"},
        "trigger_id": "trig-home",
        "view": home,
        "actions": [{"type": "button", "action_id": START_RETRAIN, "block_id": "home_start",
                     "value": button["value"], "action_ts": "1.0"}],
    }  # fmt: skip
    assert bot.interact(click).status_code == 200
    [call] = bot.slack.wait_for(lambda s: s.calls("views.open"))
    assert call.args["trigger_id"] == "trig-home"
    view = call.args["view"]
    view = json.loads(view) if isinstance(view, str) else dict(view)
    assert view["callback_id"] == RETRAIN_MODAL
    # the same gate as the typed command: past a bound, an error on the field
    refused = bot.interact(submission(view, {"steps": "50000"})).json()
    assert "GANOPS_MAX_STEPS=20000" in refused["errors"]["steps"]
    assert bot.interact(submission(view, {"epochs": "2"})).text == ""
    [message] = bot.slack.wait_for(lambda s: s.messages(CHANNEL))  # no channel on Home
    assert "via modal" in str(message["blocks"])
    assert launcher.launches == 1
    assert [(a, o, p) for a, o, p, _ in audit(bot, ALICE)] == [
        ("retrain", "started", "modal"),
        ("retrain", "refused", "modal"),
    ]


# --- approver groups: cached, refreshed outside the ack -----------------------------------


def test_a_stale_group_is_served_while_a_rate_limited_refresh_runs() -> None:
    slack = LocalSlack(token=TOKEN, groups={"S_OPS": [CAROL]}).start()
    try:
        client = WebClient(token=TOKEN, base_url=slack.url, retry_handlers=slack_retry_handlers())
        now = [0.0]
        cache = GroupCache(group_members(client), ttl_s=60, clock=lambda: now[0])
        assert cache.members("S_OPS") == {CAROL}  # cold: waits for the first answer
        calls = len(slack.calls("usergroups.users.list"))
        assert cache.members("S_OPS") == {CAROL}  # fresh: no call
        assert len(slack.calls("usergroups.users.list")) == calls
        slack.groups["S_OPS"] = [ALICE]
        slack.rate_limit_method("usergroups.users.list", retry_after_s=2)
        now[0] += 61
        started = time.monotonic()
        assert cache.members("S_OPS") == {CAROL}  # stale, served at once
        assert time.monotonic() - started < 0.2
        eventually(lambda: cache.members("S_OPS") == {ALICE}, timeout=10)
        assert ("usergroups.users.list", 429) in slack.refused()
    finally:
        slack.stop()


def test_an_unknown_group_counts_as_no_after_a_bounded_wait() -> None:
    def never(group: str) -> set[str]:
        time.sleep(5)
        return {CAROL}

    cache = GroupCache(never, cold_wait_s=0.2)
    started = time.monotonic()
    with pytest.raises(GroupsUnknownError):
        cache.members("S_OPS")
    assert time.monotonic() - started < 1.0


@pytest.fixture
def grouped(tmp_path: Path, launcher: ScriptedLauncher) -> Iterator[tuple[Bot, list[float]]]:
    """A bot whose only approver is the user group S_OPS (CAROL), cached 60 s."""
    now = [0.0]

    def services(settings: Settings) -> Services:
        built = make_services(settings, launcher)
        book = built.approvals
        assert book is not None
        book.approver_groups = frozenset(settings.approver_groups)
        client = WebClient(
            token=TOKEN, base_url=settings.slack_api_base, retry_handlers=slack_retry_handlers()
        )
        book.group_members = GroupCache(group_members(client), ttl_s=60, clock=lambda: now[0])
        return built

    bot = start_bot(tmp_path, launcher, services, GANOPS_APPROVERS="S_OPS")
    bot.slack.groups["S_OPS"] = [CAROL]
    yield bot, now
    bot.stop()


def test_a_429_on_the_group_refresh_does_not_delay_the_ack(
    grouped: tuple[Bot, list[float]], launcher: ScriptedLauncher
) -> None:
    bot, now = grouped
    first = bot.slash("/retrain", "steps=30000", user=CAROL, trigger_id="t-1")
    assert first.text == ""  # a member of S_OPS: past the bound, allowed
    eventually(lambda: launcher.launches == 1)
    bot.slack.rate_limit_method("usergroups.users.list", retry_after_s=3)
    now[0] += 61  # the membership is stale: the next lookup refreshes in the background
    started = time.monotonic()
    second = bot.slash("/retrain", "model=cyclegan steps=30000", user=CAROL, trigger_id="t-2")
    acked_in = time.monotonic() - started
    assert second.text == ""
    assert acked_in < 1.0, f"the ack took {acked_in:.2f} s"
    eventually(lambda: ("usergroups.users.list", 429) in bot.slack.refused())
    eventually(lambda: launcher.launches == 2)
    # a member still refused is refused by name, and the group is asked no more often
    body = bot.slash("/retrain", "steps=30000", user=ALICE, trigger_id="t-3").json()
    assert "GANOPS_MAX_STEPS" in body["text"]
