"""The split's pure parts: which backend a draw picks, what a routes file may say, and that a
routes file that does not parse keeps the last good routes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ganops.pipeline.deploy.split import Routes, RouteTable, parse_routes, write_routes

S, C = "http://127.0.0.1:8001", "http://127.0.0.1:8002"


def test_the_draw_picks_the_canary_below_its_percent() -> None:
    routes = Routes(S, C, 10)
    assert routes.pick(0.0) == ("canary", C)
    assert routes.pick(9.99) == ("canary", C)
    assert routes.pick(10.0) == ("stable", S)
    assert routes.pick(99.9) == ("stable", S)
    assert Routes(S, None, 0).pick(0.0) == ("stable", S)
    assert Routes(None, C, 10).pick(99.0) == ("canary", C)  # nothing else to send it to
    assert Routes(None, None, 0).pick(0.0) is None
    assert Routes(S, C, 100).pick(99.99) == ("canary", C)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[]", "JSON object"),
        ('{"stable": "http://10.0.0.5:80", "percent": 0}', "loopback"),
        ('{"stable": "http://example.com:80", "percent": 0}', "loopback, not example.com"),
        ('{"stable": "https://127.0.0.1:80", "percent": 0}', "http://HOST:PORT"),
        ('{"stable": "http://127.0.0.1", "percent": 0}', "http://HOST:PORT"),
        (f'{{"stable": "{S}", "percent": 101}}', "0..100"),
        (f'{{"stable": "{S}", "percent": "10"}}', "0..100"),
        ("{not json", "Expecting"),
    ],
)
def test_routes_other_than_loopback_http_are_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_routes(text)


def test_routes_round_trip_and_localhost_is_loopback(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    write_routes(path, Routes(S, "http://localhost:9", 50))
    assert parse_routes(path.read_text()) == Routes(S, "http://localhost:9", 50)


def test_the_table_follows_the_file_and_keeps_the_last_good_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    table = RouteTable(path)
    assert table.current() == Routes(None, None, 0)  # no file yet: nothing routed
    write_routes(path, Routes(S, None, 0))
    assert table.current() == Routes(S, None, 0)
    write_routes(path, Routes(S, C, 30))  # replaced at once: a new inode, seen at once
    assert table.current() == Routes(S, C, 30)
    tmp = tmp_path / "bad"
    tmp.write_text(json.dumps({"stable": "http://192.168.1.1:80", "percent": 0}))
    os.replace(tmp, path)
    assert table.current() == Routes(S, C, 30)
