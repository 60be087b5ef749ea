"""GANOPS_CANARY_* thresholds: defaults, values read through `load_settings`, and one clear
line for each bad value."""

from __future__ import annotations

import pytest

from ganops.bot.canary import CanaryThresholds
from ganops.bot.errors import ConfigError
from ganops.bot.settings import load_settings


def test_defaults() -> None:
    t = load_settings({}).canary_thresholds
    assert t == CanaryThresholds()
    assert (t.max_error_rate_pp, t.max_latency_ratio, t.max_drift) == (1.0, 1.5, 1.0)
    assert (t.max_output_shift, t.min_requests) == (2.0, 20)


def test_values_are_read_from_the_environment() -> None:
    env = {
        "GANOPS_CANARY_MAX_ERROR_RATE": "2.5",
        "GANOPS_CANARY_MAX_LATENCY_RATIO": "2",
        "GANOPS_CANARY_MAX_DRIFT": "1.2",
        "GANOPS_CANARY_MAX_OUTPUT_SHIFT": "0.1",
        "GANOPS_CANARY_MIN_REQUESTS": "50",
    }
    t = load_settings(env).canary_thresholds
    assert (t.max_error_rate_pp, t.max_latency_ratio, t.max_drift) == (2.5, 2.0, 1.2)
    assert (t.max_output_shift, t.min_requests) == (0.1, 50)


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("GANOPS_CANARY_MAX_ERROR_RATE", "1%", "a number from 0 to 100"),
        ("GANOPS_CANARY_MAX_ERROR_RATE", "-1", "a number from 0 to 100"),
        ("GANOPS_CANARY_MAX_LATENCY_RATIO", "0.9", "a number from 1 to 1000"),
        ("GANOPS_CANARY_MAX_DRIFT", "nan", "a number from 0 to 1000"),
        ("GANOPS_CANARY_MAX_OUTPUT_SHIFT", "lots", "a number from 0 to 100"),
        ("GANOPS_CANARY_MIN_REQUESTS", "2.5", "a whole number from 1 to 1e+09"),
        ("GANOPS_CANARY_MIN_REQUESTS", "0", "a whole number from 1 to 1e+09"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(name: str, raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: raw})
    message = str(info.value)
    assert message == f"{name}={raw!r} must be {says}"
    assert "\n" not in message
