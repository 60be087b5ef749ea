"""The run tests' bot: the real Bolt app over HTTP against a local Slack, and a launcher
whose runs the test moves by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


@pytest.fixture
def bot_mlflow(bot: Bot, fresh_mlflow: Callable[[Path], str]) -> str:
    """The bot's own MLflow store (its settings' URI), put there empty and migrated from the
    session's template, so registering a challenger does not wait on MLflow's migrations."""
    assert bot.settings.mlflow_uri.startswith("sqlite:///")
    return fresh_mlflow(Path(bot.settings.mlflow_uri.removeprefix("sqlite:///")))
