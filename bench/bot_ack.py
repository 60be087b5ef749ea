"""Ack latency of `/retrain` under 50 concurrent signed requests against the HTTP transport.

The bot is the real app (`create_app`) behind the real HTTP transport, with the command
outbox as `ganops bot` installs it, its Web API at a local Slack server (its own process) and
an instant pipeline backend, so what is measured is the bot's own path: signature check,
parsing, the outbox row, the ack; and, behind it, each launch carried out to its run message
(`start_run`: the runs table, conversations.info, chat.postMessage) while the next acks come
in. Prints one JSON object: ack p50/p99/max and the time from each request to its run message.
Goal: p99 under 100 ms. `--database-url postgresql://…` runs it on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganops.bot.adapters.registry import MlflowRegistry
from ganops.bot.app import create_app
from ganops.bot.local.slack import LocalSlack
from ganops.bot.outbox import Outbox
from ganops.bot.outbox_worker import install_outbox
from ganops.bot.runs.record import RunBook
from ganops.bot.services import Services, slack_client
from ganops.bot.settings import load_settings
from ganops.bot.store import Store
from ganops.bot.transports import HttpTransport
from ganops.pipeline.ports import LaunchResult, RunParams, RunStatus

SECRET, TOKEN = "bench-signing-secret", "xoxb-bench"
CONCURRENCY, ROUNDS, WARMUP = 50, 6, 1


class InstantLauncher:
    """Launches return at once; every request is a new run (no per-model limit here)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, str] = {}

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        with self.lock:
            run_id = self.runs.setdefault(request_id, f"run-{len(self.runs) + 1}")
        return LaunchResult(run_id, None, created=True)

    def status(self, run_id: str) -> RunStatus:
        return RunStatus(run_id=run_id, state="queued")

    def cancel(self, run_id: str) -> None:
        return None

    def list_runs(self, limit: int = 20) -> list[RunStatus]:
        return []


def signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={mac}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def request_bytes(n: int, port: int) -> bytes:
    form = {"command": "/retrain", "text": f"epochs=2 seed={n % 1000}", "team_id": "T1",
            "channel_id": "C_BENCH", "user_id": f"U{n}", "trigger_id": f"trig-{n}"}  # fmt: skip
    body = urlencode(form)
    head = ["POST /slack/events HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
            f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in signed(body).items()]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


SENT: dict[str, float] = {}  # requester -> wall time its request went out


async def one_request(port: int, n: int, go: asyncio.Event) -> float:
    """Connect first, then send on the shared start signal: all 50 land at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = request_bytes(n, port)
    await go.wait()
    SENT[f"U{n}"] = time.time()
    start = time.perf_counter()
    writer.write(data)
    await writer.drain()
    status = await reader.readline()
    elapsed = time.perf_counter() - start
    await reader.read()
    writer.close()
    if b" 200 " not in status:
        raise SystemExit(f"request {n} got {status!r}")
    return elapsed * 1000


async def burst(port: int, first: int) -> list[float]:
    go = asyncio.Event()
    tasks = [asyncio.create_task(one_request(port, first + i, go)) for i in range(CONCURRENCY)]
    await asyncio.sleep(0.2)  # every connection is open
    go.set()
    return list(await asyncio.gather(*tasks))


def round_of(port: int, first: int) -> list[float]:
    return asyncio.run(burst(port, first))


def serve_slack(conn: Connection) -> None:
    """The fake Slack in its own process: its CPU is not the bot's (Slack is remote). A
    watcher notes when each run message arrives (by the requester it mentions)."""
    slack = LocalSlack(token=TOKEN).start()
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.002):
            for m in slack.messages("C_BENCH")[len(seen) :]:
                found = re.search(r"<@(U\d+)>", str(m.get("blocks")) + str(m.get("text")))
                if found:
                    seen.setdefault(found.group(1), time.time())

    threading.Thread(target=watch, daemon=True).start()
    conn.send(slack.url)
    while (ask := conn.recv()) != "stop":
        conn.send(len(slack.calls("chat.postMessage")) if ask == "count?" else dict(seen))
    stop.set()


def serve_bot(
    conn: Connection,
    slack_url: str,
    database_url: str | None,
    use_outbox: bool = True,
    threads: int = 8,
) -> None:
    """The bot process: the real app behind the real HTTP transport, acks into the outbox."""
    state = Path(tempfile.mkdtemp(prefix="ganops-bench-"))
    env = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack_url,
           "GANOPS_CHANNEL": "C_BENCH", "GANOPS_STATE_DIR": str(state)}  # fmt: skip
    settings = load_settings(env, http=True, port=0)
    store = Store(settings.state_dir, database_url)
    outbox = Outbox(store)
    services = Services(store=store, runbook=RunBook(store), launcher=InstantLauncher(),
                        registry=MlflowRegistry(settings.mlflow_uri), slack=slack_client(settings),
                        outbox=outbox)  # fmt: skip
    app = create_app(settings, services)
    worker = install_outbox(app, outbox, threads=threads) if use_outbox else None
    http = HttpTransport(app, 0, host="127.0.0.1").start()
    conn.send(http.port)
    conn.recv()  # "stop"
    http.stop()
    if worker is not None:
        worker.stop()
    store.close()


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return {"p50": round(statistics.median(values), 2), "p99": round(p99, 2),
            "max": round(values[-1], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=None, help="postgresql://… (default SQLite)")
    parser.add_argument(
        "--no-outbox", action="store_true", help="Bolt's thread runner (before issue 22)"
    )
    parser.add_argument("--worker-threads", type=int, default=8, help="the outbox worker's")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    slack_end, slack_child = ctx.Pipe()
    bot_end, bot_child = ctx.Pipe()
    slack_proc = ctx.Process(target=serve_slack, args=(slack_child,), daemon=True)
    slack_proc.start()
    slack_url = slack_end.recv()
    bot_proc = ctx.Process(
        target=serve_bot,
        args=(bot_child, slack_url, args.database_url, not args.no_outbox, args.worker_threads),
        daemon=True,
    )
    bot_proc.start()
    port = bot_end.recv()
    latencies: list[float] = []
    for r in range(WARMUP + ROUNDS):
        got = round_of(port, r * CONCURRENCY)
        if r >= WARMUP:
            latencies += got
        time.sleep(0.5)  # the lazy launches of a round finish before the next burst
    sent = (ROUNDS + WARMUP) * CONCURRENCY
    posted, deadline = 0, time.monotonic() + 60
    while posted < sent and time.monotonic() < deadline:
        slack_end.send("count?")
        posted = slack_end.recv()
        time.sleep(0.2)
    slack_end.send("seen?")
    seen: dict[str, float] = slack_end.recv()
    to_message = [(seen[u] - t) * 1000 for u, t in SENT.items() if u in seen]
    ack = percentiles(latencies)
    run = percentiles(to_message)
    print(
        json.dumps(
            {
                "benchmark": "bot_ack",
                "transport": "http",
                "backend": "postgresql" if args.database_url else "sqlite",
                "outbox": not args.no_outbox,
                "concurrency": CONCURRENCY,
                "requests_measured": len(latencies),
                "ack_p50_ms": ack["p50"],
                "ack_p99_ms": ack["p99"],
                "ack_max_ms": ack["max"],
                "goal_p99_ms": 100,
                "meets_goal": ack["p99"] < 100,
                "to_run_message_p50_ms": run["p50"],
                "to_run_message_p99_ms": run["p99"],
                "to_run_message_max_ms": run["max"],
                "run_messages_posted": posted,
                "requests_sent": sent,
                "cpus": os.cpu_count(),
            }
        )
    )
    bot_end.send("stop")
    slack_end.send("stop")
    bot_proc.join(10)
    slack_proc.join(10)


if __name__ == "__main__":
    main()
