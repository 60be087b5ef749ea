"""Prometheus over TLS: verified by default, trusted through PROMETHEUS_CA_BUNDLE, with a bearer
token (fixed or from a file that rotates). A real TLS server on loopback with a self-signed
certificate made here answers the query API and records what it was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganops.bot.adapters.prometheus import PrometheusMetrics
from ganops.bot.errors import ConfigError
from ganops.bot.ports import UpstreamError
from ganops.bot.settings import load_settings
from tests.fakes.tls import Reply, Seen, Server, self_signed, serve

EMPTY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})


@pytest.fixture(autouse=True)
def _no_ca_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests would trust these instead of its default bundle: the test sets trust itself.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), ("prometheus.test",))


@pytest.fixture
def prometheus(cert: tuple[Path, Path]) -> Iterator[Server]:
    def answer(seen: Seen) -> Reply:
        ok = seen.path.startswith("/api/v1/query")
        return Reply(200, EMPTY.encode()) if ok else Reply(404)

    with serve(answer, tls=cert) as server:
        yield server


def _settings(tmp_path: Path, url: str, **env: str):  # type: ignore[no-untyped-def]
    return load_settings({"GANOPS_STATE_DIR": str(tmp_path), "PROMETHEUS_URL": url, **env})


def test_an_unverified_certificate_is_a_clear_error(prometheus: Server, tmp_path: Path) -> None:
    settings = _settings(tmp_path, prometheus.url(scheme="https"))
    metrics = PrometheusMetrics(settings.prometheus_url, access=settings.prometheus)
    with pytest.raises(UpstreamError) as refused:
        metrics.firing_drift_alerts()
    message = str(refused.value)
    assert message.startswith(f"Prometheus at {prometheus.url(scheme='https')} did not answer: ")
    assert "its TLS certificate is not trusted (certificate verify failed" in message
    assert "set PROMETHEUS_CA_BUNDLE to the CA file that signed it" in message
    assert "\n" not in message
    assert prometheus.seen == []  # no request went out over the unverified connection


def test_the_ca_bundle_and_a_rotating_token_file(
    prometheus: Server, cert: tuple[Path, Path], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    settings = _settings(
        tmp_path,
        prometheus.url(scheme="https"),
        PROMETHEUS_CA_BUNDLE=str(cert[0]),
        PROMETHEUS_TOKEN_FILE=str(token),
    )
    metrics = PrometheusMetrics(settings.prometheus_url, access=settings.prometheus)
    assert metrics.firing_drift_alerts() == []
    sent = {s.headers.get("authorization") for s in prometheus.seen}
    assert sent == {"Bearer first-token"}
    token.write_text("rotated-token-with-another-length\n")  # the kubelet rotates it
    seen = len(prometheus.seen)
    assert metrics.firing_drift_alerts() == []
    assert {s.headers.get("authorization") for s in prometheus.seen[seen:]} == {
        "Bearer rotated-token-with-another-length"
    }
    token.unlink()  # a token that cannot be read is said so, in one line
    with pytest.raises(UpstreamError, match=r"cannot read PROMETHEUS_TOKEN_FILE \(No such file"):
        metrics.firing_drift_alerts()


def test_a_fixed_bearer_token(prometheus: Server, cert: tuple[Path, Path], tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        prometheus.url(scheme="https"),
        PROMETHEUS_CA_BUNDLE=str(cert[0]),
        PROMETHEUS_BEARER_TOKEN="s3cr3t",
    )
    assert "s3cr3t" not in repr(settings)
    PrometheusMetrics(settings.prometheus_url, access=settings.prometheus).firing_drift_alerts()
    assert {s.headers.get("authorization") for s in prometheus.seen} == {"Bearer s3cr3t"}


def test_bad_prometheus_access_settings_fail_at_start_up(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    https = "https://prometheus.monitoring:9090"
    cases = [
        (https, {"PROMETHEUS_CA_BUNDLE": str(tmp_path / "missing.pem")}, "no such file"),
        (https, {"PROMETHEUS_CA_BUNDLE": str(garbage)}, "is not a readable PEM file"),
        (
            https,
            {"PROMETHEUS_BEARER_TOKEN": "a", "PROMETHEUS_TOKEN_FILE": str(empty)},
            "set PROMETHEUS_BEARER_TOKEN or PROMETHEUS_TOKEN_FILE, not both",
        ),
        (https, {"PROMETHEUS_TOKEN_FILE": str(empty)}, "cannot read it (the file is empty)"),
        (https, {"PROMETHEUS_TOKEN_FILE": str(tmp_path / "nope")}, "cannot read it"),
        (
            "http://prometheus.monitoring:9090",
            {"PROMETHEUS_BEARER_TOKEN": "a"},
            "would be sent in clear text",
        ),
        ("http://prometheus:9090", {"PROMETHEUS_CA_BUNDLE": str(cert[0])}, "is not https"),
    ]
    for url, env, reason in cases:
        with pytest.raises(ConfigError) as bad:
            _settings(tmp_path, url, **env)
        assert reason in str(bad.value), (env, str(bad.value))
        assert "\n" not in str(bad.value)
    # Loopback over http may carry a token (a port-forward, the demo's Prometheus).
    ok = _settings(tmp_path, "http://127.0.0.1:9090", PROMETHEUS_BEARER_TOKEN="a")
    assert ok.prometheus.bearer_token == "a"
