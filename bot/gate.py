"""One gate for every entry point: the table of entry points, `Gate.authorize`, and the
Security table rendered from both.

Every way into the bot (a Bolt listener, a CLI sub-command, a scheduled job) is a row of
`ENTRY_POINTS` naming its action; `bot.policy.RULES` says who may do that action. Listeners
are registered only through `bot.listeners.gated.gated(app, entry_id)`, which reads this
table, so a listener cannot exist without its action (a test walks the app and the CLI).
`Gate.authorize` is the one check: it asks the policy and audits every refusal with its path.
docs/security.md holds `security_table()`; regenerate it with
`python -m ganops.bot.gate --write-docs`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ganops.bot.policy import RULES, Action, AuditPath, Policy, Verdict, audit_refusal
from ganops.bot.store import Store
from ganops.pipeline.ports import RunParams

Kind = Literal["command", "action", "view", "event", "cli", "job"]
BY_SUBCOMMAND: Literal["by_subcommand"] = "by_subcommand"  # /ganops: by its sub-command


@dataclass(frozen=True)
class EntryPoint:
    """One way in. `trigger` is what Bolt matches (a command, an action id, a view's callback
    id, an event type), the CLI's words, or the job's name."""

    id: str
    kind: Kind
    trigger: str
    path: AuditPath
    action: Action | Literal["by_subcommand"]
    what: str
    # A command answered only in the configured channels (elsewhere: a pointer there).
    in_channel: bool = False


_OPERATOR: Action = "operator"  # the commands with no Slack identity in them

ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint("slash:/retrain form", "command", "/retrain", "slash", "retrain",
               "`/retrain` alone: opens the form", in_channel=True),
    EntryPoint("slash:/retrain", "command", "/retrain", "slash", "retrain",
               "`/retrain key=value …`", in_channel=True),
    EntryPoint("modal:retrain", "view", "retrain_modal", "modal", "retrain",
               "the `/retrain` form, sent (checked in its ack and again at launch)"),
    EntryPoint("home:home_retrain", "action", "home_retrain", "home", "retrain",
               "*Start a retrain* on the App Home tab: opens the form"),
    EntryPoint("event:app_home_opened", "event", "app_home_opened", "home", "read",
               "the App Home tab"),
    EntryPoint("slash:/ganops", "command", "/ganops", "slash", BY_SUBCOMMAND,
               "`/ganops`", in_channel=True),
    EntryPoint("button:approve", "action", "approve", "button", "approve",
               "*Approve* on a results card or the Home tab"),
    EntryPoint("button:reject", "action", "reject", "button", "reject",
               "*Reject* on a results card or the Home tab"),
    EntryPoint("button:run_cancel", "action", "run_cancel", "button", "cancel",
               "*Cancel* on a run's message"),
    EntryPoint("button:alarm_retrain", "action", "alarm_retrain", "button", "alarm_retrain",
               "*Retrain now* on a drift alarm"),
    EntryPoint("button:alarm_snooze", "action", "alarm_snooze", "button", "snooze",
               "*Snooze 1h* on a drift alarm posted before the menu"),
    EntryPoint("menu:alarm_snooze_for", "action", "alarm_snooze_for", "button", "snooze",
               "*Snooze…* menu (1 h, 4 h, 1 d) on a drift alarm"),
    EntryPoint("button:alarm_ignore", "action", "alarm_ignore", "button", "ignore",
               "*Ignore* on a drift alarm"),
    EntryPoint("button:canary_promote", "action", "canary_promote", "button", "canary",
               "*Promote now* in a canary's thread"),
    EntryPoint("button:canary_rollback", "action", "canary_rollback", "button", "canary",
               "*Roll back* in a canary's thread"),
    EntryPoint("button:data_retrain", "action", "data_retrain", "button", "data_retrain",
               "*Retrain* on a new-data card"),
    EntryPoint("button:data_dismiss", "action", "data_dismiss", "button", "data_dismiss",
               "*Not now* on a new-data card"),
    EntryPoint("cli:approvals list", "cli", "approvals list", "cli", "operator",
               "`ganops approvals list`"),
    EntryPoint("cli:approvals audit", "cli", "approvals audit", "cli", "operator",
               "`ganops approvals audit`"),
    EntryPoint("cli:approvals show", "cli", "approvals show", "cli", "operator",
               "`ganops approvals show <id>`"),
    EntryPoint("cli:approvals decide", "cli", "approvals decide", "cli", "approve",
               "`ganops approvals decide <id> approve|reject`"),
    *(
        EntryPoint(f"cli:{name}", "cli", name, "cli", _OPERATOR, f"`ganops {name}`")
        for name in ("train", "evaluate", "stylize", "validate", "serve", "pipeline", "bot",
                     "demo")
    ),
    EntryPoint("job:run-watch", "job", "run-watch", "job", "system",
               "run watcher (progress, cards; an approver's `auto_deploy` counts as their vote)"),
    EntryPoint("job:approvals", "job", "approvals", "job", "system",
               "approvals job (expiry, cards, start-up reconciliation of rollouts)"),
    EntryPoint("job:drift-watch", "job", "drift-watch", "job", "system",
               "drift watcher (alarm cards)"),
    EntryPoint("job:data-watch", "job", "data-watch", "job", "system",
               "data watcher (offers a retrain; acting on it needs an approver)"),
)  # fmt: skip

# `/ganops <sub-command>` -> its action; every sub-command of `bot.parsing.SUBCOMMANDS`.
GANOPS_ACTIONS: Mapping[str, Action] = {
    "status": "read",
    "runs": "read",
    "models": "read",
    "approvers": "read",
    "audit": "read",
    "help": "read",
    "approve": "approve",
    "reject": "reject",
    "rollback": "rollback",
    "cancel": "cancel",
}

_BY_ID: Mapping[str, EntryPoint] = {e.id: e for e in ENTRY_POINTS}


def entry(entry_id: str) -> EntryPoint:
    """The declared entry point; an undeclared one is a programming error at registration."""
    try:
        return _BY_ID[entry_id]
    except KeyError:
        raise LookupError(f"{entry_id!r} is not in bot.gate.ENTRY_POINTS: declare it") from None


def action_of(point: EntryPoint, subcommand: str = "") -> Action:
    """The action one request through `point` asks for (`/ganops`: by its sub-command)."""
    if point.action == BY_SUBCOMMAND:
        return GANOPS_ACTIONS.get(subcommand, "read")  # unknown words get the help text
    return point.action


class Gate:
    """`authorize` for one process: the policy (approvers, bounds) and the audit log."""

    def __init__(
        self,
        *,
        policy: Policy,
        store: Store,
        channels: Sequence[str] = (),
        defer: Callable[[Callable[[], object]], object] | None = None,
    ) -> None:
        self.policy, self.store, self.channels = policy, store, tuple(channels)
        # Runs slow answers (a refusal's ephemeral post) after the ack; inline if None.
        self.defer = defer or (lambda fn: fn())

    # Bolt deep-copies the context for lazy listeners; the gate is shared, never copied.
    def __deepcopy__(self, memo: dict[int, Any]) -> Gate:
        return self

    def authorize(
        self,
        *,
        actor: str,
        action: Action,
        path: AuditPath,
        params: RunParams | None = None,
        requester: str | None = None,
        obj: str = "",
    ) -> Verdict:
        """May `actor` do `action`? A refusal is audited here, naming `path` and its bound.

        `params` is needed for `retrain` (the bounds) and `requester` for `cancel`."""
        verdict = self.check(actor=actor, action=action, params=params, requester=requester)
        if verdict.refused:
            audited = "auto_deploy" if verdict.bound == "auto_deploy" else action
            audit_refusal(
                self.store, user=actor, action=audited, obj=obj, verdict=verdict, path=path
            )
        return verdict

    def check(
        self,
        *,
        actor: str,
        action: Action,
        params: RunParams | None = None,
        requester: str | None = None,
    ) -> Verdict:
        """The verdict alone, audited by no one (`authorize` is what entry points call)."""
        rule = RULES[action]
        if rule.check in ("anyone", "operator", "system"):
            return Verdict(True)
        if rule.check == "bounds":
            if params is None:
                raise ValueError(f"{action!r} is checked against the bounds: pass params")
            return self.policy.may_retrain(params, actor)
        return self.policy.may(action, actor, requester=requester)

    def in_channel(self, channel: str) -> bool:
        return not self.channels or channel in self.channels


# --- the Security table ---------------------------------------------------------------

START, END = "<!-- security-table:start -->", "<!-- security-table:end -->"
# The README holds the same table grouped by action (one row each), to stay short.
SUMMARY_START, SUMMARY_END = "<!-- security-summary:start -->", "<!-- security-summary:end -->"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "security.md"
README = Path(__file__).resolve().parents[1] / "README.md"


def security_rows() -> list[tuple[str, str, str, str]]:
    """(entry point, audit path, action, who) for every entry point, `/ganops` expanded."""
    rows: list[tuple[str, str, str, str]] = []
    for point in ENTRY_POINTS:
        if point.action == BY_SUBCOMMAND:
            for sub, action in GANOPS_ACTIONS.items():
                rows.append((f"`/ganops {sub}`", point.path, action, RULES[action].who))
            continue
        action = action_of(point)
        rows.append((point.what, point.path, action, RULES[action].who))
    return rows


def security_table() -> str:
    """The markdown table (entry point → path → action → who), from ENTRY_POINTS and RULES."""
    lines = ["| entry point | path | action | who |", "|---|---|---|---|"]
    lines += [f"| {_cell(w)} | `{p}` | `{a}` | {_cell(who)} |" for w, p, a, who in security_rows()]
    return "\n".join(lines)


def security_summary() -> str:
    """The same rows grouped by action: who may, and every entry point that reaches it."""
    points: dict[tuple[str, str], list[str]] = {}
    for what, path, action, who in security_rows():
        points.setdefault((action, who), []).append(f"{what} ({path})")
    lines = ["| action | who | entry points |", "|---|---|---|"]
    lines += [
        f"| `{action}` | {_cell(who)} | {_cell('; '.join(whats))} |"
        for (action, who), whats in points.items()
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe inside a cell (even in code) ends it otherwise


def with_table(text: str, table: str | None = None, *, summary: bool = False) -> str:
    """`text` with the table between its markers replaced by the current one (`summary`: the
    grouped table between the summary markers, as the README holds it).

    Raises:
        ValueError: the markers are missing.
    """
    first, last = (SUMMARY_START, SUMMARY_END) if summary else (START, END)
    start, end = text.find(first), text.find(last)
    if start < 0 or end < start:
        raise ValueError(f"no {first} … {last} markers")
    new = table or (security_summary() if summary else security_table())
    return f"{text[: start + len(first)]}\n{new}\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ganops.bot.gate", description="print or write the Security table"
    )
    parser.add_argument("--write-docs", nargs="*", type=Path, metavar="FILE",
                        help=f"rewrite the tables between the markers (default {DOCS.name}, {README.name})")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write_docs is None:
        print(security_table())
        return 0
    for path in args.write_docs or [DOCS, README]:
        try:
            text = path.read_text()
            path.write_text(with_table(text, summary=SUMMARY_START in text))
        except (OSError, ValueError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote the Security table into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
