"""Cutover: migrate live production data between shapes and stores, gated by Great Expectations.

The library the DAGs in ``dags/`` call. Plain Python, testable without Airflow:
``connections`` (ids and defaults), ``identifiers`` (untrusted names), ``streaming`` (bounded reads
and COPY), ``control`` (the ``cutover`` control schema), ``quality`` (the GX gate), ``samples``
(deterministic sample data) and one package per pipeline.
"""

__version__ = "0.1.0"
