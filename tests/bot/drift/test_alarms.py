"""The alarms table: dedup per model version, snooze/ignore, resolve, restart-safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganops.bot.blocks.alarms import alarm_card, moved_features
from ganops.bot.drift.watch import AlarmBook
from ganops.bot.ports import DriftAlert
from tests.fakes.postgres import backend_store

# Each test runs on SQLite and on a real PostgreSQL (tests/conftest.py: both_backends).
pytestmark = pytest.mark.usefixtures("both_backends")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _alert(score: float = 2.0, version: str = "3") -> DriftAlert:
    return DriftAlert(model="cut", version=version, score=score, features={"brightness": 3.1})


def test_one_open_episode_per_model_version(tmp_path: Path) -> None:
    book = AlarmBook(backend_store(tmp_path), Clock())
    first = book.open(_alert(), "#ops")
    again = book.open(_alert(score=2.5), "#ops")
    other = book.open(_alert(version="4"), "#ops")
    assert first.episode_id == again.episode_id
    assert other.episode_id != first.episode_id
    assert len(book.open_episodes()) == 2


def test_resolve_then_new_episode(tmp_path: Path) -> None:
    clock = Clock()
    book = AlarmBook(backend_store(tmp_path), clock)
    first = book.open(_alert(), "#ops")
    assert book.resolve(first.episode_id)
    assert not book.resolve(first.episode_id)  # resolving twice is a no-op
    clock.now += 60
    second = book.open(_alert(), "#ops")
    assert second.episode_id != first.episode_id
    assert [v.episode_id for v in book.open_episodes()] == [second.episode_id]


def test_peak_score_and_features_update(tmp_path: Path) -> None:
    book = AlarmBook(backend_store(tmp_path), Clock())
    ep = book.open(_alert(score=1.5), "#ops").episode_id
    book.update_score(ep, 4.0, {"contrast": 2.0})
    book.update_score(ep, 2.0, {"contrast": 1.2})
    view = book.get(ep)
    assert view is not None
    assert (view.score, view.peak_score) == (2.0, 4.0)
    assert view.features == {"contrast": 1.2}


def test_snooze_expires_back_to_firing(tmp_path: Path) -> None:
    clock = Clock()
    book = AlarmBook(backend_store(tmp_path), clock)
    ep = book.open(_alert(), "#ops").episode_id
    assert book.snooze(ep, "U_CAROL", 3600)
    assert book.get(ep).state == "snoozed"  # type: ignore[union-attr]
    assert book.unsnooze_due() == []
    clock.now += 3601
    assert book.unsnooze_due() == [ep]
    assert book.get(ep).state == "firing"  # type: ignore[union-attr]


def test_ignore_and_audit(tmp_path: Path) -> None:
    store = backend_store(tmp_path)
    book = AlarmBook(store, Clock())
    ep = book.open(_alert(), "#ops").episode_id
    assert book.ignore(ep, "U_BOB")
    assert not book.snooze(ep, "U_BOB", 60)  # ignored episodes cannot be snoozed
    outcomes = [(r.actor, r.outcome) for r in store.list_audit(obj=ep)]
    assert ("U_BOB", "ignored") in outcomes
    assert ("U_BOB", "snoozed:no-op") in outcomes
    assert ("ganops", "opened") in outcomes


def test_episodes_survive_a_restart(tmp_path: Path) -> None:
    ep = AlarmBook(backend_store(tmp_path), Clock()).open(_alert(), "#ops").episode_id
    AlarmBook(backend_store(tmp_path), Clock()).set_message(ep, "C1", "123.456")
    reopened = AlarmBook(backend_store(tmp_path), Clock())
    assert [v.episode_id for v in reopened.open_episodes()] == [ep]
    assert reopened.row_meta(ep)[:2] == ("C1", "123.456")


def test_card_shows_buttons_only_while_open(tmp_path: Path) -> None:
    book = AlarmBook(backend_store(tmp_path), Clock())
    ep = book.open(_alert(), "#ops").episode_id
    firing = [b.to_dict() for b in alarm_card(book.get(ep))]  # type: ignore[arg-type]
    actions = [b for b in firing if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [
        "alarm_retrain",
        "alarm_snooze_for",
        "alarm_ignore",
    ]
    retrain, menu, ignore = actions[0]["elements"]
    assert retrain["value"] == ignore["value"] == ep
    assert [o["value"] for o in menu["options"]] == [f"{k}:{ep}" for k in ("1h", "4h", "1d")]
    book.resolve(ep)
    resolved = [b.to_dict() for b in alarm_card(book.get(ep))]  # type: ignore[arg-type]
    assert not [b for b in resolved if b["type"] == "actions"]
    assert "resolved" in str(resolved).lower()


def test_moved_features_are_ranked() -> None:
    ranked = moved_features({"a": 0.5, "b": 3.0, "c": 1.2, "d": 0.0})
    assert [name for name, _ in ranked] == ["b", "c", "a"]
