"""`KubeflowLauncher`: the CT pipeline on a Kubeflow Pipelines cluster (KFP v2beta1 API).

The kfp.Client is created on first use, because its constructor already calls the server.
KFP has no idempotency key for runs (kubeflow/pipelines#10446), so the request id -> run id
mapping lives in our `pipeline_runs` table, claimed before the run is submitted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ganops.pipeline.launch.kfp_client import KfpAccess, make_kfp_client
from ganops.pipeline.launch.runstore import RunRow, RunStore, claim_request, row_to_status
from ganops.pipeline.params import validate_params
from ganops.pipeline.placement import DEFAULT_PLACEMENT, Placement
from ganops.pipeline.ports import (
    InvalidParamsError,
    LaunchResult,
    RunParams,
    RunState,
    RunStatus,
    UnknownRunError,
    UpstreamError,
)
from ganops.pipeline.results import to_run_result, with_links

PENDING_POLL_S = 0.5
# Single-user KFP runs its pipelines in the kubeflow namespace.
KFP_DEFAULT_NAMESPACE = "kubeflow"


def _kube_custom_objects() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


class KubeflowLauncher:
    """Launches and follows runs on the KFP API at `host`."""

    backend = "kfp"

    def __init__(
        self,
        state_dir: Path,
        host: str,
        mlflow_uri: str,
        image: str,
        *,
        experiment: str = "ganops",
        max_active_per_model: int | None = 1,
        ui_host: str | None = None,
        pending_wait_s: float = 30.0,
        client_factory: Any = None,
        pipeline_mlflow_uri: str | None = None,
        artifact_uri: str | None = None,
        checkpoint_minutes: float = 10.0,
        device_data_gb: float | None = None,
        placement: Placement = DEFAULT_PLACEMENT,
        access: KfpAccess | None = None,
        mlflow_ui_url: str | None = None,
        data_allow: tuple[str, ...] = (),
        trainjob_api: Callable[[], Any] | None = None,
        database_url: str | None = None,
    ) -> None:
        """`mlflow_uri` is where this process reads results; the pipeline's pods get
        `pipeline_mlflow_uri` when given (an in-cluster service URL), else the same URI.
        `trainjob_api` makes the kubernetes CustomObjectsApi that cancel deletes a run's
        TrainJob with (default: in-cluster config, else ~/.kube/config), on first use.
        `database_url`: the replicas' shared PostgreSQL for `pipeline_runs`."""
        self.state_dir = Path(state_dir).resolve()
        self.host = host.rstrip("/")
        self.mlflow_uri = mlflow_uri
        self.pipeline_mlflow_uri = pipeline_mlflow_uri or mlflow_uri
        self.image = image
        self.experiment = experiment
        self.max_active = max_active_per_model
        self.ui_host = (ui_host or self.host).rstrip("/")
        self.pending_wait_s = pending_wait_s
        self.store = RunStore(self.state_dir, database_url)
        self.artifact_uri = artifact_uri or ""
        self.checkpoint_minutes = checkpoint_minutes
        self.device_data_gb = device_data_gb  # GANOPS_DEVICE_DATA_GB; None: the pod's env
        self.placement = placement
        self.access = access or KfpAccess()
        self.mlflow_ui_url = mlflow_ui_url
        self.data_allow = tuple(data_allow)  # GANOPS_DATA_ALLOW, for the ingest step's check
        self._factory = client_factory
        self._trainjob_api = trainjob_api or _kube_custom_objects
        self._client: Any = None
        self._lock = threading.Lock()

    # --- the KFP client ------------------------------------------------------------

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._call("connect to", self._make_client)
            return self._client

    def _make_client(self) -> Any:
        if self._factory is not None:
            return self._factory(self.host)
        return make_kfp_client(self.host, self.ui_host, self.access)

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call; any failure becomes one UpstreamError line. KFP prints links
        to stdout, which is not ours to write to."""
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return func(*args, **kwargs)
        except Exception as exc:
            if getattr(exc, "status", None) == 404 and what.startswith(("get run", "cancel run")):
                raise UnknownRunError(
                    f"Kubeflow Pipelines at {self.host}: cannot {what}: not found"
                ) from None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UpstreamError(
                f"Kubeflow Pipelines at {self.host}: cannot {what}: {first}"
            ) from None

    def package(self, gpus: int) -> Path:
        """The compiled pipeline for our image and a run on `gpus` GPUs: a pod spec cannot
        depend on a runtime parameter, so each GPU count gets its own (cached) compile."""
        from ganops import __version__
        from ganops.pipeline.ct_pipeline import compile_pipeline

        placement = dataclasses.replace(self.placement, gpus=gpus)
        # The version too: an upgraded bot must not submit the YAML an older one compiled.
        key = f"{__version__}|{self.image}|{placement!r}"
        tag = hashlib.sha256(key.encode()).hexdigest()[:12]
        path = self.state_dir / "kfp" / f"ct_pipeline-{tag}.yaml"
        if not path.exists():
            tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp.yaml")
            compile_pipeline(tmp, self.image, placement)
            tmp.replace(path)
        return path

    # --- PipelineLauncher ----------------------------------------------------------

    def launch(self, params: RunParams, request_id: str) -> LaunchResult:
        params = validate_params(params)
        if params.nodes > 1 and self.artifact_uri.startswith(("/", "file://")):
            # GANOPS_ARTIFACT_PVC is mounted in the pipeline's pods, not the TrainJob's nodes.
            raise InvalidParamsError(
                f"nodes={params.nodes} needs GANOPS_ARTIFACT_URI in object storage (s3://, "
                "gs://): the TrainJob's nodes do not mount GANOPS_ARTIFACT_PVC"
            )
        self._refresh_active(params.model)
        row, created = claim_request(
            self.store,
            params,
            request_id,
            self.backend,
            self.max_active,
            new_run_id=lambda: None,
            is_dead=lambda r: False,
            mark_dead=lambda r: {},
        )
        if created:
            return self._submit(params, request_id)
        if row.run_id:
            return LaunchResult(run_id=row.run_id, url=row.url, created=False)
        return self._await_submission(request_id)

    def status(self, run_id: str) -> RunStatus:
        row = self.store.get(run_id)
        if row is not None and row.final:
            return self._linked(row_to_status(row))
        run = self._call("get run " + run_id, self.client().get_run, run_id)
        return self._to_status(run, row)

    def _linked(self, status: RunStatus) -> RunStatus:
        return dataclasses.replace(status, result=with_links(status.result, self.mlflow_ui_url))

    def cancel(self, run_id: str) -> None:
        row = self.store.get(run_id)
        if row is not None and row.final:
            return
        self._call("cancel run " + run_id, self.client().terminate_run, run_id)
        self.store.update(
            "run_id", run_id, {"state": "cancelled", "finished_at": time.time()}, only_active=True
        )
        if row is not None and int(row.params.get("nodes") or 1) > 1:
            self._delete_trainjob(row.request_id)

    def _delete_trainjob(self, request_id: str) -> None:
        """A multi-node run's TrainJob goes with it: terminating the workflow stops the pod
        that waits on the job, not the job's GPUs (which the step's SIGTERM handler and the
        job's owner reference cover too, when they get the chance)."""
        from ganops.pipeline.steps.durable import durable_dir
        from ganops.pipeline.steps.trainjob import TrainJobError, delete_trainjob, trainjob_name

        durable = durable_dir(artifact_uri=self.artifact_uri, request_id=request_id)
        if not durable:
            return  # no artifact URI: such a run could not have started a TrainJob
        namespace = self.access.namespace or KFP_DEFAULT_NAMESPACE
        try:
            delete_trainjob(self._trainjob_api(), namespace=namespace, name=trainjob_name(durable))
        except TrainJobError as exc:
            raise UpstreamError(f"the run is cancelled, but {exc}") from None

    def list_runs(self, limit: int = 20) -> list[RunStatus]:
        client = self.client()
        experiment = self._call(
            "find the experiment",
            client.create_experiment,
            self.experiment,
            namespace=self.access.namespace,
        )
        listed = self._call(
            "list runs",
            client.list_runs,
            page_size=limit,
            sort_by="created_at desc",
            experiment_id=experiment.experiment_id,
            namespace=self.access.namespace,
        )
        out = []
        for run in listed.runs or []:
            row = self.store.get(run.run_id)
            out.append(
                self._linked(row_to_status(row))
                if row is not None and row.final
                else self._to_status(run, row)
            )
        return out

    # --- internals -----------------------------------------------------------------

    def _submit(self, params: RunParams, request_id: str) -> LaunchResult:
        from ganops.pipeline.params import RunStorage, pipeline_arguments

        storage = RunStorage(
            self.artifact_uri,
            request_id,
            self.checkpoint_minutes,
            self.data_allow,
            device_data_gb=self.device_data_gb,
        )

        try:
            result = self._call(
                "create a run",
                self.client().create_run_from_pipeline_package,
                # nodes > 1: this pod only waits on the TrainJob, whose nodes hold the GPUs.
                str(self.package(0 if params.nodes > 1 else params.gpus)),
                arguments=pipeline_arguments(params, self.pipeline_mlflow_uri, storage=storage),
                run_name=run_name(params.model, request_id),
                experiment_name=self.experiment,
                namespace=self.access.namespace,
                enable_caching=False,
            )
        except BaseException:
            self.store.delete_request(request_id)  # nothing was created: a retry may try again
            raise
        run_id = str(result.run_id)
        url = f"{self.ui_host}/#/runs/details/{run_id}"
        self.store.update(
            "request_id", request_id, {"run_id": run_id, "url": url}, only_active=False
        )
        return LaunchResult(run_id=run_id, url=url, created=True)

    def _await_submission(self, request_id: str) -> LaunchResult:
        """Another caller is submitting this request right now: wait for its run id."""
        deadline = time.monotonic() + self.pending_wait_s
        while time.monotonic() < deadline:
            time.sleep(PENDING_POLL_S)
            with self.store.connect() as conn:
                row = self.store.by_request(conn, request_id)
            if row is None:
                raise UpstreamError("the first submission of this request failed; try again")
            if row.run_id:
                return LaunchResult(run_id=row.run_id, url=row.url, created=False)
        raise UpstreamError("this request is still being submitted to Kubeflow; try again shortly")

    def _refresh_active(self, model: str) -> None:
        """Bring our active rows of `model` up to date, so finished runs do not block."""
        with self.store.connect() as conn:
            active = [r for r in self.store.active(conn, model) if r.backend == self.backend]
        for row in active:
            if row.run_id:
                self.status(row.run_id)

    def _to_status(self, run: Any, row: RunRow | None) -> RunStatus:
        from ganops.pipeline.launch.kfp_status import MlflowFacts, base_fields, run_parameters

        fields = base_fields(run)
        model = row.model if row else str(run_parameters(run).get("model") or "cut")
        facts = MlflowFacts(self.mlflow_uri)
        if fields["current_step"] == "train":
            fields.update(facts.train_progress(model, run.run_id))
        result = facts.result(model, run.run_id) if fields["state"] in _RESULT_STATES else None
        fields.update(
            run_id=str(run.run_id),
            model=model,
            request_id=row.request_id if row else None,
            url=f"{self.ui_host}/#/runs/details/{run.run_id}",
            params=row.params if row else run_parameters(run),
            updated_at=time.time(),
        )
        if row is not None:
            self._store_status(row, fields, result)
        fields["state"] = cast(RunState, fields["state"])
        return RunStatus(result=with_links(to_run_result(result), self.mlflow_ui_url), **fields)

    def _store_status(self, row: RunRow, fields: dict[str, Any], result: Any) -> None:
        keys = (
            "state",
            "current_step",
            "steps_done",
            "error",
            "failed_step",
            "finished_at",
            "train_step",
            "train_total",
            "train_rate",
            "losses",
        )
        changes = {k: fields[k] for k in keys if k in fields}
        changes["result"] = result
        self.store.update("run_id", str(row.run_id), changes, only_active=True)


_RESULT_STATES = frozenset({"gated", "awaiting_approval", "deployed", "failed"})


def run_name(model: str, request_id: str) -> str:
    """A stable display name per request, so a person can match KFP runs to requests."""
    return f"ganops-{model}-{hashlib.sha256(request_id.encode()).hexdigest()[:10]}"
