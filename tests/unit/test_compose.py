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
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
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
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
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


def test_databases_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("postgres", "mysql"):
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

