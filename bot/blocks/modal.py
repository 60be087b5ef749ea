"""The `/retrain` modal: its view, and reading its fields back from a `view_submission`.

Each field's `block_id` and `action_id` is the `/retrain` key it sets, so a problem found by
`bot.parsing.parse_retrain_fields` (which names the key) goes back to Slack as
`response_action: errors` on that very field. Ranges in the hints come from `pipeline.params`,
the same table the validation uses. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from ganops.pipeline.params import MODELS, PRESETS, range_text

RETRAIN_MODAL = "retrain_modal"  # the view's callback_id
# (key, label, placeholder, what the hint says before the range); text inputs, in form order.
_NUMBERS: tuple[tuple[str, str, str, str], ...] = (
    ("epochs", "Epochs", "the preset's", "Passes over the data; or give steps"),
    ("steps", "Steps", "the preset's", "Optimiser steps; overrides epochs"),
    ("lr", "Learning rate", "the preset's, e.g. 2e-4", "A number"),
    ("gpus", "GPUs", "0", "Per run; more than one trains with DDP"),
    ("image_size", "Image size (px)", "the preset's", "A multiple of 4"),
)
_PRESET_HINT = "Leave empty: tiny without a GPU, full with one"
_DATA_HINT = "synthetic, a folder the trainer can read, or a URI (s3://, gs://, https://)"


@dataclass(frozen=True)
class ModalOrigin:
    """Where `/retrain` was typed: carried in the modal's `private_metadata`, so the run
    message goes to that channel and the request id is the command's own."""

    channel: str
    trigger_id: str
    team: str = ""

    def dumps(self) -> str:
        return json.dumps({"c": self.channel, "t": self.trigger_id, "team": self.team})

    @classmethod
    def loads(cls, text: str) -> ModalOrigin:
        data = json.loads(text or "{}")
        return cls(
            channel=str(data["c"]), trigger_id=str(data["t"]), team=str(data.get("team") or "")
        )


def _options(names: tuple[str, ...]) -> list[Option]:
    return [Option(value=n, text=PlainTextObject(text=n)) for n in names]


def _text_input(
    key: str, label: str, placeholder: str, hint: str, *, initial: str | None = None
) -> InputBlock:
    return InputBlock(
        block_id=key,
        label=label,
        optional=True,
        hint=hint,
        element=PlainTextInputElement(
            action_id=key, placeholder=placeholder, initial_value=initial
        ),
    )


def retrain_modal_blocks() -> list[Block]:
    model = StaticSelectElement(
        action_id="model", options=_options(MODELS), initial_option=_options(MODELS)[0]
    )
    preset = StaticSelectElement(
        action_id="preset", placeholder="by GPUs", options=_options(PRESETS)
    )
    blocks: list[Block] = [
        InputBlock(block_id="model", label="Model", element=model, hint="The generator to train"),
        InputBlock(
            block_id="preset", label="Preset", element=preset, optional=True, hint=_PRESET_HINT
        ),
        _text_input("data", "Data", "synthetic", _DATA_HINT, initial="synthetic"),
    ]
    for key, label, placeholder, hint in _NUMBERS:
        blocks.append(_text_input(key, label, placeholder, f"{hint}. Range {range_text(key)}."))
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="Empty fields keep the preset's values. The same keys work as text: "
                    "`/retrain epochs=2 lr=2e-4`."
                )
            ]
        )
    )
    return blocks


def retrain_modal(origin: ModalOrigin) -> View:
    """The modal `/retrain` opens when typed without arguments."""
    return View(
        type="modal",
        callback_id=RETRAIN_MODAL,
        title="Retrain the GAN",
        submit="Start run",
        close="Cancel",
        private_metadata=origin.dumps(),
        blocks=retrain_modal_blocks(),
    )


def submitted_fields(state_values: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """`view.state.values` of a submission -> {key: text}; empty and unpicked fields are ""."""
    fields: dict[str, str] = {}
    for block_id, actions in state_values.items():
        for action in actions.values():
            picked = action.get("selected_option") or {}
            fields[block_id] = str(picked.get("value") or action.get("value") or "")
    return fields


__all__ = ["RETRAIN_MODAL", "ModalOrigin", "retrain_modal", "submitted_fields"]
