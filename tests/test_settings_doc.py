"""Every setting the bot reads is in docs/settings.md: a new setting without a line fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READERS = [
    "bot/settings.py",
    "bot/cluster_settings.py",
    "bot/prometheus_access.py",
    "bot/canary/thresholds.py",
]
NAME = re.compile(r'"((?:GANOPS|SLACK|PROMETHEUS|KFP|MLFLOW|KF)_[A-Z_]+)"')


def test_every_setting_read_is_documented() -> None:
    read = {n for f in READERS for n in NAME.findall((ROOT / f).read_text())}
    assert len(read) > 40  # the pattern finds the settings, not nothing
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert sorted(n for n in read if f"`{n}`" not in doc) == []
