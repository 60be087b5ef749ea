"""`ganops train | evaluate | stylize | validate`: the model's commands, without the bot.

`python -m model COMMAND ...` is the trainer image's entry point. Each command's module is
imported only when it runs, so `--help` and argument errors never load torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from ganops.model.cli.args import EXIT_USAGE

# command -> "module:function"
COMMANDS = {
    "train": "ganops.model.cli.train:train_main",
    "evaluate": "ganops.model.cli.evaluate:evaluate_main",
    "stylize": "ganops.model.cli.evaluate:stylize_main",
    "validate": "ganops.model.cli.evaluate:validate_main",
}


def command(name: str) -> Callable[[Sequence[str] | None], int]:
    """The entry point of one command, imported now."""
    module, _, func = COMMANDS[name].partition(":")
    main: Callable[[Sequence[str] | None], int] = getattr(importlib.import_module(module), func)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m model COMMAND ...`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: python -m model {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return EXIT_USAGE
    return command(args[0])(args[1:])


__all__ = ["COMMANDS", "command", "main"]
