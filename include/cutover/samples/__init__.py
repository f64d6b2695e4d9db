"""Deterministic sample data for every pipeline, sized by a parameter and seeded.

One module per pipeline (``ship``, ``tenants``, ``json_files``, ``complaints``); the demo, the tests and
the benchmarks all use them, so the figures they print are about the same data.
"""
