"""The bot over signed HTTP with a scripted launcher: the fixtures of the `/retrain` tests.
Test modules that need another launcher or registry define their own `launcher` / `bot`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import Bot, start_bot


@pytest.fixture
def launcher() -> ScriptedLauncher:
    return ScriptedLauncher(url_base="http://kfp.test")


@pytest.fixture
def bot(tmp_path: Path, launcher: ScriptedLauncher) -> Iterator[Bot]:
    bot = start_bot(tmp_path, launcher)
    yield bot
    bot.stop()
