"""The results card of a run that awaits approval: the verdict and headline metrics vs the
champion, Approve / Reject; in the card's thread every metric, the sample grid and the loss
curve (uploaded with `files_upload_v2`).

The pictures come from the MLflow artifact store only, from the model version's own run;
a tag or a launcher fact naming a local file is never opened.

Exactly once, across restarts: the approval id is stored in the run's row before the card is
posted, and the card and the files are keyed posts (see `RunBook.post_once`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.results import metrics_reply_text
from ganops.bot.blocks.runs import (
    CardView,
    files_comment_text,
    files_failed_text,
    metrics_table,
    results_card,
    results_card_text,
)
from ganops.bot.ports import ModelVersionInfo, RunResult, RunStatus, UpstreamError
from ganops.bot.runs.delivery import slack_error
from ganops.bot.runs.record import RunRow
from ganops.bot.runs.start import post_keyed
from ganops.bot.services import Services

log = logging.getLogger("ganops.bot")

# artifact name -> (file name, title) in the order they are uploaded
ARTIFACTS = {
    "sample_grid": ("sample_grid.png", "Sample grid: fixed inputs → champion → challenger"),
    "loss_curve": ("loss_curve.png", "Training losses"),
}
# What may be posted as a picture: PNG or JPEG (by their first bytes), and not huge.
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
MAX_IMAGE_BYTES = 8 * 1024 * 1024
FILES_NOTE = (
    "The sample grid (inputs → champion → challenger) and the loss curve are in the thread."
)


def post_results(services: Services, row: RunRow, status: RunStatus, files_dir: Path) -> str:
    """Post (once) the card and its files; return the card's ts."""
    result = status.result
    if result is None or not result.version:
        text = f":warning: Run `{row.run_id}` finished but reported no model version to review."
        return post_keyed(
            services.slack, services.runbook, f"{row.run_id}:card", row.channel, row.thread_ts, text
        )
    approval_id = _approval_id(services, row, result.version)
    view = CardView(
        run_id=row.run_id,
        model=row.model,
        version=result.version,
        requested_by=row.requested_by,
        metrics=result.metrics,
        champion_metrics=result.champion_metrics,
        champion_version=result.champion_version,
        deploy_score=result.deploy_score,
        data_digest=result.data_digest,
        image=result.image,
        url=status.url or row.url,
        files_note=FILES_NOTE if result.artifacts else "This run produced no images.",
        gate_passed=result.gate_passed,
        gate_reason=result.gate_reason,
        data_uri=str(row.params.get("data") or "") or None,
        mlflow_run_url=result.mlflow_run_url,
        model_version_url=result.model_version_url,
        on_captured=bool((status.params or {}).get("captured")),
        train_note=result.train_note,
    )
    blocks = results_card(view, approval_id)
    key = f"{row.run_id}:card"
    card_ts = post_keyed(
        services.slack,
        services.runbook,
        key,
        row.channel,
        row.thread_ts,
        results_card_text(view),
        blocks,
    )
    if approval_id is not None and services.approvals is not None:
        known = services.approvals.get(approval_id)
        if known is not None and known.message_ts != card_ts:
            services.approvals.attach_message(
                approval_id, row.channel, card_ts, blocks_to_dicts(blocks)
            )
    table = metrics_table(result.metrics, result.champion_metrics)
    post_keyed(
        services.slack,
        services.runbook,
        f"{row.run_id}:metrics",
        row.channel,
        card_ts,
        metrics_reply_text(table, result.champion_version),
    )
    _upload(services, row, result, files_dir, card_ts)
    return card_ts


def _approval_id(services: Services, row: RunRow, version: str) -> str | None:
    """The run's approval, opened once; its id is in the row before any card shows it."""
    if row.approval_id is not None or services.approvals is None:
        return row.approval_id
    uri = ModelVersionInfo(model=row.model, version=version).uri
    approval = services.approvals.request(
        model=row.model,
        version=version,
        model_uri=uri,
        requested_by=row.requested_by,
        run_id=row.run_id,
        channel=row.channel,
    )
    services.runbook.update(row.run_id, approval_id=approval.approval_id)
    return approval.approval_id


def _upload(
    services: Services, row: RunRow, result: RunResult, files_dir: Path, card_ts: str
) -> None:
    """The pictures, from the MLflow artifact store only, into the card's thread. A picture
    that cannot be fetched, is no PNG/JPEG or is too big is left out; an upload Slack refuses
    is said once and given up on, so the run still settles."""
    if services.runbook.posted(f"{row.run_id}:files") is not None:
        return  # uploaded on an earlier tick
    files_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=files_dir) as tmp:
        uploads: list[dict[str, Any]] = []
        for name, (filename, title) in ARTIFACTS.items():
            path = _fetch_image(services, row, result, name, Path(tmp) / name)
            if path is not None:
                uploads.append({"file": str(path), "filename": filename, "title": title})
        if not uploads:
            return

        def upload() -> str:
            resp = services.slack.files_upload_v2(
                file_uploads=uploads,
                channel=row.channel,
                thread_ts=card_ts,
                initial_comment=files_comment_text(row.run_id, [u["title"] for u in uploads]),
            )
            return ",".join(f.get("id", "") for f in resp.get("files") or [])

        try:
            # A crash mid-upload re-uploads after a restart: a duplicate beats a missing one.
            services.runbook.post_once(
                f"{row.run_id}:files", row.channel, card_ts, upload, lambda _: None
            )
        except SlackApiError as exc:
            log.warning("run %s: the pictures could not be uploaded: %s", row.run_id, exc)
            post_keyed(
                services.slack,
                services.runbook,
                f"{row.run_id}:files-failed",
                row.channel,
                card_ts,
                files_failed_text(slack_error(exc) or str(exc)),
            )


def _fetch_image(
    services: Services, row: RunRow, result: RunResult, name: str, dst: Path
) -> Path | None:
    """Artifact `name` of the challenger's MLflow run, if it is a PNG/JPEG of bounded size.

    The tag (or the launcher's fact) only says that the picture exists; where it is comes
    from the registry: the model version's own run, at the tag's path inside that run when
    the tag is `runs:/<that run>/<path>`, else at the artifact's usual name."""
    value = result.artifacts.get(name)
    if not value or not result.version:
        return None
    try:
        info = services.registry.get_version(row.model, result.version)
        run_id = (info.run_id if info else None) or result.mlflow_run_id
        if not run_id:
            log.warning("run %s: v%s has no MLflow run; no %s", row.run_id, result.version, name)
            return None
        prefix = f"runs:/{run_id}/"
        inside = value[len(prefix) :] if value.startswith(prefix) else ARTIFACTS[name][0]
        path = services.registry.download(prefix + inside, dst)
    except UpstreamError as exc:
        log.warning("cannot fetch %s of run %s: %s", name, row.run_id, exc)
        return None
    problem = image_problem(path)
    if problem is not None:
        log.warning("run %s: %s is not shown: %s", row.run_id, name, problem)
        return None
    return path


def image_problem(path: Path) -> str | None:
    """None for a PNG or JPEG file of at most MAX_IMAGE_BYTES; else what is wrong."""
    if not path.is_file() or path.is_symlink():
        return "not a file"
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        return f"{size} bytes (at most {MAX_IMAGE_BYTES})"
    with path.open("rb") as f:
        head = f.read(8)
    if not head.startswith(IMAGE_MAGIC):
        return "neither PNG nor JPEG"
    return None
