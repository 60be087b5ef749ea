"""What an approval expects, checked when it is decided and again when it rolls out.

A rollback carries the champion it replaces (`expected_champion`): decided after a newer
deploy, it is stale and deploys nothing. Pure functions over a connection and an `Approval`,
so the decision's write transaction holds the check and the update together.
"""

from __future__ import annotations

import secrets

from ganops.bot.approvals import table
from ganops.bot.blocks.approvals import label
from ganops.bot.ports import Approval


def new_approval_id() -> str:
    """Random and opaque, and never starting with "-": `ganops approvals decide <id>` takes it
    as an argument, and argparse reads a leading "-" as an option (1 id in 64 did)."""
    token = secrets.token_urlsafe(16)
    return "_" + token[1:] if token.startswith("-") else token


def stale_reason(conn: table.Conn, a: Approval, champion: str | None) -> str | None:
    """Why a rollback no longer applies, or None. Its `expected_champion` is compared with
    the registry's champion and, inside the write transaction, with the approvals table: a
    deploy of the model approved after the rollback was asked for (rolled out or still
    rolling) moves the champion even before the alias does."""
    if a.expected_champion is None:
        return None
    if champion != a.expected_champion:
        now = f"v{champion}" if champion is not None else "none"
        return f"the champion is {now} now, not v{a.expected_champion} as when it was asked for"
    later = table.select(
        conn,
        "model=? AND state='approved' AND approval_id!=? AND decided_at>?"
        " AND (deploy_ok IS NULL OR deploy_ok=1)",
        (a.model, a.approval_id, a.created_at),
        1,
    )
    if later:
        other = table.to_approval(later[0])
        return f"{label(other)} was approved after it was asked for"
    return None


def stale_message(a: Approval, why: str) -> str:
    again = f"`/ganops rollback {a.model} {a.version}`"
    return f"Stale: {label(a)} no longer applies ({why}); nothing was deployed. Ask again with {again} if it is still wanted."
