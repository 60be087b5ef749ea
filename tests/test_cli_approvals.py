"""`ganops approvals`: `--limit N` is the one spelling for counts (`list -n N` and `audit N`
still work), `--json` prints one JSON document on stdout, and `show` gives one approval with
its audit trail. The real store and services from the environment, as the bot uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganops.bot.approvals.admin import approvals_main, os_user
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.store import Store
from tests.bot.approvals.test_admin import state
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer

__all__ = ["state"]  # the fixture: the environment `ganops approvals` reads, as in test_admin


def open_approvals(state_dir: Path, models: tuple[str, ...]) -> list[str]:
    book = ApprovalBook(
        Store(state_dir), MemoryRegistry(), RecordingDeployer(), approvers=frozenset()
    )
    return [
        book.request(
            model=m, version="4", model_uri=f"models:/ganops-{m}/4", requested_by="U_ALICE"
        ).approval_id
        for m in models
    ]


def test_list_limit_spellings_and_json(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = open_approvals(state, ("cut", "fastcut", "cyclegan"))
    for argv in (["list", "--limit", "2"], ["list", "-n", "2"]):
        assert approvals_main(argv) == 0
        assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert approvals_main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {a["approval_id"] for a in listed} == set(ids)
    assert all(a["state"] == "pending" for a in listed)
    with pytest.raises(SystemExit) as info:
        approvals_main(["list", "--limit", "0"])
    assert info.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


def test_show_decide_and_audit_json(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GANOPS_CLI_USERS", f"{os_user()}=U_BOB")  # the CLI votes as its caller
    [approval_id] = open_approvals(state, ("cut",))
    assert approvals_main(["decide", approval_id, "reject", "--user", "U_BOB", "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["status"] == "rejected"
    assert outcome["approval"]["decided_by"] == "U_BOB"
    assert approvals_main(["show", approval_id]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith(f"{approval_id}  deploy of cut v4")
    assert any("U_BOB  decide" in line for line in text[1:])
    assert approvals_main(["show", approval_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["approval"]["state"] == "rejected"
    trail = [r["action"] for r in shown["audit"]]
    assert trail[0] == "request"
    assert "decide" in trail
    assert approvals_main(["show", "apv-nope"]) == 1
    assert "no approval 'apv-nope'" in capsys.readouterr().err

    for argv in (["audit", "--limit", "1"], ["audit", "1"]):
        assert approvals_main(argv) == 0
        assert len(capsys.readouterr().out.strip().splitlines()) == 1
    assert approvals_main(["audit", "--limit", "50", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == trail  # oldest first, as in text
    with pytest.raises(SystemExit):
        approvals_main(["audit", "5", "--limit", "6"])
    assert "disagree" in capsys.readouterr().err


def test_help_hides_the_old_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("list", "audit"):
        with pytest.raises(SystemExit):
            approvals_main([sub, "--help"])
        out = capsys.readouterr().out
        assert "--limit LIMIT" in out
        assert " -n " not in out
        assert "old_limit" not in out
