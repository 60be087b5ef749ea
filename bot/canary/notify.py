"""Canary posts go in the approval card's thread (a rollback is broadcast to the channel
too, so nobody has to open the thread to learn that a deploy was undone), each step with its
comparison plot."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ganops.bot.blocks.canary import CanaryView, canary_blocks, canary_text
from ganops.bot.blocks.common import blocks_to_dicts
from ganops.bot.canary.table import Canary

log = logging.getLogger(__name__)


class SlackNotifier:
    def __init__(self, client: WebClient, channel: str) -> None:
        self.client = client
        self.channel = channel

    def tell(self, canary: Canary, view: CanaryView, *, channel_too: bool) -> None:
        channel = canary.channel or self.channel
        thread = canary.thread_ts
        self.client.chat_postMessage(
            channel=channel,
            thread_ts=thread,
            # A thread reply shown in the channel as well: the rollback and why.
            reply_broadcast=bool(thread and channel_too) or None,
            text=canary_text(view),
            blocks=blocks_to_dicts(canary_blocks(view)),
        )
        if view.judgement and view.moment in ("step", "held", "rolled_back"):
            from ganops.bot.canary.plot import comparison_png  # matplotlib: only when drawing

            title = f"{view.model} v{view.version} vs the stable version at {view.percent}%"
            png = comparison_png(view.judgement, title)
            if png is not None and thread:
                self._upload(channel, thread, png, f"canary-{canary.canary_id}-{view.step}.png")

    def _upload(self, channel: str, thread: str, png: bytes, filename: str) -> None:
        try:
            self.client.files_upload_v2(channel=channel, thread_ts=thread, content=png,
                                        filename=filename, title="Canary vs stable")  # fmt: skip
        except SlackApiError as exc:  # the post is up; a missing plot is worth a log line
            log.warning("could not upload the canary plot: %s", exc)
