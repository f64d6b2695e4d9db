"""``tenant_split``: a shared-table multi-tenant MySQL → one database per tenant (in progress).

So far: :mod:`.mapping`, the table-consolidation mapping file (drop / rename / merge / shared
reference data), validated with errors that name the file and line.
"""
