"""Errors shared across the project's layers. A leaf: imports nothing of ours, and no torch.

`UsageError` is the one "typed wrong" error: the model's commands print its `problem` as one
line (exit 2), the bot answers a chat command with `problem` and the command's `usage`.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A command was typed wrong. `problem` is the exact fault, `usage` the command's usage."""

    def __init__(self, problem: str, usage: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.usage = usage


__all__ = ["UsageError"]
