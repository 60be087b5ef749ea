"""`ganops approvals list | decide <id> approve|reject [--user U…] | audit [n]`.

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
import os
import pwd
import sys
from collections.abc import Sequence

from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.blocks.approvals import approval_line, audit_line
from ganops.bot.errors import ConfigError
from ganops.bot.settings import Settings, load_settings
from ganops.bot.store import Store

_OK_EXIT = {"approved": 0, "rejected": 0, "recorded": 0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganops approvals", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    lister = sub.add_parser("list", help="pending approvals (--all: every recent one)")
    lister.add_argument("--all", action="store_true", help="not only the pending ones")
    lister.add_argument("-n", type=int, default=20, help="how many (default 20)")
    decide = sub.add_parser(
        "decide", help="approve or reject an approval, as yourself (see GANOPS_CLI_USERS)"
    )
    decide.add_argument("approval_id")
    decide.add_argument("decision", choices=["approve", "reject"])
    decide.add_argument(
        "--user",
        help="your Slack user id (U…); optional, and refused unless it is the one "
        "GANOPS_CLI_USERS maps your OS user to",
    )
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
    return _decide(settings, book, args.approval_id, args.decision, args.user)


def _decide(
    settings: Settings, book: ApprovalBook, approval_id: str, decision: str, claimed: str | None
) -> int:
    caller = os_user()
    user = settings.cli_user(caller)
    refusal = None
    if user is None:
        refusal = (
            f"the OS user {caller!r} is not in GANOPS_CLI_USERS, so this CLI can only inspect "
            "(list, audit); decide on the card in Slack"
        )
    elif claimed is not None and claimed != user:
        refusal = (
            f"--user {claimed} is not you: GANOPS_CLI_USERS maps the OS user {caller!r} to "
            f"{user}, and the CLI votes only as its caller"
        )
    if refusal is not None:
        detail = {"reason": refusal, "os_user": caller, "claimed_user": claimed}
        actor = claimed or user or f"os:{caller}"
        book.store.audit(actor, "decide", approval_id, "refused", detail, path="cli")
        print(f"ganops approvals decide: {refusal}.", file=sys.stderr)
        return 1
    assert user is not None
    # Recorded only: the bot's approvals job rolls it out, in the bot process, under the lock.
    outcome = book.decide(approval_id, user, decision, path="cli", os_user=caller, carry_out=False)
    print(outcome.message)
    return _OK_EXIT.get(outcome.status, 1)


def os_user() -> str:
    """Who runs this process, by its real uid: `$USER` and `$LOGNAME` are the caller's to set."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (some containers): the uid is all there is
        return f"uid:{uid}"


def _audit(settings: Settings, n: int) -> int:
    rows = Store(settings.state_dir).list_audit(max(1, n))
    for row in reversed(rows):
        print(audit_line(row))
    if not rows:
        print("the audit log is empty")
    return 0
