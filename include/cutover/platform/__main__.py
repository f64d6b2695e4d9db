"""``python -m cutover.platform``: apply (or, with ``--dry-run``, list) the platform schema's migrations."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from cutover.platform.config import DEFAULT_APP_ROLE, DEFAULT_CONN_ID, DEFAULT_SCHEMA, DEFAULT_SERVICE_ROLE


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, apply the migrations, print the result as JSON; exit 1 on a refused run."""
    parser = argparse.ArgumentParser(prog="python -m cutover.platform", description=__doc__)
    parser.add_argument("--conn-id", default=DEFAULT_CONN_ID, help="PostgreSQL connection id (AIRFLOW_CONN_*)")
    parser.add_argument("--schema", default=DEFAULT_SCHEMA, help="target schema (any name; it is quoted)")
    parser.add_argument("--service-role", default=DEFAULT_SERVICE_ROLE, help="role that reads and writes every row")
    parser.add_argument("--app-role", default=DEFAULT_APP_ROLE, help="role limited to the request's tenant")
    parser.add_argument("--dry-run", action="store_true", help="read only: say what would be applied")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from cutover.platform.schema import PlatformSchemaError, apply_platform_schema

    try:
        result = apply_platform_schema(args.conn_id, args.schema, args.service_role, args.app_role, args.dry_run)
    except (PlatformSchemaError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
