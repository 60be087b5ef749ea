"""The canary's posts: buttons only while it runs, the comparison table, the reason of a
rollback, and outside text escaped."""

from __future__ import annotations

import json

from ganops.bot.blocks.canary import CanaryView, canary_blocks, canary_text
from ganops.bot.blocks.common import blocks_to_dicts

JUDGED = {
    "outcome": "fail",
    "reasons": ["error rate 12.0% vs 0.0% <!channel>"],
    "rows": [
        {
            "metric": "error rate",
            "canary": "12.0%",
            "stable": "0.0%",
            "limit": "+1 pp",
            "ok": False,
        },
        {
            "metric": "p95 latency",
            "canary": "41 ms",
            "stable": "39 ms",
            "limit": "×1.5",
            "ok": True,
        },
    ],
}


def view(**kw: object) -> CanaryView:
    base: dict[str, object] = dict(canary_id="A1", model="cut", version="3", stable_version="2",
                                   steps=(10, 50, 100), step=1, moment="step", judgement=JUDGED)  # fmt: skip
    return CanaryView(**(base | kw))  # type: ignore[arg-type]


def test_a_step_shows_its_share_the_table_and_both_buttons() -> None:
    posted = json.dumps(blocks_to_dicts(canary_blocks(view(next_at=1_700_000_000.0))))
    assert "*50%* of the traffic" in posted
    assert "step 2 of 3" in posted
    for shown in ("error rate", "12.0%", "XX", "canary_promote", "canary_rollback"):
        assert shown in posted
    assert "<!channel>" not in posted  # a reason from outside is escaped
    assert canary_text(view()) == "Canary cut v3 at 50% of the traffic."


def test_an_ended_canary_has_no_buttons_and_says_why() -> None:
    for moment in ("promoted", "rolled_back", "superseded"):
        posted = json.dumps(
            blocks_to_dicts(canary_blocks(view(moment=moment, reason="p95 2× <b>")))
        )
        assert "canary_promote" not in posted
    rolled = blocks_to_dicts(canary_blocks(view(moment="rolled_back", reason="p95 2x")))
    assert "v2 takes all the traffic again" in json.dumps(rolled)
    assert "*Why:* p95 2x" in json.dumps(rolled)
    assert "the champion" in canary_text(view(moment="promoted"))


def test_a_held_step_says_why_and_keeps_the_buttons() -> None:
    posted = json.dumps(blocks_to_dicts(canary_blocks(view(moment="held"))))
    assert "Not enough traffic" in posted
    assert "canary_rollback" in posted


def test_a_canary_start_does_not_say_the_champion_moved() -> None:
    from ganops.bot.blocks.approvals import decision_text, deploy_result_text
    from ganops.bot.ports import Approval, DeployResult

    a = Approval("A1", None, "cut", "3", "models:/ganops-cut/3", "deploy", "U_A", "approved",
                 0.0, 1.0, approvers=("U_C",), decided_by="U_C", decided_at=0.0)  # fmt: skip
    started = DeployResult(True, "models:/ganops-cut/3", "3", "2", False, 4.0,
                           "canary at 10% of the traffic", canary_percent=10)  # fmt: skip
    text = deploy_result_text(a, started)
    assert "live as a canary beside v2" in text
    assert "only when it reaches 100%" in text
    assert "now points at" not in text
    assert "canary at 10%" in decision_text(a, started)
    done = DeployResult(True, "models:/ganops-cut/3", "3", "2", False, 60.0, "promoted")
    assert "`champion` now points at v3" in deploy_result_text(a, done)
