"""Celery tier: the project's DAGs under Airflow's CeleryExecutor, two workers, a Redis broker.

:func:`celery_cluster` (one per test module, stopped when the module is done) starts, each in its own process group, with a throw-away
``AIRFLOW_HOME``:

* Airflow's metadata database: a fresh database ``airflow_celery_<hex>`` in the tests' embedded
  PostgreSQL (``.test-data/pg``; SQLite cannot serve Celery), migrated with ``airflow db migrate``
  and dropped at the end; it is also Celery's result backend (``db+postgresql``);
* the broker: Redis on 127.0.0.1:6379 (``scripts/ensure-services.sh`` starts it), database
  ``$CUTOVER_CELERY_TEST_REDIS_DB`` (default 6; ``make airflow-celery`` uses 5), on a queue of this
  session's own, so no other worker takes its tasks. Where nothing answers on 6379 a private
  ``redis-server`` is started on a free port; without one the tier is skipped (the only skip);
* ``airflow api-server`` (the execution API the workers' task runners talk to) on a free port,
  ``airflow scheduler``, ``airflow dag-processor`` and two ``airflow celery worker`` named
  ``worker-a@<host>`` and ``worker-b@<host>`` (concurrency 2 each). Each worker reports its name as
  the task instances' ``hostname`` (:mod:`tests.celery.worker_name`).

The connections are the tests' (``AIRFLOW_CONN_*`` from ``tests/conftest.py``), so tasks write to the
tests' database. Process logs: ``<AIRFLOW_HOME>/<process>.log`` (the last lines are shown when
something fails to start); teardown stops every process group (TERM, then KILL).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
WORKERS = ("worker-a", "worker-b")
WORKER_CONCURRENCY = 2
REDIS_DB = int(os.environ.get("CUTOVER_CELERY_TEST_REDIS_DB", "6"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "celery: runs the DAGs under the CeleryExecutor (Redis, two workers)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except Exception:  # noqa: BLE001 - not there
        return False


def _stop_group(proc: subprocess.Popen[Any], grace: float = 20) -> None:
    """TERM the process group (the process and what it spawned), then KILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; a child may still hold the group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


@dataclass
class CeleryCluster:
    """What :func:`celery_cluster` started: the environment every Airflow process shares, and helpers."""

    home: Path
    env: dict[str, str]
    meta_conninfo: str  # libpq URI of Airflow's metadata database (psycopg)
    broker_url: str
    queue: str
    api_url: str
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    logs: dict[str, IO[Any]] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command in the cluster's environment; its stdout (raises on failure)."""
        proc = subprocess.run([AIRFLOW, *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
        return proc.stdout

    def start(self, name: str, args: list[str], **extra_env: str) -> None:
        log = open(self.log_path(name), "w")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        self.procs[name] = subprocess.Popen([AIRFLOW, *args], env={**self.env, **extra_env}, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.tail(name)}")

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{self.tail(n, 1500)}" for n in self.procs)
                raise RuntimeError(f"{what} not ready after {timeout:.0f}s\n{logs}")
            time.sleep(1)

    def query(self, q: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows from Airflow's metadata database."""
        import psycopg

        with psycopg.connect(self.meta_conninfo, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(q, params).fetchall()]

    def stop(self) -> None:
        # workers first (no new task starts), then the rest
        for name in sorted(self.procs, key=lambda n: (not n.startswith("worker"), n)):
            _stop_group(self.procs[name])
        for log in self.logs.values():
            log.close()


@pytest.fixture(scope="session")
def redis_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for the broker: $CUTOVER_CELERY_TEST_BROKER_URL, the server on 127.0.0.1:6379, or a
    private redis-server on a free port. Skips the tier only when no Redis can be had at all."""
    url = os.environ.get("CUTOVER_CELERY_TEST_BROKER_URL") or f"redis://127.0.0.1:6379/{REDIS_DB}"
    if _redis_ping(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"no Redis answers at {url} and redis-server is not installed (`make system` installs it)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"redis://127.0.0.1:{port}/{REDIS_DB}"
    try:
        deadline = time.monotonic() + 20
        while not _redis_ping(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"no Redis answers on 127.0.0.1:6379 and redis-server did not start on port {port}")
            time.sleep(0.2)
        yield url
    finally:
        _stop_group(proc, grace=5)


@pytest.fixture(scope="module")
def celery_cluster(redis_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryCluster]:
    """Airflow under the CeleryExecutor: api-server, scheduler, dag-processor and two Celery workers."""
    import psycopg
    import redis

    from cutover import connections

    server = connections.start_embedded_postgres()  # the tests' own (CUTOVER_DATA_DIR=.test-data)
    database = f"airflow_celery_{secrets.token_hex(4)}"
    with psycopg.connect(server.pg_conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    meta = connections.ConnInfo(conn_id="airflow_db", conn_type="postgres", host=server.host, login=server.login,
                                schema=database)
    meta_url = f"postgresql+psycopg2://{quote(meta.login)}@/{database}?host={quote(meta.host, safe='/')}"
    home = tmp_path_factory.mktemp("airflow-celery-home")
    port = _free_port()
    queue = f"cutover_celery_test_{secrets.token_hex(4)}"
    # the test process's Airflow settings (its own AIRFLOW_HOME, unit-test mode, a task context left by
    # dag.test()) stay out; the connections (AIRFLOW_CONN_*) and Cutover's settings go in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CTX_", "PYTEST_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
        "AIRFLOW__CELERY__BROKER_URL": redis_broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        # Celery's own record of which worker ran each task (celery_taskmeta.worker), beside Airflow's
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": '{"result_extended": true}',
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    })
    cluster = CeleryCluster(home=home, env=env, meta_conninfo=meta.pg_conninfo(), broker_url=redis_broker,
                            queue=queue, api_url=f"http://127.0.0.1:{port}")
    try:
        cluster.airflow("db", "migrate", timeout=600)
        cluster.start("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                     "--apps", "execution"])
        cluster.start("dag-processor", ["dag-processor"])
        cluster.start("scheduler", ["scheduler"])
        for name in WORKERS:
            cluster.start(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
                                 str(WORKER_CONCURRENCY), "--skip-serve-logs", "--without-gossip", "--without-mingle"],
                          CUTOVER_CELERY_WORKER=name,
                          AIRFLOW__CORE__HOSTNAME_CALLABLE="tests.celery.worker_name.hostname")

        def api_up() -> bool:
            try:
                with urllib.request.urlopen(f"{cluster.api_url}/execution/health", timeout=3) as r:
                    return r.status == 200
            except Exception:  # noqa: BLE001 - not up yet
                return False

        def workers_up() -> bool:
            return all(" ready." in cluster.log_path(name).read_text(errors="replace") for name in WORKERS)

        cluster.wait_for("the API server", api_up, 180)
        cluster.wait_for("the Celery workers", workers_up, 180)
        yield cluster
    finally:
        cluster.stop()
        try:
            r = redis.Redis.from_url(redis_broker)
            for key in r.scan_iter(f"*{queue}*"):
                r.delete(key)
        except Exception:  # noqa: BLE001 - best effort: the queue is this session's own
            pass
        with psycopg.connect(server.pg_conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
