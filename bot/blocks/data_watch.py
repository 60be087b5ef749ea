"""Pure Block Kit builders for the new-data offer: how many images arrived, Retrain / Not now."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from ganops.bot.blocks.common import confirm_dialog

DATA_RETRAIN, DATA_DISMISS = "data_retrain", "data_dismiss"


@dataclass(frozen=True)
class OfferView:
    offer_id: str
    model: str
    champion_version: str
    digest: str  # the champion's data snapshot
    source: str  # the watched URI
    new_images: int
    state: str = "offered"  # offered | retraining | dismissed
    acted_by: str | None = None
    run_id: str | None = None


def offer_text(view: OfferView) -> str:
    return f"{view.new_images} new images in {view.source}: retrain {view.model}?"


def offer_card(view: OfferView) -> list[Block]:
    """The card; its buttons carry the offer id only, and go once someone has acted."""
    blocks: list[Block] = [
        HeaderBlock(text=f"New training data for {view.model}"),
        SectionBlock(
            text=MarkdownTextObject(
                text=(
                    f"*{view.new_images}* new images in `{view.source}` since champion "
                    f"v{view.champion_version}'s snapshot `{view.digest[:19]}`. A few are in "
                    "the thread. Retrain on the updated data?"
                )
            )
        ),
    ]
    who = f"<@{view.acted_by}>" if view.acted_by else "someone"
    if view.state == "retraining":
        status = f"{who} started a retrain: run `{view.run_id}` (progress in the thread)."
    elif view.state == "dismissed":
        status = f"{who} chose not now; the next snapshot's new data will be offered again."
    else:
        status = "Approvers only. Offered once per champion snapshot."
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=status)]))
    if view.state == "offered":
        blocks.append(offer_buttons(view))
    return blocks


def offer_buttons(view: OfferView) -> ActionsBlock:
    """Retrain and Not now, each behind a confirm: either one closes the offer for good."""
    retrain = confirm_dialog(
        title=f"Retrain {view.model} on the new data?",
        text=f"Starts a training run on the updated data ({view.new_images} new images since "
        "the champion's snapshot); the run's progress is in the thread.",
        confirm="Retrain",
        deny="Not now",
    )
    dismiss = confirm_dialog(
        title="Skip this new data?",
        text="The offer closes; the next snapshot's new data will be offered again.",
        confirm="Skip it",
        deny="Keep the offer",
    )
    return ActionsBlock(
        block_id=f"data:{view.offer_id}",
        elements=[
            ButtonElement(
                text="Retrain",
                action_id=DATA_RETRAIN,
                value=view.offer_id,
                style="primary",
                confirm=retrain,
            ),
            ButtonElement(
                text="Not now", action_id=DATA_DISMISS, value=view.offer_id, confirm=dismiss
            ),
        ],
    )
