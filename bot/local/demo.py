"""`ganops demo`: the whole loop on embedded defaults, narrated through the shell adapter.

Set-up (Prometheus and the MLflow UI on loopback) → bootstrap a champion if there is none →
alice retrains → bob may not approve, carol approves and the local rollout happens → traffic,
first drift-free then shifted, until Prometheus fires and the bot posts the drift alarm →
Retrain now → a summary, then every process it started is stopped.

Everything goes through the real paths: typed lines into the shell adapter, the real Bolt
listeners, the LocalLauncher (kfp.local), MLflow on sqlite, the LocalDeployer and a real
Prometheus. A second run reuses the state dir: the champion is served again, not retrained.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from bot.drift.watch import AlarmBook
from bot.errors import ConfigError
from bot.local.embedded import start_local_prometheus, start_mlflow_server
from bot.local.shell import Shell, user_id
from bot.ports import Approval, ModelVersionInfo
from bot.settings import load_settings
from model.registry import CHAMPION

MODEL = "cut"
MAX_RETRAIN_STEPS = 1600


class DemoError(Exception):
    """A stage did not reach its expected outcome; the message says which and why."""


@dataclass(frozen=True)
class DemoConfig:
    state_dir: Path
    bootstrap_steps: int = 40
    retrain_steps: int = 400
    requests_per_phase: int = 96
    run_timeout_s: float = 420.0
    alarm_timeout_s: float = 150.0
    mlflow_ui: bool = True
    wait_for_alarm_retrain: bool = True


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
            wait_for_alarm_retrain=False,
        )
    try:
        return run_demo(cfg, sys.stdout)
    except (DemoError, ConfigError, FileNotFoundError, RuntimeError) as exc:
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
        "GANOPS_APPROVERS": user_id("carol"),
        "PROMETHEUS_URL": prometheus_url,
        "GANOPS_DRIFT_INTERVAL": "2",
        "GANOPS_POLL_INTERVAL": "1",
    }


def run_demo(cfg: DemoConfig, out: TextIO) -> int:
    timings = Timings(out)

    def say(text: str) -> None:
        print(f"» {text}", file=out, flush=True)

    with ExitStack() as stack:
        with timings.stage("1/6 set-up"):
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
            deployer = shell.services.deployer
            stop_server = getattr(deployer, "stop", None)
            if stop_server is not None:
                stack.callback(stop_server)
            # Registered last, so it runs first: the bot stops before what it watches.
            stack.callback(shell.close)
            shell.jobs.start()
            say(f"the bot is up (state in {cfg.state_dir}); the local KFP runner is kfp.local")
        demo = _Demo(shell, cfg, say)
        with timings.stage("2/6 bootstrap"):
            demo.bootstrap()
        with timings.stage("3/6 retrain (alice)"):
            approval_ts = demo.retrain()
        with timings.stage("4/6 approvals (bob, carol)"):
            demo.approvals(approval_ts)
        with timings.stage("5/6 drift"):
            demo.drift()
        with timings.stage("6/6 summary"):
            demo.summary(prom.url, ui_url)
        say("stopping every process the demo started…")
    print("\n" + timings.summary(), file=out, flush=True)
    return 0


class _Demo:
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

    def retrain(self) -> str:
        before = self.services.registry.get_alias(MODEL, CHAMPION)
        # The challenger must beat the champion at the gate: train it longer than the
        # champion was trained (a second demo run meets the first run's champion).
        steps = min(MAX_RETRAIN_STEPS, max(self.cfg.retrain_steps, 2 * _steps_of(before)))
        seed = int(time.time()) % 1000  # a fresh challenger each demo
        for attempt in range(2):
            self._run_and_wait("alice", f"/retrain steps={steps} seed={seed + attempt}")
            pending = [a for a in self._pending() if before is None or a.version != before.version]
            if pending:
                self.say(f"sample grid and loss curve saved under {self.files_dir}")
                return pending[-1].approval_id
            latest = self.services.runbook.recent(1)
            if not latest or latest[0].state != "gated" or steps >= MAX_RETRAIN_STEPS:
                break
            steps = min(MAX_RETRAIN_STEPS, steps * 2)
            self.say(f"the gate kept the champion; alice retrains longer ({steps} steps)")
        raise DemoError("the retrain did not reach 'awaiting approval' (see the run message)")

    def approvals(self, approval_id: str) -> None:
        before = self.services.registry.get_alias(MODEL, CHAMPION)
        self.say("bob is not an approver: his click is refused and written to the audit log.")
        self._click("bob", "approve")
        self.say("carol is an approver: her click deploys the challenger.")
        self._click("carol", "approve")
        champion = self._require_champion(before)
        self.say(f"the champion moved: v{before.version if before else '-'} → v{champion.version}")

    def drift(self) -> None:
        url = self._serving_url()
        book = AlarmBook(self.services.store)
        known = {v.episode_id for v in book.open_episodes()}
        self.say(f"sending {self.cfg.requests_per_phase} drift-free requests to {url}")
        _traffic(url, self.cfg.requests_per_phase, shift=False, seed=1)
        time.sleep(4)  # a few scrapes and rule evaluations
        fresh = [v for v in book.open_episodes() if v.episode_id not in known]
        self.say(f"drift-free traffic: {len(fresh)} alarm(s) (expected none)")
        self.say("now the inputs get brighter and lose contrast (a new camera, say)…")
        episode = self._shift_until_alarm(url, book, known)
        self.say(f"the bot posted the drift alarm {episode}; clicking Retrain now as carol")
        self.shell.handle("/user carol")
        self.shell.handle("Retrain now")
        view = book.get(episode)
        if view is None or view.retrain_run_id is None:
            raise DemoError("Retrain now did not start a run")
        self.say(f"retrain {view.retrain_run_id} started, threaded under the alarm")
        if self.cfg.wait_for_alarm_retrain:
            self.shell.wait_idle(self.cfg.run_timeout_s)
        else:
            self.services.launcher.cancel(view.retrain_run_id)
            self.say("(quick mode: the retrain was cancelled rather than waited for)")

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

    def _shift_until_alarm(self, url: str, book: AlarmBook, known: set[str]) -> str:
        deadline = time.monotonic() + self.cfg.alarm_timeout_s
        seed = 100
        while time.monotonic() < deadline:
            _traffic(url, 16, shift=True, seed=seed)
            seed += 1
            for view in book.open_episodes():
                _, ts, _ = book.row_meta(view.episode_id)
                if view.episode_id not in known and ts is not None:
                    return view.episode_id
            time.sleep(0.5)
        raise DemoError(
            f"no drift alarm within {self.cfg.alarm_timeout_s:.0f} s of shifted traffic"
        )


def _steps_of(version: ModelVersionInfo | None) -> int:
    """How many steps a registered version was trained for (0 when unknown)."""
    if version is None:
        return 0
    try:
        return int(json.loads(version.tags.get("params") or "{}").get("steps") or 0)
    except (ValueError, TypeError):
        return 0


def _traffic(url: str, n: int, shift: bool, seed: int) -> None:
    """POST n synthetic domain-A images, optionally brighter and flatter, one per request."""
    from model.synthetic import DriftKnobs, apply_knobs, random_scene, render, to_pil

    rng = np.random.default_rng(seed)
    knobs = DriftKnobs(brightness=0.25, contrast=0.6) if shift else DriftKnobs()
    for _ in range(n):
        image = render(random_scene(rng), "A", 32)
        if shift:
            image = apply_knobs(image, knobs, rng)
        buf = io.BytesIO()
        to_pil(image).save(buf, format="PNG")
        req = urllib.request.Request(
            f"{url}/v1/stylize", data=buf.getvalue(), headers={"Content-Type": "image/png"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
        except urllib.error.URLError as exc:
            raise DemoError(f"the model server at {url} did not answer: {exc}") from exc


if __name__ == "__main__":
    sys.exit(main())
