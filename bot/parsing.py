"""Chat text → validated requests. Pure functions: no I/O, no Slack.

`/retrain epochs=5 lr=2e-4` becomes `RunParams` through `pipeline.params` (the same checks as
the CLI and the launchers), or a `UsageError` naming the exact problem and carrying the usage.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from ganops.bot.errors import UsageError
from ganops.pipeline.params import params_from_strings
from ganops.pipeline.ports import InvalidParamsError, RunParams

RETRAIN_USAGE = (
    "/retrain [epochs=N] [lr=F] [model=cut|fastcut|cyclegan] [data=SOURCE] [gpus=N] [nodes=N] [image_size=N] "
    "[steps=N] [preset=tiny|full] [batch_size=N] [seed=N] [auto_deploy=true|false]\n"
    "  data: synthetic (default), a folder the trainer can read, or a URI (s3://, gs://, https://)\n"
    "  preset: tiny without a GPU, full with one, unless given\n"
    "  past the bounds (GPUs, steps, epochs, data outside GANOPS_DATA_ALLOW) or with\n"
    "  auto_deploy=true, only an approver may ask\n"
    "  example: /retrain epochs=2 lr=2e-4 model=cut"
)
GANOPS_USAGE = (
    "/ganops status | runs [--limit n] | models [cut|fastcut|cyclegan] | rollback [version] | "
    "cancel [run] | approvers | audit [--limit n] | approve <id> | reject <id> | help"
)
# Keys a chat user may set. `min_score` and `synthetic_n` stay with operators (CLI).
RETRAIN_KEYS: tuple[str, ...] = (
    "epochs",
    "lr",
    "model",
    "data",
    "gpus",
    "nodes",
    "image_size",
    "steps",
    "preset",
    "batch_size",
    "seed",
    "auto_deploy",
)
# Slack's clients turn straight quotes into typographic ones; shlex understands only straight.
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


def parse_retrain(text: str) -> RunParams:
    """Parse the `/retrain` text into validated RunParams.

    Raises:
        UsageError: unknown or repeated keys, bad types, out-of-range values, empty data.
    """
    pairs = _pairs(text)
    try:
        return params_from_strings(pairs)
    except InvalidParamsError as exc:
        raise UsageError(str(exc), RETRAIN_USAGE) from None


def parse_retrain_fields(fields: Mapping[str, str]) -> RunParams:
    """The `/retrain` modal's fields (key -> the text typed or picked) into RunParams, through
    the same `params_from_strings` as the text form. Empty fields are left at their defaults.

    Raises:
        InvalidParamsError: the problem, worded as for the text form, with `.key` naming the
            field, so the modal can show it there.
    """
    pairs = {k: v for k, v in fields.items() if v.strip()}
    for key in pairs:
        if key not in RETRAIN_KEYS:  # a form we did not build; say so rather than guess
            raise InvalidParamsError(f"unknown parameter {key!r}", key)
    return params_from_strings(pairs)


def retrain_text(fields: Mapping[str, str]) -> str:
    """The `/retrain` text equivalent to a modal's fields: what its request id hashes, and what
    a user could type to start the same run."""
    pairs = {k: v.strip() for k, v in fields.items() if v.strip()}
    return " ".join(f"{k}={shlex.quote(pairs[k])}" for k in RETRAIN_KEYS if k in pairs)


def _pairs(text: str) -> dict[str, str]:
    try:
        tokens = shlex.split(text.translate(_QUOTES))
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"cannot read the arguments: {exc}", RETRAIN_USAGE) from None
    pairs: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {token!r}", RETRAIN_USAGE)
        if key not in RETRAIN_KEYS:
            raise UsageError(
                f"unknown parameter {key!r}; known: {', '.join(RETRAIN_KEYS)}", RETRAIN_USAGE
            )
        if key in pairs:
            raise UsageError(f"{key} is given twice", RETRAIN_USAGE)
        if key == "data" and not value.strip():
            raise UsageError("data is empty: give 'synthetic', a folder, or a URI", RETRAIN_USAGE)
        pairs[key] = value
    return pairs


def request_id_for(team: str, channel: str, user: str, text: str, trigger_id: str) -> str:
    """The idempotency key of one slash command (shared/DESIGN.md).

    Slack's retries reuse the trigger id, so they map to the same run; a real repeat after
    the run has finished has a new trigger id and starts a new run.
    """
    raw = "\x1f".join((team, channel, user, text.strip(), trigger_id))
    return "slack-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class GanopsCommand:
    name: str  # the subcommand, lower case; "help" for an empty text
    args: tuple[str, ...]


SUBCOMMANDS: tuple[str, ...] = (
    "status",
    "runs",
    "models",
    "rollback",
    "cancel",
    "approvers",
    "audit",
    "approve",
    "reject",
    "help",
)


def parse_ganops(text: str) -> GanopsCommand:
    """Split `/ganops` text into a subcommand and its arguments. Unknown names become help."""
    words = text.translate(_QUOTES).split()
    if not words:
        return GanopsCommand("help", ())
    name = words[0].lower()
    if name not in SUBCOMMANDS:
        return GanopsCommand("help", (name,))
    return GanopsCommand(name, tuple(words[1:]))


# Slack turns a typed "--" into an em or en dash in some clients; all mean the flag.
_LIMIT_FLAG = re.compile(r"^(?:--|—|–)limit(?:=(.*))?$")


def parse_count(args: tuple[str, ...], default: int, high: int, usage: str) -> int:
    """An optional positive count: `/ganops audit --limit 20`, the one spelling the CLI uses
    too; the bare `/ganops audit 20` of earlier releases still works."""
    if not args:
        return default
    words = list(args)
    if (flag := _LIMIT_FLAG.match(words[0])) is not None:
        words = [flag.group(1)] if flag.group(1) is not None else words[1:]
    if len(words) != 1 or not words[0].isdigit() or not 1 <= int(words[0]) <= high:
        raise UsageError(
            f"expected --limit with a number from 1 to {high}, got {' '.join(args)!r}", usage
        )
    return int(words[0])
