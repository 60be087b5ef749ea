"""The Approve / Reject buttons, shared by the results card, the rollback card and App Home.
Neither decision can be undone, so each sits behind a confirm dialog that names what it
decides: "Deploy cut v7?", "Roll back cut from v7 to v5?". Pure: data in, blocks out."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ConfirmObject

from ganops.bot.blocks.common import confirm_dialog, escape

APPROVE_ACTION = "approve"
REJECT_ACTION = "reject"


@dataclass(frozen=True)
class DecisionSubject:
    """What an Approve / Reject decides, for the words of its confirm dialogs."""

    kind: str  # "deploy" | "rollback"
    model: str
    version: str  # the version that would serve
    from_version: str | None = None  # what serves now, when known


def _approve_confirm(s: DecisionSubject | None) -> ConfirmObject:
    if s is None:
        return confirm_dialog(
            title="Approve this request?",
            text="Your approval is recorded; once enough approvers agree, it goes ahead.",
            confirm="Approve",
            deny="Not yet",
        )
    agree = "Your approval is recorded; once enough approvers agree,"
    if s.kind == "rollback":
        old = f" from v{s.from_version}" if s.from_version else ""
        return confirm_dialog(
            title=f"Roll back {s.model}{old} to v{s.version}?",
            text=f"{agree} v{escape(s.version)} serves again and becomes the champion.",
            confirm="Roll back",
            deny="Not yet",
            danger=True,
        )
    replacing = f", replacing v{escape(s.from_version)}" if s.from_version else ""
    return confirm_dialog(
        title=f"Deploy {s.model} v{s.version}?",
        text=f"{agree} v{escape(s.version)} goes to production{replacing}.",
        confirm="Approve",
        deny="Not yet",
    )


def _reject_confirm(s: DecisionSubject | None) -> ConfirmObject:
    if s is not None and s.kind == "rollback":
        stays = f"v{escape(s.from_version)}" if s.from_version else "the current version"
        return confirm_dialog(
            title=f"Reject the rollback of {s.model}?",
            text=f"{stays} keeps serving. This closes the request for every approver.",
            confirm="Reject",
            deny="Keep it open",
            danger=True,
        )
    what = f"{s.model} v{s.version}" if s is not None else "this request"
    return confirm_dialog(
        title=f"Reject {what}?",
        text="It is not deployed, and this closes the request for every approver; "
        "only a new run can try again.",
        confirm="Reject",
        deny="Keep it open",
        danger=True,
    )


def approval_buttons(approval_id: str, subject: DecisionSubject | None = None) -> ActionsBlock:
    """Approve and Reject, each behind a confirm dialog that names what it decides (neither
    can be undone); the value is the opaque id."""
    approve_text = "Approve rollback" if subject and subject.kind == "rollback" else "Approve"
    return ActionsBlock(
        block_id=f"approval:{approval_id}",
        elements=[
            ButtonElement(
                text=approve_text,
                action_id=APPROVE_ACTION,
                value=approval_id,
                style="primary",
                confirm=_approve_confirm(subject),
            ),
            ButtonElement(
                text="Reject",
                action_id=REJECT_ACTION,
                value=approval_id,
                style="danger",
                confirm=_reject_confirm(subject),
            ),
        ],
    )
