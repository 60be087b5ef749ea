"""The modal's fields go through the text form's parser: the same values, the same words, and
the key of the bad field for `response_action: errors`."""

from __future__ import annotations

import pytest

from ganops.bot.blocks.modal import ModalOrigin, retrain_modal, submitted_fields
from ganops.bot.errors import InvalidParamsError, UsageError
from ganops.bot.parsing import parse_retrain, parse_retrain_fields, retrain_text


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"epochs": "two"}, "epochs"),
        ({"epochs": "0"}, "epochs"),
        ({"lr": "inf"}, "lr"),
        ({"gpus": "17"}, "gpus"),
        ({"image_size": "30"}, "image_size"),
        ({"model": "gan"}, "model"),
        ({"preset": "huge"}, "preset"),
        ({"data": "ftp://host/x"}, "data"),
    ],
)
def test_a_bad_field_is_named_with_the_text_forms_message(fields: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidParamsError) as raised:
        parse_retrain_fields(fields)
    assert raised.value.key == key
    with pytest.raises(UsageError) as typed:
        parse_retrain(retrain_text(fields))
    assert str(raised.value) == typed.value.problem


def test_the_fields_and_their_text_give_the_same_run() -> None:
    fields = {"model": "cyclegan", "data": "s3://b/my photos", "epochs": "3", "lr": "2e-4",
              "steps": "", "gpus": " ", "preset": ""}  # fmt: skip
    assert retrain_text(fields) == "epochs=3 lr=2e-4 model=cyclegan data='s3://b/my photos'"
    assert parse_retrain_fields(fields) == parse_retrain(retrain_text(fields))


def test_submitted_values_are_read_by_block_id() -> None:
    values = {
        "model": {"model": {"type": "static_select", "selected_option": {"value": "cut"}}},
        "preset": {"preset": {"type": "static_select", "selected_option": None}},
        "epochs": {"epochs": {"type": "plain_text_input", "value": "4"}},
        "lr": {"lr": {"type": "plain_text_input", "value": None}},
    }
    assert submitted_fields(values) == {"model": "cut", "preset": "", "epochs": "4", "lr": ""}


def test_the_origin_travels_in_private_metadata() -> None:
    origin = ModalOrigin(channel="C9", trigger_id="13345.2.abc", team="T1")
    view = retrain_modal(origin)
    assert ModalOrigin.loads(view.private_metadata or "") == origin
    assert len(view.to_dict()["private_metadata"]) <= 3000  # Slack's limit
