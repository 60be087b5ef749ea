"""The `ganops` command: one entry point, subcommands resolved lazily.

Each subcommand lives with the package that owns it. They are named here as strings and
imported only when used, so `ganops bot` in the slim bot image never imports torch, and
`ganops train` in the trainer image never imports Slack.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# name -> ("module:function", one-line help). Each function takes argv (without the
# subcommand) and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "ganops.model.cli.train:train_main",
        "train the GAN (synthetic data or a CycleGAN folder)",
    ),
    "evaluate": (
        "ganops.model.cli.evaluate:evaluate_main",
        "evaluate a checkpoint, optionally vs a champion",
    ),
    "stylize": ("ganops.model.cli.evaluate:stylize_main", "apply a model to a folder of images"),
    "validate": (
        "ganops.model.cli.evaluate:validate_main",
        "check a data set folder before training",
    ),
    "serve": (
        "ganops.model.serving.server:main",
        "run the model server (HTTP, /metrics, drift score)",
    ),
    "pipeline": ("ganops.bot.pipeline_cli:main", "compile or run the CT pipeline"),
    "bot": ("ganops.bot.__main__:main", "run the bot (shell, Socket Mode or HTTP)"),
    "approvals": (
        "ganops.bot.approvals.admin:approvals_main",
        "list or decide approvals from the terminal",
    ),
    "demo": ("ganops.bot.local.demo:main", "run the whole loop on embedded defaults"),
}


def version() -> str:
    """The installed distribution's version (package metadata), or why there is none."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("ganops")
    except PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def _usage() -> str:
    from ganops.pipeline.exit_codes import EPILOG

    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: ganops [--version] <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += [
        "",
        "Run 'ganops <command> --help' for a command's options. --json prints one JSON",
        "document on stdout (train, evaluate, validate, pipeline run|status|list, approvals",
        "list|show|decide|audit); counts are --limit N. More: docs/cli.md",
        "",
        EPILOG,
    ]
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[Sequence[str]], int]:
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "a dependency"
        if missing.split(".")[0] in {"torch", "torchvision", "scipy"}:
            raise SystemExit(
                f"ganops: this command needs the trainer extras ({missing} is missing): "
                "pip install 'ganops[trainer]'"
            ) from None
        raise
    func: Callable[[Sequence[str]], int] = getattr(module, func_name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # no command is a usage error: a script that forgot one must not pass
        print(_usage(), file=sys.stderr)
        return 2
    if args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] in {"-V", "--version"}:
        print(f"ganops {version()}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"ganops: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return _resolve(SUBCOMMANDS[name][0])(rest)


if __name__ == "__main__":
    sys.exit(main())
