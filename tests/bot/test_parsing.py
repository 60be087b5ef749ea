"""Chat text → RunParams, or a UsageError with the exact problem and the usage."""

from __future__ import annotations

import pytest

from ganops.bot.approvals.rollback import parse_rollback
from ganops.bot.errors import UsageError
from ganops.bot.parsing import (
    RETRAIN_USAGE,
    parse_count,
    parse_ganops,
    parse_retrain,
    request_id_for,
)


def test_every_key_is_parsed_and_typed() -> None:
    p = parse_retrain(
        "epochs=3 lr=1e-3 model=cyclegan data=/data/horses gpus=2 image_size=128 "
        "steps=500 preset=full batch_size=8 seed=7 auto_deploy=true"
    )
    assert (p.epochs, p.lr, p.model, p.data, p.gpus) == (3, 1e-3, "cyclegan", "/data/horses", 2)
    assert (p.image_size, p.steps, p.preset, p.batch_size, p.seed) == (128, 500, "full", 8, 7)
    assert p.auto_deploy is True


def test_empty_text_gives_the_defaults_with_the_preset_resolved() -> None:
    p = parse_retrain("")
    assert (p.model, p.data, p.preset, p.gpus) == ("cut", "synthetic", "tiny", 0)
    assert parse_retrain("gpus=1").preset == "full"


def test_quotes_also_typographic_ones_hold_spaces() -> None:
    assert parse_retrain('data="/mnt/my data"').data == "/mnt/my data"
    assert parse_retrain("data=“/mnt/my data”").data == "/mnt/my data"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("epochs=abc", "epochs='abc' is not an integer"),
        ("lr=fast", "lr='fast' is not a number"),
        ("lr=nan", "lr='nan' is not a number"),
        ("lr=2", "lr=2.0 is out of range"),
        ("gpus=-1", "gpus=-1 is out of range"),
        ("image_size=30", "image_size=30 must be a multiple of 4"),
        ("model=stylegan", "model='stylegan': choose one of cut, fastcut, cyclegan"),
        ("preset=huge", "preset='huge': choose one of tiny, full"),
        ("auto_deploy=perhaps", "auto_deploy='perhaps' is not true or false"),
        ("data=", "data is empty"),
        ("data=ftp://x/y", "unsupported scheme 'ftp'"),
        ("epochs", "expected key=value, got 'epochs'"),
        ("=3", "expected key=value, got '=3'"),
        ("min_score=0.5", "unknown parameter 'min_score'"),
        ("Epochs=2 epochs=3", "epochs is given twice"),
        ('data="open', "cannot read the arguments"),
    ],
)
def test_bad_input_names_the_exact_problem(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_retrain(text)
    assert problem in info.value.problem
    assert info.value.usage == RETRAIN_USAGE


def test_request_ids_are_stable_and_differ_by_every_part() -> None:
    parts = ("T1", "C1", "U1", "epochs=2", "trig-1")
    rid = request_id_for(*parts)
    assert rid == request_id_for(*parts)  # a Slack retry: same trigger id, same request
    for i in range(len(parts)):
        changed = list(parts)
        changed[i] += "x"
        assert request_id_for(*changed) != rid


def test_ganops_subcommands() -> None:
    assert parse_ganops("").name == "help"
    assert parse_ganops("STATUS").name == "status"
    cmd = parse_ganops("approve abc123")
    assert (cmd.name, cmd.args) == ("approve", ("abc123",))
    unknown = parse_ganops("frobnicate now")
    assert (unknown.name, unknown.args) == ("help", ("frobnicate",))


def test_counts_and_rollback_arguments() -> None:
    assert parse_count((), 20, 200, "u") == 20
    assert parse_count(("5",), 20, 200, "u") == 5
    for spelled in (("--limit", "5"), ("--limit=5",), ("—limit", "5"), ("–limit=5",)):
        assert parse_count(spelled, 20, 200, "u") == 5  # Slack may turn "--" into a dash
    bad_counts = (("0",), ("x",), ("500",), ("1", "2"), ("--limit",), ("--limit", "0"),
                  ("--limit", "5", "6"), ("--lim", "5"), ("--limit=x",))  # fmt: skip
    for bad in bad_counts:
        with pytest.raises(UsageError):
            parse_count(bad, 20, 200, "u")
    assert parse_rollback(()) == ("cut", None)
    assert parse_rollback(("cyclegan", "v4")) == ("cyclegan", "4")
    assert parse_rollback(("3",)) == ("cut", "3")
    with pytest.raises(UsageError, match="rollback takes"):
        parse_rollback(("latest",))
