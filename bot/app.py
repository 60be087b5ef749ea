"""`create_app(settings, services) -> App`: wiring only.

The same App serves all three transports. Its WebClient has no token of its own: the
`authorize` function hands each request the bot token from settings, which skips the
`auth.test` call Bolt would otherwise make (at start-up, or on the first request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from ganops.bot.errors import report_unexpected
from ganops.bot.gate import Gate
from ganops.bot.listeners import register_listeners
from ganops.bot.listeners.context import make_policy
from ganops.bot.metrics import METRICS
from ganops.bot.services import Services, web_client
from ganops.bot.settings import Settings

log = logging.getLogger("ganops.bot")

# Stable ids for the bot itself; Slack's real ones are not needed for what the bot does.
BOT_USER_ID = "U_GANOPS_BOT"
BOT_ID = "B_GANOPS_BOT"


def _authorize(settings: Settings) -> Callable[..., AuthorizeResult]:
    token = settings.bot_token.reveal() if settings.bot_token else "xoxb-ganops-local"

    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=token,
            bot_user_id=BOT_USER_ID,
            bot_id=BOT_ID,
        )

    return authorize


class _TokenOnAuthorize(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and then warns that the
    client's (absent) token wins. The token reaches every request through `authorize`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


log.addFilter(_TokenOnAuthorize())


def create_app(
    settings: Settings, services: Services, *, listener_executor: Executor | None = None
) -> App:
    """The Bolt app with every listener. `listener_executor` runs the lazy listeners (the
    shell adapter passes one that can tell when they are all done)."""
    executor = listener_executor or ThreadPoolExecutor(
        max_workers=8, thread_name_prefix="ganops-lazy"
    )
    # The one gate (bot.gate): every listener is registered behind it (bot.listeners.gated).
    gate = Gate(
        policy=make_policy(services, settings),
        store=services.store,
        channels=settings.channels,
        defer=executor.submit,
    )
    app = App(
        name="ganops",
        logger=log,
        client=web_client(settings, token=None),
        # Explicit "" (not None): Bolt would read SLACK_SIGNING_SECRET from the environment.
        signing_secret=settings.signing_secret.reveal() if settings.signing_secret else "",
        authorize=_authorize(settings),
        # Ack functions run in the request's own thread and only parse: the ack never waits
        # behind lazy work in the executor (Bolt's default polls for it every 10 ms).
        process_before_response=True,
        listener_executor=executor,
    )

    @app.middleware
    def provide_services(context: BoltContext, next: Callable[[], None]) -> None:
        # Listeners (ours and ganops.bot.listeners.approvals) find their ports here.
        context["services"] = services
        context["settings"] = settings
        context["gate"] = gate
        next()

    # Metrics (bot.metrics): commands as they arrive, failed Web API calls (per-request clients
    # copy the app client's retry handlers), runs and approvals from the store at scrape time.
    app.use(METRICS.count_command)
    if services.store.path is not None:
        METRICS.watch_store(services.store.path)
    else:
        METRICS.watch_counts(services.store.count_by_state)

    @app.error
    def handle_error(error: Exception, body: dict[str, Any], client: WebClient) -> None:
        report_unexpected(error, body, client, log)

    register_listeners(app)
    return app
