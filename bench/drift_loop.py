"""The closed drift loop on the embedded defaults, timed. Prints JSON.

Set-up as `ganops demo` does (Prometheus on loopback, the bot through the shell adapter, kfp.local,
MLflow on sqlite, the LocalDeployer with input capture on), a champion (bootstrapped when the
state dir has none), then `ganops.bot.local.drift_loop.DriftLoop`: drift-free traffic, brighter and
flatter inputs from `onset`, the alarm, Retrain now on the captured inputs, approve, deploy,
the alarm resolving once the retrained version scored under 1 for GANOPS_DRIFT_RESOLVE_AFTER.

Figures: seconds from drift onset to the alarm and to the resolved alarm; the drift score of
the drifting version on the drifted inputs (at the alarm) and of the retrained version on the
same kind of inputs (at resolution). Goal: before > 1, after < 1.
Run: `.venv/bin/python bench/drift_loop.py [--state-dir DIR] [--steps N]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from ganops.bot.local.demo import DemoConfig, DemoStages, start_session
from ganops.bot.local.drift_loop import DriftLoop


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path, help="default: a fresh temporary folder")
    p.add_argument("--steps", type=int, default=160, help="bootstrap champion's training steps")
    args = p.parse_args()
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="ganops-drift-loop-"))
    cfg = DemoConfig(state_dir=state.resolve(), bootstrap_steps=args.steps, mlflow_ui=False)
    log = sys.stderr

    def say(text: str) -> None:
        print(f"» {text}", file=log, flush=True)

    started = time.monotonic()
    with ExitStack() as stack:
        shell, _, _ = start_session(cfg, log, say, stack)
        DemoStages(shell, cfg, say).bootstrap()
        result = DriftLoop(shell, say, calm_requests=cfg.requests_per_phase).run()
        settings = shell.settings
    print(
        json.dumps(
            {
                "bench": "drift_loop",
                **result.to_dict(),
                "goal_met": bool(
                    result.score_before is not None
                    and result.score_after is not None
                    and result.score_before > 1.0 > result.score_after
                ),
                "min_captured": settings.drift_min_captured,
                "resolve_after_s": settings.drift_resolve_after_s,
                "wall_s": round(time.monotonic() - started, 1),
                "cpus": platform.processor() or platform.machine(),
                "state_dir": str(state),
            }
        )
    )
    return 0 if result.outcome == "resolved" else 1


if __name__ == "__main__":
    sys.exit(main())
