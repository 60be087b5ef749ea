"""Who asked decides how far the ingest step may fetch: the bot marks an approver's run
(`RunParams.data_anywhere`) where every path starts its run, and the pipeline gets the marker
and GANOPS_DATA_ALLOW as parameters. Through the real Bolt app over signed HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from ganops.bot.runs.start import with_data_scope
from ganops.pipeline.params import RunStorage, pipeline_arguments
from ganops.pipeline.ports import RunParams
from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import ALICE, BOB, Bot, eventually, start_bot


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[tuple[Bot, ScriptedLauncher]]:
    launcher = ScriptedLauncher()
    bot = start_bot(tmp_path, launcher, GANOPS_APPROVERS=BOB, GANOPS_DATA_ALLOW="s3://team-bucket/")
    yield bot, launcher
    bot.stop()


def _launched(bot: Bot, launcher: ScriptedLauncher, text: str, user: str) -> dict[str, object]:
    known = {r.run_id for r in bot.services.runbook.recent(5)}
    resp = bot.slash("/retrain", text, user=user, trigger_id=f"t-{user}")
    assert (resp.status_code, resp.text) == (200, "")
    run_id = eventually(
        lambda: next(
            (r.run_id for r in bot.services.runbook.recent(5) if r.run_id not in known), None
        )
    )
    params = dict(launcher.status(run_id).params)
    launcher.move(run_id, state="failed")  # one run per model at a time
    return params


def test_only_an_approvers_run_may_fetch_outside_the_allowlist(
    bot: tuple[Bot, ScriptedLauncher],
) -> None:
    app, launcher = bot
    member = _launched(app, launcher, "data=s3://team-bucket/horses", ALICE)
    assert (member["data"], member["data_anywhere"]) == ("s3://team-bucket/horses", False)
    approver = _launched(app, launcher, "data=s3://elsewhere/horses", BOB)
    assert (approver["data"], approver["data_anywhere"]) == ("s3://elsewhere/horses", True)


def test_a_failing_approver_lookup_never_widens_the_fetch() -> None:
    def broken(user: str) -> bool:
        raise RuntimeError("usergroups.users.list: ratelimited")

    services = SimpleNamespace(approvals=SimpleNamespace(is_approver=broken))
    params = RunParams(data="s3://elsewhere/x", data_anywhere=True)  # as if typed in somehow
    assert with_data_scope(services, params, BOB).data_anywhere is False  # type: ignore[arg-type]


def test_the_pipeline_gets_the_allowlist_and_the_marker() -> None:
    storage = RunStorage(data_allow=("s3://team-bucket/", "https://data.example.com/sets/"))
    args = pipeline_arguments(RunParams(data_anywhere=True), "", storage=storage)
    assert json.loads(args["data_allow"]) == ["s3://team-bucket/", "https://data.example.com/sets/"]
    assert args["data_anywhere"] is True
    assert pipeline_arguments(RunParams(), "")["data_anywhere"] is False


@pytest.mark.parametrize("user", [ALICE, BOB], ids=["non-approver", "approver"])
def test_the_fetch_steps_refusal_is_posted_on_the_run(
    bot: tuple[Bot, ScriptedLauncher], tmp_path: Path, user: str
) -> None:
    """The ingest step refuses with the rules the run was launched with; the bot posts that
    reason in the run's thread. Alice's data is inside the allowlist as text (her /retrain is
    accepted), Bob's is outside it (he is an approver): both are refused where fetched."""
    from ganops.pipeline.events import fold, read_events
    from ganops.pipeline.launch.worker import final_changes
    from ganops.pipeline.steps.data import ingest
    from ganops.pipeline.steps.fetchguard import DataRules, FetchRefused

    app, launcher = bot
    source = {
        ALICE: "s3://team-bucket/%2e%2e/secrets",  # climbs out of its bucket once decoded
        BOB: "http://169.254.169.254/latest/set.tgz",
    }[user]
    resp = app.slash("/retrain", f"data={source}", user=user, trigger_id=f"t-{user}")
    assert (resp.status_code, resp.text) == (200, "")
    row = eventually(
        lambda: next((r for r in app.services.runbook.recent(5) if r.message_ts), None)
    )
    params = launcher.status(row.run_id).params
    rules = DataRules(allow=app.settings.data_allow, anywhere=bool(params["data_anywhere"]))
    events = tmp_path / "events"
    with pytest.raises(FetchRefused):  # the same step function, with this run's rules
        ingest(
            source=str(params["data"]),
            out_dir=str(tmp_path / "out"),
            image_size=32,
            seed=0,
            synthetic_n=0,
            events_dir=str(events),
            rules=rules,
        )
    failed = final_changes(fold(read_events(events)), None, "ingest")
    launcher.move(row.run_id, **{k: failed[k] for k in ("state", "failed_step", "error")})
    app.watcher().tick()
    [reply] = eventually(
        lambda: [m for m in app.slack.messages() if m.get("thread_ts") == row.message_ts]
    )
    assert "failed at *ingest*" in reply["text"]
    assert failed["error"] in json.dumps(reply["blocks"])
    assert failed["error"].startswith("refused: ")
