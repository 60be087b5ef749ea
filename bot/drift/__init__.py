"""The drift loop's bot side.

- `watch`: the APScheduler job that polls Prometheus and keeps one alarm card per model version
  and episode;
- `alarms`: the `alarms` table (`AlarmBook`);
- `plots`: the score plot posted in the alarm's thread.
"""

from __future__ import annotations

from ganops.bot.drift.alarms import AlarmBook
from ganops.bot.drift.watch import DriftWatchConfig, DriftWatcher

__all__ = ["AlarmBook", "DriftWatchConfig", "DriftWatcher"]
