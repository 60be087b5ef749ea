"""The bot's own Prometheus metrics (`/metrics` on the bot's HTTP port), in a registry of its own.

Counted at a few central places, so listeners and watchers stay as they are:
- `ganops_bot_commands_total{command}`: slash commands received (a Bolt global middleware);
- `ganops_bot_runs{state}` and `ganops_bot_approvals{state}`: rows by state in the bot's store,
  read at scrape time (approved / rejected / expired are the decisions);
- `ganops_bot_slack_api_errors_total{method,error}`: Slack Web API calls that failed (HTTP
  errors and `ok: false`), seen by a retry handler that never retries itself;
- `ganops_bot_job_runs_total{job,outcome}`: background job runs; `job="drift-watch"` counts
  the drift checks.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from slack_sdk.http_retry import RetryHandler, RetryState
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse

log = logging.getLogger("ganops.bot")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _StoreStates(Collector):
    """Rows by state of the runs and approvals tables, counted when Prometheus scrapes."""

    def __init__(self) -> None:
        self.db_path: Path | None = None
        # PostgreSQL: counts refreshed by a thread of their own (a scrape runs on the HTTP
        # event loop and must never wait for a database that is away).
        self.cached: dict[str, list[tuple[str, int]]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily("ganops_bot_runs", "Training runs by state.", labels=["state"])
        approvals = GaugeMetricFamily(
            "ganops_bot_approvals", "Approvals by state (decision).", labels=["state"]
        )
        for family, table in ((runs, "runs"), (approvals, "approvals")):
            for state, n in self._counts(table):
                family.add_metric([state], n)
            yield family

    def _counts(self, table: str) -> list[tuple[str, int]]:
        if self.cached is not None:
            return self.cached.get(table, [])
        if self.db_path is None or not self.db_path.exists():
            return []
        try:
            # Read-only and short: a scrape must never hold up the bot's writers.
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=1) as db:
                rows = db.execute(f"SELECT state, COUNT(*) FROM {table} GROUP BY state")
                return [(str(s), int(n)) for s, n in rows]
        except sqlite3.Error as exc:  # a table not created yet, a locked file
            log.debug("metrics: cannot count %s: %s", table, exc)
            return []


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.commands = Counter(
            "ganops_bot_commands_total", "Slash commands received.", ["command"], registry=reg
        )
        self.slack_errors = Counter(
            "ganops_bot_slack_api_errors_total",
            "Slack Web API calls that failed, by method and error.",
            ["method", "error"],
            registry=reg,
        )
        self.jobs = Counter(
            "ganops_bot_job_runs_total",
            "Background job runs by outcome; job=drift-watch are the drift checks.",
            ["job", "outcome"],
            registry=reg,
        )
        self._store = _StoreStates()
        reg.register(self._store)

    def watch_store(self, db_path: Path | None) -> None:
        """Count runs and approvals from the SQLite file at scrape time."""
        self._store.db_path = db_path

    def watch_counts(
        self, count: Callable[[str], list[tuple[str, int]]], every_s: float = 15.0
    ) -> threading.Thread:
        """PostgreSQL: `count(table)` every `every_s` on a daemon thread; scrapes read the
        last counts (kept when the database is away)."""
        self._store.cached = {}

        def refresh() -> None:
            while True:
                counts = dict(self._store.cached or {})
                for table in ("runs", "approvals"):
                    try:
                        counts[table] = count(table)
                    except Exception as exc:  # a table not created yet, the database away
                        log.debug("metrics: cannot count %s: %s", table, exc)
                self._store.cached = counts
                time.sleep(every_s)

        thread = threading.Thread(target=refresh, name="ganops-metrics-counts", daemon=True)
        thread.start()
        return thread

    def count_command(self, req: Any, body: dict[str, Any], next: Callable[[], None]) -> None:
        """A Bolt global middleware. A command is counted at its ack, not again when an
        outbox worker re-dispatches it for its lazy listener."""
        command = body.get("command")
        if isinstance(command, str) and not getattr(req, "lazy_only", False):
            self.commands.labels(command).inc()
        next()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class SlackErrorCounter(RetryHandler):
    """Counts failed Web API calls; never asks for a retry, so it composes with real retry
    handlers wherever it sits in a client's list."""

    def __init__(self, metrics: BotMetrics) -> None:
        super().__init__(max_retry_count=0)
        self._metrics = metrics

    # Bolt deep-copies the request context (and its client) for lazy listeners: share, don't copy.
    def __deepcopy__(self, memo: dict[int, Any]) -> SlackErrorCounter:
        return self

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        if error is not None or response is None:
            self._metrics.slack_errors.labels(method, type(error).__name__).inc()
        elif response.status_code >= 400:
            self._metrics.slack_errors.labels(method, f"http_{response.status_code}").inc()
        elif isinstance(response.body, dict) and response.body.get("ok") is False:
            self._metrics.slack_errors.labels(method, str(response.body.get("error"))).inc()
        return False


# One per process, like prometheus_client's default registry: Bolt middleware, the Web API
# clients and the scheduler all count into it, and the HTTP endpoint serves it.
METRICS = BotMetrics()

__all__ = ["CONTENT_TYPE", "METRICS", "BotMetrics", "SlackErrorCounter"]
