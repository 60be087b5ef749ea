"""The policy module: who may do what, the bounds on /retrain, the data allowlist, the
settings that feed it, the audit path column and the Security table in docs/security.md."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ganops.bot.errors import ConfigError
from ganops.bot.gate import (
    END,
    START,
    SUMMARY_END,
    SUMMARY_START,
    security_rows,
    security_table,
    with_table,
)
from ganops.bot.policy import RULES, Bounds, Policy, audit_refusal, bounds_crossed, data_outside
from ganops.bot.settings import load_settings
from ganops.bot.store import Store
from ganops.pipeline.ports import RunParams

APPROVER, MEMBER = "U_CAROL", "U_ALICE"
SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
README = Path(__file__).resolve().parents[2] / "README.md"


def policy(bounds: Bounds | None = None) -> Policy:
    return Policy(is_approver=lambda u: u == APPROVER, bounds=bounds or Bounds())


@pytest.mark.parametrize("action", ["rollback", "snooze", "ignore", "alarm_retrain", "approve"])
def test_approver_only_actions(action: str) -> None:
    p = policy()
    assert p.may(action, APPROVER).allowed  # type: ignore[arg-type]
    refused = p.may(action, MEMBER)  # type: ignore[arg-type]
    assert refused.refused
    assert refused.bound == action
    assert refused.reason


def test_cancel_is_for_the_requester_or_an_approver() -> None:
    p = policy()
    assert p.may("cancel", MEMBER, requester=MEMBER).allowed
    assert p.may("cancel", APPROVER, requester=MEMBER).allowed
    assert p.may("cancel", "U_MALLORY", requester=MEMBER).refused


def test_a_failing_approver_lookup_refuses() -> None:
    def broken(user: str) -> bool:
        raise ConnectionError("usergroups.users.list timed out")

    p = Policy(is_approver=broken, bounds=Bounds())
    assert p.may("rollback", APPROVER).refused
    assert p.may_retrain(RunParams(auto_deploy=True), APPROVER).refused


def test_auto_deploy_needs_an_approver_and_names_itself() -> None:
    p = policy()
    refused = p.may_retrain(RunParams(auto_deploy=True), MEMBER)
    assert refused.refused
    assert refused.bound == "auto_deploy"
    assert "auto_deploy" in refused.reason
    assert p.may_retrain(RunParams(auto_deploy=True), APPROVER).allowed
    assert p.may_retrain(RunParams(), MEMBER).allowed  # within the bounds: anyone


@pytest.mark.parametrize(
    ("params", "bound"),
    [
        (RunParams(gpus=2), "GANOPS_MAX_GPUS"),
        (RunParams(steps=20_001), "GANOPS_MAX_STEPS"),
        (RunParams(epochs=201), "GANOPS_MAX_EPOCHS"),
        (RunParams(data="s3://other-bucket/x"), "GANOPS_DATA_ALLOW"),
        (RunParams(data="http://169.254.169.254/latest/meta-data/"), "GANOPS_DATA_ALLOW"),
    ],
)
def test_past_a_bound_only_an_approver_may_ask(params: RunParams, bound: str) -> None:
    p = policy(Bounds(max_gpus=1, max_steps=20_000, data_allow=("s3://team-bucket/",)))
    refused = p.may_retrain(params, MEMBER)
    assert (refused.refused, refused.bound) == (True, bound)
    assert bound in refused.reason
    assert p.may_retrain(params, APPROVER).allowed


def test_within_the_bounds_nothing_is_crossed() -> None:
    bounds = Bounds(max_gpus=1, max_steps=100, data_allow=("s3://team-bucket/",))
    assert bounds_crossed(RunParams(gpus=1, steps=100, data="s3://team-bucket/a"), bounds) == []
    # steps win over epochs: with steps given, epochs are not what bounds the run
    assert bounds_crossed(RunParams(epochs=10_000, steps=100), bounds) == []
    crossed = bounds_crossed(RunParams(gpus=3, steps=101, data="/etc"), bounds)
    assert [b for b, _ in crossed] == ["GANOPS_MAX_GPUS", "GANOPS_MAX_STEPS", "GANOPS_DATA_ALLOW"]


@pytest.mark.parametrize(
    ("data", "allow", "outside"),
    [
        ("synthetic", (), False),  # always inside
        ("/data/photos", (), True),  # empty allowlist: synthetic only
        ("s3://team-bucket/photos", ("s3://team-bucket/",), False),
        ("s3://team-bucket", ("s3://team-bucket/",), False),
        ("s3://team-bucket-evil/photos", ("s3://team-bucket",), True),  # a prefix is a folder
        ("s3://team-bucket/../other", ("s3://team-bucket/",), True),
        ("/data/photos/../../etc", ("/data/photos/",), True),
        ("/data/photos/horses", ("/data/photos/",), False),
        ("http://10.0.0.5/data", ("s3://team-bucket/",), True),
        ("http://10.0.0.5/data/x", ("http://10.0.0.5/data/",), False),  # named: allowed
    ],
)
def test_data_allowlist(data: str, allow: tuple[str, ...], outside: bool) -> None:
    assert (data_outside(data, allow) is not None) == outside


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/", "link-local"),
        ("http://127.0.0.1:8080/x", "loopback"),
        ("https://localhost/x", "loopback"),
        ("http://192.168.1.4/x", "private"),
        ("http://[::1]/x", "loopback"),
    ],
)
def test_internal_addresses_are_named(url: str, kind: str) -> None:
    reason = data_outside(url, ("s3://team-bucket/",))
    assert reason is not None
    assert f"is a {kind} address" in reason


def test_bounds_settings_and_defaults() -> None:
    s = load_settings({})
    assert (s.max_gpus, s.max_steps, s.run_timeout_s, s.data_allow) == (1, 20_000, 6 * 3600, ())
    assert s.max_epochs == 200
    s = load_settings(
        {
            "GANOPS_MAX_GPUS": "4",
            "GANOPS_MAX_STEPS": "500",
            "GANOPS_MAX_EPOCHS": "30",
            "GANOPS_RUN_TIMEOUT": "90m",
            "GANOPS_DATA_ALLOW": "s3://team-bucket/, /mnt/data/",
        }
    )
    assert (s.max_gpus, s.max_steps, s.run_timeout_s) == (4, 500, 5400)
    assert s.data_allow == ("s3://team-bucket/", "/mnt/data/")
    assert Bounds.of(s) == Bounds(4, 500, ("s3://team-bucket/", "/mnt/data/"), 30)
    assert load_settings({}).max_nodes == 1
    assert Bounds.of(load_settings({"GANOPS_MAX_NODES": "4"})).max_nodes == 4


def test_gpus_count_per_node_and_nodes_have_their_own_bound() -> None:
    bounds = Bounds(max_gpus=4, max_nodes=2)
    assert bounds_crossed(RunParams(gpus=2, nodes=2), bounds) == []
    [(bound, why)] = bounds_crossed(RunParams(gpus=4, nodes=2), bounds)
    assert (bound, why) == (
        "GANOPS_MAX_GPUS",
        "gpus=4 × nodes=2 = 8 GPUs is over GANOPS_MAX_GPUS=4",
    )
    [(bound, why)] = bounds_crossed(RunParams(gpus=0, nodes=3), bounds)
    assert (bound, why) == ("GANOPS_MAX_NODES", "nodes=3 is over GANOPS_MAX_NODES=2")
    # the form shows a GPU total on `nodes` when `gpus` alone is within the bound
    assert policy(bounds).may_retrain(RunParams(gpus=2, nodes=3), MEMBER).key == "nodes"
    assert policy(bounds).may_retrain(RunParams(gpus=5), MEMBER).key == "gpus"


def test_ganops_channel_may_list_channels() -> None:
    s = load_settings({"GANOPS_CHANNEL": "C1, C2"})
    assert (s.channel, s.channels) == ("C1", ("C1", "C2"))
    shell = load_settings({})  # the shell adapter: its one channel
    assert shell.channels == (shell.channel,)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"GANOPS_MAX_GPUS": "two"}, "GANOPS_MAX_GPUS='two' must be a whole number"),
        ({"GANOPS_MAX_STEPS": "-5"}, "GANOPS_MAX_STEPS='-5' must be a whole number"),
        ({"GANOPS_RUN_TIMEOUT": "soon"}, "GANOPS_RUN_TIMEOUT='soon' is not a duration"),
        ({"GANOPS_DATA_ALLOW": "https://"}, "'https://' is not a data prefix"),
        ({"GANOPS_DATA_ALLOW": "data/"}, "a folder prefix must be absolute"),
        ({"GANOPS_MAX_NODES": "0"}, "GANOPS_MAX_NODES=0 must be from 1 to 64"),
        ({"GANOPS_MAX_NODES": "65"}, "GANOPS_MAX_NODES=65 must be from 1 to 64"),
        ({"GANOPS_CHANNEL": "C1,,C2"}, "GANOPS_CHANNEL='C1,,C2' is not a channel id"),
        ({"GANOPS_GROUP_TTL": "never"}, "GANOPS_GROUP_TTL='never' is not a duration"),
    ],
)
def test_bad_bounds_stop_start_up(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        load_settings(env)


def test_refusals_are_audited_with_their_path(tmp_path: Path) -> None:
    store = Store(tmp_path)
    verdict = policy().may("rollback", MEMBER)
    audit_refusal(store, user=MEMBER, action="rollback", obj="cut", verdict=verdict, path="slash")
    [row] = store.list_audit()
    assert (row.actor, row.action, row.outcome, row.path) == (
        MEMBER,
        "rollback",
        "refused",
        "slash",
    )
    assert row.detail["bound"] == "rollback"


def test_a_version_1_audit_log_gains_the_path_column(tmp_path: Path) -> None:
    """State files written before paths were recorded keep working."""
    conn = sqlite3.connect(tmp_path / "ganops.db")
    conn.executescript(
        "CREATE TABLE schema_versions (owner TEXT PRIMARY KEY, version INTEGER NOT NULL);"
        "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,"
        " actor TEXT NOT NULL, action TEXT NOT NULL, object TEXT NOT NULL,"
        " outcome TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');"
        "INSERT INTO schema_versions VALUES ('audit', 1);"
        "INSERT INTO audit(ts, actor, action, object, outcome) VALUES (1, 'U_OLD', 'click', 'a', 'x');"
    )
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    store.audit("U_NEW", "decide", "a", "approved", path="cli")
    new, old = store.list_audit()
    assert (old.actor, old.path) == ("U_OLD", None)
    assert (new.actor, new.path) == ("U_NEW", "cli")
    Store(tmp_path)  # a second start does not migrate again


def test_docs_security_holds_the_table_enforcement_reads() -> None:
    """docs/security.md's table is `security_table()`, rendered from ENTRY_POINTS and RULES
    (the tables the gate reads); stale, this fails: `python -m ganops.bot.gate --write-docs`."""
    text = SECURITY_DOC.read_text()
    assert text == with_table(text), "stale: run python -m ganops.bot.gate --write-docs"
    table = text[text.index(START) + len(START) : text.index(END)]
    for action, rule in RULES.items():
        if any(a == action for _, _, a, _ in security_rows()):
            assert f"| `{action}` | {rule.who.replace('|', chr(92) + '|')} |" in table
    assert table.strip() == security_table()


def test_a_changed_rule_makes_the_docs_stale() -> None:
    """The staleness check can fail: a table rendered from another rule differs."""
    text = SECURITY_DOC.read_text()
    other = security_table().replace(RULES["rollback"].who, "anyone at all", 1)
    assert with_table(text, other) != text
    with pytest.raises(ValueError, match="markers"):
        with_table("no markers here")


def test_the_readme_lists_every_entry_point_from_the_same_tables() -> None:
    """The README's Security section is `security_summary()`: each action, who may, and every
    entry point that reaches it, from ENTRY_POINTS and RULES."""
    text = README.read_text()
    assert text == with_table(text, summary=True), "stale: python -m ganops.bot.gate --write-docs"
    table = text[text.index(SUMMARY_START) : text.index(SUMMARY_END)]
    for what, path, action, _ in security_rows():
        assert f"{what} ({path})".replace("|", "\\|") in table, what
        assert f"| `{action}` |" in table
