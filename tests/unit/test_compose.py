"""docker-compose.yaml: valid for Compose (checked with the installed docker-compose), and complete."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from cutover.connections import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
README = PROJECT_ROOT / "README.md"
SERVICES = {
    "postgres",
    "mysql",
    "redis",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
AIRFLOW_SERVICES = sorted(s for s in SERVICES if s.startswith("airflow-"))
CONNECTIONS = ("MYSQL_SOURCE", "MYSQL_TARGET", "POSTGRES_TARGET", "POSTGRES_SOURCE")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_binary() -> str | None:
    return shutil.which("docker-compose")


def test_compose_config_is_valid() -> None:
    binary = _compose_binary()
    if binary is None:
        pytest.skip(
            "docker-compose is not installed: cannot validate docker-compose.yaml with Compose itself"
        )
    proc = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_services_exist(compose: dict[str, Any]) -> None:
    assert SERVICES <= set(compose["services"])
    assert compose["services"]["postgres"]["image"].startswith("pgvector/pgvector:pg16")
    assert compose["services"]["mysql"]["image"] == "mysql:8.0"


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_services(compose: dict[str, Any], service: str) -> None:
    svc = compose["services"][service]
    assert svc["image"].endswith("apache/airflow:3.3.2}") or svc["image"] == "apache/airflow:3.3.2"
    env = svc["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")  # the compose service
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert "@postgres:5432/airflow" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
    # Airflow 3: the workers' task runners talk to the API server's execution API
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "/opt/airflow/include" in env["PYTHONPATH"].split(":")
    for conn in CONNECTIONS:
        value = env[f"AIRFLOW_CONN_{conn}"]
        host = "@mysql:" if conn.startswith("MYSQL") else "@postgres:"
        assert host in value, f"{conn} must point at the compose service: {value}"
    assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]  # its own database
    assert "healthcheck" in svc or service == "airflow-init"
    if service != "airflow-init":
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"


def test_apiserver_command_and_port(compose: dict[str, Any]) -> None:
    api = compose["services"]["airflow-apiserver"]
    assert api["command"] == "api-server"
    assert any(str(p).endswith(":8080") for p in api["ports"])
    assert {
        s: compose["services"][s]["command"]
        for s in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
    } == {
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }


def test_redis_broker(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:")
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ports" not in redis  # reached by the other services only, never from the host


def test_celery_worker_scales(compose: dict[str, Any]) -> None:
    """`docker compose up --scale airflow-worker=N`: no fixed container name, no host port (either would
    make the second replica fail), and a health check that pings this worker through Celery."""
    worker = compose["services"]["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert "inspect ping" in " ".join(worker["healthcheck"]["test"])
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0"  # a warm shutdown lets running tasks finish
    assert worker["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert re.fullmatch(r"\$\{AIRFLOW_WORKER_CONCURRENCY:-[1-9][0-9]*\}", worker["environment"]["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    for name in compose["services"]:
        assert "container_name" not in compose["services"][name], name


def test_databases_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("postgres", "mysql", "redis"):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_mounted_project_folders_exist(compose: dict[str, Any]) -> None:
    mounted: set[str] = set()
    for name in AIRFLOW_SERVICES:
        for volume in compose["services"][name].get("volumes", []):
            source, _, target = str(volume).partition(":")
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).is_dir(), f"{name} mounts {source}, which is not in the repo"
                mounted.add(target.split(":")[0])
    assert {
        "/opt/airflow/dags",
        "/opt/airflow/include",
        "/opt/airflow/plugins",
        "/opt/airflow/great_expectations",
    } <= mounted


def _readme_docker_services(text: str) -> list[str]:
    """Service names listed as ``- `name` …`` in README's Docker section (a heading mentioning Docker)."""
    names: list[str] = []
    level = 0
    for line in text.splitlines():
        heading = re.match(r"^(#+)\s+(.*)", line)
        if heading:
            depth = len(heading.group(1))
            if "docker" in heading.group(2).lower():
                level = depth
            elif level and depth <= level:
                level = 0
            continue
        item = re.match(r"^\s*[-*]\s+`([A-Za-z0-9_.-]+)`", line)
        if level and item:
            names.append(item.group(1))
    return names


def test_readme_docker_section_names_real_services(compose: dict[str, Any]) -> None:
    if not README.exists():
        pytest.skip("README.md does not exist yet")
    names = _readme_docker_services(README.read_text())
    missing = [n for n in names if n not in compose["services"]]
    assert not missing, f"README.md's Docker section names services that docker-compose.yaml lacks: {missing}"


def test_readme_parser() -> None:
    text = "# X\n- `make`\n## Docker\n- `postgres` db\n- `airflow-apiserver` ui\n### sub\n- `mysql`\n## Next\n- `other`\n"
    assert _readme_docker_services(text) == ["postgres", "airflow-apiserver", "mysql"]

