"""``tenant_split``: shared multi-tenant MySQL tables → one database per tenant, live, on the shared life cycle.

* :mod:`.mapping` — the table-consolidation mapping file (drop / rename / merge / shared), errors with
  file and line; :mod:`.schema` — what ``information_schema`` and ``SHOW CREATE`` say;
* :mod:`.plan` — tenants, tables, units (tenant, target table), safe stored database names;
* :mod:`.target` — DDL, triggers set aside / restored / proven, views and events, foreign keys;
* :mod:`.copy` — resumable keyset copy (checkpoint in the chunk's transaction), dead letters;
* :mod:`.verify` — counts and canonical row checksums, the GX gate;
* :mod:`.sync` — binary-log catch-up (via :mod:`cutover.binlog`); :mod:`.cutover` — write pause, route,
  rollback; :mod:`.diff_report` — the schema diff report (HTML + xlsx);
* :mod:`.spec` — the :class:`~cutover.lifecycle.spec.PipelineSpec` the DAGs name; :mod:`.build` — its
  stage bodies; :mod:`.params` — the DAGs' shared Params; :mod:`.demo` — its part of ``make demo``.
"""
