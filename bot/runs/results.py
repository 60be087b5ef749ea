"""The results card of a run that awaits approval: metrics vs the champion, the sample grid
and the loss curve (uploaded with `files_upload_v2` in the card's thread), Approve / Reject.

Exactly once, across restarts: the approval id is stored in the run's row before the card is
posted, and the card and the files are keyed posts (see `RunBook.post_once`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bot.blocks import blocks_to_dicts
from bot.blocks.runs import CardView, results_card, results_card_text
from bot.ports import ModelVersionInfo, RunStatus, UpstreamError
from bot.runs.record import RunRow
from bot.runs.start import post_keyed
from bot.services import Services

log = logging.getLogger("ganops.bot")

# artifact name -> (file name, title) in the order they are uploaded
ARTIFACTS = {
    "sample_grid": ("sample_grid.png", "Sample grid: fixed inputs → champion → challenger"),
    "loss_curve": ("loss_curve.png", "Training losses"),
}
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
        on_captured=bool((status.params or {}).get("captured")),
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
    _upload(services, row, dict(result.artifacts), files_dir, card_ts)
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
    services: Services, row: RunRow, artifacts: dict[str, str], files_dir: Path, card_ts: str
) -> None:
    uploads: list[dict[str, Any]] = []
    for name, (filename, title) in ARTIFACTS.items():
        uri = artifacts.get(name)
        if not uri:
            continue
        local = Path(uri.removeprefix("file://"))
        try:
            # A local run's artifacts are files already; remote ones come through MLflow.
            path = local if local.is_file() else services.registry.download(uri, files_dir)
        except UpstreamError as exc:
            log.warning("cannot fetch %s of run %s: %s", name, row.run_id, exc)
            continue
        uploads.append({"file": str(path), "filename": filename, "title": title})
    if not uploads:
        return

    def upload() -> str:
        resp = services.slack.files_upload_v2(
            file_uploads=uploads,
            channel=row.channel,
            thread_ts=card_ts,
            initial_comment=f"Run `{row.run_id}`: " + "; ".join(u["title"] for u in uploads),
        )
        return ",".join(f.get("id", "") for f in resp.get("files") or [])

    # A crash mid-upload re-uploads after a restart: a duplicate picture beats a missing one.
    services.runbook.post_once(f"{row.run_id}:files", row.channel, card_ts, upload, lambda _: None)
