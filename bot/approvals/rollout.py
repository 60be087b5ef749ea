"""What follows a decision: tags on the MLflow version, the deploy, the aliases, the record.

The decision is already committed when this runs, so nothing here may undo or lose it: a
registry outage is logged and audited, a deploy that raises becomes a failed DeployResult,
and every result lands in the approvals row and the audit log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ganops.bot.approvals import table
from ganops.bot.ports import Approval, Deployer, DeployError, DeployResult, ModelRegistry
from ganops.bot.store import Store
from ganops.model.registry import CHAMPION, PREVIOUS_CHAMPION
from ganops.pipeline.db import Conn

log = logging.getLogger(__name__)

SYSTEM = "ganops"  # the audit actor for what the bot does by itself
STOPPING = "the bot is restarting; the rollout starts when it is back"


class CanaryHook(Protocol):
    """What a rollout asks of the canary controller (`bot.canary`), which is built later."""

    def begin(self, a: Approval, *, stable: str | None, conn: Conn) -> None:
        """Record the canary that `a`'s rollout just started (inside the rollout's record)."""
        ...

    def told_begin(self, a: Approval) -> None:
        """Post its first step in the card's thread."""
        ...

    def supersede(self, model: str, by_version: str) -> None:
        """End `model`'s running canary: another rollout replaces it."""
        ...

    def running_for(self, model: str) -> bool: ...


class Rollout:
    def __init__(
        self,
        store: Store,
        registry: ModelRegistry,
        deployer: Deployer,
        *,
        canary_steps: tuple[int, ...] = (100,),
    ) -> None:
        self.store = store
        self.registry = registry
        self.deployer = deployer
        # An approved deploy takes canary_steps[0] % first (when something is served to
        # compare it with), and the canary controller takes it from there; (100,): no canary.
        self.canary_steps = canary_steps
        self.canary: CanaryHook | None = None
        self._busy = 0  # deploys running now, for a SIGTERM that waits for them
        self._idle = threading.Condition()
        self._closed = False  # stopping: start no new rollout

    def tag_decision(self, a: Approval) -> None:
        """approved_by / approved_at / decision on the version (decided_by for rejections)."""
        by = ",".join(a.approvers) if a.state == "approved" else (a.decided_by or "")
        when = a.decided_at if a.decided_at is not None else time.time()
        tags = {
            "approved_by": by,
            "approved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
            "decision": a.state,
        }
        if a.state == "expired":
            tags = {"decision": "expired"}
        self._registry("tag", a, lambda: self.registry.set_tags(a.model, a.version, tags))

    def deploy(self, a: Approval) -> DeployResult:
        """Roll out the approved version; on success move the aliases. Always recorded.
        Deploys of one model run one at a time, whatever path approved them.

        Once the bot is stopping, the approval stays in flight, unrecorded: the start-up
        reconciliation of the next process rolls it out."""
        with self._running() as allowed, self.model_lock(a.model):
            if not allowed:
                return _failed(a.version, STOPPING, 0)
            done = self._result(a)
            if done is not None:  # another path (a click, a replica, recovery) already did it
                return done
            stale = self._went_stale(a)
            if stale is not None:
                return stale
            if self.canary is not None:
                self.canary.supersede(a.model, a.version)
            stable = self._canary_beside(a)
            if stable is None:
                result = self._deploy(a.model, a.version, a.model_uri, a.approval_id)
                self.record(a, result, result.ok and self.move_aliases(a))
                return result
            result = self._start_canary(a)
            hook = self.canary if result.ok else None

            def begin(conn: Conn) -> None:
                if hook is not None:
                    hook.begin(a, stable=stable, conn=conn)

            self.record(a, result, False, also=begin)  # the alias moves at 100%, not now
        if hook is not None:
            hook.told_begin(a)
        return result

    def _canary_beside(self, a: Approval) -> str | None:
        """The stable version a canary of `a` would go beside; None: roll out in full (no
        canary configured, a rollback, nothing served yet, or `a` is what is served)."""
        if self.canary is None or self.canary_steps[0] >= 100 or a.kind != "deploy":
            return None
        try:
            stable = self.deployer.current(a.model)
        except DeployError as exc:
            log.warning("cannot read what serves %s (%s): rolling out in full", a.model, exc)
            return None
        return stable if stable is not None and stable != a.version else None

    def _start_canary(self, a: Approval) -> DeployResult:
        started = time.monotonic()
        percent = self.canary_steps[0]
        try:
            result = self.deployer.set_canary(a.model, a.version, a.model_uri, percent)
        except DeployError as exc:
            return _failed(a.version, str(exc), time.monotonic() - started)
        except Exception as exc:  # the decision is committed: its outcome must be on record
            log.exception("the canary of %s crashed", a.approval_id)
            return _failed(a.version, f"canary crashed: {exc!r}", time.monotonic() - started)
        if not result.ok:
            return result
        steps = " → ".join(f"{p}%" for p in self.canary_steps)
        return dataclasses.replace(
            result,
            message=f"canary at {percent}% of the traffic ({steps}): {result.message}",
            canary_percent=percent,
        )

    def deploy_version(self, model: str, version: str, model_uri: str) -> DeployResult:
        """Roll out a version with no approval behind it (start-up reconciliation putting the
        champion back); moves no alias and records nothing: the caller audits it."""
        with self._running() as allowed, self.model_lock(model):
            if not allowed:
                return _failed(version, STOPPING, 0)
            return self._deploy(model, version, model_uri, f"{model} v{version}")

    def adopt(self, a: Approval, model_uri: str, message: str) -> bool:
        """A rollout that finished in a process killed before it recorded it: move the
        aliases and record it as the deploy it was. True if the aliases moved."""
        with self._running() as allowed, self.model_lock(a.model):
            if not allowed or self._result(a) is not None:
                return False
            moved = self.move_aliases(a)
            result = DeployResult(True, model_uri, a.version, None, False, 0.0, message)
            self.record(a, result, moved)
        return moved

    def close(self) -> None:
        """The process is stopping: deploys already running go on, no new one starts."""
        with self._idle:
            self._closed = True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no deploy runs, at most `timeout_s`; True if none runs."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout_s)

    def busy(self) -> int:
        with self._idle:
            return self._busy

    @contextlib.contextmanager
    def _running(self) -> Iterator[bool]:
        """Counts a deploy as in flight; yields False (and counts nothing) once closed."""
        with self._idle:
            allowed = not self._closed
            self._busy += allowed
        try:
            yield allowed
        finally:
            with self._idle:
                self._busy -= allowed
                self._idle.notify_all()

    def _deploy(self, model: str, version: str, model_uri: str, what: str) -> DeployResult:
        started = time.monotonic()
        try:
            return self.deployer.deploy(model, version, model_uri)
        except DeployError as exc:
            return _failed(version, str(exc), time.monotonic() - started)
        except Exception as exc:  # the decision is committed: its outcome must be on record
            log.exception("deploy of %s crashed", what)
            return _failed(version, f"deploy crashed: {exc!r}", time.monotonic() - started)

    def _went_stale(self, a: Approval) -> DeployResult | None:
        """A rollback re-checks its champion under the model's lock, right before it rolls
        out: a deploy that finished while it waited for the lock has moved the champion.
        Returns the (recorded) failed result if it went stale, else None."""
        if a.expected_champion is None:
            return None
        try:
            info = self.registry.get_alias(a.model, CHAMPION)
        except Exception as exc:  # fail closed: never roll back blind
            result = _failed(a.version, f"cannot read the champion to check it: {exc}", 0.0)
            self.record(a, result, False)
            return result
        champion = info.version if info is not None else None
        if champion == a.expected_champion:
            return None
        now = f"v{champion}" if champion is not None else "none"
        message = (
            f"stale: the champion is {now} now, not v{a.expected_champion} as when this "
            "rollback was asked for; nothing was deployed"
        )
        with self.store.tx() as conn:
            table.go_stale(conn, a.approval_id, time.time())
        result = _failed(a.version, message, 0.0)
        self.record(a, result, False)
        return result

    def record_interrupted(self, a: Approval) -> None:
        message = (
            "the deploy was interrupted (the bot stopped before it finished); "
            "check /ganops status, and ask for a new deploy or a rollback"
        )
        self.record(a, _failed(a.version, message, 0.0), False)

    def record_not_rolled_out(self, a: Approval, message: str) -> None:
        """An approved rollout that will not run (too old): on record, card and thread told."""
        self.record(a, _failed(a.version, message, 0.0), False)

    def record(
        self,
        a: Approval,
        result: DeployResult,
        aliases_moved: bool,
        *,
        also: Callable[[Conn], None] | None = None,
    ) -> None:
        """The deploy result of `a` and its audit row (and `also`), in one transaction. A
        canary records twice: when it starts, and again when it ends."""
        with self.store.tx() as conn:
            table.set_deploy_result(conn, a.approval_id, result)
            outcome = "ok" if result.ok else ("rolled_back" if result.rolled_back else "failed")
            detail = {**_detail(result), "aliases_moved": aliases_moved}
            self.store.audit(SYSTEM, "deploy", a.approval_id, outcome, detail, conn=conn)
            if also is not None:
                also(conn)

    def move_aliases(self, a: Approval) -> bool:
        """champion -> the deployed version, previous_champion -> the old champion. A rollback
        moves them the same way, so a second rollback goes forward again."""

        def move() -> None:
            old = self.registry.get_alias(a.model, CHAMPION)
            if old is not None and old.version == a.version:
                return
            if old is not None:
                self.registry.set_alias(a.model, PREVIOUS_CHAMPION, old.version)
            self.registry.set_alias(a.model, CHAMPION, a.version)

        return self._registry("alias", a, move)

    def _registry(self, what: str, a: Approval, call: Callable[[], None]) -> bool:
        try:
            call()
        except Exception as exc:  # MLflow down: record it, keep the decision
            log.warning("registry %s failed for %s: %s", what, a.approval_id, exc)
            self.store.audit(SYSTEM, what, a.approval_id, "failed", {"error": str(exc)})
            return False
        return True

    def model_lock(self, model: str) -> contextlib.AbstractContextManager[None]:
        """The lock every rollout of `model` holds, whichever path approved it, across threads
        and replicas (a lock in the database; released if its replica dies)."""
        return self.store.lock(f"rollout:{model}")

    def in_flight_anywhere(self, model: str) -> bool:
        """Whether some thread or replica is rolling `model` out now (holds its lock)."""
        with self.store.try_lock(f"rollout:{model}") as free:
            return not free

    def _result(self, a: Approval) -> DeployResult | None:
        with self.store.connect() as conn:
            row = table.fetch(conn, a.approval_id)
        return table.deploy_result(row) if row is not None else None


def _failed(version: str, message: str, seconds: float) -> DeployResult:
    return DeployResult(
        ok=False,
        model_uri="",
        version=version,
        previous_version=None,
        rolled_back=False,
        seconds=seconds,
        message=message,
    )


def _detail(result: DeployResult) -> dict[str, Any]:
    return {
        "version": result.version,
        "previous_version": result.previous_version,
        "rolled_back": result.rolled_back,
        "seconds": round(result.seconds, 2),
        "message": result.message,
    }
