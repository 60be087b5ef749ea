"""The `/retrain` modal: its view, and reading its fields back from a `view_submission`.

Each field's `block_id` and `action_id` is the `/retrain` key it sets, so a problem found by
`bot.parsing.parse_retrain_fields` (which names the key), or a bound the gate refuses (which
names its key), goes back to Slack as `response_action: errors` on that very field. Numbers
are `number_input`s whose min and max are `pipeline.params`' ranges, the same table the
validation uses; the hints name the policy's bounds, past which an approver must run it.
`auto_deploy` is drawn for approvers only (the gate checks it anyway). Pure: no I/O.
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
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from ganops.bot.policy import Bounds
from ganops.pipeline.params import MODELS, PRESETS, param_range, range_text

RETRAIN_MODAL = "retrain_modal"  # the view's callback_id
# (key, label, placeholder, what the hint says before the range); number inputs, in form order.
_NUMBERS: tuple[tuple[str, str, str, str], ...] = (
    ("epochs", "Epochs", "the preset's", "Passes over the data; or give steps"),
    ("steps", "Steps", "the preset's", "Optimiser steps; overrides epochs"),
    ("lr", "Learning rate", "the preset's, e.g. 0.0002", "A number"),
    ("batch_size", "Batch size", "the preset's", "Images per step and GPU"),
    ("gpus", "GPUs per node", "0", "More than one trains with DDP"),
    ("nodes", "Nodes", "1", "Machines; GPUs count gpus × nodes"),
    ("image_size", "Image size (px)", "the preset's", "A multiple of 4"),
    ("seed", "Seed", "0", "For a repeatable run"),
)
_PRESET_HINT = "Leave empty: tiny without a GPU, full with one"
_DATA_HINT = "synthetic, a folder the trainer can read, or a URI (s3://, gs://, https://)"
_APPROVER = "past it, an approver must run it"


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


def _number_input(key: str, label: str, placeholder: str, hint: str) -> InputBlock:
    low, high = param_range(key)
    decimal = key == "lr"
    return InputBlock(
        block_id=key,
        label=label,
        optional=True,
        hint=hint,
        element=NumberInputElement(
            action_id=key,
            is_decimal_allowed=decimal,
            min_value=_plain(low),
            max_value=_plain(high),
            placeholder=placeholder,
        ),
    )


def _plain(value: float) -> str:
    """A number as Slack's number_input reads it: no exponent (1e-07 -> 0.0000001)."""
    return f"{value:.10f}".rstrip("0").rstrip(".")


def bound_hint(key: str, bounds: Bounds) -> str:
    """What the hint says of the policy's bound on `key` ("" when it has none)."""
    if key == "gpus":
        return f"gpus × nodes up to GANOPS_MAX_GPUS={bounds.max_gpus}; {_APPROVER}. "
    if key == "nodes":
        return f"Up to GANOPS_MAX_NODES={bounds.max_nodes}; {_APPROVER}. "
    if key == "steps":
        return f"Up to GANOPS_MAX_STEPS={bounds.max_steps}; {_APPROVER}. "
    if key == "epochs":
        return f"Without steps, up to GANOPS_MAX_EPOCHS={bounds.max_epochs}; {_APPROVER}. "
    if key == "data":
        where = ", ".join(bounds.data_allow) or "nothing else"
        return f"synthetic or under GANOPS_DATA_ALLOW ({where}); elsewhere an approver must run it."
    return ""


def _auto_deploy() -> InputBlock:
    options = [
        Option(value="false", text=PlainTextObject(text="No: the card waits for approval")),
        Option(value="true", text=PlainTextObject(text="Yes: my approval counts")),
    ]
    return InputBlock(
        block_id="auto_deploy",
        label="Deploy if it passes the gate",
        optional=True,
        hint="Approvers only: counts as your approval of the new model",
        element=StaticSelectElement(
            action_id="auto_deploy", options=options, initial_option=options[0]
        ),
    )


def retrain_modal_blocks(bounds: Bounds | None = None, *, approver: bool = False) -> list[Block]:
    bounds = bounds or Bounds()
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
        _text_input(
            "data", "Data", "synthetic", f"{_DATA_HINT}. {bound_hint('data', bounds)}",
            initial="synthetic",
        ),
    ]  # fmt: skip
    for key, label, placeholder, hint in _NUMBERS:
        text = f"{hint}. {bound_hint(key, bounds)}Range {range_text(key)}."
        blocks.append(_number_input(key, label, placeholder, text))
    if approver:
        blocks.append(_auto_deploy())
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


def retrain_modal(
    origin: ModalOrigin, bounds: Bounds | None = None, *, approver: bool = False
) -> View:
    """The modal `/retrain` opens when typed without arguments (and the Home tab's button)."""
    return View(
        type="modal",
        callback_id=RETRAIN_MODAL,
        title="Retrain the GAN",
        submit="Start run",
        close="Cancel",
        private_metadata=origin.dumps(),
        blocks=retrain_modal_blocks(bounds, approver=approver),
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
