"""Validation of `RunParams`: one function for both launchers, the CLI and the bot.

Every problem becomes an `InvalidParamsError` whose message names the key and the accepted
range, so it can be shown to a user as is. Nothing here imports torch or kfp.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ganops.model.config import MODEL_NAMES, PRESET_NAMES, default_preset
from ganops.pipeline.captured import load_specs
from ganops.pipeline.ports import InvalidParamsError, RunParams
from ganops.pipeline.steps.trainjob_spec import TrainJobSpecError, check_nodes

MODELS: tuple[str, ...] = MODEL_NAMES
PRESETS: tuple[str, ...] = PRESET_NAMES
# Schemes whose data the trainer image can read; anything else is refused up front.
DATA_SCHEMES: tuple[str, ...] = ("file", "s3", "gs", "gcs", "az", "abfs", "http", "https")

# key -> (low, high) for the numeric fields (inclusive).
_RANGES: dict[str, tuple[float, float]] = {
    "epochs": (1, 10_000),
    "steps": (1, 10_000_000),
    "lr": (1e-7, 1.0),
    "batch_size": (1, 1024),
    "gpus": (0, 16),
    "nodes": (1, 64),
    "image_size": (16, 1024),
    "seed": (0, 2**31 - 1),
    "min_score": (-1e9, 1e9),
    "synthetic_n": (2, 100_000),
}
_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(RunParams)}
_KEY_TYPES: dict[str, type] = {
    "model": str,
    "data": str,
    "preset": str,
    "epochs": int,
    "steps": int,
    "batch_size": int,
    "gpus": int,
    "nodes": int,
    "image_size": int,
    "seed": int,
    "synthetic_n": int,
    "lr": float,
    "min_score": float,
    "auto_deploy": bool,
}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def validate_params(params: RunParams) -> RunParams:
    """Check every field of `params`; return it with the preset resolved.

    A `preset` of None becomes "full" when GPUs are asked for and "tiny" otherwise, so the
    run record shows what was actually trained.

    Raises:
        InvalidParamsError: on the first bad field, naming it.
    """
    for name, kind in _KEY_TYPES.items():
        _check_type(name, getattr(params, name), kind)
    for name, (low, high) in _RANGES.items():
        value = getattr(params, name)
        if value is not None and not low <= value <= high:
            raise InvalidParamsError(f"{name}={value} is out of range ({range_text(name)})", name)
    if params.model not in MODELS:
        raise InvalidParamsError(
            f"model={params.model!r}: choose one of {', '.join(MODELS)}", "model"
        )
    if params.preset is not None and params.preset not in PRESETS:
        raise InvalidParamsError(
            f"preset={params.preset!r}: choose one of {', '.join(PRESETS)}", "preset"
        )
    if params.image_size is not None and params.image_size % 4:
        raise InvalidParamsError(
            f"image_size={params.image_size} must be a multiple of 4", "image_size"
        )
    try:
        check_nodes(nodes=params.nodes, gpus_per_node=params.gpus)
    except TrainJobSpecError as exc:
        raise InvalidParamsError(str(exc), "nodes") from None
    _check_data(params.data)
    try:
        load_specs(params.captured)
    except ValueError as exc:
        raise InvalidParamsError(str(exc)) from None
    if params.preset is None:
        params = dataclasses.replace(params, preset=default_preset(gpus=params.gpus))
    return params


def params_from_strings(values: Mapping[str, str], base: RunParams | None = None) -> RunParams:
    """Build validated RunParams from `key=value` strings (CLI, chat).

    Raises:
        InvalidParamsError: an unknown key, a value of the wrong type, or out of range.
    """
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in _KEY_TYPES:
            raise InvalidParamsError(
                f"unknown parameter {key!r}; known: {', '.join(_KEY_TYPES)}", key
            )
        changes[key] = _convert(key, raw, _KEY_TYPES[key])
    return validate_params(dataclasses.replace(base or RunParams(), **changes))


def known_keys() -> tuple[str, ...]:
    return tuple(_KEY_TYPES)


def param_range(key: str) -> tuple[float, float]:
    """A numeric key's (low, high), inclusive: what a form's number input allows."""
    return _RANGES[key]


def range_text(key: str) -> str:
    """ "1..10000", "1e-07..1": a numeric key's range as the error messages write it."""
    low, high = _RANGES[key]
    return f"{_fmt(low)}..{_fmt(high)}"


def describe_keys() -> list[str]:
    """One line per key: its type, accepted values or range, and default (for --help)."""
    defaults = RunParams()
    choices = {"model": MODELS, "preset": PRESETS}
    unset = {"preset": "tiny without GPUs, full with", "synthetic_n": "the generator's"}
    lines = []
    for key, kind in _KEY_TYPES.items():
        if key in choices:
            accepted = "|".join(choices[key])
        elif key in _RANGES:
            accepted = f"{kind.__name__} {range_text(key)}"
        elif key == "data":
            accepted = f"synthetic or a URI ({', '.join(DATA_SCHEMES)})"
        else:
            accepted = kind.__name__
        if key == "image_size":
            accepted += ", a multiple of 4"
        default = getattr(defaults, key)
        if default is None:
            shown = unset.get(key, "the preset's")
        else:
            shown = str(default).lower() if kind is bool else str(default)
        lines.append(f"  {key:<12} {accepted}; default: {shown}")
    return lines


def _convert(key: str, raw: str, kind: type) -> Any:
    text = raw.strip()
    if text.lower() in {"none", "null", ""} and _optional(key):
        return None
    try:
        if kind is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        raise InvalidParamsError(f"{key}={raw!r} is not {_article(kind)}", key) from None
    return text


def _check_type(name: str, value: Any, kind: type) -> None:
    if value is None and _optional(name):
        return
    # bool is a subclass of int: `epochs=True` is a typing mistake, not 1 epoch.
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if kind is float and ok and not math.isfinite(value):
        ok = False
    if not ok:
        raise InvalidParamsError(f"{name}={value!r} is not {_article(kind)}", name)


def _check_data(data: str) -> None:
    if not data.strip():
        raise InvalidParamsError("data is empty: give 'synthetic', a folder, or a URI", "data")
    if any(c in data for c in "\n\r\t\0"):
        raise InvalidParamsError("data contains control characters", "data")
    match = _SCHEME.match(data)
    if match and match.group(1).lower() not in DATA_SCHEMES:
        raise InvalidParamsError(
            f"data={data!r}: unsupported scheme {match.group(1)!r} "
            f"(use one of {', '.join(DATA_SCHEMES)}, a folder, or 'synthetic')",
            "data",
        )


def _optional(name: str) -> bool:
    field = _FIELDS[name]
    return field.default is None


def _article(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false"}.get(kind, "a string")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- the pipeline's parameters (KFP has no optional ints: None travels as 0 or "") ---


@dataclasses.dataclass(frozen=True)
class RunStorage:
    """What a run gets from settings: where it keeps what must outlive its pods (keyed by the
    request), and where its data may come from."""

    artifact_uri: str = ""  # GANOPS_ARTIFACT_URI ("": checkpoints stay in the task's own folder)
    request_id: str = ""
    checkpoint_minutes: float = 10.0  # GANOPS_CHECKPOINT_MINUTES
    data_allow: tuple[str, ...] = ()  # GANOPS_DATA_ALLOW, checked again by the ingest step
    device_data_gb: float | None = None  # GANOPS_DEVICE_DATA_GB (None: the train pod's env)


def pipeline_arguments(
    params: RunParams,
    mlflow_uri: str,
    events_dir: str = "",
    run_id: str = "",
    *,
    storage: RunStorage | None = None,
) -> dict[str, Any]:
    """The pipeline's parameters for validated `params` (None becomes the 0 / "" defaults)."""
    storage = storage or RunStorage()
    return {
        "model": params.model,
        "data": params.data,
        "epochs": params.epochs or 0,
        "steps": params.steps or 0,
        "lr": float(params.lr or 0.0),
        "batch_size": params.batch_size or 0,
        "gpus": params.gpus,
        "nodes": params.nodes,
        "image_size": params.image_size or 0,
        "preset": params.preset or "",
        "seed": params.seed,
        "auto_deploy": params.auto_deploy,
        "min_score": float(params.min_score),
        "synthetic_n": params.synthetic_n or 0,
        "captured": params.captured,
        "mlflow_uri": mlflow_uri,
        "events_dir": events_dir,
        "run_id": run_id,
        "artifact_uri": storage.artifact_uri,
        "request_id": storage.request_id,
        "checkpoint_minutes": float(storage.checkpoint_minutes),
        "data_allow": json.dumps(list(storage.data_allow)),
        "data_anywhere": params.data_anywhere,
        # KFP has no optional float and 0 GB means "always stream": unset travels as -1.
        "device_data_gb": -1.0 if storage.device_data_gb is None else storage.device_data_gb,
    }


def params_from_arguments(**args: Any) -> RunParams:
    """The inverse of `pipeline_arguments` for the run's own parameters (0 / "" become None)."""
    optional = {"epochs", "steps", "lr", "batch_size", "image_size", "preset", "synthetic_n"}
    known = RunParams.__dataclass_fields__
    values: dict[str, Any] = {
        k: (v or None) if k in optional else v for k, v in args.items() if k in known
    }
    return RunParams(**values)
