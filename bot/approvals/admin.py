"""`ganops approvals list | decide <id> approve|reject --user U… | audit [n]`.

The terminal path to the same decision function as the buttons and `/ganops approve`: the
same store, the same rules (the --user must be an approver), the same deploy. With Slack
tokens set, the card is updated at once; otherwise the bot's approval job brings it up to
date on its next tick.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from ganops.bot.approvals.jobs import show_decision
from ganops.bot.blocks.approvals import approval_line, audit_line
from ganops.bot.errors import ConfigError
from ganops.bot.settings import Settings, load_settings

_OK_EXIT = {"approved": 0, "rejected": 0, "recorded": 0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganops approvals", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    lister = sub.add_parser("list", help="pending approvals (--all: every recent one)")
    lister.add_argument("--all", action="store_true", help="not only the pending ones")
    lister.add_argument("-n", type=int, default=20, help="how many (default 20)")
    decide = sub.add_parser("decide", help="approve or reject an approval")
    decide.add_argument("approval_id")
    decide.add_argument("decision", choices=["approve", "reject"])
    decide.add_argument("--user", required=True, help="the Slack user id deciding (U…)")
    audit = sub.add_parser("audit", help="the newest audit entries")
    audit.add_argument("n", nargs="?", type=int, default=20)
    return parser


def approvals_main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"ganops approvals: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "audit":
        return _audit(settings, args.n)
    from ganops.bot.services import build_services  # the full services only where they are used

    services = build_services(settings)
    book = services.approvals
    assert book is not None, "build_services always builds the approval book"
    if args.cmd == "list":
        approvals = book.recent(args.n) if args.all else book.pending()[: args.n]
        for a in approvals:
            print(approval_line(a))
        if not approvals:
            print("no pending approvals" if not args.all else "no approvals yet")
        return 0
    # --user names a Slack id; who actually typed the command is on record beside it.
    outcome = book.decide(
        args.approval_id, args.user, args.decision, path="cli", os_user=_os_user()
    )
    print(outcome.message)
    if settings.bot_token is not None:
        show_decision(book, services.slack, outcome)
    failed_deploy = outcome.deploy is not None and not outcome.deploy.ok
    return 1 if failed_deploy else _OK_EXIT.get(outcome.status, 1)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers): still say so
        return f"uid:{os.getuid()}"


def _audit(settings: Settings, n: int) -> int:
    from ganops.bot.store import Store

    url = settings.database_url.reveal() if settings.database_url else None
    rows = Store(settings.state_dir, url).list_audit(max(1, n))  # the replicas' DB when set
    for row in reversed(rows):
        print(audit_line(row))
    if not rows:
        print("the audit log is empty")
    return 0
