"""Every option of the main commands says what it does, and each one with a value says its
default; `ganops --version` comes from the package metadata."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from ganops.bot.__main__ import _parser as bot_parser
from ganops.bot.cli import main
from ganops.model.cli.evaluate import _evaluate_parser, _stylize_parser
from ganops.model.cli.train import _train_parser
from ganops.model.serving.server import build_parser as serve_parser
from ganops.pipeline.cli import build_parser as pipeline_parser


def parsers() -> dict[str, argparse.ArgumentParser]:
    found = {
        "train": _train_parser(),
        "serve": serve_parser({}),
        "bot": bot_parser(),
        "evaluate": _evaluate_parser(),
        "stylize": _stylize_parser(),
    }
    for action in pipeline_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"pipeline {name}"] = sub
    return found


@pytest.mark.parametrize("name", list(parsers()))
def test_every_option_has_help_and_its_default(name: str) -> None:
    for action in parsers()[name]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"ganops {name} {label}: no help"
        takes_value = action.option_strings and action.nargs != 0
        if takes_value and not action.required:
            assert "default" in action.help, f"ganops {name} {label}: no default in its help"


def test_pipeline_run_help_lists_types_and_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        pipeline_parser().parse_args(["run", "--help"])
    out = capsys.readouterr().out
    assert "epochs       int 1..10000; default: the preset's" in out
    assert "model        cut|fastcut|cyclegan; default: cut" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ganops {version('ganops')}"
