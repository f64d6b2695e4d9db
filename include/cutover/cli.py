"""The ``cutover`` command line: the same logic the DAGs run, without Airflow's scheduler.

``python -m cutover env``      print ``export AIRFLOW_CONN_…`` lines for the default connections
                               (starts the embedded PostgreSQL when no PostgreSQL is configured)
``python -m cutover init``     create the control schema and the GX context
``python -m cutover demo``     seed sample data and run every pipeline end to end (``dag.test()``)
``python -m cutover docs``     rebuild the data docs and print where they are
``python -m cutover stop-pg``  stop the embedded PostgreSQL
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys


def cmd_env(_: argparse.Namespace) -> int:
    """Print shell exports for every default connection not already set in the environment."""
    from cutover.connections import default_env

    for key, value in default_env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_init(_: argparse.Namespace) -> int:
    """Create the control schema and the GX file context."""
    from cutover import control
    from cutover.connections import pg_connect, resolve
    from cutover.quality.gate import GX_ROOT, get_context

    with pg_connect() as conn:
        control.ensure_schema(conn)
    get_context()
    info = resolve("postgres_target")
    print(f"control schema '{control.SCHEMA}' ready on {info.host}:{info.port or ''}/{info.schema}")
    print(f"GX context ready in {GX_ROOT}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Seed sample data and run the pipelines end to end."""
    from cutover.demo import run_demo

    return run_demo(scale=args.scale, only=args.only)


def cmd_docs(_: argparse.Namespace) -> int:
    """Rebuild the data docs."""
    from cutover.quality.gate import rebuild_docs

    print(f"data docs: {rebuild_docs()}")
    return 0


def cmd_stop_pg(_: argparse.Namespace) -> int:
    """Stop the embedded PostgreSQL server if it runs."""
    from cutover.connections import embedded_postgres_dir

    pgdata = embedded_postgres_dir()
    if not (pgdata / "postmaster.pid").exists():
        print("embedded PostgreSQL is not running")
        return 0
    from pgserver import _commands  # pg_ctl is generated at import time, so look it up by name

    pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009
    pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user="pgserver" if _is_root() else None)
    print(f"embedded PostgreSQL in {pgdata} stopped")
    return 0


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cutover`` / ``cutover``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="cutover", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("env", help="print AIRFLOW_CONN_* exports for the defaults").set_defaults(fn=cmd_env)
    sub.add_parser("init", help="create the control schema and GX context").set_defaults(fn=cmd_init)
    demo = sub.add_parser("demo", help="seed sample data and run the pipelines end to end")
    demo.add_argument("--scale", type=float, default=1.0, help="multiply the sample sizes (default 1.0)")
    demo.add_argument("--only", nargs="*", default=None, help="run only these DAG ids")
    demo.set_defaults(fn=cmd_demo)
    sub.add_parser("docs", help="rebuild the data docs").set_defaults(fn=cmd_docs)
    sub.add_parser("stop-pg", help="stop the embedded PostgreSQL").set_defaults(fn=cmd_stop_pg)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
