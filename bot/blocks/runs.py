"""Builders for a run's life in the channel: the progress message, the outcome replies and the
results card with its Approve / Reject buttons. Pure: views in, blocks and text out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
)

from ganops.bot.blocks.common import (
    at,
    clip,
    code,
    confirm_dialog,
    escape,
    link,
    literal,
    section,
)
from ganops.bot.blocks.decisions import DecisionSubject, approval_buttons
from ganops.bot.blocks.results import (
    METRIC_NAMES,
    data_line,
    headlines_section,
    judged,
    links_line,
    metric_name,
    verdict,
)
from ganops.pipeline.ports import PIPELINE_STEPS
from ganops.pipeline.progress import train_progress_text

CANCEL_ACTION = "run_cancel"
_GOING = ("queued", "running")
_ICONS = {
    "queued": ":hourglass_flowing_sand:",
    "running": ":arrows_counterclockwise:",
    "failed": ":x:",
    "gated": ":no_entry:",
    "awaiting_approval": ":white_check_mark:",
    "deployed": ":rocket:",
    "cancelled": ":black_square_for_stop:",
}
# Keys shown for a run's parameters, in this order; None values are left out.
_PARAM_ORDER = ("model", "data", "epochs", "steps", "lr", "batch_size", "gpus", "preset")
_PARAM_TAIL = ("image_size", "seed", "auto_deploy")


@dataclass(frozen=True)
class RunView:
    """What the run message shows: the `runs` row joined with the launcher's latest status."""

    run_id: str
    model: str
    requested_by: str
    params: Mapping[str, Any] = field(default_factory=dict)
    state: str = "queued"
    url: str | None = None
    current_step: str | None = None
    steps_done: int = 0
    steps_total: int = len(PIPELINE_STEPS)
    train_step: int | None = None
    train_total: int | None = None
    train_rate: float | None = None  # training steps per second lately: the ETA
    losses: Mapping[str, float] = field(default_factory=dict)
    elapsed_s: float | None = None
    failed_step: str | None = None
    error: str | None = None
    gate_reason: str | None = None
    version: str | None = None
    source: str = "/retrain"


@dataclass(frozen=True)
class CardView:
    """What the results card shows about a challenger that waits for a decision."""

    run_id: str
    model: str
    version: str
    requested_by: str
    metrics: Mapping[str, float]
    champion_metrics: Mapping[str, float] | None = None
    champion_version: str | None = None
    deploy_score: float | None = None
    data_digest: str | None = None
    image: str | None = None
    url: str | None = None  # the KFP run
    files_note: str | None = None  # e.g. "sample grid and loss curve in the thread"
    gate_passed: bool | None = None
    gate_reason: str | None = None  # the pipeline's one line about the bar
    data_uri: str | None = None  # the run's `data` parameter
    mlflow_run_url: str | None = None  # links shown when known
    model_version_url: str | None = None
    on_captured: bool = False  # a drift retrain: evaluated on held-out captured inputs
    train_note: str | None = None  # how it trained, when a reviewer should know (compile off)


CAPTURED_EVAL_NOTE = (
    ":mag: Judged on the new inputs: both models were evaluated on inputs captured during the "
    "drift episode and held out from training (no ground truth for them, so no SSIM/PSNR)."
)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def params_line(params: Mapping[str, Any]) -> str:
    keys = (*_PARAM_ORDER, *_PARAM_TAIL)  # operator-only keys (min_score, ...) stay out
    shown = [f"{k}={_fmt(params[k])}" for k in keys if k in params and params[k] is not None]
    return " ".join(shown)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_link(run_id: str, url: str | None) -> str:
    return link(url, f"KFP run {literal(run_id)}") if url else f"local run {literal(run_id)}"


def step_track(view: RunView) -> str:
    """`✓ ingest  ✓ validate  ▸ train  · evaluate …`: where the run is, at a glance."""
    marks = []
    for i, step in enumerate(PIPELINE_STEPS):
        if view.failed_step == step:
            mark = "✗"
        elif i < view.steps_done:
            mark = "✓"
        elif step == view.current_step:
            mark = "▸"
        else:
            mark = "·"
        marks.append(f"{mark} {step}")
    return "  ".join(marks)


def losses_line(losses: Mapping[str, float]) -> str:
    return " · ".join(f"{k} {v:.3f}" for k, v in sorted(losses.items()))


def stage_text(view: RunView) -> str:
    """ "stage 3/6 · train" while a stage runs; "2/6 stages done" otherwise. A pipeline stage
    is never called a step: "step" is training's own count."""
    going = view.state in _GOING
    if going and view.current_step in PIPELINE_STEPS:
        number = PIPELINE_STEPS.index(view.current_step) + 1
        return f"stage {number}/{view.steps_total} · {view.current_step}"
    return f"{view.steps_done}/{view.steps_total} stages done"


def _progress_line(view: RunView) -> str:
    """ "stage 3/6 · train · step 120/160 (75%) · ETA 1 min · elapsed 2m 10s"."""
    going = view.state in _GOING
    parts = [stage_text(view)]
    if going and view.current_step == "train" and view.train_total:
        parts.append(train_progress_text(view.train_step, view.train_total, view.train_rate))
    parts.append(
        f"elapsed {coarse_duration(view.elapsed_s) if going else duration(view.elapsed_s)}"
    )
    return " · ".join(parts)


def coarse_duration(seconds: float | None) -> str:
    """Elapsed time while a run goes, in 10 s steps: the clock alone changes the message (and
    costs a `chat.update`) at most every 10 s; real progress still shows at once."""
    if seconds is None:
        return "—"
    return duration(max(0, int(seconds)) // 10 * 10)


def _outcome_line(view: RunView) -> str | None:
    if view.state == "failed":
        step = escape(view.failed_step or "an unknown step")
        return f"Failed at *{step}*; the error is in the thread."
    if view.state == "gated":
        return f"Rejected by the gate: {escape(view.gate_reason or 'no reason given')}"
    if view.state == "awaiting_approval":
        version = f" v{escape(view.version)}" if view.version else ""
        return f"Challenger{version} is registered and awaits approval (results card below)."
    if view.state == "deployed":
        return "Gate passed; auto_deploy counts as the requester's approval (see the card)."
    if view.state == "cancelled":
        return "Cancelled."
    return None


def run_text(view: RunView) -> str:
    state = view.state.replace("_", " ")
    model, by = escape(view.model), at(view.requested_by)
    return f"Retrain {model} ({state}) by {by}: {escape(_progress_line(view))}"


def run_blocks(view: RunView) -> list[Block]:
    icon = _ICONS.get(view.state, ":grey_question:")
    head = (
        f"{icon} *Retrain {literal(view.model)}* requested by {at(view.requested_by)} "
        f"via {escape(view.source)} — _{escape(view.state.replace('_', ' '))}_\n"
        f"{code(params_line(view.params))}"
    )
    body = escape(f"{step_track(view)}\n{_progress_line(view)}")
    if view.losses:
        body += f"\nlosses: {escape(losses_line(view.losses))}"
    outcome = _outcome_line(view)
    if outcome:
        body += f"\n{outcome}"
    blocks: list[Block] = [
        section(head),
        section(body),
        ContextBlock(elements=[MarkdownTextObject(text=run_link(view.run_id, view.url))]),
    ]
    if view.state in _GOING:
        blocks.append(cancel_button(view.run_id))
    return blocks


def cancel_button(run_id: str) -> ActionsBlock:
    """Cancel on a running run's message; the value is the run id, checked server-side."""
    confirm = confirm_dialog(
        title="Cancel this run?",
        text=f"Run {literal(run_id)} stops, and nothing it trained is registered.",
        confirm="Cancel the run",
        deny="Keep it running",
        danger=True,
    )
    button = ButtonElement(
        text="Cancel", action_id=CANCEL_ACTION, value=run_id, style="danger", confirm=confirm
    )
    return ActionsBlock(block_id=f"run:{run_id}", elements=[button])


def failure_text(view: RunView) -> str:
    step = escape(view.failed_step or "an unknown step")
    return f":x: Run {literal(view.run_id)} failed at *{step}*."


def failure_blocks(view: RunView) -> list[Block]:
    # The error's last line names the exception: a long one keeps its start and its end.
    error = code(view.error or "no error text was recorded", keep="ends")
    return [section(failure_text(view)), section(error)]


def gated_text(view: RunView) -> str:
    return (
        f":no_entry: Run {literal(view.run_id)}: the challenger was rejected by the gate: "
        f"{escape(view.gate_reason or 'no reason given')}. Nothing is deployed."
    )


def files_comment_text(run_id: str, titles: list[str]) -> str:
    return f"Run {literal(run_id)}: " + escape("; ".join(titles))


def files_failed_text(error: str) -> str:
    return f":warning: I could not upload the sample grid and loss curve here ({escape(error)})."


def status_unavailable_text(error: str) -> str:
    return f":warning: I cannot read this run's status right now ({escape(error)}); still trying."


def metrics_table(metrics: Mapping[str, float], champion: Mapping[str, float] | None) -> str:
    """Challenger next to champion with the deltas and whether each is better or worse (by
    which way the metric should move), as an aligned monospace table in plain names."""
    known = list(METRIC_NAMES)  # the deploy score, the headlines, then the score's parts
    names = sorted(metrics, key=lambda n: (known.index(n) if n in known else len(known), n))
    rows = [("metric", "challenger", "champion", "delta", "")]
    for name in names:
        new = metrics[name]
        old = None if champion is None else champion.get(name)
        delta = "—" if old is None else f"{new - old:+.4f}"
        verdict = "" if old is None else judged(name, new - old)
        shown_old = "—" if old is None else f"{old:.4f}"
        rows.append((metric_name(name, short=True), f"{new:.4f}", shown_old, delta, verdict))
    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{width}}  {r[1]:>10}  {r[2]:>10}  {r[3]:>9}  {r[4]}".rstrip() for r in rows]
    note = "lower is better for the style and colour distances, higher for the rest"
    return "\n".join([*lines, "", note])


def results_card_text(view: CardView) -> str:
    return f"Challenger {escape(view.model)} v{escape(view.version)} is ready for review"


def results_card(view: CardView, approval_id: str | None) -> list[Block]:
    """The results card: the verdict, three to five headline metrics with their direction, the
    data and the links; every metric goes in the thread. With an `approval_id` it ends in
    Approve / Reject buttons whose value is that opaque id and nothing else; without one
    (already decided) it has no buttons."""
    versus = (
        f"champion v{escape(view.champion_version)}"
        if view.champion_version
        else "no champion yet (compared with the floor)"
    )
    champion_score = (view.champion_metrics or {}).get("deploy_score")
    gate = verdict(
        passed=view.gate_passed,
        score=view.deploy_score
        if view.deploy_score is not None
        else view.metrics.get("deploy_score"),
        champion_score=champion_score,
        champion_version=view.champion_version,
        reason=view.gate_reason,
    )
    links = links_line(
        mlflow_run_url=view.mlflow_run_url,
        model_version_url=view.model_version_url,
        version=view.version,
        kfp_link=run_link(view.run_id, view.url),
    )
    blocks: list[Block] = [
        HeaderBlock(text=clip(results_card_text(view), 150)),
        section(f"Requested by {at(view.requested_by)} · challenger vs {versus}\n{gate}"),
    ]
    headlines = headlines_section(view.metrics, view.champion_metrics)
    if headlines is not None:
        blocks.append(headlines)
    if view.on_captured:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=CAPTURED_EVAL_NOTE)]))
    if view.train_note:
        note = f":warning: {escape(clip(view.train_note, 2900))}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
    blocks += [
        section(
            f"{data_line(view.data_uri, view.data_digest)}\n*Image*: {literal(view.image or 'unknown')}"
        ),
        ContextBlock(elements=[MarkdownTextObject(text=links)]),
    ]
    notes = " ".join(n for n in ("Every metric is in the thread.", view.files_note) if n)
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=notes)]))
    if approval_id is not None:
        subject = DecisionSubject(
            "deploy", view.model, view.version, from_version=view.champion_version
        )
        blocks += [DividerBlock(), approval_buttons(approval_id, subject)]
    return blocks
