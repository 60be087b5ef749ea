"""How the bot reaches Prometheus: TLS verified by default, a CA bundle, a bearer token.

Kept beside `bot.settings` (which holds it as `Settings.prometheus`). `PROMETHEUS_CA_BUNDLE`
names a PEM file of CAs to trust (an in-cluster Prometheus often has a private CA);
`PROMETHEUS_BEARER_TOKEN` is a token, or `PROMETHEUS_TOKEN_FILE` a file holding one (a
mounted service-account token). The file is read again whenever it changes, so a rotated
token is used from the next query on, with no restart.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ganops.bot.errors import ConfigError


@dataclass(frozen=True)
class PrometheusAccess:
    ca_bundle: Path | None = None  # PROMETHEUS_CA_BUNDLE (None: the system's CAs)
    bearer_token: str | None = field(default=None, repr=False)  # PROMETHEUS_BEARER_TOKEN
    token_file: Path | None = None  # PROMETHEUS_TOKEN_FILE, read again when it changes


def load_prometheus_access(env: Mapping[str, str], url: str) -> PrometheusAccess:
    """Raises: ConfigError naming the first bad setting."""
    ca = _get(env, "PROMETHEUS_CA_BUNDLE")
    token = _get(env, "PROMETHEUS_BEARER_TOKEN")
    token_file = _get(env, "PROMETHEUS_TOKEN_FILE")
    if token and token_file:
        raise ConfigError("set PROMETHEUS_BEARER_TOKEN or PROMETHEUS_TOKEN_FILE, not both")
    if token is not None and any(c.isspace() for c in token):
        raise ConfigError("PROMETHEUS_BEARER_TOKEN contains whitespace (paste the token alone)")
    plain = urlsplit(url).scheme == "http"
    if ca and plain:
        raise ConfigError(f"PROMETHEUS_CA_BUNDLE is set but PROMETHEUS_URL={url!r} is not https")
    if (token or token_file) and plain and not _loopback(url):
        which = "PROMETHEUS_BEARER_TOKEN" if token else "PROMETHEUS_TOKEN_FILE"
        raise ConfigError(
            f"{which} would be sent in clear text to PROMETHEUS_URL={url!r}; use https://"
        )
    access = PrometheusAccess(
        ca_bundle=_ca_bundle(ca) if ca else None,
        bearer_token=token,
        token_file=Path(token_file) if token_file else None,
    )
    if access.token_file is not None:
        try:
            TokenFile(access.token_file).token()
        except OSError as exc:
            raise ConfigError(
                f"PROMETHEUS_TOKEN_FILE={token_file!r}: cannot read it ({exc.strerror})"
            ) from None
    return access


def _ca_bundle(value: str) -> Path:
    path = Path(value).expanduser()
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise ConfigError(f"PROMETHEUS_CA_BUNDLE={value!r}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"PROMETHEUS_CA_BUNDLE={value!r} is not a readable PEM file of certificates ({exc})"
        ) from None
    return path


class TokenFileError(OSError):
    """PROMETHEUS_TOKEN_FILE cannot be read, or is empty."""


class TokenFile:
    """A bearer token kept in a file, read again when the file's mtime, size or inode change
    (kubelet rotates a projected token by swapping a symlink)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._token = ""

    def token(self) -> str:
        """Raises: TokenFileError when the file cannot be read or is empty."""
        try:
            st = os.stat(self.path)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            with self._lock:
                if key != self._seen:
                    token = self.path.read_text().strip()
                    if not token:
                        raise TokenFileError(errno.ENODATA, "the file is empty")
                    self._token, self._seen = token, key
                return self._token
        except TokenFileError:
            raise
        except OSError as exc:
            raise TokenFileError(exc.errno, exc.strerror or str(exc)) from None


class BearerAuth:
    """A `requests` auth: `Authorization: Bearer <token>` on each request, read each time."""

    def __init__(self, access: PrometheusAccess) -> None:
        self._fixed = access.bearer_token
        self._file = TokenFile(access.token_file) if access.token_file else None

    def __call__(self, request: Any) -> Any:
        token = self._file.token() if self._file is not None else self._fixed
        request.headers["Authorization"] = f"Bearer {token}"
        return request


def session_for(access: PrometheusAccess) -> Any:
    """A `requests.Session` that verifies TLS (against the CA bundle when one is given)."""
    import requests

    session = requests.Session()
    session.verify = str(access.ca_bundle) if access.ca_bundle else True
    return session


def auth_for(access: PrometheusAccess) -> BearerAuth | None:
    return BearerAuth(access) if access.bearer_token or access.token_file else None


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None
