"""The train step's job description: a leaf shared by the step, its torchrun ranks and the
nodes of a Kubeflow Trainer TrainJob (`pipeline.steps.trainjob`)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """Everything one trainer process needs; JSON, so torchrun ranks can read it from a file."""

    params: dict[str, Any]
    data_dir: str
    out_dir: str
    loss_curve_path: str
    mlflow_uri: str
    events_dir: str
    tags: dict[str, str]
    durable_dir: str = ""  # see `durable_dir`
    checkpoint_minutes: float | None = None
    # GANOPS_DEVICE_DATA_GB from the bot's settings; None: each process reads its own env.
    device_data_gb: float | None = None
    # On a TrainJob's nodes: rank 0 leaves the bundle, curve and result under durable_dir.
    upload_outputs: bool = False


__all__ = ["TrainJob"]
