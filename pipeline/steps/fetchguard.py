"""Where run data may come from, checked where it is fetched (the ingest step), for every run.

The bot checks `data=` as a string when the request arrives; that is a convenience. What holds
is this module, called by the step that does the fetching, on what it is about to read:

- a URL's host is resolved and every address it resolves to is classified: loopback,
  link-local, private, CGNAT, multicast, unspecified, reserved and cloud metadata addresses are
  refused unless `GANOPS_DATA_ALLOW` names that host. The caller connects to an address checked
  here (no second lookup), and checks each redirect hop again;
- a URL's path is percent-decoded and its dot segments removed before any prefix check, and the
  fetch uses that normalised URL, so what was checked is what is read;
- a local path is `realpath`ed before the prefix check, and every file the copy would read is
  `realpath`ed and must stay inside the data folder;
- archive entries must stay inside the folder they unpack into (tar also through
  `filter="data"`).

The prefix rule (the data must lie under a `GANOPS_DATA_ALLOW` prefix) binds every run that an
approver did not start (`DataRules.anywhere`); the other rules bind every run.

Pure functions over an injectable resolver: tests never touch the network.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import socket
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

# (host, port) -> every address it resolves to, as text.
Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

WEB_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
_ALLOW_HINT = "GANOPS_DATA_ALLOW must name the host to allow it"


class FetchError(Exception):
    """The data cannot be fetched (one line: unreachable, unreadable...)."""


class FetchRefused(FetchError):
    """The data source breaks a fetch rule; the message is one line that names the rule."""


@dataclass(frozen=True)
class DataRules:
    """What the ingest step may read for one run.

    `allow`: the `GANOPS_DATA_ALLOW` prefixes (URLs, `s3://bucket/prefix/`, absolute folders).
    `anywhere`: an approver started the run, so the data need not lie under a prefix; the
    address, symlink and archive rules still hold.
    """

    allow: tuple[str, ...] = ()
    anywhere: bool = False

    def names_host(self, host: str) -> bool:
        """True when a `GANOPS_DATA_ALLOW` http(s) prefix names `host` itself (a bucket that
        shares the name does not)."""
        host = host.lower().rstrip(".")
        web = (urlsplit(p) for p in self.allow)
        return any((u.hostname or "").rstrip(".") == host for u in web if u.scheme in WEB_SCHEMES)


def system_resolver(host: str, port: int) -> list[str]:
    """Every A/AAAA address of `host`, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host} ({exc.strerror})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- addresses ---------------------------------------------------------------------------


def address_kind(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address ("link-local", "private"...), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_kind(ip.ipv4_mapped)
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "shared (CGNAT)"),
        (ip.is_private, "private"),
        (not ip.is_global, "reserved"),
    )
    kind = next((kind for hit, kind in checks if hit), None)
    return f"{kind} (cloud metadata)" if ip in METADATA_ADDRESSES else kind


def _metadata(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip in METADATA_ADDRESSES


def checked_addresses(host: str, port: int, rules: DataRules, resolver: Resolver) -> list[str]:
    """The addresses of `host` that a fetch may connect to (all of them, or a refusal).

    One bad address refuses the host: a resolver may answer differently on the next lookup,
    so a name that can resolve inward is treated as inward. A host that GANOPS_DATA_ALLOW
    names may be internal, but a metadata address is allowed only when named itself (the
    address, or a metadata host name): another allowed name that resolves to it (DNS
    rebinding) is still refused.
    """
    named = rules.names_host(host)
    bare = host.lower().rstrip(".")
    if bare in METADATA_HOSTS and not named:
        raise FetchRefused(f"refused: {host} is a cloud metadata host; {_ALLOW_HINT}")
    literal = _literal(bare)
    addresses = [str(literal)] if literal is not None else resolver(bare, port)
    if not addresses:
        raise FetchRefused(f"refused: {host} resolves to no address")
    names_metadata = named and (literal is not None or bare in METADATA_HOSTS)
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        kind = address_kind(ip)
        if kind is None or (named and (names_metadata or not _metadata(ip))):
            continue
        if literal is not None:
            raise FetchRefused(f"refused: {host} is a {kind} address; {_ALLOW_HINT}")
        raise FetchRefused(f"refused: {host} resolves to {text}, a {kind} address; {_ALLOW_HINT}")
    return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


# --- URLs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebTarget:
    """A checked URL: fetch `url` (normalised) from one of `addresses`, sending `host`."""

    url: str
    host: str
    port: int
    scheme: str
    addresses: tuple[str, ...]

    @property
    def request_path(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(("", "", parts.path or "/", parts.query, ""))


def normalise_url(url: str) -> SplitResult:
    """`url` with its path percent-decoded and dot segments removed, re-encoded.

    Encoded separators (`%2f`, `%5c`) and what is still encoded after one decoding are refused:
    a server may decode them again, after the prefix check.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in WEB_SCHEMES or not parts.hostname:
        raise FetchRefused(f"refused: {url} is not an http(s) URL with a host")
    if _ENCODED_SEPARATOR.search(parts.path) or "\\" in parts.path:
        raise FetchRefused(f"refused: {url} has an encoded / or \\ in its path")
    path = unquote(parts.path)
    if re.search(r"%[0-9a-fA-F]{2}", path):
        raise FetchRefused(f"refused: {url} is percent-encoded twice")
    clean = posixpath.normpath("/" + path) if path else "/"
    clean = "/" + clean.lstrip("/")
    if path.endswith("/") and clean != "/":
        clean += "/"
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    return SplitResult(scheme, netloc, quote(clean, safe="/"), parts.query, "")


def check_url(url: str, rules: DataRules, resolver: Resolver) -> WebTarget:
    """Normalise `url`, check its host's addresses, then its prefix (unless `rules.anywhere`).

    Addresses first, so an inward URL is refused with the address rule's reason, the same
    for approvers and everyone else."""
    parts = normalise_url(url)
    clean = urlunsplit(parts)
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    addresses = checked_addresses(host, port, rules, resolver)
    if not rules.anywhere and not any(_url_under(parts, p) for p in rules.allow if "://" in p):
        moved = f" (normalised: {clean})" if clean != url else ""
        raise FetchRefused(f"refused: {url}{moved} is outside GANOPS_DATA_ALLOW")
    return WebTarget(clean, host, port, parts.scheme, tuple(addresses))


def _url_under(parts: SplitResult, prefix: str) -> bool:
    try:
        want = normalise_url(prefix)
    except FetchRefused:
        return False
    if (parts.scheme, parts.hostname, _port(parts)) != (want.scheme, want.hostname, _port(want)):
        return False
    return _path_under(parts.path, want.path)


def _port(parts: SplitResult) -> int:
    return parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)


def _path_under(path: str, prefix: str) -> bool:
    base = prefix.rstrip("/")
    return path.rstrip("/") == base or path.startswith(base + "/")


# --- object stores (s3://, gs://...) -------------------------------------------------------


def check_object_uri(uri: str, rules: DataRules) -> str:
    """`uri` with its key normalised; refused when it climbs (`..`) or leaves every prefix."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if ".." in unquote(key).split("/"):
        raise FetchRefused(f"refused: {uri} has a '..' segment")
    clean = f"{scheme.lower()}://{bucket}/{key}" if key else f"{scheme.lower()}://{bucket}"
    if rules.anywhere:
        return clean
    for prefix in rules.allow:
        p_scheme, _, p_rest = prefix.partition("://")
        p_bucket, _, p_key = p_rest.partition("/")
        if (p_scheme.lower(), p_bucket) == (scheme.lower(), bucket) and (
            not p_key or _path_under("/" + key, "/" + p_key)
        ):
            return clean
    raise FetchRefused(f"refused: {uri} is outside GANOPS_DATA_ALLOW")


# --- local folders and archives ------------------------------------------------------------


def check_local(path: str, rules: DataRules) -> Path:
    """The real path of `path`, refused unless it lies under a folder prefix (or anywhere)."""
    real = Path(os.path.realpath(path))
    if rules.anywhere:
        return real
    folders = [p.removeprefix("file://") for p in rules.allow if p.startswith(("/", "file://"))]
    if any(_inside(real, Path(os.path.realpath(f))) for f in folders):
        return real
    shown = f"{path} (real path {real})" if str(real) != os.path.abspath(path) else path
    raise FetchRefused(f"refused: {shown} is outside GANOPS_DATA_ALLOW")


def folder_files(root: Path) -> Iterator[tuple[Path, PurePosixPath]]:
    """(real file, path relative to `root`) for every file a copy of `root` would read.

    `root` is a real path. Each directory and file is `realpath`ed: a symlink out of `root`
    is refused, not followed. Links inside `root` are followed as a copy would (a folder
    linked twice is copied twice), except a link back to a folder it sits in (a loop).
    """
    chains = {root: frozenset({root})}  # the real folders on the way down to each folder
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        for name in list(dirnames):
            real = _contained(root, here / name, rel_dir / name)
            if real in chains[here]:
                dirnames.remove(name)
            else:
                chains[here / name] = chains[here] | {real}
        for name in filenames:
            real = _contained(root, Path(dirpath, name), rel_dir / name)
            yield real, PurePosixPath((rel_dir / name).as_posix())


def _contained(root: Path, path: Path, rel: Path) -> Path:
    real = Path(os.path.realpath(path))
    if not _inside(real, root):
        raise FetchRefused(
            f"refused: {rel.as_posix()} in {root} is a symlink to {real}, outside the data folder"
        )
    return real


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def safe_member(name: str, archive: str) -> None:
    """Refuse an archive entry that is absolute or climbs out of the folder it unpacks into."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise FetchRefused(
            f"refused: {archive} has the entry {name!r}, which would be written outside "
            "the data folder"
        )


def unpack(archive: Path, out: Path, *, shown: str = "") -> None:
    """Unpack a tar or zip `archive` into `out`, refusing any entry that would leave it."""
    label = shown or archive.name
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                safe_member(name, label)
            zf.extractall(out)
        return
    try:
        with tarfile.open(archive) as tf:
            members: Sequence[tarfile.TarInfo] = tf.getmembers()
            for member in members:
                safe_member(member.name, label)
            # filter="data" also refuses links out of `out`, devices and setuid bits.
            tf.extractall(out, filter="data")
    except tarfile.FilterError as exc:
        raise FetchRefused(f"refused: {label}: {exc}") from None
    except tarfile.ReadError as exc:
        raise FetchError(f"{label} is not a readable tar or zip archive ({exc})") from None
