"""`/retrain` through the real Bolt app in HTTP mode, with signed requests and a local Slack."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, BOB, CHANNEL, Bot, eventually, sign


def channel_posts(bot: Bot) -> list[dict]:
    return [m for m in bot.slack.messages(CHANNEL) if not m["thread_ts"]]


def test_a_good_retrain_posts_one_message_with_who_params_and_link(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    resp = bot.slash("/retrain", "epochs=2 lr=1e-3 model=cut")
    assert resp.status_code == 200
    assert resp.text == ""  # acked empty: the channel message is the answer
    [message] = bot.slack.wait_for(lambda s: s.messages(CHANNEL))
    text = str(message["blocks"])
    assert f"<@{ALICE}>" in text
    assert "epochs=2" in text
    assert "lr=0.001" in text
    assert "model=cut" in text
    assert "http://kfp.test/#/runs/details/run-1" in text
    assert launcher.launches == 1
    # the token from settings reached the Web API
    assert {c.token for c in bot.slack.calls("chat.postMessage")} == {"xoxb-test-token"}
    row = eventually(lambda: (r := bot.services.runbook.get("run-1")) and r.message_ts and r)
    assert row.message_ts == message["ts"]
    assert row.requested_by == ALICE
    assert row.params["epochs"] == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("epochs=two", "epochs='two' is not an integer"),
        ("colour=red", "unknown parameter 'colour'"),
        ("epochs=0", "epochs=0 is out of range"),
        ("data=", "data is empty"),
        ("model=gan", "model='gan': choose one of cut, fastcut, cyclegan"),
        ("epochs=1 epochs=2", "epochs is given twice"),
    ],
)
def test_bad_arguments_get_an_ephemeral_usage_and_launch_nothing(
    bot: Bot, launcher: ScriptedLauncher, text: str, problem: str
) -> None:
    resp = bot.slash("/retrain", text)
    assert resp.status_code == 200
    body = resp.json()
    assert body["response_type"] == "ephemeral"
    assert problem in body["text"]
    assert "/retrain [epochs=N]" in str(body["blocks"])  # the usage comes with it
    bot.settle()  # a (wrong) lazy launch has run by now
    assert launcher.launches == 0
    assert bot.slack.messages() == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body: sign(body, secret="not-the-secret"), id="forged signature"),
        pytest.param(
            lambda body: sign(body, timestamp=int(time.time()) - 600), id="stale timestamp"
        ),
        pytest.param(lambda body: {}, id="unsigned"),
    ],
)
def test_unverified_requests_get_401_and_launch_nothing(
    bot: Bot, launcher: ScriptedLauncher, headers: Callable[[str], dict[str, str]]
) -> None:
    body = "command=%2Fretrain&text=epochs%3D2&user_id=U_ALICE&channel_id=C_TEST&trigger_id=t"
    resp = bot.send(body, "application/x-www-form-urlencoded", headers(body), signed=False)
    assert resp.status_code == 401
    bot.settle()
    assert launcher.launches == 0
    assert bot.slack.calls() == []


def test_slack_retries_start_one_run_and_post_one_message(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    first = bot.slash("/retrain", "epochs=2", trigger_id="t-42")
    retries = [
        bot.slash("/retrain", "epochs=2", trigger_id="t-42", headers={"X-Slack-Retry-Num": str(n)})
        for n in (1, 2)
    ]
    assert first.status_code == 200
    assert all(r.status_code == 200 for r in retries)
    bot.slack.wait_for(lambda s: s.messages(CHANNEL))
    bot.settle()  # the retries' lazy listeners have run by now
    assert launcher.launches == 1
    assert len(channel_posts(bot)) == 1


def test_concurrent_duplicates_race_to_one_run(bot: Bot, launcher: ScriptedLauncher) -> None:
    threads = [
        threading.Thread(
            target=bot.slash, args=("/retrain", "epochs=3"), kwargs={"trigger_id": "t-7"}
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bot.slack.wait_for(lambda s: s.messages(CHANNEL))
    bot.settle()
    assert launcher.launches == 1
    assert len(channel_posts(bot)) == 1


def test_a_second_run_for_the_same_model_is_refused_naming_the_first(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    bot.slash("/retrain", "epochs=2", trigger_id="t-1")
    bot.slack.wait_for(lambda s: s.messages(CHANNEL))
    bot.slash("/retrain", "epochs=5", user=BOB, trigger_id="t-2")
    [note] = bot.slack.wait_for(lambda s: s.ephemerals(BOB))
    assert "already going" in note["text"]
    assert "run-1" in note["text"]
    assert launcher.launches == 1
    assert len(channel_posts(bot)) == 1


def test_an_unreachable_backend_gets_a_short_channel_message_and_the_bot_lives_on(
    bot: Bot, launcher: ScriptedLauncher
) -> None:
    launcher.down = True
    assert bot.slash("/retrain", "epochs=2", trigger_id="t-1").status_code == 200
    [message] = bot.slack.wait_for(lambda s: s.messages(CHANNEL))
    assert "Could not start the run" in message["text"]
    assert "unreachable" in message["text"]
    launcher.down = False
    bot.slash("/retrain", "epochs=2", trigger_id="t-2")
    bot.slack.wait_for(lambda s: len(s.messages(CHANNEL)) == 2)
    assert launcher.launches == 1


def test_an_unexpected_error_is_logged_and_apologised_for(
    bot: Bot, launcher: ScriptedLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom in the launcher")

    launcher.launch = broken  # type: ignore[method-assign,assignment]
    bot.slash("/retrain", "epochs=2")
    [apology] = bot.slack.wait_for(lambda s: s.ephemerals(ALICE))
    assert "Sorry, something went wrong" in apology["text"]
    assert "RuntimeError" in apology["text"]
    assert any(r.exc_info and "boom in the launcher" in str(r.exc_info[1]) for r in caplog.records)


def test_the_events_endpoint_only_answers_on_its_path(bot: Bot) -> None:
    body = "command=%2Fretrain&text="
    import requests

    resp = requests.post(
        bot.url.replace("/slack/events", "/other"), data=body, headers=sign(body), timeout=5
    )
    assert resp.status_code == 404


def test_an_error_in_the_ack_reaches_app_error_which_apologises(
    bot: Bot, launcher: ScriptedLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ganops.bot.listeners.retrain as retrain

    def broken(text: str) -> None:
        raise KeyError("parser bug")

    monkeypatch.setattr(retrain, "parse_retrain", broken)
    resp = bot.slash("/retrain", "epochs=2")
    assert resp.status_code == 500  # Slack tells the user the command failed...
    apology = bot.slack.wait_for(lambda s: s.ephemerals(ALICE))
    assert "KeyError" in apology[0]["text"]  # ...and the bot says sorry, once per failure
    assert launcher.launches == 0
