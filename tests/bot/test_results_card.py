"""The results card reads as a person reads it: headline metrics with human names and their
direction, the gate's verdict with its margin, a short digest, the links that are known."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from slack_sdk.models.blocks import ActionsBlock, SectionBlock

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.results import (
    HEADLINE_LIMIT,
    HEADLINES,
    METRIC_NAMES,
    SHORT_NAMES,
    short_digest,
    verdict,
)
from ganops.bot.blocks.runs import CardView, results_card

# metric: (challenger, champion), from a local demo run
METRICS = {
    "deploy_score": (0.0556, 0.0421),
    "diversity": (0.8674, 0.8297),
    "diversity_guard": (1.0, 1.0),
    "hist_dist": (0.7130, 0.7798),
    "hist_term": (0.2781, 0.2104),
    "kid": (17.2319, 30.6807),
    "kid_term": (0.0, 0.0),
    "psnr": (14.2498, 13.6318),
    "ssim": (0.1160, 0.0857),
    "ssim_term": (0.0, 0.0),
}
CHALLENGER = {name: pair[0] for name, pair in METRICS.items()}
CHAMPION = {name: pair[1] for name, pair in METRICS.items()}
DIGEST = "sha256:ea5845e78d777e938ac9fc459e8b32fdd924844bdefea77b385cc6c876ca7002"
INTERNAL = ("ssim_term", "kid_term", "hist_term", "diversity_guard", "deploy_score")


def view(**changes: object) -> CardView:
    base = CardView(
        run_id="run-9",
        model="cut",
        version="7",
        requested_by="U_ALICE",
        metrics=CHALLENGER,
        champion_metrics=CHAMPION,
        champion_version="6",
        deploy_score=0.0556,
        data_digest=DIGEST,
        data_uri="s3://bucket/photos",
        image="ganops-trainer:1.2",
        gate_passed=True,
        gate_reason="deploy score 0.0556 beats the bar: the champion (version 6) scores 0.0421",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def shown(card: CardView) -> str:
    return json.dumps(blocks_to_dicts(results_card(card, "apv-1")), ensure_ascii=False)


def test_headline_metrics_have_human_names_and_direction() -> None:
    text = shown(view())
    assert "deploy score (higher is better)" in text
    assert "likeness to the ground truth, SSIM (higher is better)" in text
    assert "distance to the target style, KID (lower is better)" in text
    for jargon in ("↑", "↓", "real B"):
        assert jargon not in text
    # lower KID is better: a drop reads as better, with the sign of the change
    assert "17.2 · champion 30.7 (−13.4, better)" in text
    assert "0.116 · champion 0.0857 (+0.0303, better)" in text


def test_no_internal_term_names_or_four_decimals_in_the_card() -> None:
    text = shown(view())
    for name in INTERNAL:
        assert name not in text, name
    # three significant figures, not the old table's four decimals (17.2319, 0.8674, …)
    for value in CHALLENGER.values():
        if abs(value) >= 0.1 and value != 1.0:
            assert f"{value:.4f}" not in text, value


def test_three_to_five_headlines() -> None:
    [fields] = [b for b in results_card(view(), None) if isinstance(b, SectionBlock) and b.fields]
    assert 3 <= len(fields.fields or []) <= HEADLINE_LIMIT == 5


def test_the_verdict_gives_the_margin_over_the_champion() -> None:
    text = shown(view())
    assert "Gate passed" in text
    assert "deploy score 0.0556 beats champion v6 (0.0421) by +0.0135, +32%" in text


def test_without_a_champion_the_verdict_gives_the_pipelines_reason() -> None:
    reason = "deploy score 0.3 beats the bar: no champion yet; bar 0.1 = max(untrained 0.1, 0)"
    card = view(champion_metrics=None, champion_version=None, gate_reason=reason)
    assert reason in shown(card)
    assert verdict(passed=False, score=0.1, champion_score=0.2, champion_version="3").startswith(
        ":no_entry: *Gate not passed*: deploy score 0.1 does not beat champion v3 (0.2) by −0.1"
    )


def test_data_is_a_short_digest_with_its_uri() -> None:
    text = shown(view())
    assert "`s3://bucket/photos` · digest `ea5845e78d77`" in text
    assert DIGEST not in text
    assert short_digest("abcdef0123456789ff") == "abcdef012345"
    assert short_digest(None) == "unknown"


def test_links_show_when_their_urls_are_known() -> None:
    bare = shown(view())
    assert "MLflow run" not in bare
    assert "local run `run-9`" in bare
    card = view(
        url="http://kfp/#/runs/details/run-9",
        mlflow_run_url="http://mlflow/#/experiments/1/runs/abc",
        model_version_url="http://mlflow/#/models/ganops-cut/versions/7",
    )
    text = shown(card)
    assert "<http://mlflow/#/experiments/1/runs/abc|MLflow run>" in text
    assert "<http://mlflow/#/models/ganops-cut/versions/7|model version v7>" in text
    assert "<http://kfp/#/runs/details/run-9|KFP run `run-9`>" in text


def test_buttons_only_with_an_approval_id() -> None:
    assert [b for b in results_card(view(), "apv-1") if isinstance(b, ActionsBlock)]
    assert not [b for b in results_card(view(), None) if isinstance(b, ActionsBlock)]


def test_every_metric_the_evaluation_reports_has_a_plain_name() -> None:
    """The keys `model.evaluate` writes (read from its source: importing it loads torch)."""
    source = (Path(__file__).parents[2] / "model" / "evaluate.py").read_text()
    keys = set(re.findall(r'\bm\["([a-z_]+)"\]', source))
    assert {"deploy_score", "ssim", "kid", "hist_dist", "diversity", "psnr"} <= keys
    for key in keys:
        for names in (METRIC_NAMES, SHORT_NAMES):
            name = names.get(key)
            assert name, f"{key} has no plain name"
            assert "real B" not in name
            assert "_" not in name
    assert {h.key for h in HEADLINES} <= keys


def test_a_training_note_reaches_the_card_from_local_facts_and_version_tags() -> None:
    from ganops.pipeline.results import result_from_facts, result_from_version, to_run_result

    note = "torch.compile is off: inductor needs a C compiler (gcc or clang) at run time"
    local = to_run_result(result_from_facts({"train": {"notes": [note]}}, "cut", "img"))
    kubeflow = to_run_result(result_from_version("ganops-cut", "7", "r1", {"train_note": note}))
    assert local is not None
    assert kubeflow is not None
    assert local.train_note == kubeflow.train_note == note
    assert note in shown(view(train_note=local.train_note))
    plain = to_run_result(result_from_facts({"train": {"notes": []}}, "cut", "img"))
    assert plain is not None
    assert plain.train_note is None
    assert ":warning:" not in shown(view(train_note=plain.train_note))
