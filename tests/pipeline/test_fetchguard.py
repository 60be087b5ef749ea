"""The fetch rules as pure functions: addresses, URL normalisation, prefixes, archive entries.

No packet leaves this machine: every name resolves through an injected resolver, and every
refusal here happens before any connection is made.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from ganops.pipeline.steps.fetchguard import (
    DataRules,
    FetchRefused,
    address_kind,
    check_object_uri,
    check_url,
    checked_addresses,
    normalise_url,
    safe_member,
)

BOUND = DataRules(allow=("https://data.example.com/sets/", "s3://team-bucket/photos/"))
APPROVER = DataRules(allow=BOUND.allow, anywhere=True)


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("fd00:ec2::254", "private (cloud metadata)"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.5", "private"),  # IPv4-mapped: judged as the IPv4 address it maps
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_every_inward_address_class_is_named(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("rules", [BOUND, APPROVER], ids=["non-approver", "approver"])
def test_metadata_and_inward_names_are_refused_for_everyone(rules: DataRules) -> None:
    never = _resolver({})  # a literal address or a metadata name needs no lookup
    with pytest.raises(FetchRefused) as literal:
        checked_addresses("169.254.169.254", 80, rules, never)
    assert str(literal.value) == (
        "refused: 169.254.169.254 is a link-local (cloud metadata) address; "
        "GANOPS_DATA_ALLOW must name the host to allow it"
    )
    with pytest.raises(
        FetchRefused, match=re.escape("metadata.google.internal is a cloud metadata host")
    ):
        checked_addresses("metadata.google.internal", 80, rules, never)
    # One inward address among public ones is enough: the next lookup may return only it.
    mixed = _resolver({"cdn.example.net": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(FetchRefused, match=re.escape("resolves to 10.1.2.3, a private address")):
        checked_addresses("cdn.example.net", 443, rules, mixed)


def test_a_host_named_in_the_allowlist_may_be_internal() -> None:
    rules = DataRules(allow=("http://datasets.internal:8080/",))
    inward = _resolver({"datasets.internal": ["10.20.0.7"], "other.internal": ["10.20.0.8"]})
    assert checked_addresses("datasets.internal", 8080, rules, inward) == ["10.20.0.7"]
    with pytest.raises(FetchRefused, match=re.escape("other.internal resolves to 10.20.0.8")):
        checked_addresses("other.internal", 8080, rules, inward)
    # An allowed name that resolves to a metadata address (DNS rebinding) stays refused...
    rebound = _resolver({"datasets.internal": ["169.254.169.254"]})
    with pytest.raises(FetchRefused, match=r"resolves to 169.254.169.254, a link-local \(cloud"):
        checked_addresses("datasets.internal", 8080, rules, rebound)
    # ...unless the allowlist names the metadata address itself.
    literal = DataRules(allow=("http://169.254.169.254/", "http://metadata.google.internal/"))
    assert checked_addresses("169.254.169.254", 80, literal, _resolver({})) == ["169.254.169.254"]
    google = _resolver({"metadata.google.internal": ["169.254.169.254"]})
    assert checked_addresses("metadata.google.internal", 80, literal, google) == ["169.254.169.254"]
    # A bucket that shares the host's name names no host.
    bucket = DataRules(allow=("s3://datasets.internal/",))
    with pytest.raises(FetchRefused, match=re.escape("resolves to 10.20.0.7, a private")):
        checked_addresses("datasets.internal", 80, bucket, inward)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1]:8080/x.tgz", "::1 is a loopback address"),
        ("http://[fd00:ec2::254]/x.tgz", "fd00:ec2::254 is a private (cloud metadata) address"),
        ("http://[::ffff:169.254.169.254]/x.tgz", "is a link-local (cloud metadata) address"),
        ("http://METADATA.google.internal./x.tgz", "is a cloud metadata host"),
    ],
)
def test_literal_and_spelled_variants_are_refused_for_approvers_too(url: str, reason: str) -> None:
    with pytest.raises(FetchRefused, match=re.escape(reason)):
        check_url(url, APPROVER, _resolver({}))


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://Data.Example.com/sets/a/../b.tgz", "https://data.example.com/sets/b.tgz"),
        ("https://data.example.com/sets/%2e%2e/admin", "https://data.example.com/admin"),
        ("https://data.example.com/sets/%2E%2E/%2e%2e/x", "https://data.example.com/x"),
        ("https://data.example.com/sets/./x/", "https://data.example.com/sets/x/"),
        (
            "https://data.example.com/sets/a%20b.tgz?v=1",
            "https://data.example.com/sets/a%20b.tgz?v=1",
        ),
    ],
)
def test_urls_are_normalised_before_any_check(url: str, normalised: str) -> None:
    from urllib.parse import urlunsplit

    assert urlunsplit(normalise_url(url)) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://data.example.com/sets%2f..%2fadmin", "encoded / or \\"),
        ("https://data.example.com/sets/%252e%252e/admin", "percent-encoded twice"),
        ("ftp://data.example.com/sets/x.tgz", "not an http(s) URL"),
    ],
)
def test_tricky_paths_are_refused(url: str, reason: str) -> None:
    with pytest.raises(FetchRefused, match=re.escape(reason)):
        normalise_url(url)


def test_percent_encoded_traversal_leaves_the_prefix_and_is_refused() -> None:
    public = _resolver(
        {"data.example.com": ["93.184.216.34"], "data.example.com.evil.io": ["93.184.216.35"]}
    )
    url = "https://data.example.com/sets/%2e%2e/admin"
    with pytest.raises(FetchRefused) as refused:
        check_url(url, BOUND, public)
    assert str(refused.value) == (
        f"refused: {url} (normalised: https://data.example.com/admin) is outside GANOPS_DATA_ALLOW"
    )
    inside = check_url("https://data.example.com/sets/horses/../zebras.tgz", BOUND, public)
    assert inside.url == "https://data.example.com/sets/zebras.tgz"
    assert inside.addresses == ("93.184.216.34",)
    # A lookalike host or port is not the prefix's.
    for other in ("https://data.example.com.evil.io/sets/x", "https://data.example.com:444/sets/x"):
        with pytest.raises(FetchRefused, match="outside GANOPS_DATA_ALLOW"):
            check_url(other, BOUND, public)


def test_object_store_prefixes_are_checked_at_fetch_time() -> None:
    assert check_object_uri("s3://team-bucket/photos/horses", BOUND) == (
        "s3://team-bucket/photos/horses"
    )
    for uri, reason in [  # (plain text, not patterns)
        ("s3://team-bucket/photos/../secrets", "has a '..' segment"),
        ("s3://team-bucket/photos/%2e%2e/secrets", "has a '..' segment"),
        ("s3://team-bucket/photosynthesis", "outside GANOPS_DATA_ALLOW"),
        ("s3://other-bucket/photos/x", "outside GANOPS_DATA_ALLOW"),
        ("gs://team-bucket/photos/x", "outside GANOPS_DATA_ALLOW"),
    ]:
        with pytest.raises(FetchRefused, match=re.escape(reason)):
            check_object_uri(uri, BOUND)
    assert check_object_uri("s3://other-bucket/x", APPROVER) == "s3://other-bucket/x"
    with pytest.raises(FetchRefused, match=re.escape("'..' segment")):
        check_object_uri("s3://other-bucket/x/../y", APPROVER)


@pytest.mark.parametrize(
    "name", ["../evil.txt", "a/../../evil", "/etc/cron.d/x", "C:evil", "..\\x"]
)
def test_archive_entries_that_leave_the_folder_are_refused(name: str) -> None:
    with pytest.raises(FetchRefused, match="would be written outside the data folder"):
        safe_member(name, "set.tgz")
    safe_member("trainA/a..b.png", "set.tgz")  # dots inside a name are fine
