"""The `ganops` dispatcher: help, unknown commands, and lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ganops.bot import cli


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert f"  {name}" in out


def test_unknown_subcommand_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err
    assert "usage: ganops" in err


def test_every_target_names_a_module_and_function() -> None:
    for name, (target, help_) in cli.SUBCOMMANDS.items():
        module, _, func = target.partition(":")
        assert module, name
        assert func, name
        assert help_, name


def test_importing_the_bot_cli_does_not_import_torch() -> None:
    # The bot image has no torch: the dispatcher must not pull it in.
    code = "import sys, ganops.bot.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
