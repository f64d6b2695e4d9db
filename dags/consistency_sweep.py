"""
### Consistency sweep — the nightly full comparison of every pair kept in sync (02:30 UTC)

The same check as `consistency_checks`, over **whole pairs** instead of their recent window: it
catches what a window cannot see (old rows changed or deleted on one side, rows whose window column
never moved). It is a separate DAG so that its long runs never delay the 10-minute checks.
Everything below applies unchanged, except that `full_sweep` defaults to true.

---

(One Airflow DAG built by `cutover.consistency.dag.consistency_dag`, which both consistency DAGs
share, wiring and the text below included.)
"""

from __future__ import annotations

from cutover.consistency.dag import CHECK_DOC, consistency_dag

consistency_sweep = consistency_dag("consistency_sweep", "30 2 * * *", full_sweep=True, doc_md=__doc__ + CHECK_DOC, extra_tags=("sweep",))
