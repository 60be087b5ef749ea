"""The bot's errors, and the one path for unexpected ones.

Listeners catch only the errors below that they expect, and tell the user. Anything else goes
to `report_unexpected`: the traceback is logged and the person gets a short apology, so no
failure is silent. Bolt's `@app.error` calls it for ack functions; Bolt swallows exceptions in
lazy listeners with a one-line log, so those are wrapped with `guarded`, which calls it too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

# One UsageError for the model's commands and the bot's: `problem` and the command's `usage`.
from ganops.model.errors import UsageError
from ganops.pipeline.ports import (
    ConcurrentRunError,
    DeployError,
    InvalidParamsError,
    PipelineError,
    UpstreamError,
)

__all__ = [
    "APOLOGY",
    "ConcurrentRunError",
    "ConfigError",
    "DeployError",
    "GanopsError",
    "InvalidParamsError",
    "NotFoundError",
    "PipelineError",
    "UpstreamError",
    "UsageError",
    "guarded",
    "report_unexpected",
]

log = logging.getLogger("ganops.bot")

APOLOGY = (
    ":warning: Sorry, something went wrong on my side ({kind}). It is logged; "
    "try again, or ask the ops team to look at the bot's log."
)


class GanopsError(Exception):
    """Base class of the bot's own expected errors."""


class ConfigError(GanopsError):
    """A setting is missing or malformed; the message is one line for the operator."""


class NotFoundError(GanopsError):
    """A run, model version or approval named by the user does not exist."""


def _where(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The channel and user of a slash command or an interaction payload."""
    channel = body.get("channel_id") or (body.get("channel") or {}).get("id")
    user = body.get("user_id") or (body.get("user") or {}).get("id")
    return channel, user


def report_unexpected(
    error: BaseException, body: Mapping[str, Any], client: Any, logger: logging.Logger | None
) -> None:
    """Log the traceback and tell the person who triggered it. Never raises."""
    (logger or log).error("unexpected error: %s", error, exc_info=error)
    channel, user = _where(body)
    if client is None or channel is None:
        return
    text = APOLOGY.format(kind=type(error).__name__)
    try:
        if user:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
        else:
            client.chat_postMessage(channel=channel, text=text)
    except Exception as exc:  # the apology itself failed: the log is all we have left
        (logger or log).error("could not post the apology: %s", exc)


F = TypeVar("F", bound=Callable[..., None])


def guarded(func: F) -> F:
    """Wrap a lazy listener so an unexpected exception reaches `report_unexpected`.

    Bolt reads the wrapped function's argument names (it unwraps), so the listener keeps
    asking for `body`, `client`, `context` and friends as usual.
    """

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> None:
        try:
            func(**kwargs)
        except Exception as exc:
            report_unexpected(exc, kwargs.get("body") or {}, kwargs.get("client"), None)

    return wrapper  # type: ignore[return-value]
