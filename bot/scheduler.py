"""The bot's background jobs on one APScheduler BackgroundScheduler.

A job is a name, an interval and a function with no arguments. Each runs at most once at a
time (a slow tick is not stacked) and missed ticks are merged into one. Adding a job (the
drift watcher, approval expiry) is one `jobs.every(...)` line in `start_jobs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from ganops.bot.leader import Leadership, NotLeaderError, SoleLeader, in_job
from ganops.bot.metrics import METRICS
from ganops.bot.services import Services
from ganops.bot.settings import Settings

log = logging.getLogger("ganops.bot")


class Jobs:
    """The jobs run only on the replica that leads (`bot.leader`); the others skip each tick
    after trying to take over, so a dead leader is replaced at the next tick of any job."""

    def __init__(self, leader: Leadership | None = None) -> None:
        self.leader: Leadership = leader or SoleLeader()
        self._scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )

    def every(
        self, name: str, seconds: float, func: Callable[[], object], first_in: float = 0.0
    ) -> None:
        """Run `func` every `seconds`, the first time after `first_in` seconds."""
        self._scheduler.add_job(
            _logged(name, func, self.leader),
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            replace_existing=True,
            next_run_time=datetime.now(UTC) + timedelta(seconds=first_in),
        )

    def names(self) -> list[str]:
        return sorted(job.id for job in self._scheduler.get_jobs())

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)


def _logged(name: str, func: Callable[[], object], leader: Leadership) -> Callable[[], None]:
    """A job's unexpected error is logged with its traceback; the job keeps its schedule.
    It runs only while this replica leads, and marks its thread so that its side effects
    are fenced (`bot.leader.fence`)."""

    def run() -> None:
        try:
            if not leader.is_leader():
                return
            in_job(name)
            func()
        except NotLeaderError as exc:
            log.warning("%s", exc)
        except Exception:
            METRICS.jobs.labels(name, "error").inc()
            log.exception("background job %s failed; it runs again on its next tick", name)
        else:
            METRICS.jobs.labels(name, "ok").inc()
        finally:
            in_job(None)

    return run


def build_jobs(settings: Settings, services: Services) -> Jobs:
    """Every background job of the bot process, not yet started."""
    from ganops.bot.runs.watch import RunWatcher

    jobs = Jobs(services.leader)
    watcher = RunWatcher(
        services,
        files_dir=settings.state_dir / "slack-files",
        run_timeout_s=settings.run_timeout_s,
    )
    jobs.every("run-watch", settings.poll_interval_s, watcher.tick)
    book = services.approvals
    if book is not None:
        from ganops.bot.approvals.jobs import TICK_S, approval_tick

        reconcile = _reconciler(settings, services)

        def approvals() -> None:
            # A rollout that a killed bot left half done is settled before anything else
            # looks at approvals (the first tick would otherwise call it "interrupted").
            reconcile()
            approval_tick(book, services.slack)

        jobs.every("approvals", TICK_S, approvals, first_in=1.0)
    if services.canaries is not None:
        # Leader-only like every job; a step's clock lives in its row, so the leader that
        # takes over resumes each canary where it was.
        jobs.every("canary", CANARY_TICK_S, services.canaries.tick, first_in=3.0)
    if services.metrics is not None:
        from ganops.bot.drift.lifecycle import EpisodeCloser, champion_of
        from ganops.bot.drift.watch import AlarmBook, DriftWatchConfig, DriftWatcher

        config = DriftWatchConfig(channel=settings.channel, prometheus_url=settings.prometheus_url)
        alarms = AlarmBook(services.store)
        closer = EpisodeCloser(
            alarms,
            services.metrics,
            champion_of(services.registry),
            resolve_after_s=settings.drift_resolve_after_s,
        )
        drift = DriftWatcher(alarms, services.metrics, services.slack, config, closer=closer)
        jobs.every("drift-watch", settings.drift_interval_s, drift.tick, first_in=5.0)
    if services.outbox is not None:
        jobs.every("outbox-prune", 3600.0, services.outbox.prune, first_in=60.0)
    if settings.data_watch:
        from ganops.bot.runs.data_watch import DataWatcher

        data = DataWatcher(
            services,
            source=settings.data_watch,
            minimum=settings.data_watch_min,
            channel=settings.channel,
        )
        jobs.every("data-watch", settings.data_watch_interval_s, data.tick, first_in=10.0)
    cluster = settings.cluster
    if cluster.checkpoint_keep_days and cluster.artifact_uri:
        jobs.every("checkpoint-retention", RETENTION_TICK_S,
                   _pruner(cluster.artifact_uri, cluster.checkpoint_keep_days), first_in=60.0)  # fmt: skip
    return jobs


RETENTION_TICK_S = 3600.0
CANARY_TICK_S = 5.0  # how often running canaries are judged (a fail rolls back at once)


def _pruner(artifact_uri: str, keep_days: float) -> Callable[[], None]:
    """GANOPS_CHECKPOINT_KEEP_DAYS: requests' durable folders untouched for that long go."""
    from ganops.pipeline.steps.durable import prune_requests

    def prune() -> None:
        gone = prune_requests(artifact_uri, keep_days=keep_days)
        if gone:
            log.info("checkpoint retention: deleted %d request folders under %s: %s",
                     len(gone), artifact_uri, ", ".join(gone))  # fmt: skip

    return prune


def _reconciler(settings: Settings, services: Services) -> Callable[[], object]:
    """Reconciliation of rollouts: all of them on the first approvals tick this replica
    leads, then each tick those whose replica died mid-rollout (`Reconciler.orphans`)."""
    if services.approvals is None or services.deployer is None:
        return lambda: None
    from ganops.bot.approvals.recover import Reconciler, slack_notifier

    notify = slack_notifier(services.slack, settings.channel)
    reconciler = Reconciler(services.approvals, services.deployer, services.registry, notify=notify)

    def reconcile() -> None:
        if not reconciler.once():  # [] once the first (full) pass has run
            reconciler.orphans()

    return reconcile
