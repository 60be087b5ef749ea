"""The canary's analysis, bot side (no torch): `stats` (what is measured of each version;
`MetricsSource.compare_versions` fills it from Prometheus), `thresholds` (the
GANOPS_CANARY_* limits, validated with the settings) and `analysis` (the pure verdict).
"""

from __future__ import annotations

from ganops.bot.canary.analysis import CanaryJudgement, CanaryRow, judge
from ganops.bot.canary.stats import VersionStats
from ganops.bot.canary.thresholds import CanaryThresholds

__all__ = ["CanaryJudgement", "CanaryRow", "CanaryThresholds", "VersionStats", "judge"]
