"""`ganops approvals list | show <id> | decide <id> approve|reject --user U… | audit`.

Counts are `--limit N` (`list -n N` and `audit N` still work); `--json` prints one JSON
document on stdout instead of text.

The terminal path to the same decision function as the buttons and `/ganops approve`: the
same store, the same rules (the --user must be an approver), the same deploy. With Slack
tokens set, the card is updated at once; otherwise the bot's approval job brings it up to
date on its next tick.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ganops.bot.approvals.jobs import show_decision
from ganops.bot.blocks.approvals import approval_line, audit_line
from ganops.bot.errors import ConfigError
from ganops.bot.ports import Approval
from ganops.bot.settings import Settings, load_settings
from ganops.pipeline.exit_codes import EPILOG, EXIT_FAILED, EXIT_OK, EXIT_USAGE

_OK_EXIT = {"approved": EXIT_OK, "rejected": EXIT_OK, "recorded": EXIT_OK}
DEFAULT_LIMIT = 20


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _limit(p: argparse.ArgumentParser, what: str) -> None:
    """`--limit N`, the one spelling; older spellings stay as hidden aliases."""
    p.add_argument(
        "--limit", type=_count, help=f"most {what} to show, > 0 (default: {DEFAULT_LIMIT})"
    )


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (default: text)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganops approvals", description=__doc__.split("\n")[0], epilog=EPILOG
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    lister = sub.add_parser("list", help="pending approvals (--all: every recent one)")
    lister.add_argument("--all", action="store_true", help="not only the pending ones")
    _limit(lister, "approvals")
    lister.add_argument("-n", type=_count, dest="old_limit", help=argparse.SUPPRESS)
    _json(lister)
    show = sub.add_parser("show", help="one approval and its audit trail")
    show.add_argument("approval_id", help="the approval's id (ganops approvals list)")
    _json(show)
    decide = sub.add_parser("decide", help="approve or reject an approval")
    decide.add_argument("approval_id", help="the approval's id (ganops approvals list)")
    decide.add_argument("decision", choices=["approve", "reject"], help="approve or reject")
    decide.add_argument("--user", required=True, help="the Slack user id deciding (U…)")
    _json(decide)
    audit = sub.add_parser("audit", help="the newest audit entries, oldest first")
    _limit(audit, "entries")
    audit.add_argument("old_limit", nargs="?", type=_count, help=argparse.SUPPRESS)
    _json(audit)
    return parser


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def approvals_main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    limit = getattr(args, "limit", None)
    old = getattr(args, "old_limit", None)
    if limit is not None and old is not None and limit != old:
        parser.error(f"--limit {limit} and the older count {old} disagree; give --limit only")
    limit = limit or old or DEFAULT_LIMIT
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"ganops approvals: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.cmd == "audit":
        return _audit(settings, limit, as_json=args.json)
    from ganops.bot.services import build_services  # the full services only where they are used

    services = build_services(settings)
    book = services.approvals
    assert book is not None, "build_services always builds the approval book"
    if args.cmd == "list":
        approvals = book.recent(limit) if args.all else book.pending()[:limit]
        if args.json:
            _print_json([dataclasses.asdict(a) for a in approvals])
            return EXIT_OK
        for a in approvals:
            print(approval_line(a))
        if not approvals:
            print("no pending approvals" if not args.all else "no approvals yet")
        return EXIT_OK
    if args.cmd == "show":
        return _show(settings, book.get(args.approval_id), args.approval_id, as_json=args.json)
    # --user names a Slack id; who actually typed the command is on record beside it.
    outcome = book.decide(
        args.approval_id, args.user, args.decision, path="cli", os_user=_os_user()
    )
    if args.json:
        _print_json(dataclasses.asdict(outcome))
    else:
        print(outcome.message)
    if settings.bot_token is not None:
        show_decision(book, services.slack, outcome)
    failed_deploy = outcome.deploy is not None and not outcome.deploy.ok
    return EXIT_FAILED if failed_deploy else _OK_EXIT.get(outcome.status, EXIT_FAILED)


def _show(settings: Settings, a: Approval | None, approval_id: str, *, as_json: bool) -> int:
    from ganops.bot.store import Store

    if a is None:
        print(f"ganops approvals: no approval {approval_id!r}", file=sys.stderr)
        return EXIT_FAILED
    trail = list(reversed(Store(settings.state_dir).list_audit(200, obj=approval_id)))
    if as_json:
        _print_json(
            {"approval": dataclasses.asdict(a), "audit": [dataclasses.asdict(r) for r in trail]}
        )
        return EXIT_OK
    print(approval_line(a))
    for row in trail:
        print("  " + audit_line(row))
    return EXIT_OK


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers): still say so
        return f"uid:{os.getuid()}"


def _audit(settings: Settings, n: int, *, as_json: bool) -> int:
    from ganops.bot.store import Store

    rows = list(reversed(Store(settings.state_dir).list_audit(max(1, n))))
    if as_json:
        _print_json([dataclasses.asdict(r) for r in rows])
        return EXIT_OK
    for row in rows:
        print(audit_line(row))
    if not rows:
        print("the audit log is empty")
    return EXIT_OK
