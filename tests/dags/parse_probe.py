"""Parse one DAG file the way the dag-processor does, with databases out of reach; print JSON facts.

Run as ``python tests/dags/parse_probe.py dags/x.py``. Drivers and the embedded-PostgreSQL package
cannot be imported and sockets cannot connect, so a DAG file that touches a database while it is
parsed fails here instead of passing.
"""

from __future__ import annotations

import importlib.abc
import json
import socket
import sys
import time
from pathlib import Path

BLOCKED = ("psycopg", "psycopg2", "MySQLdb", "pymysql", "pgserver", "sqlalchemy.dialects.postgresql.psycopg")
HEAVY = ("pandas", "great_expectations", "pyarrow", "numpy", "torch", "sentence_transformers", "psycopg", "MySQLdb")


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, D102
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"parse-time import of database driver {name!r} is not allowed")
        return None


def _no_connect(*args, **kwargs):  # noqa: ANN002, ANN003
    raise OSError("parse-time network/database access is not allowed")


def main(path: str) -> None:
    import airflow.sdk  # noqa: F401  - Airflow itself is not what we time
    from airflow.dag_processing.dagbag import DagBag

    before = set(sys.modules)
    sys.meta_path.insert(0, _Block())
    socket.socket.connect = _no_connect  # type: ignore[method-assign]
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=path, bundle_path=Path(path).parent)
    elapsed = time.perf_counter() - t0
    new_modules = set(sys.modules) - before
    heavy = sorted({m.split(".")[0] for m in new_modules if m.split(".")[0] in HEAVY})
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "retries": [t.retries for t in dag.tasks],
            "retry_exponential_backoff": [bool(t.retry_exponential_backoff) for t in dag.tasks],
            "max_active_runs": dag.max_active_runs,
            "doc_md": bool(dag.doc_md and len(dag.doc_md) > 100),
            "tags": sorted(dag.tags),
            "task_ids": [t.task_id for t in dag.tasks],
        }
    print(json.dumps({
        "seconds": elapsed,
        "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
        "heavy_imports": heavy,
        "dags": dags,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
