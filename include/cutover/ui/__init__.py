"""The Cutover pages inside the Airflow UI: migration status and the Great Expectations data docs.

:mod:`cutover.ui.status` reads the control schema and renders the status page (plain Python, testable
without Airflow); :mod:`cutover.ui.app` is the FastAPI sub-application that ``plugins/cutover_plugin.py``
mounts under ``/cutover`` in the Airflow 3 API server.
"""
