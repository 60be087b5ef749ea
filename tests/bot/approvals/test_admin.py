"""`ganops approvals list | decide | audit`: the same decision function from the terminal,
with settings from the environment, the real services and the state dir of the bot."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganops.bot.approvals.admin import approvals_main
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.settings import load_settings
from ganops.bot.store import Store
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state_dir = tmp_path / "state"
    monkeypatch.setenv("GANOPS_STATE_DIR", str(state_dir))
    monkeypatch.setenv("GANOPS_APPROVERS", "U_BOB,U_CAROL")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "KFP_HOST", "GANOPS_DEPLOYER"):
        monkeypatch.delenv(name, raising=False)
    return state_dir


def open_approval(state_dir: Path) -> str:
    book = ApprovalBook(
        Store(state_dir), MemoryRegistry(), RecordingDeployer(), approvers=frozenset()
    )
    return book.request(
        model="cut", version="4", model_uri="models:/ganops-cut/4", requested_by="U_ALICE"
    ).approval_id


def test_list_decide_and_audit(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    approval_id = open_approval(state)
    assert approvals_main(["list"]) == 0
    assert capsys.readouterr().out.startswith(
        f"{approval_id}  deploy of cut v4  by U_ALICE  pending"
    )
    assert approvals_main(["decide", approval_id, "approve", "--user", "U_MALLORY"]) == 1
    assert capsys.readouterr().out.strip() == "You are not an approver."
    assert approvals_main(["decide", approval_id, "reject", "--user", "U_BOB"]) == 0
    assert capsys.readouterr().out.strip() == "Rejected deploy of cut v4."
    assert approvals_main(["decide", approval_id, "approve", "--user", "U_CAROL"]) == 1
    assert "Already rejected by <@U_BOB>" in capsys.readouterr().out
    assert approvals_main(["list"]) == 0
    assert capsys.readouterr().out.strip() == "no pending approvals"
    assert approvals_main(["audit", "50"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    trail = [line.split("  ")[1:5] for line in lines]
    assert ["U_MALLORY", "decide", approval_id, "refused"] in trail
    assert ["U_BOB", "decide", approval_id, "rejected"] in trail
    assert trail[0] == ["U_ALICE", "request", approval_id, "pending"]  # oldest first
    settings = load_settings({"GANOPS_STATE_DIR": str(state)})
    assert Store(settings.state_dir).list_audit(1)[0].action == "decide"


def test_bad_arguments_exit_2(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        approvals_main(["decide", "x", "maybe", "--user", "U_BOB"])
    assert info.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


def test_bad_settings_are_one_line(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GANOPS_APPROVERS", "bob")
    assert approvals_main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ganops approvals: GANOPS_APPROVERS=")
    assert err.count("\n") == 1


def test_the_cli_records_its_path_and_the_os_user(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--user` is only a claim: who typed the command goes on record beside it."""
    import getpass

    monkeypatch.setattr(getpass, "getuser", lambda: "opsadmin")
    approval_id = open_approval(state)
    assert approvals_main(["decide", approval_id, "reject", "--user", "U_MALLORY"]) == 1
    assert approvals_main(["decide", approval_id, "reject", "--user", "U_BOB"]) == 0
    rows = [r for r in Store(state).list_audit(20) if r.action == "decide"]
    assert [(r.actor, r.outcome, r.path, r.detail["os_user"]) for r in rows] == [
        ("U_BOB", "rejected", "cli", "opsadmin"),
        ("U_MALLORY", "refused", "cli", "opsadmin"),
    ]
