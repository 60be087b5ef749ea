"""Fixtures shared across test packages."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.postgres import PostgresServer, pg_bindir, set_backend_url, start_postgres
from tests.fakes.prometheus import PrometheusServer, prometheus_binary, start_prometheus

# The modules that take the longest (`--durations`, worker-seconds on 2 cores), longest first.
# They are started first so that the two workers end together instead of one of them starting
# a minutes-long pipeline run when the other has nothing left to do. `make test` hands out
# whole modules (`--dist loadfile --no-loadscope-reorder`), so each module-scoped fixture (a
# pipeline run, a server, a data set) is built once, not once on each worker, in this order.
HEAVY_FIRST = (
    "tests/pipeline/launch/test_kill_resume.py",
    "tests/bot/test_replicas.py",
    "tests/pipeline/launch/test_s3_pipeline.py",
    "tests/model/test_cli.py",
    "tests/pipeline/launch/test_local_pipeline.py",
    "tests/bot/adapters/test_prometheus_canary.py",
    "tests/pipeline/test_train_step.py",
    "tests/model/test_multinode.py",
    "tests/model/test_ddp_compile.py",
    "tests/bot/adapters/test_prometheus.py",
    "tests/model/test_gate_validity.py",
    "tests/model/serving/test_prometheus_integration.py",
    "tests/bot/drift/test_integration.py",
    "tests/pipeline/deploy/test_serve.py",
    "tests/model/serving/test_oip.py",
    "tests/model/test_train.py",
    "tests/model/test_ddp.py",
    "tests/model/test_gate.py",
)


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marks added here count
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the PostgreSQL server is `slow` (an external process: `make test`
    runs it, `make test-fast` does not). The heavy modules first (a stable sort: the rest
    keep their order)."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    rank = {path: i for i, path in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(_module_of(item), len(rank)))


@pytest.fixture(scope="session")
def mlflow_template() -> Path:
    """One empty MLflow sqlite store with its schema made: MLflow's schema migrations take
    about 4 s a store, and most tests only need an empty one. Built once per MLflow version
    and machine user, under a lock, and kept between runs: xdist's workers and the next
    `make test-fast` copy it instead of each migrating its own."""
    import mlflow

    folder = Path(tempfile.gettempdir()) / f"ganops-tests-{os.getuid()}" / "mlflow-template"
    path = folder / f"mlflow-{mlflow.__version__}.db"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            building = folder / f"building-{os.getpid()}.db"
            uri = f"sqlite:///{building}"
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(folder)  # the Default experiment's ./mlruns: here, never the repo
                mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
            building.rename(path)  # whole or absent: a run killed mid-build leaves no template
    return path


@pytest.fixture
def fresh_mlflow(mlflow_template: Path) -> Callable[[Path], str]:
    """`fresh_mlflow(path)` puts an empty, migrated MLflow store (a copy of the template, the
    test's own) at `path` and returns its `sqlite:///` URI."""

    def make(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mlflow_template, path)
        return f"sqlite:///{path}"

    return make


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers (see tests/fakes/prometheus.py); all are stopped afterwards.

    Call it with the keyword arguments of `start_prometheus` except `workdir`:
    `prometheus_factory(targets=["127.0.0.1:8080"], rule_files=[path])`.
    """
    if prometheus_binary() is None:
        pytest.skip("prometheus is not installed (make prometheus, or apt-get install prometheus)")
    started: list[PrometheusServer] = []

    def start(**kwargs: Any) -> PrometheusServer:
        server = start_prometheus(tmp_path / f"prometheus-{len(started)}", **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (tests/fakes/postgres.py). Missing binaries skip
    the test on a workstation, and fail it under CI, where `make test` installs them."""
    bindir = pg_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (make postgresql, or apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must test the PostgreSQL backend")
        pytest.skip(message)
    server = start_postgres(bindir)
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for this test."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def both_backends(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once on SQLite and once on PostgreSQL: `backend_store(path)` opens the
    store of the backend in use."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("database_url")
    set_backend_url(url)
    yield request.param
    set_backend_url(None)
