"""Approvals: a deploy happens only when an allowed person says so, exactly once, on record.

- `book`: who may decide and what a decision does (`ApprovalBook.decide`, the one function for
  buttons, `/ganops approve` and the CLI);
- `table`: the `approvals` rows and their compare-and-set updates;
- `rollout`: what follows a decision (tags, deploy, aliases, audit);
- `jobs`: the expiry job and the card updates that follow the store;
- `rollback`: `/ganops rollback`; `admin`: `ganops approvals` in a terminal.
- `reconcile` (pure) and `recover`: at start-up, a rollout a killed bot left half done is
  finished or rolled back to the champion, audited and told.
"""

from __future__ import annotations

from ganops.bot.approvals.book import ApprovalBook, NothingToRollBack
from ganops.bot.approvals.rollout import Rollout

__all__ = ["ApprovalBook", "NothingToRollBack", "Rollout"]
