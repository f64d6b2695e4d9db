"""The quality gate: validate a SQL table or query against a named GX suite, record, rebuild docs, stop.

GX Core 1.x objects are created idempotently from here (``add_or_update``), in the file context
``great_expectations/`` at the project root:

* **suites** are files in ``great_expectations/expectations/<suite>.json`` (committed); a pipeline may
  pass ``expectations`` to build a suite at run time (named ``generated__…``, not committed);
* **data sources** hold no secret: their connection string is a ``${CUTOVER_GX_<CONN_ID>}`` template
  that this module fills from the Airflow connection just before it runs;
* **checkpoints** run the validation and the ``UpdateDataDocsAction``, so the data docs under
  ``great_expectations/uncommitted/data_docs/local_site/`` are rebuilt on every gate.

Schema, table and column names come from data (a wide table is named after its ship id): every one
that reaches GX goes through :func:`cutover.identifiers.sa_ident`, so SQLAlchemy always quotes it with
the dialect's own quoting (GX 1.x would otherwise render a table name unquoted and fold a schema
name to lower case). Asset, validation-definition and checkpoint names are readable ASCII labels of
those names, with a hash of the real name wherever the label had to change it.

:func:`run_gate` records every result in ``cutover.quality_results`` and raises
:class:`QualityGateFailed` when the suite fails, so that in a DAG the downstream cutover never runs.
GX is imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutover import control
from cutover.connections import POSTGRES_TARGET, PROJECT_ROOT, pg_connect, resolve
from cutover.identifiers import Dialect, sa_ident

log = logging.getLogger(__name__)
#: GX logs every datasource, asset and checkpoint step at INFO; a task log keeps its warnings and
#: the gate's own one-line result (raise it with CUTOVER_GX_LOG_LEVEL=INFO when debugging GX)
GX_LOG_LEVEL = os.environ.get("CUTOVER_GX_LOG_LEVEL", "WARNING").upper()
logging.getLogger("great_expectations").setLevel(GX_LOG_LEVEL)

GX_ROOT = Path(os.environ.get("CUTOVER_GX_ROOT", PROJECT_ROOT / "great_expectations"))
DOCS_SITE = "local_site"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# expectation kwargs that name columns of the validated table (GX renders them into SQL)
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list",)


class QualityGateFailed(RuntimeError):
    """A suite failed: the run must stop before cutover. ``result`` holds the details."""

    def __init__(self, result: GateResult):
        self.result = result
        failures = "; ".join(result.failures[:10]) or "see data docs"
        super().__init__(
            f"quality gate failed: suite {result.suite!r} on {result.asset!r}: "
            f"{result.failed} of {result.evaluated} expectations failed ({failures}). "
            f"Data docs: {result.docs_index}"
        )


@dataclass
class GateResult:
    """What one gate found: success, counts, failed expectations and where the data docs are."""

    suite: str
    asset: str
    success: bool
    evaluated: int
    failed: int
    statistics: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    docs_index: str | None = None
    result_id: int | None = None


def docs_dir() -> Path:
    """The folder of the rebuilt data docs site (served by the Airflow plugin)."""
    return GX_ROOT / "uncommitted" / "data_docs" / DOCS_SITE


# The context's config is kept here, not in git: GX rewrites great_expectations.yml whenever a data
# source or asset is added, so the file is written from this text on first use and ignored by git.
GX_CONFIG = """# GX Core 1.x file context for Cutover. Suites are committed in expectations/; data sources,
# validation definitions and checkpoints are (re)created idempotently by include/cutover/quality/.
config_version: 4.0
config_variables_file_path: uncommitted/config_variables.yml
plugins_directory: plugins/
stores:
  expectations_store:
    class_name: ExpectationsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: expectations/
  validation_results_store:
    class_name: ValidationResultsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: uncommitted/validations/
  checkpoint_store:
    class_name: CheckpointStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: checkpoints/
  validation_definition_store:
    class_name: ValidationDefinitionStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: validation_definitions/
expectations_store_name: expectations_store
validation_results_store_name: validation_results_store
checkpoint_store_name: checkpoint_store
data_docs_sites:
  local_site:
    class_name: SiteBuilder
    show_how_to_buttons: false
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: uncommitted/data_docs/local_site/
    site_index_builder:
      class_name: DefaultSiteIndexBuilder
analytics_enabled: false
progress_bars:
  globally: false
  metric_calculations: false
fluent_datasources: {}
"""


def get_context() -> Any:
    """The GX file context in ``great_expectations/`` (its config written on first use)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    config = GX_ROOT / "great_expectations.yml"
    if not config.exists():
        GX_ROOT.mkdir(parents=True, exist_ok=True)
        config.write_text(GX_CONFIG)
    import great_expectations as gx

    return gx.get_context(mode="file", context_root_dir=str(GX_ROOT))


def _datasource(context: Any, conn_id: str) -> Any:
    info = resolve(conn_id)
    env_name = f"CUTOVER_GX_{_SAFE.sub('_', conn_id).upper()}"
    os.environ[env_name] = info.sqlalchemy_url()  # the secret stays in the env, never in the yml
    name = f"cutover_{conn_id}"
    template = "${" + env_name + "}"
    if info.is_postgres:
        return context.data_sources.add_or_update_postgres(name=name, connection_string=template)
    return context.data_sources.add_or_update_sql(name=name, connection_string=template)


def _dispose(*datasources: Any) -> None:
    """Close the connections GX's SQLAlchemy engines keep pooled after a gate: its datasource's engine
    and its execution engine's. Each gate builds new datasource objects; without this every gate left
    its pooled connections open until garbage collection, and a worker (or a test session) running
    many gates exhausted the server's ``max_connections``."""
    seen: set[int] = set()
    for d in datasources:
        ee = getattr(d, "_execution_engine", None)
        for engine in (getattr(d, "_engine", None), getattr(ee, "engine", None)):
            if engine is not None and id(engine) not in seen and hasattr(engine, "dispose"):
                seen.add(id(engine))
                engine.dispose()


def _label(*parts: str) -> str:
    """A readable GX name (asset, checkpoint: also a file name) for the dotted ``parts``: ASCII ``[A-Za-z0-9_.-]``.

    Accents are dropped and anything else becomes ``_``; when that changed the text, or a part holds a
    dot of its own (``a.b`` + ``c`` would read like ``a`` + ``b.c``), ``_`` and a hash of the exact
    parts follow, so two different names never share a label. Plain names keep their label as it was.
    """
    text = ".".join(parts)
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    label = _SAFE.sub("_", folded)
    if label != text or (len(parts) > 1 and any("." in p for p in parts)):
        key = "\x00".join(parts)  # NUL never occurs in a name: the key is unambiguous
        label = f"{label}_{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8]}"
    return label


def _asset_label(schema: str | None, table: str | None, fallback: str) -> str:
    if table is None:
        return _label(fallback)
    return _label(schema, table) if schema else _label(table)


def _quote_columns(expectations: list[dict[str, Any]], dialect: Dialect) -> list[dict[str, Any]]:
    """``expectations`` with every column name in their kwargs validated and always quoted (:func:`sa_ident`)."""
    quoted = []
    for exp in expectations:
        kwargs = dict(exp.get("kwargs", {}))
        for key in _COLUMN_KWARGS:
            if isinstance(kwargs.get(key), str):
                kwargs[key] = sa_ident(kwargs[key], dialect=dialect)
        for key in _COLUMN_LIST_KWARGS:
            if isinstance(kwargs.get(key), (list, tuple)):
                kwargs[key] = [sa_ident(c, dialect=dialect) if isinstance(c, str) else c for c in kwargs[key]]
        quoted.append({**exp, "kwargs": kwargs})
    return quoted


_TYPE_EXPECTATION = "expect_column_values_to_be_of_type"


def split_case_collisions(expectations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(expectations GX can check, type expectations it cannot): GX 1.x reads a PostgreSQL table's column
    types with case-insensitive names (``CaseInsensitiveString``; great_expectations PR #11192), so of
    two columns whose names differ only in case — ``"Mixed Case"`` and ``"mixed case"``, both valid
    channel ids — ``expect_column_values_to_be_of_type`` checks the first one's type for both. Type
    expectations on such columns are taken out and checked by :func:`check_types_exactly`."""
    folded: dict[str, int] = {}
    for e in expectations:
        if e.get("type") == _TYPE_EXPECTATION and isinstance(e.get("kwargs", {}).get("column"), str):
            key = str(e["kwargs"]["column"]).casefold()
            folded[key] = folded.get(key, 0) + 1
    own = [e for e in expectations if e.get("type") == _TYPE_EXPECTATION
           and folded.get(str(e.get("kwargs", {}).get("column")).casefold(), 0) > 1]
    return [e for e in expectations if not any(e is o for o in own)], own


def check_types_exactly(conn_id: str, schema: str | None, table: str, expectations: list[dict[str, Any]]) -> list[str]:
    """Check type expectations by exact column name in PostgreSQL's catalog (``format_type``, compared as
    GX compares: case-insensitively); returns the failures in the gate's wording."""
    with pg_connect(conn_id) as conn:
        rows = conn.execute(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema()) AND a.attnum > 0
                 AND NOT a.attisdropped""", (table, schema)).fetchall()
    actual = {name: typ for name, typ in rows}
    failures = []
    for e in expectations:
        col, want = str(e["kwargs"]["column"]), str(e["kwargs"].get("type_", ""))
        got = actual.get(col)
        if got is None or got.upper() != want.upper():
            failures.append(f"{_TYPE_EXPECTATION}({{'column': {col!r}, 'type_': {want!r}}}), observed "
                            f"{(got or 'no such column').upper()!r} (checked by Cutover: names differ only in case)")
    return failures


def _suite(context: Any, suite_name: str, expectations: list[dict[str, Any]] | None) -> Any:
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    if expectations is None:
        try:
            return context.suites.get(suite_name)
        except Exception as exc:
            raise FileNotFoundError(
                f"no GX suite named {suite_name!r} in {GX_ROOT / 'expectations'}; add {suite_name}.json there"
            ) from exc
    # Built whole and stored as new: ``add_expectation_configuration`` checks each expectation against
    # every one before it and ``suites.add_or_update`` matches each against the stored suite's to keep
    # their ids — both O(n²) comparisons of pydantic objects, 0.3 s of a 20-channel ship's 0.7 s gate.
    # The suite is generated from the data on every run: stable expectation ids carry nothing here.
    suite = gx.ExpectationSuite(name=suite_name, expectations=[
        ExpectationConfiguration(type=exp["type"], kwargs=exp.get("kwargs", {}), meta=exp.get("meta", {})).to_domain_obj()
        for exp in expectations])
    try:
        context.suites.delete(suite_name)
    except Exception:  # noqa: BLE001 - not stored yet
        pass
    return context.suites.add(suite)


def _describe(result: Any) -> str:
    cfg = result.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
    observed = (result.result or {}).get("observed_value")
    unexpected = (result.result or {}).get("unexpected_count")
    extra = f", observed {observed!r}" if observed is not None else ""
    extra += f", {unexpected} unexpected" if unexpected else ""
    return f"{cfg.type}({kwargs}){extra}"


def run_gate(
    suite_name: str,
    *,
    conn_id: str = POSTGRES_TARGET,
    table: str | None = None,
    schema: str | None = None,
    query: str | None = None,
    asset_name: str | None = None,
    expectations: list[dict[str, Any]] | None = None,
    run_id: str | None = None,
    raise_on_failure: bool = True,
    update_docs: bool = True,
) -> GateResult:
    """Validate ``schema.table`` (or ``query``) on ``conn_id`` against ``suite_name``; record; rebuild docs.

    ``expectations`` (``[{"type": "expect_…", "kwargs": {…}}]``) builds the suite at run time instead
    of reading the committed file. Raises :class:`QualityGateFailed` on failure unless told not to.
    ``update_docs=False`` leaves the data docs site as it is (the caller runs :func:`rebuild_docs` once
    after many gates: GX rebuilds the whole site on each update, so a gate per unit made a run of
    1,000 units rebuild it 1,000 times, each over every validation so far).
    """
    import great_expectations as gx

    if (table is None) == (query is None):
        raise ValueError("run_gate needs exactly one of table= or query=")
    with _gx_lock():
        return _run_gate_locked(
            gx, suite_name, conn_id=conn_id, table=table, schema=schema, query=query, asset_name=asset_name,
            expectations=expectations, run_id=run_id, raise_on_failure=raise_on_failure, update_docs=update_docs,
        )


@contextmanager
def _gx_lock() -> Iterator[None]:
    """Serialise GX work across processes: parallel mapped tasks share one file context and docs site."""
    GX_ROOT.mkdir(parents=True, exist_ok=True)
    with open(GX_ROOT / ".cutover.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_gate_locked(
    gx: Any,
    suite_name: str,
    *,
    conn_id: str,
    table: str | None,
    schema: str | None,
    query: str | None,
    asset_name: str | None,
    expectations: list[dict[str, Any]] | None,
    run_id: str | None,
    raise_on_failure: bool,
    update_docs: bool = True,
) -> GateResult:
    context = get_context()
    dialect: Dialect = "postgres" if resolve(conn_id).is_postgres else "mysql"
    ds = _datasource(context, conn_id)
    asset_name = _label(asset_name) if asset_name else _asset_label(schema, table, suite_name)
    try:
        ds.delete_asset(asset_name)  # the table or query may have changed since last time
    except Exception:
        pass
    if query is not None:
        asset = ds.add_query_asset(name=asset_name, query=query)
    else:
        assert table is not None
        # Names from data: always quoted by SQLAlchemy, never case-folded (see sa_ident). The asset is
        # re-created in memory on every gate, which is what runs; GX writes the names to its yml unquoted.
        asset = ds.add_table_asset(
            name=asset_name, table_name=sa_ident(table, dialect=dialect),
            schema_name=sa_ident(schema, dialect=dialect) if schema else None,
        )
    batch = asset.add_batch_definition_whole_table("whole")
    own_checks: list[dict[str, Any]] = []
    if expectations is not None and dialect == "postgres" and table is not None:
        expectations, own_checks = split_case_collisions(expectations)
    if expectations is not None:
        expectations = _quote_columns(expectations, dialect)
    suite = _suite(context, suite_name, expectations)
    gate_name = _label(f"gate__{suite_name}__{conn_id}__{asset_name}")
    vd = context.validation_definitions.add_or_update(gx.ValidationDefinition(name=gate_name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=gate_name,
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")] if update_docs else [],
            result_format="SUMMARY",
        )
    )
    try:
        run = checkpoint.run(run_id=gx.RunIdentifier(run_name=run_id) if run_id else None)
    finally:
        _dispose(ds, batch.data_asset.datasource, vd.data.data_asset.datasource)
    evaluated = failed = 0
    failures: list[str] = []
    stats: dict[str, Any] = {}
    for vr in run.run_results.values():
        s = vr.statistics
        stats = dict(s)
        evaluated += int(s.get("evaluated_expectations", 0))
        failed += int(s.get("unsuccessful_expectations", 0))
        failures.extend(_describe(r) for r in vr.results if not r.success)
    if own_checks:
        assert table is not None
        own_failures = check_types_exactly(conn_id, schema, table, own_checks)
        evaluated += len(own_checks)
        failed += len(own_failures)
        failures.extend(own_failures)
        stats["checked_by_cutover"] = len(own_checks)
    index = docs_dir() / "index.html"
    result = GateResult(
        suite=suite_name,
        asset=f"{conn_id}:{asset_name}",
        success=bool(run.success) and failed == 0,
        evaluated=evaluated,
        failed=failed,
        statistics=stats,
        failures=failures,
        docs_index=str(index) if index.exists() else None,
    )
    with pg_connect() as conn:
        control.ensure_schema(conn)
        result.result_id = control.record_quality(
            conn, suite_name, result.asset, result.success, evaluated=evaluated, failed=failed,
            statistics={**stats, "failures": failures}, docs_path=result.docs_index, run_id=run_id,
        )
    log.info(
        "quality gate %s on %s: %s (%d/%d expectations passed); data docs: %s",
        suite_name, result.asset, "PASSED" if result.success else "FAILED",
        evaluated - failed, evaluated, result.docs_index,
    )
    if not result.success and raise_on_failure:
        raise QualityGateFailed(result)
    return result


def rebuild_docs() -> Path:
    """Rebuild the data docs site from stored validation results; returns its index.html."""
    with _gx_lock():
        get_context().build_data_docs()
    return docs_dir() / "index.html"
