"""Approver user groups' members (`usergroups.users.list`), cached with a TTL.

The gate asks whether a user is an approver inside the 3-second ack, and Slack's client
sleeps `Retry-After` on a 429: a lookup there could hold the ack for a minute. So the lookup
never happens in the caller's thread: a stale entry is served while one background refresh
runs, and a group never fetched waits at most `cold_wait_s` for its first answer, then counts
as "membership unknown" (a refusal, never a yes). `warm()` fetches every group at start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class GroupsUnknownError(LookupError):
    """The group's members have not been fetched yet (or every fetch failed so far)."""


@dataclass
class _Entry:
    members: frozenset[str] | None = None
    fetched_at: float = 0.0
    refreshing: threading.Event | None = None  # set when the running refresh ends


class GroupCache:
    """`members(group)` from the cache; refreshes run on their own daemon threads."""

    def __init__(
        self,
        fetch: Callable[[str], set[str]],
        *,
        ttl_s: float = 300.0,
        cold_wait_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self.ttl_s, self.cold_wait_s, self._clock = fetch, ttl_s, cold_wait_s, clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def __call__(self, group: str) -> set[str]:
        return set(self.members(group))

    def members(self, group: str) -> frozenset[str]:
        """The group's members as last fetched; a stale entry starts one refresh.

        Raises:
            GroupsUnknownError: never fetched, and the first fetch did not answer in time.
        """
        with self._lock:
            entry = self._entries.setdefault(group, _Entry())
            fresh = entry.members is not None and self._clock() - entry.fetched_at < self.ttl_s
            done = None if fresh else self._start_refresh(group, entry)
            members = entry.members
        if members is not None:
            return members
        if done is not None:
            done.wait(self.cold_wait_s)  # the first lookup only: bounded, well inside an ack
        with self._lock:
            members = self._entries[group].members
        if members is None:
            raise GroupsUnknownError(f"members of user group {group} are not known yet")
        return members

    def warm(self, groups: Iterable[str]) -> None:
        """Start a refresh of every group (at start-up), without waiting for any."""
        with self._lock:
            for group in groups:
                self._start_refresh(group, self._entries.setdefault(group, _Entry()))

    def _start_refresh(self, group: str, entry: _Entry) -> threading.Event:
        """Under the lock: one refresh per group at a time; returns its 'done' event."""
        if entry.refreshing is not None:
            return entry.refreshing
        done = entry.refreshing = threading.Event()
        thread = threading.Thread(
            target=self._refresh, args=(group, done), name=f"ganops-group-{group}", daemon=True
        )
        thread.start()
        return done

    def _refresh(self, group: str, done: threading.Event) -> None:
        try:
            members = frozenset(self._fetch(group))  # may sleep on a 429: this thread only
        except Exception as exc:  # keep what we had; the next lookup tries again
            log.warning("user group %s: membership refresh failed: %s", group, exc)
            members = None
        with self._lock:
            entry = self._entries[group]
            if members is not None:
                entry.members, entry.fetched_at = members, self._clock()
            entry.refreshing = None
        done.set()


__all__ = ["GroupCache", "GroupsUnknownError"]
