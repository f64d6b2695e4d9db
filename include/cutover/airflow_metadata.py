"""Airflow's metadata database in the embedded PostgreSQL, shared by ``make airflow``,
``make airflow-celery`` and ``make demo``.

SQLite cannot serve more than one writer: under a few concurrent runs the scheduler, dag-processor
and triggerer of ``airflow standalone`` died on ``database is locked`` within minutes. So every local
Airflow of this project keeps its metadata in a database of its own in the embedded PostgreSQL
(``$CUTOVER_DATA_DIR/pg``), created on first use:

``python -m cutover.airflow_metadata airflow``  prints the SQLAlchemy URL of database ``airflow``
(what ``scripts/airflow-env.sh`` exports as ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``).
"""

from __future__ import annotations

import re
import sys
from urllib.parse import quote

#: the metadata database of ``make airflow`` and ``make demo`` (their runs show in the same UI)
LOCAL_DATABASE = "airflow"
#: the metadata database of ``make airflow-celery``
CELERY_DATABASE = "airflow_celery"

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def metadata_url(database: str = LOCAL_DATABASE) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg2://…``, unix socket) of ``database`` in the embedded
    PostgreSQL, creating the database when it is missing. Starts the server if it is down.

    Raises ``ValueError`` for a name that is not a plain lower-case identifier (it is ours, never data's).
    """
    if not _NAME.fullmatch(database):
        raise ValueError(f"metadata database name must match {_NAME.pattern}, got {database!r}")
    import psycopg

    from cutover.connections import start_embedded_postgres
    from cutover.identifiers import quote_pg

    server = start_embedded_postgres()
    with psycopg.connect(server.pg_conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {quote_pg(database)}")
    return f"postgresql+psycopg2://{quote(server.login)}@/{database}?host={quote(server.host, safe='/')}"


def main(argv: list[str]) -> int:
    """``python -m cutover.airflow_metadata [DATABASE]``: print the URL of DATABASE (default ``airflow``)."""
    print(metadata_url(argv[0] if argv else LOCAL_DATABASE))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
