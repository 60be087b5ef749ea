"""What follows a decision: tags on the MLflow version, the deploy, the aliases, the record.

The decision is already committed when this runs, so nothing here may undo or lose it: a
registry outage is logged and audited, a deploy that raises becomes a failed DeployResult,
and every result lands in the approvals row and the audit log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.approvals import table
from bot.ports import Approval, Deployer, DeployError, DeployResult, ModelRegistry
from bot.store import Store
from model.registry import CHAMPION, PREVIOUS_CHAMPION

log = logging.getLogger(__name__)

SYSTEM = "ganops"  # the audit actor for what the bot does by itself


class Rollout:
    def __init__(self, store: Store, registry: ModelRegistry, deployer: Deployer) -> None:
        self.store = store
        self.registry = registry
        self.deployer = deployer
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

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
        Deploys of one model run one at a time, whatever path approved them."""
        started = time.monotonic()
        with self._lock(a.model):
            try:
                result = self.deployer.deploy(a.model, a.version, a.model_uri)
            except DeployError as exc:
                result = _failed(a, str(exc), time.monotonic() - started)
            except Exception as exc:  # the decision is committed: its outcome must be on record
                log.exception("deploy of %s crashed", a.approval_id)
                result = _failed(a, f"deploy crashed: {exc!r}", time.monotonic() - started)
            aliases_moved = result.ok and self._move_aliases(a)
        self._record(a, result, aliases_moved)
        return result

    def record_interrupted(self, a: Approval) -> None:
        message = (
            "the deploy was interrupted (the bot stopped before it finished); "
            "check /ganops status, and ask for a new deploy or a rollback"
        )
        self._record(a, _failed(a, message, 0.0), False)

    def _record(self, a: Approval, result: DeployResult, aliases_moved: bool) -> None:
        with self.store.tx() as conn:
            table.set_deploy_result(conn, a.approval_id, result)
            outcome = "ok" if result.ok else ("rolled_back" if result.rolled_back else "failed")
            detail = {**_detail(result), "aliases_moved": aliases_moved}
            self.store.audit(SYSTEM, "deploy", a.approval_id, outcome, detail, conn=conn)

    def _move_aliases(self, a: Approval) -> bool:
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

    def _lock(self, model: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(model, threading.Lock())


def _failed(a: Approval, message: str, seconds: float) -> DeployResult:
    return DeployResult(
        ok=False,
        model_uri="",
        version=a.version,
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
