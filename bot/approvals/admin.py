"""`ganops approvals list | show <id> | decide <id> approve|reject [--user U…] | audit`.

Counts are `--limit N` (`list -n N` and `audit N` still work); `--json` prints one JSON
document on stdout instead of text.

The terminal path to the same decision function as the buttons and `/ganops approve`, with
the same rules. It votes only as its caller: `GANOPS_CLI_USERS` (set at deploy time) maps OS
users to Slack user ids, and the caller is the OS user of the process's real uid (the
kernel's, not `$USER`, which anyone can set). Unlisted, as the image's own `ganops` user is
by default, the CLI can only inspect. A `--user` other than the caller's own id is refused
and audited.

A decision made here is only recorded: the bot process rolls it out on its next approvals
tick, under the same per-model lock as a click, and brings the card up to date.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pwd
import sys
from collections.abc import Sequence
from typing import Any

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.blocks.approvals import approval_line, audit_line
from ganops.bot.errors import ConfigError
from ganops.bot.ports import Approval
from ganops.bot.settings import Settings, load_settings
from ganops.bot.store import Store
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
    decide = sub.add_parser(
        "decide", help="approve or reject an approval, as yourself (see GANOPS_CLI_USERS)"
    )
    decide.add_argument("approval_id", help="the approval's id (ganops approvals list)")
    decide.add_argument("decision", choices=["approve", "reject"], help="approve or reject")
    decide.add_argument(
        "--user",
        help="your Slack user id (U…); optional, and refused unless it is the one "
        "GANOPS_CLI_USERS maps your OS user to",
    )
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
    return _decide(settings, book, args, as_json=args.json)


def _decide(
    settings: Settings, book: ApprovalBook, args: argparse.Namespace, *, as_json: bool
) -> int:
    caller = os_user()
    user = settings.cli_user(caller)
    claimed: str | None = args.user
    refusal = None
    if user is None:
        refusal = (
            f"the OS user {caller!r} is not in GANOPS_CLI_USERS, so this CLI can only inspect "
            "(list, show, audit); decide on the card in Slack"
        )
    elif claimed is not None and claimed != user:
        refusal = (
            f"--user {claimed} is not you: GANOPS_CLI_USERS maps the OS user {caller!r} to "
            f"{user}, and the CLI votes only as its caller"
        )
    if refusal is not None:
        detail = {"reason": refusal, "os_user": caller, "claimed_user": claimed}
        actor = claimed or user or f"os:{caller}"
        book.store.audit(actor, "decide", args.approval_id, "refused", detail, path="cli")
        print(f"ganops approvals decide: {refusal}.", file=sys.stderr)
        return EXIT_FAILED
    assert user is not None
    # Recorded only: the bot's approvals job rolls it out, in the bot process, under the lock.
    outcome = book.decide(
        args.approval_id, user, args.decision, path="cli", os_user=caller, carry_out=False
    )
    if as_json:
        _print_json(dataclasses.asdict(outcome))
    else:
        print(outcome.message)
    return _OK_EXIT.get(outcome.status, EXIT_FAILED)


def _show(settings: Settings, a: Approval | None, approval_id: str, *, as_json: bool) -> int:
    if a is None:
        print(f"ganops approvals: no approval {approval_id!r}", file=sys.stderr)
        return EXIT_FAILED
    trail = list(reversed(_store(settings).list_audit(200, obj=approval_id)))
    if as_json:
        _print_json(
            {"approval": dataclasses.asdict(a), "audit": [dataclasses.asdict(r) for r in trail]}
        )
        return EXIT_OK
    print(approval_line(a))
    for row in trail:
        print("  " + audit_line(row))
    return EXIT_OK


def _store(settings: Settings) -> Store:
    """The bot's store: the replicas' PostgreSQL when GANOPS_DATABASE_URL is set."""
    url = settings.database_url.reveal() if settings.database_url else None
    return Store(settings.state_dir, url)


def os_user() -> str:
    """Who runs this process, by its real uid: `$USER` and `$LOGNAME` are the caller's to set."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (some containers): the uid is all there is
        return f"uid:{uid}"


def _audit(settings: Settings, n: int, *, as_json: bool) -> int:
    rows = list(reversed(_store(settings).list_audit(max(1, n))))
    if as_json:
        _print_json([dataclasses.asdict(r) for r in rows])
        return EXIT_OK
    for row in rows:
        print(audit_line(row))
    if not rows:
        print("the audit log is empty")
    return EXIT_OK
