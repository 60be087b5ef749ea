"""The run tests' bot: the real Bolt app over HTTP against a local Slack, and a launcher
whose runs the test moves by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.launcher import ScriptedLauncher
from tests.fakes.slack import Bot, start_bot


@pytest.fixture
def launcher() -> ScriptedLauncher:
    return ScriptedLauncher()


@pytest.fixture
def bot(tmp_path: Path, launcher: ScriptedLauncher) -> Iterator[Bot]:
    bot = start_bot(tmp_path, launcher)
    yield bot
    bot.stop()
