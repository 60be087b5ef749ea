"""The ingest step refuses unsafe data where it fetches it, approvers' runs included, and the
reason reaches the run's card.

Every refusal runs the real step function (`pipeline.steps.data.ingest`) twice: with a
non-approver's rules (held to GANOPS_DATA_ALLOW's prefixes) and an approver's (`anywhere`,
what `bot.runs.start.with_data_scope` sets for them). The card text comes from the step's
events through the worker's `final_changes` and the bot's own run-card builders.

Network: loopback only. Names resolve through an injected resolver; the redirect test watches
every connection the step opens and shows none goes to the private address.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import ssl
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ganops.bot.blocks import blocks_to_dicts
from ganops.bot.blocks.runs import RunView, failure_blocks, run_blocks
from ganops.pipeline.events import fold, read_events
from ganops.pipeline.launch.worker import final_changes
from ganops.pipeline.steps.data import ingest
from ganops.pipeline.steps.fetchguard import DataRules, FetchRefused
from ganops.pipeline.steps.webfetch import fetch_url
from tests.fakes.tls import Reply, Seen, self_signed, serve

WHO = [pytest.param(False, id="non-approver"), pytest.param(True, id="approver")]
HINT = "GANOPS_DATA_ALLOW must name the host to allow it"


def _resolve(table: dict[str, str]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        return [table[host]]

    return resolve


def _ingest(
    tmp: Path,
    source: str,
    rules: DataRules,
    resolver: Callable[[str, int], list[str]] | None = None,
) -> str:
    return ingest(
        source=source,
        out_dir=str(tmp / "out"),
        image_size=32,
        seed=0,
        synthetic_n=0,
        events_dir=str(tmp / "events"),
        rules=rules,
        resolver=resolver,
    )


def _refused(tmp: Path, source: str, rules: DataRules, **kw: object) -> str:
    """Run the step, expect a refusal; return the failed run's card as the bot would post it."""
    with pytest.raises(FetchRefused) as refused:
        _ingest(tmp, source, rules, **kw)  # type: ignore[arg-type]
    changes = final_changes(fold(read_events(tmp / "events")), None, "ingest")
    assert (changes["state"], changes["failed_step"]) == ("failed", "ingest")
    assert changes["error"] == str(refused.value)
    assert "\n" not in changes["error"]  # one line
    view = RunView(
        run_id="local-1",
        model="cut",
        requested_by="U1",
        params={"data": source},
        state="failed",
        failed_step=changes["failed_step"],
        error=changes["error"],
    )
    card = json.dumps(blocks_to_dicts([*run_blocks(view), *failure_blocks(view)]))
    assert "Failed at *ingest*" in card
    assert not (tmp / "out" / "trainA").exists()  # nothing was copied
    return card


@pytest.mark.parametrize("approver", WHO)
def test_the_metadata_address_is_refused(tmp_path: Path, approver: bool) -> None:
    rules = DataRules(allow=("https://data.example.com/sets/",), anywhere=approver)
    card = _refused(tmp_path, "http://169.254.169.254/latest/meta-data/set.tgz", rules)
    assert f"refused: 169.254.169.254 is a link-local (cloud metadata) address; {HINT}" in card


@pytest.mark.parametrize("approver", WHO)
def test_a_name_that_resolves_to_loopback_is_refused(tmp_path: Path, approver: bool) -> None:
    rules = DataRules(allow=("https://data.example.com/sets/",), anywhere=approver)
    resolver = _resolve({"sets.example.org": "127.0.0.1"})
    card = _refused(tmp_path, "https://sets.example.org/horses.tgz", rules, resolver=resolver)
    assert f"refused: sets.example.org resolves to 127.0.0.1, a loopback address; {HINT}" in card


@pytest.mark.parametrize("approver", WHO)
def test_a_redirect_to_a_private_address_is_refused_before_connecting(
    tmp_path: Path, approver: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[str, int]] = []
    real_connect = socket.create_connection

    def watched(address: tuple[str, int], *args: object, **kw: object) -> socket.socket:
        opened.append(address)
        assert address[0] == "127.0.0.1", f"the step connected to {address}"
        return real_connect(address, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", watched)
    moved = Reply(302, headers={"Location": "http://10.0.0.5/x.tgz"})
    with serve(lambda seen: moved) as server:
        rules = DataRules(allow=(f"{server.url()}/",), anywhere=approver)
        card = _refused(tmp_path, f"{server.url()}/sets/horses.tgz", rules)
    assert [s.path for s in server.seen] == ["/sets/horses.tgz"]
    assert opened == [("127.0.0.1", server.port)]
    assert (
        f"refused: 10.0.0.5 is a private address; {HINT} "
        f"(redirected from {server.url()}/sets/horses.tgz)"
    ) in card


@pytest.mark.parametrize("approver", WHO)
def test_a_symlink_out_of_the_allowed_folder_is_refused(tmp_path: Path, approver: bool) -> None:
    from ganops.model.synthetic import make_synthetic

    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    data = make_synthetic(allowed / "set", n_train=4, n_test=2, image_size=32)
    secret.mkdir()
    (secret / "token.png").write_bytes(b"not for the trainer")
    (data / "trainA" / "leak.png").symlink_to(secret / "token.png")
    rules = DataRules(allow=(f"{allowed}/",), anywhere=approver)
    card = _refused(tmp_path / "run", str(data), rules)
    assert (
        f"refused: trainA/leak.png in {data} is a symlink to {secret / 'token.png'}, "
        "outside the data folder"
    ) in card
    # A link that stays inside is copied as the file it points to.
    (data / "trainA" / "leak.png").unlink()
    (data / "trainA" / "again.png").symlink_to(data / "trainB" / "train_00000.png")
    _ingest(tmp_path / "ok", str(data), rules)
    assert (tmp_path / "ok" / "out" / "trainA" / "again.png").read_bytes() == (
        data / "trainB" / "train_00000.png"
    ).read_bytes()


def test_a_folder_that_is_itself_a_link_out_is_outside_the_allowlist(tmp_path: Path) -> None:
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    (allowed / "set").symlink_to(elsewhere)
    rules = DataRules(allow=(f"{allowed}/",))
    card = _refused(tmp_path / "run", str(allowed / "set"), rules)
    assert (
        f"refused: {allowed / 'set'} (real path {elsewhere}) is outside GANOPS_DATA_ALLOW" in card
    )


def _evil_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, body in (("trainA/a.png", b"fine"), ("../evil.txt", b"written outside")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return path


@pytest.mark.parametrize("approver", WHO)
def test_a_tar_with_dotdot_entries_is_refused(tmp_path: Path, approver: bool) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    archive = _evil_tar(allowed / "set.tgz")
    rules = DataRules(allow=(f"{allowed}/",), anywhere=approver)
    card = _refused(tmp_path / "run", str(archive), rules)
    assert (
        f"refused: {archive} has the entry '../evil.txt', which would be written outside "
        "the data folder"
    ) in card
    assert not (tmp_path / "run" / "evil.txt").exists()


def test_a_tar_link_out_of_the_folder_is_refused_by_the_data_filter(tmp_path: Path) -> None:
    archive = tmp_path / "set.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("trainA/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    card = _refused(tmp_path / "run", str(archive), DataRules(anywhere=True))
    assert f"refused: {archive}: 'trainA/passwd' is a link to an absolute path" in card


def test_percent_encoded_traversal_is_refused_before_any_request(tmp_path: Path) -> None:
    with serve(lambda seen: Reply(404)) as server:
        rules = DataRules(allow=(f"{server.url()}/sets/",))
        url = f"{server.url()}/sets/%2e%2e/admin/set.tgz"
        card = _refused(tmp_path, url, rules)
    assert server.seen == []
    assert (
        f"refused: {url} (normalised: {server.url()}/admin/set.tgz) is outside GANOPS_DATA_ALLOW"
    ) in card


def _dataset_archive(tmp: Path) -> tuple[bytes, str]:
    """A small real data set as .tar.gz bytes, and its digest."""
    from ganops.model.data import dataset_digest
    from ganops.model.synthetic import make_synthetic

    root = make_synthetic(tmp / "set", n_train=4, n_test=2, image_size=32)
    archive = shutil.make_archive(str(tmp / "set"), "gztar", root)
    return Path(archive).read_bytes(), dataset_digest(root)


def test_an_allowed_host_serves_a_data_set_end_to_end(tmp_path: Path) -> None:
    body, digest = _dataset_archive(tmp_path / "src")

    def answer(seen: Seen) -> Reply:
        if seen.path == "/sets/latest.tgz":  # a redirect within the prefix is followed
            return Reply(302, headers={"Location": "/sets/horses.tgz"})
        return Reply(200, body) if seen.path == "/sets/horses.tgz" else Reply(404)

    with serve(answer) as server:
        # Allowed by name: the loopback server is "datasets.test", whatever it resolves to.
        prefix = f"http://datasets.test:{server.port}/sets/"
        resolver = _resolve({"datasets.test": "127.0.0.1"})
        got = _ingest(tmp_path, f"{prefix}latest.tgz", DataRules(allow=(prefix,)), resolver)
    assert got == digest
    assert [s.path for s in server.seen] == ["/sets/latest.tgz", "/sets/horses.tgz"]
    # The connection went to the checked address; the request named the host.
    assert {s.headers["host"] for s in server.seen} == {f"datasets.test:{server.port}"}
    facts = fold(read_events(tmp_path / "events")).facts["ingest"]
    assert facts["data_digest"] == digest


def test_https_to_a_pinned_address_checks_the_certificate_for_the_name(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls", ("datasets.test",))
    trusting = ssl.create_default_context(cafile=str(cert))
    resolver = _resolve({"datasets.test": "127.0.0.1", "wrong.test": "127.0.0.1"})
    with serve(lambda seen: Reply(200, b"archive bytes"), tls=(cert, key)) as server:
        url = f"https://datasets.test:{server.port}/sets/a.tgz"
        rules = DataRules(allow=(f"https://datasets.test:{server.port}/", "https://wrong.test/"))
        out = tmp_path / "a.tgz"
        assert fetch_url(url, out, rules=rules, resolver=resolver, tls=trusting) == url
        assert out.read_bytes() == b"archive bytes"
        wrong = f"https://wrong.test:{server.port}/a.tgz"
        with pytest.raises(Exception, match=r"certificate|hostname"):
            fetch_url(wrong, out, rules=DataRules(allow=(wrong,)), resolver=resolver, tls=trusting)


def test_links_inside_the_folder_are_copied_and_loops_walked_once(tmp_path: Path) -> None:
    from ganops.model.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "set", n_train=4, n_test=2, image_size=32)
    (data / "alias").symlink_to(data / "trainA")  # listed before or after trainA: both copied
    (data / "trainA" / "loop").symlink_to(data)  # back to a folder it sits in
    _ingest(tmp_path / "run", str(data), DataRules(anywhere=True))
    out = tmp_path / "run" / "out"
    names = sorted(p.name for p in (data / "trainA").glob("*.png"))
    assert sorted(p.name for p in (out / "trainA").glob("*.png")) == names
    assert sorted(p.name for p in (out / "alias").glob("*.png")) == names
    assert not (out / "trainA" / "loop").exists()


def test_redirect_loops_and_scheme_changes_are_refused(tmp_path: Path) -> None:
    def answer(seen: Seen) -> Reply:
        if seen.path.startswith("/loop"):
            return Reply(302, headers={"Location": f"/loop{len(seen.path)}.tgz"})
        return Reply(301, headers={"Location": "file:///etc/passwd"})

    with serve(answer) as server:
        rules = DataRules(allow=(f"{server.url()}/",))
        with pytest.raises(FetchRefused, match="redirects more than 5 times"):
            fetch_url(f"{server.url()}/loop.tgz", tmp_path / "a", rules=rules)
        assert len(server.seen) == 6  # the first request and five redirects, then no more
        with pytest.raises(FetchRefused, match=r"file:///etc/passwd is not an http\(s\) URL"):
            fetch_url(f"{server.url()}/moved.tgz", tmp_path / "b", rules=rules)
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
