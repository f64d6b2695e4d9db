"""Cutover inside the Airflow 3 UI: the Great Expectations data docs and the migration status.

Mounts the FastAPI app of :mod:`cutover.ui.app` under ``/cutover`` in the API server and adds two
entries to the navigation, both under a "Cutover" menu:

* **Migration status** (``/cutover/status``): recent runs with their units (rows, checksums), the
  latest quality-gate results linked into the data docs, current switches and their history, the
  latest consistency result per pair with its lag, and dead-letter counts; JSON at
  ``/cutover/api/status``.
* **Data docs** (``/cutover/docs/index.html``): the site every quality gate rebuilds.

The pages need an Airflow login, like the rest of the UI; set ``CUTOVER_UI_AUTH=off`` to serve them
without one (only where the API server is not reachable by others). Importing this module opens no
database connection.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin

from cutover.ui.app import create_app

URL_PREFIX = "/cutover"

app = create_app(
    require_auth=os.environ.get("CUTOVER_UI_AUTH", "on").lower() not in ("off", "0", "false", "no")
)


class CutoverPlugin(AirflowPlugin):
    """Data docs and migration status pages for the Cutover pipelines."""

    name = "cutover"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Cutover"}]
    external_views = [
        {
            "name": "Migration status",
            "href": f"{URL_PREFIX}/status",
            "url_route": "cutover-status",
            "destination": "nav",
            "category": "Cutover",
        },
        {
            "name": "Data docs",
            "href": f"{URL_PREFIX}/docs/index.html",
            "url_route": "cutover-data-docs",
            "destination": "nav",
            "category": "Cutover",
        },
    ]
