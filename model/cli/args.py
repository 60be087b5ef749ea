"""What every `ganops` model command shares: the argument parser, one-line failures, the
tracking URI. A leaf: the command modules import it, it imports none of them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from ganops.model.errors import UsageError

EXIT_USAGE = 2
# The gate rejected the model; the same code as `ganops.pipeline.exit_codes.EXIT_GATED`
# (`model` imports nothing of ours, so the number is restated here; a test keeps them equal).
EXIT_GATED = 3
GATE_EPILOG = (
    "exit codes: 0 done · 2 bad usage · 3 with --gate: the model does not beat the champion"
)


class Parser(argparse.ArgumentParser):
    """argparse, but errors become a `UsageError` instead of usage text and `sys.exit`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def positive(kind: type[int] | type[float]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def fail(command: str, message: str) -> int:
    print(f"ganops {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def tracking_uri_from(flag: str | None, env: Mapping[str, str]) -> str | None:
    return flag or env.get("MLFLOW_TRACKING_URI") or None


def existing_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"{path}: no such folder")
    return path


__all__ = [
    "EXIT_GATED",
    "EXIT_USAGE",
    "GATE_EPILOG",
    "Parser",
    "UsageError",
    "existing_dir",
    "fail",
    "positive",
    "tracking_uri_from",
]
