"""The pure Block Kit builders: typed blocks that Slack accepts, and the facts they show."""

from __future__ import annotations

import dataclasses
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from ganops.bot.blocks import SECTION_LIMIT, blocks_to_dicts, clip
from ganops.bot.blocks.ops import (
    ModelStatus,
    RunLine,
    approvers_blocks,
    audit_blocks,
    help_blocks,
    models_blocks,
    rollback_card,
    runs_blocks,
    status_blocks,
    usage_blocks,
)
from ganops.bot.blocks.results import METRIC_NAMES
from ganops.bot.blocks.runs import (
    CardView,
    RunView,
    approval_buttons,
    duration,
    failure_blocks,
    metrics_table,
    params_line,
    results_card,
    run_blocks,
    run_text,
    step_track,
)
from ganops.bot.ports import ModelVersionInfo
from ganops.bot.store import AuditRow


def text(blocks: list[Block]) -> str:
    return str(blocks_to_dicts(blocks))


def valid(blocks: list[Block]) -> None:
    """slack_sdk validates lengths and shapes in to_dict(); Slack allows 50 blocks."""
    assert 0 < len(blocks) <= 50
    for block in blocks:
        assert isinstance(block, Block)
        block.to_dict()


def test_the_run_message_shows_progress_losses_and_link() -> None:
    view = RunView(
        run_id="run-9",
        model="cut",
        requested_by="U1",
        params={"model": "cut", "epochs": 2, "lr": 2e-4, "min_score": 0.0},
        state="running",
        url="http://kfp/#/runs/details/run-9",
        current_step="train",
        steps_done=2,
        train_step=40,
        train_total=200,
        losses={"G": 0.8123, "NCE": 1.5},
        elapsed_s=135,
    )
    blocks = run_blocks(view)
    valid(blocks)
    shown = text(blocks)
    assert "<@U1>" in shown
    assert "epochs=2" in shown
    assert "lr=0.0002" in shown
    assert "min_score" not in shown  # operator-only keys stay out of the channel
    assert "✓ ingest  ✓ validate  ▸ train  · evaluate" in shown
    assert "stage 3/6 · train · step 40/200 (20%) · elapsed" in shown  # no rate, no ETA
    assert "elapsed 2m 10s" in shown  # while running, the clock moves in 10 s steps
    assert "G 0.812 · NCE 1.500" in shown
    assert "<http://kfp/#/runs/details/run-9|KFP run `run-9`>" in shown
    assert run_text(view).startswith("Retrain cut (running) by <@U1>: stage 3/6 · train")
    timed = text(
        run_blocks(dataclasses.replace(view, train_step=120, train_total=160, train_rate=0.5))
    )
    assert "stage 3/6 · train · step 120/160 (75%) · ETA 2 min · elapsed 2m 10s" in timed
    done = dataclasses.replace(view, state="awaiting_approval", steps_done=6, current_step=None)
    assert "6/6 stages done · elapsed 2m 15s" in run_text(done)
    assert " steps" not in run_text(done)  # "step" is training's count only


def test_a_local_run_and_a_failure() -> None:
    view = RunView(run_id="local-1", model="cut", requested_by="U1", state="failed",
                   steps_done=1, failed_step="validate", error="bad.png is corrupt")  # fmt: skip
    shown = text(run_blocks(view))
    assert "local run `local-1`" in shown
    assert "✗ validate" in shown
    assert "bad.png is corrupt" in text(failure_blocks(view))


def test_the_metrics_table_puts_the_deploy_score_first_with_deltas() -> None:
    table = metrics_table({"ssim": 0.7, "deploy_score": 0.8}, {"ssim": 0.75, "deploy_score": 0.6})
    header, first, second, _, note = table.splitlines()
    assert header.split() == ["metric", "challenger", "champion", "delta"]
    assert first.split() == ["deploy", "score", "0.8000", "0.6000", "+0.2000", "better"]
    assert second.split() == ["likeness", "(SSIM)", "0.7000", "0.7500", "-0.0500", "worse"]
    assert "lower is better" in note
    kid = metrics_table({"kid": 0.7}, {"kid": 0.9}).splitlines()[1]
    assert kid.split() == ["style", "distance", "(KID)", "0.7000", "0.9000", "-0.2000", "better"]
    assert metrics_table({"ssim": 0.7}, None).splitlines()[1].split()[-3:] == ["0.7000", "—", "—"]
    widest = max(
        len(line) for line in metrics_table(dict.fromkeys(METRIC_NAMES, 1.5), None).splitlines()
    )
    assert widest <= 72  # fits a Slack message's width without wrapping


def card() -> CardView:
    return CardView(run_id="run-1", model="cut", version="7", requested_by="U1",
                    metrics={"deploy_score": 0.8}, champion_metrics={"deploy_score": 0.7},
                    champion_version="6", deploy_score=0.8, data_digest="sha256:d1",
                    image="img:1", files_note="pictures in the thread")  # fmt: skip


def test_the_results_card_buttons_carry_only_the_approval_id() -> None:
    blocks = results_card(card(), "opaque-id-123")
    valid(blocks)
    [actions] = [b for b in blocks if isinstance(b, ActionsBlock)]
    approve, reject = actions.elements
    assert isinstance(approve, ButtonElement)
    assert isinstance(reject, ButtonElement)
    assert (approve.action_id, approve.value, approve.style) == (
        "approve",
        "opaque-id-123",
        "primary",
    )
    assert (reject.action_id, reject.value, reject.style) == ("reject", "opaque-id-123", "danger")
    shown = text(blocks)
    assert "v7" in shown
    assert "champion v6" in shown
    assert "digest `d1`" in shown
    assert "img:1" in shown
    assert "pictures in the thread" in shown


def test_a_drift_retrain_card_says_it_was_judged_on_the_new_inputs() -> None:
    assert "Judged on the new inputs" not in text(results_card(card(), "id"))
    blocks = results_card(dataclasses.replace(card(), on_captured=True), "id")
    valid(blocks)
    assert "held out from training" in text(blocks)


def test_a_decided_card_has_no_buttons() -> None:
    blocks = results_card(card(), None)
    valid(blocks)
    assert not [b for b in blocks if isinstance(b, ActionsBlock)]


def test_long_texts_are_clipped_to_slack_limits() -> None:
    assert len(clip("x" * 10_000)) <= SECTION_LIMIT
    view = RunView(run_id="r", model="cut", requested_by="U", state="failed", error="e" * 9000)
    valid(failure_blocks(view))


def test_ops_answers() -> None:
    v = ModelVersionInfo("cut", "4", ("champion",), deploy_score=0.75, created_at=1.7e9)
    valid(models_blocks("cut", [v]))
    assert "champion" in text(models_blocks("cut", [v]))
    assert "0.7500" in text(models_blocks("cut", [v]))
    assert "No versions" in text(models_blocks("cut", []))
    status = status_blocks([ModelStatus("cut", v, None, "4")], [], [])
    assert "champion: v4 (score 0.7500)" in text(status)
    assert "serving v4" in text(status)
    runs = runs_blocks([RunLine("run-1", "cut", "awaiting_approval", "U1", 100.0)], now=400.0)
    assert "awaiting approval" in text(runs)
    assert "5m 00s ago" in text(runs)
    audit = audit_blocks([AuditRow(1, 1.7e9, "U1", "decide", "a-1", "approved", {})])
    assert "U1  decide  a-1  approved" in text(audit)
    assert "I don't know `foo`" in text(help_blocks("foo"))
    assert "<@U1>" in text(approvers_blocks(["U1"], ["S1"], False, 2))
    assert "GANOPS_APPROVERS" in text(approvers_blocks([], [], False, 1))
    assert "epochs is bad" in text(usage_blocks("epochs is bad", "usage"))
    rollback = rollback_card("cut", "3", "4", "U1", "a-9")
    valid(rollback)
    assert "from v4 back to v3" in text(rollback)
    assert "'value': 'a-9'" in text(rollback)


def test_small_formatters() -> None:
    assert [duration(s) for s in (None, 5, 75, 7300)] == ["—", "5s", "1m 15s", "2h 01m"]
    assert params_line({"model": "cut", "auto_deploy": False, "steps": None}) == (
        "model=cut auto_deploy=false"
    )
    track = step_track(RunView("r", "cut", "U", steps_done=6, state="awaiting_approval"))
    assert track.count("✓") == 6
    done = RunView("r", "cut", "U", state="awaiting_approval", elapsed_s=135)
    assert "elapsed 2m 15s" in run_text(done)  # a finished run shows its exact time


def test_only_a_going_run_has_a_cancel_button_behind_a_confirm() -> None:
    def actions(state: str) -> list[dict[str, Any]]:
        blocks = blocks_to_dicts(run_blocks(RunView("r-9", "cut", "U1", state=state)))
        return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]  # type: ignore[union-attr]

    for state in ("queued", "running"):
        [cancel] = actions(state)
        assert (cancel["action_id"], cancel["value"]) == ("run_cancel", "r-9")
        assert cancel["confirm"]["title"]["text"] == "Cancel this run?"
    for state in ("failed", "gated", "awaiting_approval", "deployed", "cancelled"):
        assert actions(state) == []


def test_approve_and_reject_both_ask_for_confirmation() -> None:
    approve, reject = approval_buttons("a-1").to_dict()["elements"]
    assert approve["confirm"]["confirm"]["text"] == "Approve"
    assert reject["confirm"]["confirm"]["text"] == "Reject"


def test_the_card_links_the_mlflow_run_and_model_version_when_known() -> None:
    from ganops.pipeline.ports import RunResult
    from ganops.pipeline.results import with_links

    plain = RunResult(model="cut", registered_model="ganops-cut", version="7", mlflow_run_id="r9")
    assert with_links(plain, None) == plain
    linked = with_links(plain, "https://mlflow.example.com/")
    assert linked is not None
    assert linked.mlflow_run_url == "https://mlflow.example.com/#/runs/r9"
    assert linked.model_version_url == "https://mlflow.example.com/#/models/ganops-cut/versions/7"
    view = dataclasses.replace(card(), mlflow_run_url=linked.mlflow_run_url,
                               model_version_url=linked.model_version_url)  # fmt: skip
    shown = text(results_card(view, None))
    assert "<https://mlflow.example.com/#/runs/r9|MLflow run>" in shown
    assert "<https://mlflow.example.com/#/models/ganops-cut/versions/7|model version v7>" in shown
    assert "MLflow run" not in text(results_card(card(), None))
