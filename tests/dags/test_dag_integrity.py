"""DAG integrity: every DAG file parses alone, fast, without touching a database, and follows the house rules."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
PROBE = Path(__file__).with_name("parse_probe.py")
PARSE_LIMIT_S = 1.0

pytestmark = pytest.mark.dags


@cache
def probe(path: Path) -> dict:
    """Parse one DAG file in a fresh interpreter with databases blocked; return the probe's JSON."""
    out = subprocess.run(
        [sys.executable, str(PROBE), str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_there_are_dags() -> None:
    assert DAG_FILES, "no DAG files found in dags/"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_errors_or_database(path: Path) -> None:
    facts = probe(path)
    assert facts["import_errors"] == {}, facts["import_errors"]
    assert facts["dags"], f"{path.name} defines no DAG"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_well_under_a_second(path: Path) -> None:
    facts = probe(path)
    print(f"{path.name}: parsed in {facts['seconds'] * 1000:.1f} ms")
    assert facts["seconds"] < PARSE_LIMIT_S, f"{path.name} took {facts['seconds']:.2f} s to parse"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_nothing_heavy(path: Path) -> None:
    assert probe(path)["heavy_imports"] == []


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_house_rules(path: Path) -> None:
    facts = probe(path)
    assert path.stem in facts["dags"], f"dag_id must equal the file name {path.stem!r}"
    for dag_id, dag in facts["dags"].items():
        assert dag["max_active_runs"] == 1, f"{dag_id}: migrations run one at a time"
        assert all(r >= 2 for r in dag["retries"]), f"{dag_id}: every task needs retries >= 2: {dag['retries']}"
        assert all(dag["retry_exponential_backoff"]), f"{dag_id}: retries need exponential backoff"
        assert dag["doc_md"], f"{dag_id}: doc_md must explain the DAG in the UI"
        assert "cutover" in dag["tags"], f"{dag_id}: tag it 'cutover'"


def test_probe_catches_parse_time_database_access(tmp_path: Path) -> None:
    """The probe itself must fail a DAG file that connects to a database while parsed."""
    bad = tmp_path / "bad_dag.py"
    bad.write_text(
        "from airflow.sdk import dag\n"
        "import psycopg\n"
        "psycopg.connect('postgresql://127.0.0.1/x')\n"
        "@dag(schedule=None)\n"
        "def bad_dag():\n"
        "    pass\n"
        "bad_dag()\n"
    )
    facts = probe(bad)
    assert facts["import_errors"], "a DAG that connects at parse time must not parse cleanly"
    assert "not allowed" in next(iter(facts["import_errors"].values()))
