"""`ganops bot [--http [--port N]] [--user NAME]`: settings, services, transport.

No Slack tokens → the shell adapter; SLACK_BOT_TOKEN + SLACK_APP_TOKEN → Socket Mode;
`--http` → Bolt's HTTP endpoint at /slack/events. A bad setting stops start-up with one line
and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ganops.bot.errors import ConfigError
from ganops.bot.settings import Settings, load_settings
from ganops.model.logfmt import FORMATS, configure_logging
from ganops.pipeline.db import database_errors

if TYPE_CHECKING:
    from ganops.bot.services import Services

log = logging.getLogger("ganops.bot")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ganops bot", description="Run the ganops Slack bot.")
    p.add_argument(
        "--http",
        action="store_true",
        help="serve Slack's HTTP requests at /slack/events, with /healthz and /metrics "
        "(needs SLACK_SIGNING_SECRET; default: Socket Mode with tokens, else the shell)",
    )
    p.add_argument("--port", type=int, default=3000, help="HTTP port, 1..65535 (default 3000)")
    p.add_argument("--host", default="0.0.0.0", help="HTTP address (default 0.0.0.0)")
    p.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="Socket Mode: also serve /healthz and /metrics on this port, 0..65535 "
        "(default: off; with --http they share --port)",
    )
    p.add_argument("--user", default=None, help="shell adapter: who is typing (default alice)")
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text, or json: one object a line (default text; the shell logs to a file)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        settings = load_settings(os.environ, http=args.http, port=args.port)
        if args.user is not None and settings.transport != "shell":
            raise ConfigError("--user only applies to the shell adapter (no Slack tokens set)")
    except ConfigError as exc:
        print(f"ganops: {exc}", file=sys.stderr)
        return 2
    _logging(settings, args.verbose, args.log_format)
    try:
        return _run(settings, args.user or "alice", args.host, args.health_port)
    except (OSError, *database_errors()) as exc:  # type: ignore[misc]
        where = (
            "GANOPS_DATABASE_URL"
            if settings.database_url
            else f"GANOPS_STATE_DIR={settings.state_dir}"
        )
        reason = " ".join(str(exc).split())  # libpq's messages span lines: one line here
        print(f"ganops: cannot use {where}: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _logging(settings: Settings, verbose: bool, log_format: str = "text") -> None:
    # In the shell, the terminal is the chat: logs go to a file beside the state.
    level = logging.DEBUG if verbose else logging.INFO
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if settings.transport == "shell":
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(level=level, format=fmt, filename=settings.state_dir / "bot.log")
    elif log_format == "json":
        configure_logging(fmt="json", level=level)
    else:
        logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    if not verbose:  # every job run is an INFO line otherwise
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _run(settings: Settings, user: str, host: str, health_port: int | None = None) -> int:
    # A pod's SIGTERM stops the bot like Ctrl-C: jobs shut down, nothing is half-written.
    signal.signal(signal.SIGTERM, on_sigterm)
    if settings.transport == "shell":
        from ganops.bot.local.shell import run_shell

        return run_shell(settings, user, sys.stdin, sys.stdout)
    from ganops.bot.services import build_services

    return serve(settings, build_services(settings), host=host, health_port=health_port)


def on_sigterm(signum: int, frame: object) -> None:
    sys.exit(0)  # unwinds the transport's loop in the main thread, into `serve`'s finally


def serve(
    settings: Settings, services: Services, *, host: str, health_port: int | None = None
) -> int:
    """The bot on its transport until it is stopped. On the way out, a rollout in flight may
    finish (up to `settings.shutdown_grace_s`): killed halfway, it would leave the served
    version and the champion alias apart until the next start reconciles them."""
    from ganops.bot.app import create_app
    from ganops.bot.outbox_worker import install_outbox
    from ganops.bot.runs.watch import AUTO_DEPLOY, auto_deploy
    from ganops.bot.scheduler import build_jobs
    from ganops.bot.transports import HttpTransport, run_socket_mode

    app = create_app(settings, services)
    warm_groups(settings, services)
    # Every ack writes the outbox; this replica's worker (and every other's) carries it out.
    worker = (
        install_outbox(
            app,
            services.outbox,
            handlers={AUTO_DEPLOY: lambda payload: auto_deploy(services, payload["run_id"])},
            lease_s=settings.outbox_lease_s,
        )
        if services.outbox is not None
        else None
    )
    jobs = build_jobs(settings, services)
    jobs.start()
    try:
        if settings.transport == "http":
            assert settings.http_port is not None
            HttpTransport(app, settings.http_port, host).serve_forever()
        else:
            if health_port is not None:  # the pod's probes and Prometheus
                HttpTransport(None, health_port, host).start()
            run_socket_mode(app, settings)
    finally:
        jobs.shutdown(wait=False)
        if worker is not None:
            worker.stop(timeout=settings.shutdown_grace_s)
        drain_rollouts(services, settings.shutdown_grace_s)
        services.leader.resign()
    return 0


def warm_groups(settings: Settings, services: Services) -> None:
    """Fetch the approver groups' members now, in the background: the first ack that asks
    whether someone is an approver then finds them cached (bot.groups)."""
    from ganops.bot.groups import GroupCache

    members = services.approvals.group_members if services.approvals else None
    if isinstance(members, GroupCache):
        members.warm(settings.approver_groups)


def drain_rollouts(services: Services, grace_s: float) -> None:
    """Start no new rollout, wait for those in flight, and past `grace_s` exit at once."""
    if services.approvals is None:
        return
    rollout = services.approvals.rollout
    rollout.close()
    busy = rollout.busy()
    if busy:
        log.warning("stopping: waiting up to %.0f s for %d rollout(s) in flight", grace_s, busy)
    if rollout.wait_idle(grace_s):
        return
    # Exiting normally would join the deploy's thread past the bound; the next start
    # reconciles what is left.
    log.error("stopping with a rollout still in flight after %.0f s", grace_s)
    logging.shutdown()
    os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
