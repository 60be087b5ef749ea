"""The `approvals` table: rows, their mapping to `Approval`, and the compare-and-set updates.

Every state change is one conditional UPDATE (`... WHERE approval_id=? AND state='pending'`),
so when several callers race, exactly one sees rowcount 1 and owns the transition. The policy
(who may decide, what a decision does) lives in `bot.approvals.book`; this module is only storage.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, cast

from ganops.bot.ports import Approval, ApprovalKind, ApprovalState, DeployResult
from ganops.bot.store import Store
from ganops.pipeline.db import Conn, Row

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS approvals (
        approval_id TEXT PRIMARY KEY,
        run_id TEXT,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        model_uri TEXT NOT NULL,
        kind TEXT NOT NULL,              -- deploy | rollback
        requested_by TEXT NOT NULL,
        state TEXT NOT NULL,             -- pending | approved | rejected | expired | superseded | stale
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        approvers TEXT NOT NULL DEFAULT '[]',  -- JSON list: who said yes so far
        decided_by TEXT,
        decided_at REAL,
        superseded_by TEXT,
        channel TEXT,
        message_ts TEXT,
        card_blocks TEXT,                -- the card as posted, to re-render it after a decision
        card_state TEXT,                 -- the state the card in Slack shows now
        deploy_ok INTEGER,
        deploy_result TEXT,              -- JSON DeployResult, once the deploy has run
        result_posted INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals(state, model)",
)
# Version 2: what an approval expects, and who carries out an approved rollout.
# - expected_champion: a rollback's compare-and-set value (the champion it replaces);
# - rollout_claimed_at: set by the one bot caller that runs the rollout (the click's lazy
#   listener in the same transaction as the approval, or the approvals job for a decision
#   that the CLI only recorded), so that an approval is rolled out by one caller only.
# Plain ALTERs: the same statements on SQLite and PostgreSQL; `migrate` runs them once.
SCHEMA_V2 = (
    "ALTER TABLE approvals ADD COLUMN expected_champion TEXT",
    "ALTER TABLE approvals ADD COLUMN rollout_claimed_at REAL",
)


def migrate(store: Store) -> None:
    store.migrate("approvals", 1, SCHEMA)
    store.migrate("approvals", 2, SCHEMA_V2)


def to_approval(row: Row) -> Approval:
    return Approval(
        approval_id=row["approval_id"],
        run_id=row["run_id"],
        model=row["model"],
        version=row["version"],
        model_uri=row["model_uri"],
        kind=cast(ApprovalKind, row["kind"]),
        requested_by=row["requested_by"],
        state=cast(ApprovalState, row["state"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        approvers=tuple(json.loads(row["approvers"])),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        channel=row["channel"],
        message_ts=row["message_ts"],
        expected_champion=row["expected_champion"],
    )


def insert(conn: Conn, a: Approval) -> None:
    conn.execute(
        "INSERT INTO approvals(approval_id, run_id, model, version, model_uri, kind,"
        " requested_by, state, created_at, expires_at, channel, expected_champion)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            a.approval_id,
            a.run_id,
            a.model,
            a.version,
            a.model_uri,
            a.kind,
            a.requested_by,
            a.state,
            a.created_at,
            a.expires_at,
            a.channel,
            a.expected_champion,
        ),
    )


def fetch(conn: Conn, approval_id: str) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT * FROM approvals WHERE approval_id=?", (approval_id,)
    ).fetchone()
    return row


def select(
    conn: Conn, where: str = "1=1", args: tuple[Any, ...] = (), limit: int = -1
) -> list[Row]:
    """Rows matching `where`, newest first (`where` is ours, never user text); `limit` < 0:
    all (PostgreSQL refuses a negative LIMIT)."""
    sql = f"SELECT * FROM approvals WHERE {where} ORDER BY created_at DESC, rowid DESC"
    if limit < 0:
        return conn.execute(sql, args).fetchall()
    return conn.execute(sql + " LIMIT ?", (*args, limit)).fetchall()


def finish(
    conn: Conn,
    approval_id: str,
    state: ApprovalState,
    decided_by: str | None,
    decided_at: float,
    approvers: tuple[str, ...] | None = None,
    superseded_by: str | None = None,
) -> bool:
    """pending -> `state`, only if still pending. True for the one caller that moved it."""
    cur = conn.execute(
        "UPDATE approvals SET state=?, decided_by=?, decided_at=?,"
        " approvers=COALESCE(?, approvers), superseded_by=?"
        " WHERE approval_id=? AND state='pending'",
        (
            state,
            decided_by,
            decided_at,
            None if approvers is None else json.dumps(list(approvers)),
            superseded_by,
            approval_id,
        ),
    )
    return cur.rowcount == 1


def claim_rollout(conn: Conn, approval_id: str, now: float) -> bool:
    """Claim the one rollout of an approved approval; True for the one caller that won."""
    cur = conn.execute(
        "UPDATE approvals SET rollout_claimed_at=? WHERE approval_id=? AND state='approved'"
        " AND deploy_result IS NULL AND rollout_claimed_at IS NULL",
        (now, approval_id),
    )
    return cur.rowcount == 1


def go_stale(conn: Conn, approval_id: str, now: float) -> bool:
    """approved, not yet rolled out -> stale (its champion changed before the rollout)."""
    cur = conn.execute(
        "UPDATE approvals SET state='stale', decided_at=? WHERE approval_id=?"
        " AND state='approved' AND deploy_result IS NULL",
        (now, approval_id),
    )
    return cur.rowcount == 1


def record_vote(
    conn: Conn, approval_id: str, before: tuple[str, ...], after: tuple[str, ...]
) -> bool:
    """Add a first yes (two-person rule), only if nobody changed the votes meanwhile."""
    cur = conn.execute(
        "UPDATE approvals SET approvers=? WHERE approval_id=? AND state='pending' AND approvers=?",
        (json.dumps(list(after)), approval_id, json.dumps(list(before))),
    )
    return cur.rowcount == 1


def set_deploy_result(conn: Conn, approval_id: str, result: DeployResult) -> None:
    conn.execute(
        "UPDATE approvals SET deploy_ok=?, deploy_result=? WHERE approval_id=?",
        (int(result.ok), json.dumps(asdict(result)), approval_id),
    )


def deploy_result(row: Row) -> DeployResult | None:
    raw = row["deploy_result"]
    return DeployResult(**json.loads(raw)) if raw else None


def card_blocks(row: Row) -> list[dict[str, Any]] | None:
    raw = row["card_blocks"]
    return cast(list[dict[str, Any]], json.loads(raw)) if raw else None


def card_state_of(a: Approval, result: DeployResult | None) -> str:
    """What the card should show: the state, or "deploying" while an approved deploy runs."""
    return "deploying" if a.state == "approved" and result is None else a.state


def too_old(a: Approval, now: float) -> str:
    hours = (now - decided(a)) / 3600
    return (
        f"not rolled out: it was approved {hours:.1f} h ago, past its expiry; "
        "ask for a new deploy or rollback if it is still wanted"
    )


def decided(a: Approval) -> float:
    return a.decided_at if a.decided_at is not None else a.created_at


def decision_deadline(a: Approval, ttl_s: float) -> float:
    """Until when an approved decision may still be rolled out by the bot on its own (a
    restart, or the approvals job for a CLI decision): the approval's `expires_at`, or
    `GANOPS_APPROVAL_TTL` after the decision, whichever is later."""
    return max(a.expires_at, decided(a) + ttl_s)


_CARD_STATE_SQL = (
    "(CASE WHEN state='approved' AND deploy_result IS NULL THEN 'deploying' ELSE state END)"
)


class CardLedger:
    """Where each approval's card is in Slack and what it shows, so that a decision made
    anywhere (button, slash command, CLI, expiry) reaches the card, once, even after a
    restart or a failed Slack call."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save_blocks(self, approval_id: str, blocks: list[dict[str, Any]]) -> None:
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE approvals SET card_blocks=? WHERE approval_id=?",
                (json.dumps(blocks), approval_id),
            )

    def blocks(self, approval_id: str) -> list[dict[str, Any]] | None:
        with self.store.connect() as conn:
            row = fetch(conn, approval_id)
        return card_blocks(row) if row is not None else None

    def to_sync(self) -> list[Approval]:
        """Decided approvals whose card shows something else than `card_state_of` says."""
        with self.store.connect() as conn:
            rows = select(
                conn,
                f"message_ts IS NOT NULL AND state!='pending' AND COALESCE(card_state,'')!={_CARD_STATE_SQL}",
            )
        return [to_approval(r) for r in rows]

    def shown(self, approval_id: str) -> str | None:
        """What the card in Slack shows now, as last recorded by `mark`."""
        with self.store.connect() as conn:
            row = fetch(conn, approval_id)
        return row["card_state"] if row is not None else None

    def mark(self, approval_id: str, state: str) -> None:
        """Record what the card in Slack shows now (a `card_state_of` value)."""
        with self.store.connect() as conn:
            conn.execute(
                "UPDATE approvals SET card_state=? WHERE approval_id=?", (state, approval_id)
            )

    def results_to_post(self) -> list[Approval]:
        with self.store.connect() as conn:
            rows = select(
                conn, "message_ts IS NOT NULL AND deploy_result IS NOT NULL AND result_posted=0"
            )
        return [to_approval(r) for r in rows]

    def claim_result(self, approval_id: str, claim: bool = True) -> bool:
        """Claim (or give back) the one posting of a deploy result; True if this caller won."""
        before, after = (0, 1) if claim else (1, 0)
        with self.store.connect() as conn:
            cur = conn.execute(
                "UPDATE approvals SET result_posted=? WHERE approval_id=? AND result_posted=? "
                "AND deploy_result IS NOT NULL",
                (after, approval_id, before),
            )
        return cur.rowcount == 1
