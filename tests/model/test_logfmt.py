"""`--log-format json`: one parseable object a line, the traceback inside it."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from ganops.model.logfmt import JsonFormatter, configure_logging


def test_a_record_with_a_traceback_is_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "ganops.serve", logging.ERROR, "f.py", 1, "failed %s", ("x",), None
        )
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert (doc["level"], doc["logger"], doc["message"]) == ("error", "ganops.serve", "failed x")
    assert "ValueError: boom" in doc["exc_info"]
    assert doc["time"].endswith("Z")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        configure_logging(fmt="xml")
