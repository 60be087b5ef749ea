"""The bot's ports over real services: Prometheus (`prometheus`, the `MetricsSource`) and the
MLflow model registry (`registry`, the `ModelRegistry`). `bot.services` builds them."""

from __future__ import annotations

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.adapters.registry import MlflowRegistry

__all__ = ["MlflowRegistry", "PrometheusMetrics"]
