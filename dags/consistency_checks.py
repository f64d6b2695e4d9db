"""
### Consistency checks — are the pairs kept in sync still equal? (every 10 minutes)

(One Airflow DAG built by `cutover.consistency.dag.consistency_dag`, which both consistency DAGs
share, wiring and the text below included.)
"""

from __future__ import annotations

from cutover.consistency.dag import CHECK_DOC, consistency_dag

consistency_checks = consistency_dag("consistency_checks", "*/10 * * * *", full_sweep=False, doc_md=__doc__ + CHECK_DOC, extra_tags=())
