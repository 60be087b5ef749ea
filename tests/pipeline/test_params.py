"""RunParams validation, `key=value` parsing, and the pipeline-argument round trip."""

from __future__ import annotations

import dataclasses

import pytest

from ganops.pipeline.params import (
    params_from_arguments,
    params_from_strings,
    pipeline_arguments,
    validate_params,
)
from ganops.pipeline.ports import InvalidParamsError, RunParams


def test_defaults_are_valid_and_the_preset_follows_the_gpus() -> None:
    assert validate_params(RunParams()).preset == "tiny"
    assert validate_params(RunParams(gpus=2)).preset == "full"
    assert validate_params(RunParams(gpus=2, preset="tiny")).preset == "tiny"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs=0 is out of range"),
        ({"lr": 2.0}, "lr=2.0 is out of range"),
        ({"lr": float("nan")}, "lr=nan is not a number"),
        ({"gpus": -1}, "gpus=-1 is out of range"),
        ({"batch_size": True}, "batch_size=True is not an integer"),
        ({"epochs": 2.5}, "epochs=2.5 is not an integer"),
        ({"model": "pix2pix"}, "model='pix2pix': choose one of cut, fastcut, cyclegan"),
        ({"preset": "huge"}, "preset='huge'"),
        ({"image_size": 30}, "multiple of 4"),
        ({"image_size": 8}, "image_size=8 is out of range"),
        ({"data": "  "}, "data is empty"),
        ({"data": "ftp://host/x"}, "unsupported scheme 'ftp'"),
        ({"auto_deploy": "yes"}, "auto_deploy='yes' is not true or false"),
        ({"synthetic_n": 1}, "synthetic_n=1 is out of range"),
    ],
)
def test_bad_values_name_the_key(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParamsError) as err:
        validate_params(dataclasses.replace(RunParams(), **changes))  # type: ignore[arg-type]
    assert message in str(err.value)


def test_uris_and_folders_are_accepted() -> None:
    for data in ("synthetic", "/data/horses", "s3://bucket/set", "gs://b/p.zip", "file:///x"):
        assert validate_params(RunParams(data=data)).data == data


def test_strings_are_converted_by_type() -> None:
    params = params_from_strings(
        {"epochs": "3", "lr": "1e-3", "auto_deploy": "true", "steps": "none", "model": "cyclegan"}
    )
    assert (params.epochs, params.lr, params.auto_deploy, params.steps) == (3, 1e-3, True, None)
    assert params.model == "cyclegan"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epoch": "3"}, "unknown parameter 'epoch'"),
        ({"epochs": "three"}, "epochs='three' is not an integer"),
        ({"lr": "inf"}, "lr='inf' is not a number"),
        ({"auto_deploy": "maybe"}, "not true or false"),
        ({"gpus": "none"}, "gpus='none' is not an integer"),  # not optional
    ],
)
def test_bad_strings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidParamsError, match=message):
        params_from_strings(values)


def test_pipeline_arguments_round_trip() -> None:
    params = validate_params(RunParams(steps=7, image_size=32, synthetic_n=12, min_score=0.2))
    args = pipeline_arguments(params, "sqlite:///x.db", "/tmp/events", "local-1")
    assert (args["steps"], args["mlflow_uri"], args["run_id"]) == (7, "sqlite:///x.db", "local-1")
    assert params_from_arguments(**args) == params
    plain = validate_params(RunParams())
    args = pipeline_arguments(plain, "")
    assert (args["steps"], args["image_size"], args["synthetic_n"]) == (0, 0, 0)
    assert params_from_arguments(**args) == plain
