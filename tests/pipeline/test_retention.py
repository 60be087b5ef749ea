"""GANOPS_CHECKPOINT_KEEP_DAYS: request folders under the artifact URI that nothing wrote to for
that long are deleted; a request still writing checkpoints stays, however old it is."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ganops.pipeline.steps.durable import prune_requests

DAY = 86400.0


def _write(path: Path, age_days: float, now: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    stamp = now - age_days * DAY
    os.utime(path, (stamp, stamp))


def test_old_request_folders_go_and_active_ones_stay(tmp_path: Path) -> None:
    now = time.time()
    root = tmp_path / "artifacts"
    _write(root / "req-old" / "checkpoints" / "last.pt", 20, now)
    _write(root / "req-old" / "mlflow_run.json", 21, now)
    # Started a month ago, but its last checkpoint is an hour old: a long run, still going.
    _write(root / "req-long" / "mlflow_run.json", 30, now)
    _write(root / "req-long" / "checkpoints" / "last.pt", 1 / 24, now)
    _write(root / "req-new" / "checkpoints" / "last.pt", 2, now)
    _write(root / "README", 100, now)  # not a request folder
    assert prune_requests(str(root), keep_days=14, now=now) == ["req-old"]
    assert sorted(p.name for p in root.iterdir()) == ["README", "req-long", "req-new"]
    assert prune_requests(str(root), keep_days=14, now=now) == []
    assert prune_requests(str(tmp_path / "nothing-yet"), keep_days=14) == []


def test_the_bot_runs_the_retention_job_only_when_asked(tmp_path: Path) -> None:
    from ganops.bot.scheduler import build_jobs
    from ganops.bot.services import build_services
    from ganops.bot.settings import load_settings

    env = {"GANOPS_STATE_DIR": str(tmp_path), "GANOPS_ARTIFACT_URI": str(tmp_path / "a")}
    plain = load_settings(env)
    assert "checkpoint-retention" not in build_jobs(plain, build_services(plain)).names()
    kept = load_settings({**env, "GANOPS_CHECKPOINT_KEEP_DAYS": "30"})
    assert "checkpoint-retention" in build_jobs(kept, build_services(kept)).names()
