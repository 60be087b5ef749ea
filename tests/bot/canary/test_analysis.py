"""The canary verdict, pure: each threshold passes at its limit and fails past it; too little
canary traffic is inconclusive; missing data is a note, not a failure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ganops.bot.canary import CanaryThresholds, VersionStats, judge

T = CanaryThresholds()
OUTPUTS = {"brightness": 0.5, "saturation": 0.3, "noise": 0.01}
STABLE = VersionStats(
    version="2",
    requests=400,
    errors=8,
    error_rate=0.02,
    p95_latency_s=0.100,
    drift_score=0.3,
    output_means=OUTPUTS,
)
CANARY = replace(STABLE, version="3", requests=60, errors=1.2)


def rows(canary: VersionStats, stable: VersionStats | None = STABLE) -> dict[str, bool | None]:
    verdict = judge(canary=canary, stable=stable, thresholds=T)
    return {r.metric.split(" (")[0]: r.ok for r in verdict.rows}


def test_the_same_numbers_pass() -> None:
    verdict = judge(canary=CANARY, stable=STABLE, thresholds=T)
    assert verdict.outcome == "pass"
    assert (verdict.reasons, verdict.notes) == ((), ())
    assert [r.ok for r in verdict.rows] == [True, True, True, True]
    assert (verdict.canary_version, verdict.stable_version) == ("3", "2")


def test_error_rate_at_the_limit_passes_and_past_it_fails() -> None:
    at = replace(CANARY, error_rate=0.03)  # stable 2 % + 1 pp
    assert judge(canary=at, stable=STABLE, thresholds=T).outcome == "pass"
    past = replace(CANARY, error_rate=0.12)
    verdict = judge(canary=past, stable=STABLE, thresholds=T)
    assert verdict.outcome == "fail"
    assert verdict.reasons == (
        "error rate 12.0% vs 2.0% on v3 (GANOPS_CANARY_MAX_ERROR_RATE=1 pp over stable)",
    )
    row = verdict.rows[0]
    assert (row.metric, row.canary, row.stable, row.limit, row.ok) == (
        "error rate",
        "12.0%",
        "2.0%",
        "≤ 3.0%",
        False,
    )
    assert row.setting == "GANOPS_CANARY_MAX_ERROR_RATE"
    looser = replace(T, max_error_rate_pp=10.0)
    assert judge(canary=past, stable=STABLE, thresholds=looser).outcome == "pass"


def test_latency_ratio_at_the_limit_passes_and_past_it_fails() -> None:
    assert rows(replace(CANARY, p95_latency_s=0.150))["p95 latency"] is True
    verdict = judge(canary=replace(CANARY, p95_latency_s=0.151), stable=STABLE, thresholds=T)
    assert verdict.outcome == "fail"
    assert verdict.reasons == (
        "p95 latency 151.0 ms vs 100.0 ms on v3 (GANOPS_CANARY_MAX_LATENCY_RATIO=1.5, 1.5× stable)",
    )


def test_a_few_milliseconds_are_not_a_latency_regression() -> None:
    fast = replace(STABLE, p95_latency_s=0.001)
    assert rows(replace(CANARY, p95_latency_s=0.002), fast)["p95 latency"] is True  # 2×
    assert rows(replace(CANARY, p95_latency_s=0.011), fast)["p95 latency"] is True  # the slack
    assert rows(replace(CANARY, p95_latency_s=0.0111), fast)["p95 latency"] is False


def test_drift_at_the_limit_passes_and_past_it_fails() -> None:
    assert rows(replace(CANARY, drift_score=1.0))["input drift score"] is True
    verdict = judge(canary=replace(CANARY, drift_score=1.4), stable=STABLE, thresholds=T)
    assert verdict.outcome == "fail"
    assert verdict.reasons == ("input drift score 1.40 on v3 (GANOPS_CANARY_MAX_DRIFT=1)",)
    # The canary's own inputs: a drifting stable does not excuse it, nor condemn it.
    drifting = replace(STABLE, drift_score=3.0)
    assert rows(replace(CANARY, drift_score=1.4), drifting)["input drift score"] is False
    assert rows(CANARY, drifting)["input drift score"] is True


def test_output_shift_at_the_limit_passes_and_past_it_fails() -> None:
    at = replace(CANARY, output_means={**OUTPUTS, "brightness": 1.5})  # 1.0 over the smaller 0.5
    assert rows(at)["output shift"] is True
    past = replace(CANARY, output_means={**OUTPUTS, "brightness": 0.15})  # 0.35 over 0.15
    verdict = judge(canary=past, stable=STABLE, thresholds=T)
    assert verdict.outcome == "fail"
    assert verdict.reasons == (
        "output brightness mean 0.150 vs 0.500 on v3, a 233% shift "
        "(GANOPS_CANARY_MAX_OUTPUT_SHIFT=2)",
    )
    assert verdict.rows[3].metric == "output shift (brightness)"


def test_a_retrained_style_passes_and_a_collapse_fails() -> None:
    # A better model's outputs differ (the demo's sharpness 0.055 -> 0.095): not a failure.
    sharper = replace(CANARY, output_means={**OUTPUTS, "saturation": 0.52})
    assert rows(sharper)["output shift"] is True
    # Black, flat outputs: a feature falls towards 0, many times its own size.
    black = replace(CANARY, output_means={**OUTPUTS, "brightness": 0.0})
    assert rows(black)["output shift"] is False


def test_outputs_are_not_compared_with_a_drifting_stable() -> None:
    # After a drift retrain the stable sees inputs it was not trained for: the new model is
    # meant to answer differently, so the shift is a note, and the canary's drift still counts.
    tripled = replace(CANARY, output_means={**OUTPUTS, "brightness": 1.5 * 2})
    drifting = replace(STABLE, drift_score=32.0)
    verdict = judge(canary=tripled, stable=drifting, thresholds=T)
    assert verdict.outcome == "pass"
    assert "v2 is drifting (score 32.00 > GANOPS_CANARY_MAX_DRIFT=1)" in verdict.notes[0]
    assert rows(tripled, drifting)["output shift"] is None
    assert rows(tripled, replace(STABLE, drift_score=1.0))["output shift"] is False
    assert rows(replace(tripled, drift_score=1.5), drifting)["input drift score"] is False


def test_a_feature_near_zero_is_measured_against_the_floor() -> None:
    # noise 0.01 -> 0.02 doubles it, but is 0.01 / 0.05 = 20 % against the floor.
    doubled = replace(CANARY, output_means={**OUTPUTS, "noise": 0.02})
    assert rows(doubled)["output shift"] is True
    assert rows(replace(CANARY, output_means={**OUTPUTS, "noise": 0.12}))["output shift"] is False


def test_every_failure_is_a_reason() -> None:
    bad = replace(CANARY, error_rate=0.5, p95_latency_s=1.0, drift_score=2.0)
    verdict = judge(canary=bad, stable=STABLE, thresholds=T)
    assert verdict.outcome == "fail"
    assert len(verdict.reasons) == 3
    assert [r.ok for r in verdict.rows] == [False, False, False, True]


@pytest.mark.parametrize("requests", [0.0, 19.0])
def test_too_few_canary_requests_is_inconclusive(requests: float) -> None:
    few = replace(CANARY, requests=requests, error_rate=0.5 if requests else None)
    verdict = judge(canary=few, stable=STABLE, thresholds=T)
    assert verdict.outcome == "inconclusive"
    assert verdict.reasons == (
        f"only {requests:.0f} requests reached v3 in the window, fewer than "
        "GANOPS_CANARY_MIN_REQUESTS=20",
    )
    assert judge(canary=replace(few, requests=20.0), stable=STABLE, thresholds=T).outcome != (
        "inconclusive"
    )


def test_no_drift_series_yet_is_a_note_not_a_failure() -> None:
    verdict = judge(canary=replace(CANARY, drift_score=None), stable=STABLE, thresholds=T)
    assert verdict.outcome == "pass"
    assert verdict.rows[2].ok is None
    assert verdict.notes == ("no drift score for v3 yet: drift not judged",)


def test_no_output_statistics_is_a_note_not_a_failure() -> None:
    verdict = judge(canary=replace(CANARY, output_means={}), stable=STABLE, thresholds=T)
    assert verdict.outcome == "pass"
    assert verdict.notes == ("no output statistics for v3: outputs not compared",)


@pytest.mark.parametrize("stable", [None, VersionStats("2", 0.0)])
def test_without_stable_traffic_absolute_limits_apply_and_are_said(
    stable: VersionStats | None,
) -> None:
    verdict = judge(canary=replace(CANARY, error_rate=0.005), stable=stable, thresholds=T)
    assert verdict.outcome == "pass"
    assert verdict.notes[0] == "no stable traffic in the window: v3 held to absolute limits"
    assert [r.ok for r in verdict.rows] == [True, None, True, None]
    failing = judge(canary=replace(CANARY, error_rate=0.02), stable=stable, thresholds=T)
    assert failing.outcome == "fail"
    assert failing.reasons == (
        "error rate 2.0% vs 0.0% on v3 (GANOPS_CANARY_MAX_ERROR_RATE=1 pp over 0%, no stable "
        "traffic)",
    )
    drifting = judge(canary=replace(CANARY, drift_score=1.5), stable=stable, thresholds=T)
    assert drifting.outcome == "fail"


def test_a_p95_from_too_few_requests_is_a_note_not_a_verdict() -> None:
    # A new process's first requests are its slowest: 30 of them make a p95 of its cold start.
    cold = replace(CANARY, requests=30, errors=0.6, p95_latency_s=1.0)
    verdict = judge(canary=cold, stable=STABLE, thresholds=T)
    assert rows(cold)["p95 latency"] is None
    assert verdict.outcome == "pass"
    assert any("too few for a p95" in n for n in verdict.notes)
    assert rows(replace(cold, requests=50, errors=1.0))["p95 latency"] is False
