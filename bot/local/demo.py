"""`ganops demo`: the whole loop on embedded defaults, narrated through the shell adapter.

Set-up (Prometheus and the MLflow UI on loopback) → bootstrap a champion if there is none →
alice retrains → bob may not approve, carol approves and the local rollout happens → the closed
drift loop (`bot.local.drift_loop`): drift-free then shifted traffic, the alarm, Retrain now on
the captured inputs, approve, deploy, the alarm resolving → a summary, then every process it
started is stopped. A gate that keeps the champion is narrated as the outcome it is, so the
demo passes however many times it runs on the same state.

Everything goes through the real paths: typed lines into the shell adapter, the real Bolt
listeners, the LocalLauncher (kfp.local), MLflow on sqlite, the LocalDeployer and a real
Prometheus. A second run reuses the state dir: the champion is served again, not retrained.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ganops.bot.blocks.common import blocks_to_dicts
from ganops.bot.blocks.ops import deploy_request_card
from ganops.bot.errors import ConfigError
from ganops.bot.local.drift_loop import DriftLoop, LoopError, LoopTimeouts
from ganops.bot.local.embedded import start_local_prometheus, start_mlflow_server
from ganops.bot.local.shell import Shell, user_id
from ganops.bot.local.traffic import TrafficPump, canary_told, register_broken
from ganops.bot.ports import Approval, ModelVersionInfo
from ganops.bot.settings import load_settings
from ganops.model.registry import CHAMPION, model_uri

MODEL = "cut"


class DemoError(Exception):
    """A stage did not reach its expected outcome; the message says which and why."""


@dataclass(frozen=True)
class DemoConfig:
    state_dir: Path
    bootstrap_steps: int = 40
    # Enough for a grid that looks like the ground truth (SSIM ~0.64, ~1.5 min on 2 cores).
    retrain_steps: int = 1200
    requests_per_phase: int = 96
    run_timeout_s: float = 900.0  # a bound, not a duration: a loaded 2-core box is slow
    alarm_timeout_s: float = 150.0
    mlflow_ui: bool = True
    min_captured: int = 64
    # Each deploy goes out as a canary judged live (GANOPS_CANARY_*), in seconds-long steps.
    canary_steps: str = "20,50,100"
    canary_step_minutes: float = 0.2
    canary_timeout_s: float = 240.0


@dataclass
class Timings:
    out: TextIO
    stages: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        print(f"\n══ {title} ══", file=self.out, flush=True)
        start = time.monotonic()
        try:
            yield
        finally:
            self.stages.append((title, time.monotonic() - start))

    def summary(self) -> str:
        total = sum(s for _, s in self.stages)
        lines = [f"  {title:<34} {secs:7.1f} s" for title, secs in self.stages]
        return "\n".join(["timings:", *lines, f"  {'total':<34} {total:7.1f} s"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganops demo", description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path, default=Path(".ganops/demo"))
    p.add_argument("--quick", action="store_true", help="fewer steps and requests (CI)")
    p.add_argument("--no-ui", action="store_true", help="do not start the MLflow UI server")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    cfg = DemoConfig(state_dir=args.state_dir.resolve(), mlflow_ui=not args.no_ui)
    if args.quick:
        cfg = DemoConfig(
            state_dir=cfg.state_dir,
            bootstrap_steps=30,
            retrain_steps=160,
            requests_per_phase=64,
            mlflow_ui=cfg.mlflow_ui,
            min_captured=48,
        )
    try:
        return run_demo(cfg, sys.stdout)
    except (DemoError, LoopError, ConfigError, FileNotFoundError, RuntimeError) as exc:
        print(f"\nganops demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def demo_env(cfg: DemoConfig, prometheus_url: str) -> dict[str, str]:
    """The settings the demo runs with: no Slack tokens (shell adapter), carol approves."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    return {
        **keep,
        "GANOPS_STATE_DIR": str(cfg.state_dir),
        # dave (on call) clicks an alarm's Retrain now; carol, another approver, approves it.
        "GANOPS_APPROVERS": f"{user_id('carol')},{user_id('dave')}",
        "PROMETHEUS_URL": prometheus_url,
        "GANOPS_DRIFT_INTERVAL": "2",
        "GANOPS_POLL_INTERVAL": "1",
        # The closed loop: every served input is captured (users' images in production:
        # off by default there), and an alarm resolves after 20 s of its fix scoring under 1.
        "GANOPS_CAPTURE_RATE": "1",
        "GANOPS_CAPTURE_URI": str(cfg.state_dir / "captured"),
        "GANOPS_CAPTURE_DAYS": "1",
        "GANOPS_DRIFT_MIN_CAPTURED": str(cfg.min_captured),
        "GANOPS_DRIFT_RESOLVE_AFTER": "20s",
        # Canaries as in production, with steps of seconds rather than ten minutes, and a
        # verdict from a few dozen requests (the demo's traffic is a few per second). On a
        # busy 2-core laptop, where training shares the cores with both servers, a p95 over
        # a dozen-second step swings by half either way: the latency limit is looser here.
        "GANOPS_CANARY_STEPS": cfg.canary_steps,
        "GANOPS_CANARY_STEP_MINUTES": str(cfg.canary_step_minutes),
        "GANOPS_CANARY_MIN_REQUESTS": "10",
        "GANOPS_CANARY_MAX_LATENCY_RATIO": "3",
    }


def start_session(
    cfg: DemoConfig, out: TextIO, say: Callable[[str], None], stack: ExitStack
) -> tuple[Shell, str, str]:
    """Prometheus, the MLflow UI (optional) and the bot with its jobs, all stopped by `stack`.
    Returns (shell, Prometheus URL, MLflow UI URL)."""
    prom = start_local_prometheus(cfg.state_dir)
    stack.callback(prom.stop)
    say(f"Prometheus on {prom.url} (scraping the local model server, ganops' rules)")
    ui_url = "(not started)"
    if cfg.mlflow_ui:
        ui = start_mlflow_server(cfg.state_dir)
        stack.callback(ui.stop)
        ui_url = ui.url
        say(f"MLflow UI on {ui.url} (the same sqlite store the pipeline writes)")
    settings = load_settings(demo_env(cfg, prom.url))
    # The terminal is the chat; the bot's log goes beside its state, as in `ganops bot`.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        filename=cfg.state_dir / "bot.log",
        force=True,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run
    shell = Shell(settings, out, user="alice")
    stop_server = getattr(shell.services.deployer, "stop", None)
    if stop_server is not None:
        stack.callback(stop_server)
    # Registered last, so it runs first: the bot stops before what it watches.
    stack.callback(shell.close)
    shell.jobs.start()
    say(f"the bot is up (state in {cfg.state_dir}); the local KFP runner is kfp.local")
    return shell, prom.url, ui_url


def run_demo(cfg: DemoConfig, out: TextIO) -> int:
    timings = Timings(out)

    def say(text: str) -> None:
        print(f"» {text}", file=out, flush=True)

    with ExitStack() as stack:
        with timings.stage("1/7 set-up"):
            shell, prom_url, ui_url = start_session(cfg, out, say, stack)
        demo = DemoStages(shell, cfg, say)
        with timings.stage("2/7 bootstrap"):
            demo.bootstrap()
        with timings.stage("3/7 retrain (alice)"):
            approval_id = demo.retrain()
        with timings.stage("4/7 approvals and the canary (bob, carol)"):
            demo.approvals(approval_id)
        with timings.stage("5/7 a broken challenger's canary"):
            demo.broken()
        with timings.stage("6/7 the closed drift loop"):
            demo.drift()
        with timings.stage("7/7 summary"):
            demo.summary(prom_url, ui_url)
        say("stopping every process the demo started…")
    print("\n" + timings.summary(), file=out, flush=True)
    return 0


class DemoStages:
    def __init__(self, shell: Shell, cfg: DemoConfig, say: Callable[[str], None]) -> None:
        self.shell = shell
        self.cfg = cfg
        self.say = say
        self.services = shell.services
        self.files_dir = cfg.state_dir / "shell-files"  # where the shell saves images

    # --- stages ----------------------------------------------------------------------

    def bootstrap(self) -> None:
        champion = self.services.registry.get_alias(MODEL, CHAMPION)
        if champion is None:
            self.say(
                "No champion yet: training a first model and deploying it (ops asks, carol approves)."
            )
            self._run_and_wait("ops", f"/retrain steps={self.cfg.bootstrap_steps} seed=0")
            self._click("carol", "approve")
            champion = self._require_champion(None)
            self.say(f"bootstrap done: champion is v{champion.version}")
            return
        # Nothing serves after the last demo stopped its server: the bot's start-up
        # reconciliation puts the champion back, so the demo only waits for it.
        self.say(f"Champion v{champion.version} exists from an earlier demo: serving it again.")
        deployer = self.services.deployer
        if deployer is None:
            raise DemoError("no deployer is configured")
        deadline = time.monotonic() + 300.0
        while deployer.current(MODEL) != champion.version:
            if time.monotonic() > deadline:
                raise DemoError(f"champion v{champion.version} is not served (see the channel)")
            time.sleep(0.5)
        self.say(f"v{champion.version} serves again")

    def retrain(self) -> str | None:
        before = self.services.registry.get_alias(MODEL, CHAMPION)
        # One attempt of a fixed length, so the demo's time is bounded however many times it
        # runs: a champion from earlier demos may be beyond it, and the gate keeping it is an
        # outcome like any other, not an error.
        seed = int(time.time()) % 1000  # a fresh challenger each demo
        self._run_and_wait("alice", f"/retrain steps={self.cfg.retrain_steps} seed={seed}")
        pending = [a for a in self._pending() if before is None or a.version != before.version]
        if pending:
            self.say(f"sample grid and loss curve saved under {self.files_dir}")
            return pending[-1].approval_id
        latest = self.services.runbook.recent(1)
        state = latest[0].state if latest else "unknown"
        if state == "gated":
            self.say("the gate kept the champion (it is the stronger model): nothing to review")
            return None
        raise DemoError(f"alice's retrain ended '{state}' (see the run message)")

    def approvals(self, approval_id: str | None) -> None:
        if approval_id is None:
            self.say("nothing awaits approval (the gate kept the champion); on to drift")
            return
        before = self.services.registry.get_alias(MODEL, CHAMPION)
        self.say("bob is not an approver: his click is refused and written to the audit log.")
        self._click("bob", "approve")
        self.say("carol is an approver: her click deploys the challenger, as a canary.")
        self._click("carol", "approve")
        self._canary(approval_id, expect="promoted")
        champion = self._require_champion(before)
        self.say(f"the champion moved: v{before.version if before else '-'} → v{champion.version}")

    def broken(self) -> None:
        """A challenger that loads and passes its health check but makes only NaN images:
        its canary fails live, rolls back by itself, and the champion stays."""
        book = self.services.approvals
        if book is None or self.services.canaries is None:
            self.say("canaries are off (GANOPS_CANARY_STEPS=100): skipping the broken challenger")
            return
        before = self.services.registry.get_alias(MODEL, CHAMPION)
        if before is None:
            raise DemoError("no champion to copy")
        self.say(f"ops registers a deliberately broken copy of v{before.version} (NaN weights)…")
        version = register_broken(self.shell.settings.mlflow_uri, MODEL)
        a = book.request(model=MODEL, version=version, model_uri=model_uri(MODEL, version=version),
                         requested_by=user_id("ops"))  # fmt: skip
        blocks = deploy_request_card(MODEL, version, before.version, user_id("ops"), a.approval_id,
                                     note="It loads and answers /readyz like any model.")  # fmt: skip
        resp = self.services.slack.chat_postMessage(
            channel=self.shell.settings.channel, text=f"Deploy {MODEL} v{version}?", blocks=blocks
        )
        book.attach_message(a.approval_id, self.shell.settings.channel, str(resp["ts"]),
                            blocks_to_dicts(blocks))  # fmt: skip
        self.say("carol approves it; only the live canary can tell it is broken.")
        self._click("carol", "approve")
        self._canary(a.approval_id, expect="rolled_back")
        after = self.services.registry.get_alias(MODEL, CHAMPION)
        if after is None or after.version != before.version:
            raise DemoError("the broken challenger moved the champion")
        self.say(f"rolled back: v{before.version} serves everything and stays the champion")

    def drift(self) -> None:
        loop = DriftLoop(
            self.shell,
            self.say,
            calm_requests=self.cfg.requests_per_phase,
            timeouts=LoopTimeouts(alarm_s=self.cfg.alarm_timeout_s, run_s=self.cfg.run_timeout_s),
        )
        result = loop.run()
        self.say(f"drift loop: {result.outcome} ({json.dumps(result.to_dict())})")

    def summary(self, prometheus_url: str, ui_url: str) -> None:
        files = sorted(self.files_dir.glob("*.png")) if self.files_dir.exists() else []
        self.say(f"MLflow UI:      {ui_url}")
        self.say(f"Prometheus:     {prometheus_url}  (try: gan_input_drift_score)")
        self.say(f"images:         {self.files_dir} ({len(files)} PNG files)")
        self.say(f"state and logs: {self.cfg.state_dir} (bot.log, runs/, serving/)")
        self.say("audit log (newest first):")
        for row in self.services.store.list_audit(limit=12):
            stamp = time.strftime("%H:%M:%S", time.localtime(row.ts))
            self.say(f"  {stamp} {row.actor:<12} {row.action:<16} {row.outcome:<12} {row.object}")

    # --- helpers ---------------------------------------------------------------------

    def _canary(self, approval_id: str, *, expect: str) -> None:
        """Steady traffic through the local split while the canary runs, until it ends."""
        canaries = self.services.canaries
        if canaries is None or canaries.get(approval_id) is None:
            return  # no canary (GANOPS_CANARY_STEPS=100, or nothing served to compare with)
        self.say("live traffic goes through the local split while the canary is judged…")
        deadline = time.monotonic() + self.cfg.canary_timeout_s
        with TrafficPump(self._endpoint) as pump:
            while (c := canaries.get(approval_id)) is not None and c.state == "running":
                if time.monotonic() > deadline:
                    raise DemoError(f"the canary {approval_id} did not end in time")
                time.sleep(0.5)
        assert c is not None
        until = time.monotonic() + 30.0
        while time.monotonic() < until and not canary_told(self.shell.slack, c):
            time.sleep(0.2)
        self.say(f"canary {c.state.replace('_', ' ')} after {pump.sent} requests "
                 f"({pump.failed} failed)")  # fmt: skip
        if c.state != expect:
            raise DemoError(f"the canary ended {c.state}, not {expect}: {c.reason}")

    def _endpoint(self) -> str:
        endpoint = getattr(self.services.deployer, "endpoint", lambda: None)()
        return str(endpoint) if endpoint else self._serving_url()

    def _run_and_wait(self, user: str, line: str) -> None:
        self.shell.handle(f"/user {user}")
        self.shell.handle(line)
        self.shell.wait_idle(self.cfg.run_timeout_s)

    def _click(self, user: str, choice: str) -> None:
        self.shell.handle(f"/user {user}")
        self.shell.handle(choice)
        self.shell.wait_idle(self.cfg.run_timeout_s)

    def _pending(self) -> list[Approval]:
        book = self.services.approvals
        return list(book.pending()) if book is not None else []

    def _require_champion(self, before: ModelVersionInfo | None) -> ModelVersionInfo:
        champion = self.services.registry.get_alias(MODEL, CHAMPION)
        if champion is None or (before is not None and champion.version == before.version):
            raise DemoError("the approval did not move the champion (see the deploy message)")
        return champion

    def _serving_url(self) -> str:
        record = getattr(self.services.deployer, "serving", lambda: None)()
        if record is None:
            raise DemoError("no local model server is running")
        return str(record.url)


if __name__ == "__main__":
    sys.exit(main())
