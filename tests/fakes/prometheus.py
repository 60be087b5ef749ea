"""The real-Prometheus helpers for tests live in `bot.local.prometheus` (the demo uses them too)."""

from ganops.bot.local.prometheus import (
    PROMETHEUS,
    REPO,
    RULES,
    PrometheusServer,
    free_port,
    prometheus_binary,
    rules_with_for,
    start_prometheus,
    terminate,
    write_config,
)

__all__ = [
    "PROMETHEUS",
    "REPO",
    "RULES",
    "PrometheusServer",
    "free_port",
    "prometheus_binary",
    "rules_with_for",
    "start_prometheus",
    "terminate",
    "write_config",
]
