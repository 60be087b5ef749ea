"""`ganops pipeline ...` with the bot's settings: the same launcher, the same cluster.

`ganops.pipeline.cli` holds the commands; it cannot import the bot, so this adapter loads
the bot's validated settings (`bot.settings.load_settings`, with `bot.cluster_settings`:
KFP namespace and token, artifact URI, data Secret, GPU node selector, GANOPS_IMAGE) and hands
the commands the launcher that `bot.services` builds from them. A run started here is the
run the bot would start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ganops.bot.errors import ConfigError
from ganops.pipeline import cli


class _SettingsFailed(Exception):
    pass


def cli_env() -> cli.CliEnv:
    """The CLI's environment from the bot's settings.

    Raises:
        ConfigError: a setting is bad, as the bot would refuse it at start-up.
    """
    from ganops.bot.services import build_launcher, cluster_placement
    from ganops.bot.settings import load_settings

    settings = load_settings(os.environ)
    return cli.CliEnv(
        state_dir=settings.state_dir.resolve(),
        kfp_host=settings.kfp_host,
        mlflow_uri=settings.mlflow_uri,
        image=settings.image,
        launcher=lambda: build_launcher(settings),
        placement=cluster_placement(settings),
    )


def main(argv: Sequence[str] | None = None) -> int:
    def env() -> cli.CliEnv:
        try:
            return cli_env()
        except ConfigError as exc:
            print(f"ganops pipeline: {exc}", file=sys.stderr)
            raise _SettingsFailed from None

    try:
        return cli.main(argv, env_factory=env)
    except _SettingsFailed:
        return 2
