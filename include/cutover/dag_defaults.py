"""Defaults every Cutover DAG shares (light: safe to import from a DAG file at parse time)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def default_args(**overrides: Any) -> dict[str, Any]:
    """Retries with exponential backoff for every task (the DAG integrity test checks them)."""
    args: dict[str, Any] = {
        "owner": "cutover",
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    }
    args.update(overrides)
    return args
