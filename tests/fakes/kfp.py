"""A small KFP v2beta1 REST server for tests: healthz, experiments, runs (create, get, list,
terminate). It keeps runs in memory; tests move them along with `set_state` and
`set_tasks`, the way a cluster's run would progress. Real HTTP, real kfp.Client.

Every object it serves is built from `kfp_server_api`'s models (the client generated from
KFP's API spec) and serialised by its ApiClient, so field names, enums and states are KFP's
own: a state outside `V2beta1RuntimeState` or a misspelt field fails here, not on a cluster.

Task names are those KFP reports. A run's task details come from the Argo workflow's nodes,
`display_name` being the node's DisplayName (kubeflow/pipelines
backend/src/common/util/workflow.go, `Workflow.NodeStatuses`). The v2 Argo compiler
(backend/src/v2/compiler/argocompiler/dag.go, `workflowCompiler.task`) makes one Argo DAG
task per pipeline-spec task *key*, each with a `<key>-driver` task before it, and a
`root-driver` / `root` pair for the pipeline. So a `dsl.ExitHandler` shows as
`exit-handler-1` (not its `name=`), a `dsl.If` / `dsl.Else` as `condition-branches-2` with
`condition-3` / `condition-4` (not "gate-passed"), and the exit task `finalize` under the
handler's exit hook. Our steps' task keys equal their component names, which is why
`STEP_TASKS` maps those and ignores the rest; `reported_tasks` reproduces that layout.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kfp_server_api import ApiClient
from kfp_server_api.models import (
    GoogleRpcStatus,
    V2beta1Experiment,
    V2beta1PipelineTaskDetail,
    V2beta1Run,
    V2beta1RunDetails,
    V2beta1RuntimeState,
)

API = "/apis/v2beta1"
_API = ApiClient()
_GATE_BRANCH = {"gate-pass": "condition-3", "gate-reject": "condition-4"}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _json(model: Any) -> Any:
    """A kfp_server_api model as KFP's REST API sends it."""
    return _API.sanitize_for_serialization(model)


def _state(state: str) -> str:
    if state not in V2beta1RuntimeState.allowable_values:
        raise ValueError(f"{state!r} is not a KFP RuntimeState")
    return state


def reported_tasks(steps: dict[str, str]) -> dict[str, str]:
    """Our steps' states (task key -> state, in start order) with what KFP reports around
    them: the drivers, the root and exit-handler DAGs and the gate's condition DAGs."""
    states = set(steps.values())
    group = "FAILED" if "FAILED" in states else "RUNNING" if "RUNNING" in states else "SUCCEEDED"
    out = {"root-driver": "SUCCEEDED", "root": group}
    out |= {"exit-handler-1-driver": "SUCCEEDED", "exit-handler-1": group}
    for key, state in steps.items():
        if key in _GATE_BRANCH:
            branch = _GATE_BRANCH[key]
            out |= {"condition-branches-2-driver": "SUCCEEDED", "condition-branches-2": state}
            out |= {f"{branch}-driver": "SUCCEEDED", branch: state}
        out |= {f"{key}-driver": "SUCCEEDED", key: state}
    return out


class FakeKfp:
    def __init__(self) -> None:
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth: list[str | None] = []  # each request's Authorization header
        self.namespaces: list[str | None] = []  # each experiment call's namespace, as sent
        self.lock = threading.Lock()

    # --- test controls -------------------------------------------------------------

    def set_state(self, run_id: str, state: str, error: str | None = None) -> None:
        with self.lock:
            run = self.runs[run_id]
            run["state"] = _state(state)
            if state in {"SUCCEEDED", "FAILED", "CANCELED"}:
                run["finished_at"] = _json(_now())
            if error:
                run["error"] = _json(GoogleRpcStatus(code=2, message=error))

    def set_tasks(
        self, run_id: str, tasks: dict[str, str], errors: dict[str, str] | None = None
    ) -> None:
        """`tasks`: our steps' task keys -> state, in start order (see `reported_tasks`)."""
        errors = errors or {}
        details = []
        for i, (name, state) in enumerate(reported_tasks(tasks).items()):
            at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
            message = errors.get(name)
            details.append(
                V2beta1PipelineTaskDetail(
                    run_id=run_id,
                    task_id=f"t{i}",
                    display_name=name,
                    state=_state(state),
                    create_time=at,
                    start_time=at,
                    error=GoogleRpcStatus(code=1, message=message) if message else None,
                )
            )
        with self.lock:
            self.runs[run_id]["run_details"] = _json(V2beta1RunDetails(task_details=details))

    # --- API -----------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        auth: str | None = None,
    ) -> tuple[int, Any]:
        self.requests.append((method, path))
        self.auth.append(auth)
        if path == f"{API}/experiments":  # runs live in their experiment's namespace
            sent = (body or {}).get("namespace") if method == "POST" else None
            self.namespaces.append(sent or query.get("namespace", [None])[0])
        with self.lock:
            if path == f"{API}/healthz":
                return 200, {"commit_sha": "fake", "tag_name": "2.5.0", "multi_user": False}
            if path == f"{API}/experiments":
                return self._experiments(method, query, body)
            if path == f"{API}/runs":
                return self._create_run(body) if method == "POST" else self._list_runs(query)
            if path.startswith(f"{API}/runs/"):
                return self._one_run(method, path.removeprefix(f"{API}/runs/"))
        return 404, {"error": f"no route {method} {path}", "code": 5}

    def _experiments(self, method: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST":
            exp = _json(
                V2beta1Experiment(
                    experiment_id=uuid.uuid4().hex,
                    display_name=body["display_name"],
                    namespace=body.get("namespace"),
                    created_at=_now(),
                    storage_state="AVAILABLE",
                )
            )
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        found = list(self.experiments.values())
        if "filter" in query:
            predicates = json.loads(query["filter"][0]).get("predicates", [])
            for p in predicates:
                found = [
                    e
                    for e in found
                    if e.get(p["key"]) == p.get("stringValue", p.get("string_value"))
                ]
        return 200, {"experiments": found, "total_size": len(found)}

    def _create_run(self, body: dict[str, Any]) -> tuple[int, Any]:
        if "pipeline_spec" not in body or "experiment_id" not in body:
            return 400, {"error": "pipeline_spec and experiment_id are required", "code": 3}
        known = {k: v for k, v in body.items() if k in V2beta1Run.openapi_types}
        run = _json(
            V2beta1Run(
                **known,
                run_id=uuid.uuid4().hex,
                state="PENDING",
                created_at=_now(),
                storage_state="AVAILABLE",
            )
        )
        self.runs[run["run_id"]] = run
        return 200, run

    def _list_runs(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        runs = list(self.runs.values())
        if "experiment_id" in query:
            runs = [r for r in runs if r["experiment_id"] == query["experiment_id"][0]]
        runs.sort(key=lambda r: r["created_at"], reverse=True)
        size = int(query.get("page_size", ["10"])[0])
        return 200, {"runs": runs[:size], "total_size": len(runs), "next_page_token": ""}

    def _one_run(self, method: str, rest: str) -> tuple[int, Any]:
        run_id, _, verb = rest.partition(":")
        run = self.runs.get(run_id)
        if run is None:
            return 404, {"error": f"run {run_id} not found", "code": 5}
        if method == "POST" and verb == "terminate":
            run["state"] = "CANCELING"
            return 200, {}
        return 200, run


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKfp

    def _serve(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        auth = self.headers.get("Authorization")
        code, payload = self.fake.handle(method, url.path, parse_qs(url.query), body, auth)
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve_fake_kfp() -> Iterator[tuple[str, FakeKfp]]:
    """A FakeKfp on a free loopback port; yields (host URL, fake)."""
    fake = FakeKfp()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # Polls for shutdown every 50 ms, not 0.5 s: each test's teardown waits one poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()
