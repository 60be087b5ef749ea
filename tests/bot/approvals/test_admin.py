"""`ganops approvals list | decide | audit`: the same decision function from the terminal,
with settings from the environment, the real services and the state dir of the bot. The CLI
votes only as its caller (`GANOPS_CLI_USERS`, by the process's real uid)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ganops.bot.approvals.admin import approvals_main, os_user
from ganops.bot.approvals.book import ApprovalBook
from ganops.bot.settings import load_settings
from ganops.bot.store import Store
from tests.fakes.approvals import MemoryRegistry, RecordingDeployer


@pytest.fixture
def state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_mlflow: Callable[[Path], str]
) -> Path:
    state_dir = tmp_path / "state"
    monkeypatch.setenv("GANOPS_STATE_DIR", str(state_dir))
    monkeypatch.setenv("GANOPS_APPROVERS", "U_BOB,U_CAROL")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow(tmp_path / "mlflow.db"))
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


def test_list_decide_and_audit(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GANOPS_CLI_USERS", f"{os_user()}=U_BOB")
    approval_id = open_approval(state)
    assert approvals_main(["list"]) == 0
    assert capsys.readouterr().out.startswith(
        f"{approval_id}  deploy of cut v4  by U_ALICE  pending"
    )
    assert approvals_main(["decide", approval_id, "reject", "--user", "U_BOB"]) == 0
    assert capsys.readouterr().out.strip() == "Rejected deploy of cut v4."
    assert approvals_main(["decide", approval_id, "approve"]) == 1
    assert "Already rejected by <@U_BOB>" in capsys.readouterr().out
    assert approvals_main(["list"]) == 0
    assert capsys.readouterr().out.strip() == "no pending approvals"
    assert approvals_main(["audit", "50"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    trail = [line.split("  ")[1:5] for line in lines]
    assert ["U_BOB", "decide", approval_id, "rejected"] in trail
    assert trail[0] == ["U_ALICE", "request", approval_id, "pending"]  # oldest first
    settings = load_settings({"GANOPS_STATE_DIR": str(state)})
    assert Store(settings.state_dir).list_audit(1)[0].action == "decide"


def test_bad_arguments_exit_2(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        approvals_main(["decide", "x", "maybe", "--user", "U_BOB"])
    assert info.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("GANOPS_APPROVERS", "bob", "GANOPS_APPROVERS="),
        ("GANOPS_CLI_USERS", "alice=bob", "is not os_user=U…"),
        ("GANOPS_CLI_USERS", "alice=U_A,alice=U_B", "'alice' is listed twice"),
        ("GANOPS_CLI_USERS", "al ice=U_A", "is not os_user=U…"),
    ],
)
def test_bad_settings_are_one_line(
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    says: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert approvals_main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ganops approvals: {name}=")
    assert says in err
    assert err.count("\n") == 1


def test_by_default_the_cli_only_inspects(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No GANOPS_CLI_USERS (the image's default): list and audit work, decide is refused,
    whatever --user says, and the attempt is on record."""
    assert load_settings({}).cli_users == ()
    approval_id = open_approval(state)
    assert approvals_main(["decide", approval_id, "approve", "--user", "U_CAROL"]) == 1
    err = capsys.readouterr().err
    assert f"the OS user {os_user()!r} is not in GANOPS_CLI_USERS" in err
    assert "can only inspect" in err
    assert approvals_main(["list"]) == 0
    [row] = [r for r in Store(state).list_audit(20) if r.action == "decide"]
    assert (row.actor, row.outcome, row.path) == ("U_CAROL", "refused", "cli")
    assert row.detail["os_user"] == os_user()
    book = ApprovalBook(Store(state), MemoryRegistry(), RecordingDeployer(), approvers=frozenset())
    assert book.get(approval_id).state == "pending"  # type: ignore[union-attr]


def test_the_cli_cannot_vote_as_another_user(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--user is checked against the caller's mapped id; $USER cannot change who that is;
    one caller cannot cast both votes of the two-person rule."""
    monkeypatch.setenv("GANOPS_APPROVALS_REQUIRED", "2")
    monkeypatch.setenv("GANOPS_CLI_USERS", f"{os_user()}=U_BOB,alice=U_CAROL")
    monkeypatch.setenv("USER", "alice")  # what getpass.getuser() would have believed
    monkeypatch.setenv("LOGNAME", "alice")
    approval_id = open_approval(state)
    assert approvals_main(["decide", approval_id, "approve", "--user", "U_CAROL"]) == 1
    err = capsys.readouterr().err
    assert f"--user U_CAROL is not you: GANOPS_CLI_USERS maps the OS user {os_user()!r}" in err
    assert approvals_main(["decide", approval_id, "approve"]) == 0
    assert "1 more approver needed" in capsys.readouterr().out
    assert approvals_main(["decide", approval_id, "approve"]) == 0  # BOB again: no 2nd vote
    assert "already recorded" in capsys.readouterr().out
    book = ApprovalBook(Store(state), MemoryRegistry(), RecordingDeployer(), approvers=frozenset())
    a = book.get(approval_id)
    assert a is not None
    assert (a.state, a.approvers) == ("pending", ("U_BOB",))
    rows = [r for r in Store(state).list_audit(20) if r.action == "decide"]
    assert [(r.actor, r.outcome, r.path, r.detail["os_user"]) for r in rows] == [
        ("U_BOB", "duplicate", "cli", os_user()),
        ("U_BOB", "recorded", "cli", os_user()),
        ("U_CAROL", "refused", "cli", os_user()),
    ]
    assert rows[-1].detail["claimed_user"] == "U_CAROL"


def test_approval_ids_never_look_like_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """argparse would read `decide -Abc… approve` as an unknown option."""
    import secrets

    from ganops.bot.approvals.expect import new_approval_id

    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: "-Abc" + "x" * 18)
    assert new_approval_id() == "_Abc" + "x" * 18
