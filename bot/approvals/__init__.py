"""Approvals: a deploy happens only when an allowed person says so, exactly once, on record.

- `book`: who may decide and what a decision does (`ApprovalBook.decide`, the one function for
  buttons, `/ganops approve` and the CLI);
- `table`: the `approvals` rows and their compare-and-set updates;
- `expect`: what an approval expects (a rollback's champion), checked by compare-and-set;
- `rollout`: what follows a decision (tags, deploy, aliases, audit);
- `jobs`: the approvals job: rolls out decisions the CLI recorded, expires, updates cards;
- `rollback`: `/ganops rollback`; `admin`: `ganops approvals` in a terminal.
- `reconcile` (pure) and `recover`: at start-up, a young approved rollout a killed bot left
  half done is finished or reverted to the last approved deploy; whatever no approval
  explains (an alias moved by hand) is reported, audited and left as it is.
"""

from __future__ import annotations

from ganops.bot.approvals.book import ApprovalBook, NothingToRollBack
from ganops.bot.approvals.rollout import Rollout

__all__ = ["ApprovalBook", "NothingToRollBack", "Rollout"]
