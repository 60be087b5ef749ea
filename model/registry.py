"""Names in the model registry: one home for the registered model name and the aliases.

A leaf with no torch import: the bot reads it too. Each model architecture (`cut`,
`cyclegan`, ...) keeps its versions in the MLflow registered model `ganops-<model>`; the
aliases below say which version serves, which waits for approval, and which served before.
"""

from __future__ import annotations

PREFIX = "ganops-"

CHAMPION = "champion"
"""The version that serves. Moved only by a successful rollout."""
CHALLENGER = "challenger"
"""The newest version registered by a run, waiting for the gate and approval."""
PREVIOUS_CHAMPION = "previous_champion"
"""The version that served before the champion: the default target of a rollback."""

ALIASES = (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)

TRAIN_NOTE_TAG = "train_note"
"""The training run's (and then the model version's) tag for what a reviewer should know about
how it trained, e.g. that torch.compile was off for want of a compiler."""


def registered_name(model: str) -> str:
    """`cut` -> `ganops-cut`: the MLflow registered model that holds a model's versions."""
    return f"{PREFIX}{model}"


def model_of(name: str) -> str:
    """`ganops-cut` -> `cut`: the inverse of `registered_name`."""
    return name.removeprefix(PREFIX)


def model_uri(model: str, *, alias: str | None = None, version: str | int | None = None) -> str:
    """`models:/ganops-cut@champion` or `models:/ganops-cut/3`."""
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of alias and version")
    name = registered_name(model)
    return f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}"


__all__ = [
    "ALIASES",
    "CHALLENGER",
    "CHAMPION",
    "PREFIX",
    "PREVIOUS_CHAMPION",
    "TRAIN_NOTE_TAG",
    "model_of",
    "model_uri",
    "registered_name",
]
