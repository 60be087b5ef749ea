"""Text from outside the bot reaches Slack as literal text: `<!channel>` in a tag, a gate
reason or an error never pings, and never forges a link. Our own mentions stay live."""

from __future__ import annotations

import json

from slack_sdk.models.blocks import Block

from ganops.bot.blocks import at, blocks_to_dicts, code, escape, link
from ganops.bot.blocks.alarms import AlarmView, alarm_card, alarm_text, prometheus_down_text
from ganops.bot.blocks.ops import help_blocks, upstream_text, usage_blocks, usage_text
from ganops.bot.blocks.runs import (
    CardView,
    RunView,
    failure_blocks,
    gated_text,
    results_card,
    results_card_text,
    run_blocks,
    run_text,
)

PING = "<!channel> <https://evil.example|click> & more"


def shown(*parts: str | list[Block]) -> str:
    return json.dumps([p if isinstance(p, str) else blocks_to_dicts(p) for p in parts])


def test_escape_leaves_no_control_sequence() -> None:
    assert escape(PING) == "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; more"
    assert "<" not in code(PING)
    assert at("U_ALICE") == "<@U_ALICE>"
    assert at("<!here>") == "&lt;!here&gt;"
    assert link("https://x/?a=1&b=2|x>", "label") == "<https://x/?a=1&amp;b=2%7Cx&gt;|label>"


def test_run_cards_escape_tags_params_reasons_and_errors() -> None:
    view = RunView(
        run_id="run-1",
        model="cut",
        requested_by="U_ALICE",
        params={"data": f"s3://b/{PING}"},
        state="gated",
        gate_reason=PING,
        error=PING,
        failed_step=PING,
        source=PING,
    )
    out = shown(run_blocks(view), run_text(view), gated_text(view), failure_blocks(view))
    assert "<!channel>" not in out
    assert "&lt;!channel&gt;" in out
    assert "<@U_ALICE>" in out  # the requester's mention is ours: live
    card = CardView(
        run_id="run-1",
        model="cut",
        version="3",
        requested_by="U_ALICE",
        metrics={PING: 0.5},
        data_digest=PING,
        image=PING,
        url=f"https://kfp/{PING}",
    )
    out = shown(results_card(card, "a" * 20), results_card_text(card))
    assert "<!channel>" not in out
    assert "<https://evil" not in out


def test_alarm_and_notices_escape_labels_and_errors() -> None:
    view = AlarmView(
        episode_id="ep",
        model=PING,
        version="1",
        state="firing",
        score=2.0,
        peak_score=2.0,
        features={PING: 3.0},
        opened_at=0.0,
        updated_at=0.0,
    )
    out = shown(
        alarm_card(view),
        alarm_text(view),
        prometheus_down_text("http://p", PING, 5),
        upstream_text("start the run", PING),
        usage_text(PING),
        usage_blocks(PING, "usage"),
        help_blocks(PING),
    )
    assert "<!channel>" not in out
    assert "&lt;!channel&gt;" in out
