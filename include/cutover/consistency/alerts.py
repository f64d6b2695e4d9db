"""Alerts: a failure callback / notifier that logs loudly and, when configured, posts to a webhook.

The check task records its result first and then fails when a pair differs, so Airflow runs the
task's ``on_failure_callback``: :func:`consistency_alert` (a plain callback) or
:class:`ConsistencyAlertNotifier` (an Airflow notifier, for ``on_failure_callback=[…]``).

The webhook is the Airflow connection ``cutover_alerts`` (e.g. ``AIRFLOW_CONN_CUTOVER_ALERTS=
https://hooks.example.com/services/T000/B000/XXXX`` or JSON with ``"extra": {"url": …}``): a JSON body
``{"text": …, "pair": …, "dag_id": …, "run_id": …, "task": …, "error": …}`` is POSTed to it. With no
such connection only the log line is written. The URL is never logged (it usually holds a token).
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from typing import Any

from cutover.connections import CutoverConnectionError, resolve

log = logging.getLogger("cutover.consistency.alert")
ALERT_CONN_ID = "cutover_alerts"
_PAIR = re.compile(r"pair '([^']+)'")


def webhook_url(conn_id: str = ALERT_CONN_ID) -> str | None:
    """The webhook URL of ``conn_id``, or None when that connection is not defined."""
    try:
        info = resolve(conn_id)
    except CutoverConnectionError:
        return None
    if info.extra.get("url"):
        return str(info.extra["url"])
    if info.host.startswith(("http://", "https://")):
        return info.host
    scheme = "https" if info.conn_type == "https" else "http"
    port = f":{info.port}" if info.port else ""
    path = f"/{info.schema}" if info.schema else ""
    return f"{scheme}://{info.host}{port}{path}"


def alert_payload(context: dict[str, Any]) -> dict[str, Any]:
    """The alert's JSON body, from an Airflow task context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    err = context.get("exception")
    match = _PAIR.search(str(err or ""))
    pair = match.group(1) if match else None
    task_id = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", None)
    text = f":rotating_light: Cutover consistency check failed: {err}" if err else "Cutover consistency check failed"
    return {
        "text": text,
        "pair": pair,
        "dag_id": getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", None),
        "run_id": getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None),
        "task": f"{task_id}[{map_index}]" if map_index not in (None, -1) else task_id,
        "error": str(err) if err else None,
    }


def send_alert(payload: dict[str, Any], conn_id: str = ALERT_CONN_ID, timeout_s: float = 10.0) -> bool:
    """Log the alert loudly and POST it to the webhook when one is configured; True if posted."""
    log.error("CONSISTENCY ALERT: %s", json.dumps(payload, default=str))
    url = webhook_url(conn_id)
    if not url:
        return False
    req = urllib.request.Request(
        url, data=json.dumps(payload, default=str).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - URL from an operator's connection
            ok = 200 <= resp.status < 300
    except Exception as exc:  # an alert channel down must not hide the original failure
        log.error("consistency alert: webhook %s failed: %s", conn_id, type(exc).__name__)
        return False
    log.warning("consistency alert posted to webhook connection %s", conn_id)
    return ok


def consistency_alert(context: dict[str, Any]) -> None:
    """``on_failure_callback``: alert on a failed consistency check (log + optional webhook)."""
    send_alert(alert_payload(context))


def notifier(conn_id: str = ALERT_CONN_ID) -> Any:
    """A :class:`ConsistencyAlertNotifier` (imported lazily: Airflow is only needed inside Airflow)."""
    from airflow.sdk import BaseNotifier

    class ConsistencyAlertNotifier(BaseNotifier):
        """Airflow notifier: log the failed check loudly and post it to the ``cutover_alerts`` webhook."""

        template_fields = ("conn_id",)

        def __init__(self, conn_id: str = ALERT_CONN_ID):
            super().__init__()
            self.conn_id = conn_id

        def notify(self, context: Any) -> None:
            send_alert(alert_payload(dict(context)), self.conn_id)

    return ConsistencyAlertNotifier(conn_id)
