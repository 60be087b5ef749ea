"""The ack path `ganops bot` installs (Bolt's lazy runner swapped for the outbox), driven over
signed HTTP: an accepted `/retrain` is one row that carries what any replica needs to run it,
and is run once; a refused one writes no row and is audited once (the ack's verdict reaches
the outbox runner, so the lazy half neither runs nor re-audits)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganops.bot.outbox import Outbox
from ganops.bot.outbox_worker import OutboxWorker, install_outbox
from ganops.bot.services import Services
from ganops.bot.settings import Settings
from tests.bot.test_http_gate import audit
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, CHANNEL, Bot, eventually, make_services, start_bot


@pytest.fixture
def outboxed(tmp_path: Path, launcher: ScriptedLauncher) -> Iterator[tuple[Bot, OutboxWorker]]:
    def services(settings: Settings) -> Services:
        built = make_services(settings, launcher)
        return dataclasses.replace(built, outbox=Outbox(built.store))

    bot = start_bot(tmp_path, launcher, services)
    assert bot.services.outbox is not None
    worker = install_outbox(bot.app, bot.services.outbox, poll_s=0.1)
    yield bot, worker
    worker.stop()
    bot.stop()


def rows(bot: Bot) -> list[dict[str, object]]:
    with bot.services.store.connect() as conn:
        return [dict(r) for r in conn.execute("SELECT kind, payload, state FROM outbox").fetchall()]


def test_an_accepted_retrain_is_one_row_run_once(
    outboxed: tuple[Bot, OutboxWorker], launcher: ScriptedLauncher
) -> None:
    bot, _ = outboxed
    assert bot.slash("/retrain", "preset=tiny epochs=2").status_code == 200
    eventually(lambda: [r for r in rows(bot) if r["state"] == "done"])
    (row,) = rows(bot)
    payload = str(row["payload"])
    for needed in (ALICE, CHANNEL, "response_url", "trigger-1"):
        assert needed in payload
    eventually(lambda: launcher.launches == 1)
    # A Slack retry of the same request (same trigger) is no second row and no second run.
    bot.slash("/retrain", "preset=tiny epochs=2", headers={"X-Slack-Retry-Num": "1"})
    assert len(rows(bot)) == 1
    assert launcher.launches == 1


def test_a_refused_retrain_writes_no_row_and_is_audited_once(
    outboxed: tuple[Bot, OutboxWorker], launcher: ScriptedLauncher
) -> None:
    bot, _ = outboxed
    body = bot.slash("/retrain", "preset=tiny gpus=1 nodes=8").json()
    assert "GANOPS_MAX_GPUS" in body["text"]
    assert rows(bot) == []
    assert launcher.launches == 0
    assert audit(bot, ALICE) == [("retrain", "refused", "slash", "GANOPS_MAX_GPUS")]
